"""Batched queries of a causal LM, without gradient, shared by every LLM plugin.

Prompts are batched with left padding: `yes_probability` (P(Yes) from the Yes / No
logits, TALLRec's and P-Scanner's score; the head its prompts share is run once and
the tails after it are right-padded), `completion_logprob` (log-likelihood of a
completion: ranking candidates), `perplexity` (ONION), `generate` (greedy or sampled
decoding).

torch is imported inside the functions.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from recguard.errors import RecguardError

Progress = Callable[..., None]   # progress(done, total, **info); info such as loss= is optional


def no_progress(done: int, total: int, **info) -> None:
    pass


def _device_of(model):
    try:
        return next(model.parameters()).device
    except StopIteration:
        import torch

        return torch.device("cpu")


def _sorted_batches(lengths: Sequence[int], size: int):
    """Batches of at most ``size`` indices, shortest sequences first, so that each batch
    pads its rows to about the same length; yields (indices, how many are done after it)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    size = max(1, size)
    for start in range(0, len(order), size):
        yield order[start:start + size], min(len(order), start + size)


def _encode_pairs(tokenizer, prompts: Sequence[str], completions: Sequence[str]):
    """Token ids of prompt + completion, and how many of them belong to the prompt.

    The completion is tokenised in context (prompt + completion), so a leading
    space merges as it would in training."""
    out = []
    for prompt, completion in zip(prompts, completions):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
        n_prompt = len(p)
        while n_prompt > 0 and full[:n_prompt] != p[:n_prompt]:
            n_prompt -= 1  # the boundary token merged with the completion's first piece
        out.append((full, n_prompt))
    return out


# Batches are padded to a multiple of this many tokens. On a CPU, bf16 matrix products
# run through oneDNN, which compiles a kernel for each new input shape and keeps it in a
# cache of up to 1024 entries; with every batch a new length, the main cell's 160-step
# BadRec fit grew from 2.2 to 3.5 GB resident. In multiples of 64 it peaked at 2.2 GB, at
# the same speed; multiples of 16 (a few more shapes) cost a LLaRA fit of 128 steps 0.1 GB
# more than 64 and save a tenth of its time, and more where prompts are short (a scanner's
# 45 tokens: 48 wide instead of 64). Queries without gradient also sort their prompts by
# length (`_sorted_batches`), so that a batch's rows need little padding.
# docs/main_cell.md has the measurements.
LENGTH_MULTIPLE = 16


def padded_width(longest: int, multiple: int = LENGTH_MULTIPLE) -> int:
    """``longest`` rounded up to a multiple of ``multiple``."""
    return -(-longest // multiple) * multiple


def pad_batch(tokenizer, sequences: Sequence[Sequence[int]], device, side: str = "left",
              labels: Sequence[Sequence[int]] | None = None):
    """The sequences as one tensor of ids padded on ``side`` to a width of `padded_width`,
    and its attention mask; with ``labels`` (one list per sequence, aligned with its start),
    also the labels padded with -100 (ignored by a loss)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = padded_width(max(len(s) for s in sequences))
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    targets = None if labels is None else torch.full((len(sequences), width), -100, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
            ids[row, span] = torch.tensor(list(seq))
            mask[row, span] = 1
            if targets is not None:
                targets[row, span] = torch.tensor(list(labels[row]))
    if targets is None:
        return ids.to(device), mask.to(device)
    return ids.to(device), mask.to(device), targets.to(device)


def _forward_logits(model, ids, mask, keep=None):
    """Logits (float32) of a left-padded batch; ``keep`` (an int n: the last n positions, or
    a tensor of positions) limits the vocabulary projection to those positions."""
    import torch

    from recguard.kit.lm.models import compute_context

    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    extra = {} if keep is None else {"logits_to_keep": keep}
    with torch.no_grad(), compute_context(model):
        return model(input_ids=ids, attention_mask=mask, position_ids=positions, **extra).logits.float()


def completion_logprob(model, tokenizer, prompts: Sequence[str], completions: Sequence[str],
                       batch_size: int = 8, reduce: str = "mean",
                       progress: Progress = no_progress) -> np.ndarray:
    """log p(completion | prompt), the mean (or "sum") over the completion's tokens."""
    import torch

    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', not {reduce!r}")
    pairs = _encode_pairs(tokenizer, prompts, completions)
    device = _device_of(model)
    out = np.zeros(len(pairs))
    for rows, done in _sorted_batches([len(full) for full, _ in pairs], batch_size):
        chunk = [pairs[i] for i in rows]
        ids, mask = pad_batch(tokenizer, [full for full, _ in chunk], device)
        width = ids.shape[1]
        # each row's completion tokens (a token is predicted from the one before it); the
        # vocabulary is projected only at the positions that predict one of them
        predicted = [range(width - len(full) + max(n_prompt, 1), width) for full, n_prompt in chunk]
        kept = sorted({position - 1 for positions in predicted for position in positions})
        if not kept:
            progress(done, len(pairs))
            continue
        logp = torch.log_softmax(
            _forward_logits(model, ids, mask, keep=torch.tensor(kept, device=device)), dim=-1)
        column = {position: j for j, position in enumerate(kept)}
        for row, (index, positions) in enumerate(zip(rows, predicted)):
            if len(positions) == 0:
                continue
            token_logp = logp[row, [column[p - 1] for p in positions], ids[row, list(positions)]]
            out[index] = float(token_logp.mean() if reduce == "mean" else token_logp.sum())
        progress(done, len(pairs))
    return out


def perplexity(model, tokenizer, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
    """exp of the mean negative log-likelihood of each text's tokens (the first excluded)."""
    return np.exp(-completion_logprob(model, tokenizer, [""] * len(texts), list(texts),
                                      batch_size=batch_size))


def _first_token(tokenizer, prompt: str, word: str) -> int:
    full, n_prompt = _encode_pairs(tokenizer, [prompt], [word])[0]
    if n_prompt >= len(full):
        raise RecguardError(f"the tokenizer gives no token for {word!r}")
    return full[n_prompt]


def yes_probability(model, tokenizer, prompts: Sequence[str], yes: str = "Yes", no: str = "No",
                    batch_size: int = 8, progress: Progress = no_progress,
                    share_prefix: bool = True) -> np.ndarray:
    """P(Yes) = softmax over the logits of the first token of ``yes`` and of ``no`` as
    each would follow its prompt, at the first answer position.

    ``share_prefix``: prompts built from one template share their first tokens (the
    instruction, the chat turn's header); those are run once and their keys and values
    reused by every batch, so each prompt costs only its own tokens (a scanner prompt
    of 45 tokens shares about 30). The token sequence each prompt is read as is the
    same either way."""
    import torch

    device = _device_of(model)
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    answers = [(_first_token(tokenizer, p, yes), _first_token(tokenizer, p, no)) for p in prompts]
    shared = _shared_prefix(encoded) if share_prefix and len(encoded) > 1 else 0
    prefix = _PrefixCache(model, encoded[0][:shared], device) if shared >= MIN_SHARED_PREFIX else None
    out = np.zeros(len(prompts))
    for rows, done in _sorted_batches([len(ids) for ids in encoded], batch_size):
        if prefix is not None:
            last = prefix.last_logits([encoded[i][shared:] for i in rows], tokenizer)
        else:
            ids, mask = pad_batch(tokenizer, [encoded[i] for i in rows], device)
            last = _forward_logits(model, ids, mask, keep=1)[:, -1, :]
        pair = last.gather(1, torch.tensor([answers[i] for i in rows], device=device))
        out[rows] = torch.softmax(pair, dim=-1)[:, 0].cpu().numpy()
        progress(done, len(prompts))
    return out


MIN_SHARED_PREFIX = 8   # fewer shared tokens are not worth a cache


def _cache_argument() -> str:
    """The name of a forward's key-value cache, argument and output: transformers 5.25 says
    ``cache`` (and warns on the old name), earlier versions (5.17, a GPU image's) only
    know ``past_key_values``."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _shared_prefix(sequences: list[list[int]]) -> int:
    """How many leading tokens every sequence shares, leaving each at least one of its own
    (the logits are read at a prompt's last token)."""
    shortest = min(len(s) for s in sequences)
    n = 0
    while n < shortest - 1 and all(s[n] == sequences[0][n] for s in sequences):
        n += 1
    return n


class _PrefixCache:
    """The keys and values of a shared prefix, computed once per batch size and copied into
    each batch's forward (a forward appends to the cache it is given)."""

    def __init__(self, model, prefix: list[int], device):
        self.model, self.prefix, self.device = model, prefix, device
        self.cache_argument = _cache_argument()
        self._by_size: dict[int, object] = {}

    def _cache(self, size: int):
        import torch

        from recguard.kit.lm.models import compute_context

        if size not in self._by_size:
            ids = torch.tensor([self.prefix] * size, device=self.device)
            with torch.no_grad(), compute_context(self.model):
                out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
            self._by_size[size] = getattr(out, self.cache_argument)
        return self._by_size[size]

    def last_logits(self, suffixes: list[list[int]], tokenizer):
        """The logits at each suffix's last token, the prefix before it: suffixes are padded
        on the right, so every real token keeps the position it has in the whole prompt."""
        import copy

        import torch

        from recguard.kit.lm.models import compute_context

        ids, suffix_mask = pad_batch(tokenizer, suffixes, self.device, side="right")
        (n, width), shared = ids.shape, len(self.prefix)
        mask = torch.cat([torch.ones_like(suffix_mask[:, :1]).expand(n, shared), suffix_mask], dim=1)
        positions = torch.arange(shared, shared + width, device=self.device).expand(n, width)
        cache = copy.deepcopy(self._cache(n))
        # the vocabulary is projected only at the positions where some suffix ends
        ends = [len(s) - 1 for s in suffixes]
        kept = sorted(set(ends))
        with torch.no_grad(), compute_context(self.model):
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                use_cache=True, logits_to_keep=torch.tensor(kept, device=self.device),
                                **{self.cache_argument: cache}).logits
        column = torch.tensor([kept.index(end) for end in ends], device=self.device)
        return logits[torch.arange(n, device=self.device), column].float()


def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32,
             batch_size: int = 8, sample: bool = False, temperature: float = 1.0, seed: int = 0,
             progress: Progress = no_progress) -> list[str]:
    """The text each prompt continues with (new tokens only, special tokens dropped).

    Greedy by default; ``sample=True`` draws with ``temperature``, seeded."""
    import torch

    from recguard.kit.lm.models import compute_context

    device = _device_of(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    texts: list[str] = [""] * len(prompts)
    try:
        for rows, done in _sorted_batches([len(ids) for ids in encoded], batch_size):
            ids, mask = pad_batch(tokenizer, [encoded[i] for i in rows], device)
            options = dict(max_new_tokens=max_new_tokens, do_sample=sample,
                           pad_token_id=tokenizer.pad_token_id)
            if sample:
                options.update(temperature=temperature, top_k=0, top_p=1.0)
            else:
                options.update(temperature=None, top_k=None, top_p=None)
            with torch.no_grad(), compute_context(model):
                produced = model.generate(input_ids=ids, attention_mask=mask, **options)
            new = produced[:, ids.shape[1]:]
            for index, text in zip(rows, tokenizer.batch_decode(new, skip_special_tokens=True)):
                texts[index] = text
            progress(done, len(prompts))
    finally:
        torch.random.set_rng_state(generator_state)
    return texts
