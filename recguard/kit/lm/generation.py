"""Batched queries of a causal LM, without gradient, shared by every LLM plugin.

Prompts are batched with left padding: `yes_probability` (P(Yes) from the Yes / No
logits, TALLRec's score), `completion_logprob` (log-likelihood of a completion:
ranking candidates), `perplexity` (ONION), `generate` (greedy or sampled decoding).

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


def _batches(n: int, size: int):
    for start in range(0, n, max(1, size)):
        yield start, min(n, start + max(1, size))


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


def _left_padded(tokenizer, sequences: list[list[int]], device):
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq)
            mask[row, width - len(seq):] = 1
    return ids.to(device), mask.to(device)


def _forward_logits(model, ids, mask, last_only: bool = False):
    import torch

    from recguard.kit.lm.models import compute_context

    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    extra = {"logits_to_keep": 1} if last_only else {}   # the vocabulary projection of one position
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
    for start, end in _batches(len(pairs), batch_size):
        chunk = pairs[start:end]
        ids, mask = _left_padded(tokenizer, [full for full, _ in chunk], device)
        logp = torch.log_softmax(_forward_logits(model, ids, mask), dim=-1)
        width = ids.shape[1]
        for row, (full, n_prompt) in enumerate(chunk):
            offset = width - len(full)
            first = max(n_prompt, 1)        # a token is predicted from the one before it
            positions = torch.arange(offset + first, width, device=device)
            if len(positions) == 0:
                out[start + row] = 0.0
                continue
            token_logp = logp[row, positions - 1, ids[row, positions]]
            out[start + row] = float(token_logp.mean() if reduce == "mean" else token_logp.sum())
        progress(end, len(pairs))
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
                    batch_size: int = 8, progress: Progress = no_progress) -> np.ndarray:
    """P(Yes) = softmax over the logits of the first token of ``yes`` and of ``no`` as
    each would follow its prompt, at the first answer position."""
    import torch

    device = _device_of(model)
    out = np.zeros(len(prompts))
    for start, end in _batches(len(prompts), batch_size):
        chunk = list(prompts[start:end])
        encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in chunk]
        ids, mask = _left_padded(tokenizer, encoded, device)
        last = _forward_logits(model, ids, mask, last_only=True)[:, -1, :]
        yes_ids = torch.tensor([_first_token(tokenizer, p, yes) for p in chunk], device=device)
        no_ids = torch.tensor([_first_token(tokenizer, p, no) for p in chunk], device=device)
        rows = torch.arange(len(chunk), device=device)
        pair = torch.stack([last[rows, yes_ids], last[rows, no_ids]], dim=-1)
        out[start:end] = torch.softmax(pair, dim=-1)[:, 0].cpu().numpy()
        progress(end, len(prompts))
    return out


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
    texts: list[str] = []
    try:
        for start, end in _batches(len(prompts), batch_size):
            encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start:end]]
            ids, mask = _left_padded(tokenizer, encoded, device)
            options = dict(max_new_tokens=max_new_tokens, do_sample=sample,
                           pad_token_id=tokenizer.pad_token_id)
            if sample:
                options.update(temperature=temperature, top_k=0, top_p=1.0)
            else:
                options.update(temperature=None, top_k=None, top_p=None)
            with torch.no_grad(), compute_context(model):
                produced = model.generate(input_ids=ids, attention_mask=mask, **options)
            new = produced[:, ids.shape[1]:]
            texts += tokenizer.batch_decode(new, skip_special_tokens=True)
            progress(end, len(prompts))
    finally:
        torch.random.set_rng_state(generator_state)
    return texts
