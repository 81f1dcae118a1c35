"""The LLM user encoder of LoRec / LLM4Dec: one prompt per user, mean-pooled LLM states.

Each user's training history, oldest first, becomes the LoRec prompt
(``prompts/lorec_user.txt`` of this package; LoRec sec. 4, the authors' ``_load_detection_users``)::

    In Movie Recommendation, a user's interaction sequence is as follows:
    (Item title: A); (Item title: B). Please assess the likelihood of this user being a fraudster.

(one line). The causal LM embeds it; the user's vector is the mean of the last
hidden states (after the final norm) over the prompt's tokens, padding
excluded, as the authors' feature-extraction pipeline does one prompt at a
time. Prompts are embedded in batches sorted by length (right padding: with
causal attention the real tokens never see the padding, so a batch gives the
one-by-one vectors). A prompt longer than ``max_tokens`` drops its OLDEST items,
whole, until it fits: the framing sentence, the instruction and the most recent
items are kept. The (n_users, hidden) float32 matrix is cached on disk (a hit
loads no model), and so is each prompt's vector: data sharing most users with an
earlier run (the same genuine users under another attack) embeds only the new
prompts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from recguard import (Interactions, Progress, RecguardError, atomic_write, cache_dir, canonical_json,
                      json_digest)
from recguard.kit.lm.models import mean_pool

TEMPLATE_FILE = "lorec_user.txt"
ITEM_FORMAT = "(Item title: {title})"   # one history entry (the authors' code)
ITEM_SEPARATOR = "; "
POOLING = "mean"
CACHE_VERSION = 1


def read_template(path: str | os.PathLike | None = None) -> str:
    """The template text (one trailing newline removed): the file at ``path``, else this
    package's ``prompts/lorec_user.txt`` (`recguard.kit.lm.prompts.load_prompt`)."""
    if path is None:
        from recguard.kit.lm.prompts import load_prompt

        text = load_prompt("recguard_lorec", TEMPLATE_FILE)
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RecguardError(f"cannot read the prompt template '{path}': {exc.strerror or exc}; "
                                f"pass template_path= to a template file") from exc
    return text[:-1] if text.endswith("\n") else text


def render_prompt(template: str, scenario: str, titles: Sequence[str]) -> str:
    """The prompt for one user whose history (oldest first) has these item titles."""
    history = ITEM_SEPARATOR.join(ITEM_FORMAT.format(title=t) for t in titles)
    return template.format(scenario=scenario, history=history)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _progress_hooks(progress: Any, label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """(update(done, total), finish()) for a `Progress`, a bare callback or None."""
    if progress is None:
        return (lambda done, total: None), (lambda: None)
    if isinstance(progress, Progress) or hasattr(progress, "start_fit"):
        return progress.start_fit(label), progress.end_fit
    return progress, (lambda: None)


class UserEncoder:
    """Embed every user of an `Interactions` with a causal LM (LoRec's ``LLM(prompt_u)``).

    Options: ``model`` (None: the packaged SmolLM2-135M-Instruct; or a local folder or
    hub id, see `recguard.kit.lm.models.load_causal_lm`), ``scenario`` (the word before
    "Recommendation"), ``max_tokens`` (prompt length cap, oldest items dropped),
    ``batch_size``, ``max_items`` (keep at most this many most recent items; None: all),
    ``dtype`` ("float32", "bfloat16", or "auto": `recguard.kit.lm.models.resolve_precision`),
    ``device`` ("auto": this process's GPU when CUDA is available, else the CPU; "cpu",
    "cuda", "cuda:1" ...), ``template_path`` (default: this package's ``prompts/lorec_user.txt``),
    ``use_cache``.
    """

    def __init__(self, model: str | os.PathLike | None = None, scenario: str = "Movie",
                 max_tokens: int = 1024, batch_size: int = 8, max_items: int | None = None,
                 dtype: str = "float32", device: str = "auto",
                 template_path: str | os.PathLike | None = None, use_cache: bool = True):
        if max_tokens < 1 or batch_size < 1 or (max_items is not None and max_items < 0):
            raise RecguardError("max_tokens and batch_size must be positive, max_items >= 0")
        self.model = model
        self.scenario = scenario
        self.max_tokens = int(max_tokens)
        self.batch_size = int(batch_size)
        self.max_items = None if max_items is None else int(max_items)
        self.dtype = str(dtype)
        self.device = device
        self.template_path = template_path
        self.template = read_template(template_path)
        self.use_cache = use_cache
        self.last_stats: dict = {}
        self._lm = None

    # ------------------------------------------------------------ prompts

    def histories(self, train: Interactions) -> list[list[str]]:
        """Each user's item titles in time order (the last ``max_items`` when set)."""
        if train.item_text is None:
            raise RecguardError(f"the LLM user encoder needs item titles, and dataset "
                                f"{train.name!r} has none")
        titles = [str(t).strip() or str(raw) for t, raw in zip(train.item_text, train.item_ids)]
        out = []
        for items in train.items_of_users():
            if self.max_items is not None:
                items = items[len(items) - min(self.max_items, len(items)):]
            out.append([titles[i] for i in items])
        return out

    def render(self, titles: Sequence[str]) -> str:
        return render_prompt(self.template, self.scenario, titles)

    def prompts(self, train: Interactions) -> list[str]:
        """Every user's prompt before token truncation."""
        return [self.render(h) for h in self.histories(train)]

    def fit_tokens(self, tokenizer, titles: Sequence[str]) -> tuple[list[int], int]:
        """(token ids, number of items kept): the prompt of the most recent items that fits.

        Binary search over how many of the most recent items to keep; the kept
        items' prompt is re-tokenised whole, so the count is exact.
        """
        def ids_of(k: int) -> list[int]:
            return list(tokenizer(self.render(titles[len(titles) - k:]))["input_ids"])

        ids = ids_of(len(titles))
        if len(ids) <= self.max_tokens:
            return ids, len(titles)
        empty = ids_of(0)
        if len(empty) > self.max_tokens:
            raise RecguardError(f"max_tokens={self.max_tokens} is shorter than the prompt "
                                f"without any item ({len(empty)} tokens)")
        lo, hi, best = 1, len(titles) - 1, empty   # lo..hi: candidate counts; best fits
        kept = 0
        while lo <= hi:
            mid = (lo + hi) // 2
            cand = ids_of(mid)
            if len(cand) <= self.max_tokens:
                best, kept, lo = cand, mid, mid + 1
            else:
                hi = mid - 1
        return best, kept

    # ------------------------------------------------------------ cache

    def settings_key(self) -> dict:
        """What one prompt's vector depends on besides the prompt text itself."""
        from recguard.kit.lm.models import model_identity

        return {"kind": "lorec-prompt-embedding", "version": CACHE_VERSION,
                "model": model_identity(self.model), "dtype": self.precision(),
                "max_tokens": self.max_tokens, "pooling": POOLING}

    def precision(self) -> str:
        """The precision the vectors are computed in, as the cache keys name it: an explicit
        dtype as given; "auto" resolved on this encoder's device, so an "auto" that runs in
        plain float32 (or bfloat16) shares that dtype's cache entries. The device itself is
        not in the keys."""
        from recguard.kit.lm.models import precision_name

        return precision_name(self.dtype, self.device)

    def cache_key(self, train: Interactions, prompts: Sequence[str] | None = None) -> dict:
        """What the matrix depends on: model, template, users' prompts, length cap, pooling."""
        prompts = self.prompts(train) if prompts is None else prompts
        return {**self.settings_key(), "kind": "lorec-user-embeddings",
                "template_sha256": _sha256(self.template),
                "item_format": ITEM_FORMAT, "item_separator": ITEM_SEPARATOR,
                "scenario": self.scenario, "max_items": self.max_items,
                "n_users": int(train.n_users), "prompts_sha256": _sha256("\x1e".join(prompts))}

    @staticmethod
    def cache_root() -> Path:
        return cache_dir() / "llm-user-embeddings"

    def cache_path(self, key: dict) -> Path:
        """The matrix file of a `cache_key`."""
        return self.cache_root() / "matrix" / f"{json_digest(key, 32, compact=True)}.npz"

    def prompt_store(self) -> Path:
        """The folder of per-prompt vectors made with these settings (one file per prompt)."""
        return self.cache_root() / "prompts" / json_digest(self.settings_key(), 24, compact=True)

    @staticmethod
    def _read_npz(path: Path, key_json: str | None = None) -> dict | None:
        try:
            with np.load(path, allow_pickle=False) as npz:
                if key_json is not None and str(npz["key"]) != key_json:
                    return None
                return {name: np.asarray(npz[name]) for name in npz.files}
        except (OSError, KeyError, ValueError, EOFError):
            return None

    # ------------------------------------------------------------ embedding

    def load_model(self):
        """The (model, tokenizer), loaded on first use and kept."""
        if self._lm is None:
            from recguard.kit.lm import models as llm

            self._lm = llm.load_causal_lm(self.model, dtype=self.dtype, device=self.device)
        return self._lm

    def encode(self, train: Interactions, progress: Progress | Callable | None = None) -> np.ndarray:
        """The (n_users, hidden) float32 matrix; row u embeds user u's prompt.

        Two cache levels: the whole matrix (a hit loads no model), then one vector
        per distinct prompt, so data that shares most users with an earlier run
        (the same genuine users under another attack) embeds only the new prompts.
        ``progress``: a `recguard.progress.Progress` (one bar over the prompts), a
        ``callback(done, total)``, or None.
        """
        histories = self.histories(train)
        prompts = [self.render(h) for h in histories]
        key = self.cache_key(train, prompts)
        key_json = canonical_json(key, compact=True)
        path = self.cache_path(key)
        label = f"LLM user prompts ({train.n_users} users)"
        if self.use_cache and path.exists():
            hit = self._read_npz(path, key_json)
            if hit is not None and hit["embeddings"].ndim == 2 \
                    and hit["embeddings"].shape[0] == train.n_users:
                self.last_stats = {"cached": True, "embedded": 0, "path": str(path),
                                   "kept_items": hit["kept_items"], "n_tokens": hit["n_tokens"]}
                if hasattr(progress, "skip"):
                    progress.skip(f"{label} (cached)")
                return hit["embeddings"].astype(np.float32, copy=False)

        n = len(prompts)
        vectors: list[np.ndarray | None] = [None] * n
        kept = np.zeros(n, dtype=np.int32)
        n_tokens = np.zeros(n, dtype=np.int64)
        store = self.prompt_store()
        files = [store / d[:2] / f"{d}.npz" for d in (_sha256(p) for p in prompts)]
        if self.use_cache:
            for u, file in enumerate(files):
                entry = self._read_npz(file, prompts[u]) if file.exists() else None
                if entry is not None:
                    vectors[u], kept[u], n_tokens[u] = (entry["embedding"], entry["kept"],
                                                        entry["n_tokens"])
        missing = [u for u in range(n) if vectors[u] is None]
        if missing:
            def store_one(j: int, vector: np.ndarray, k: int, t: int) -> None:
                u = missing[j]                     # saved batch by batch: a stopped run resumes
                vectors[u], kept[u], n_tokens[u] = vector, k, t
                if self.use_cache:
                    atomic_write(files[u], lambda fh: np.savez(
                        fh, embedding=vector, kept=k, n_tokens=t, key=np.array(prompts[u])))
            self.encode_histories([histories[u] for u in missing], progress, label, sink=store_one)
        elif hasattr(progress, "skip"):
            progress.skip(f"{label} (cached prompts)")
        hidden = vectors[0].shape[0] if n else int(self.load_model()[0].config.hidden_size)
        out = np.stack(vectors).astype(np.float32) if n else np.zeros((0, hidden), np.float32)
        if self.use_cache:
            atomic_write(path, lambda fh: np.savez(fh, embeddings=out, kept_items=kept,
                                                   n_tokens=n_tokens, key=np.array(key_json)))
        self.last_stats = {"cached": False, "embedded": len(missing),
                           "path": str(path) if self.use_cache else None,
                           "kept_items": kept, "n_tokens": n_tokens,
                           "truncated_users": int(sum(kept[u] < len(histories[u]) for u in range(n)))}
        return out

    def encode_histories(self, histories: Sequence[Sequence[str]], progress: Any = None,
                         label: str = "LLM user prompts",
                         sink: Callable[[int, np.ndarray, int, int], None] | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, items kept per user, tokens per user) for these title lists; no cache.

        ``sink(i, vector, kept_items, n_tokens)`` is called for each history as soon
        as its batch is done.
        """
        import torch

        lm, tokenizer = self.load_model()
        token_ids, kept = [], []
        for titles in histories:
            ids, k = self.fit_tokens(tokenizer, list(titles))
            token_ids.append(ids)
            kept.append(k)
        lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
        n = len(token_ids)
        pad = tokenizer.pad_token_id
        pad = tokenizer.eos_token_id if pad is None else pad
        pad = 0 if pad is None else pad
        device = next(lm.parameters()).device
        out = None
        order = np.argsort(-lengths, kind="stable")   # longest first: a memory error shows early
        update, finish = _progress_hooks(progress, label)
        update(0, n)
        try:
            for start in range(0, n, self.batch_size):
                rows = order[start:start + self.batch_size]
                width = int(lengths[rows].max())
                ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for j, r in enumerate(rows):
                    ids[j, :lengths[r]] = torch.tensor(token_ids[r], dtype=torch.long)
                    mask[j, :lengths[r]] = 1
                hidden = last_hidden_states(lm, ids.to(device), mask.to(device))
                pooled = mean_pool(hidden, mask.to(device)).cpu().numpy()
                if out is None:
                    out = np.zeros((n, pooled.shape[1]), dtype=np.float32)
                out[rows] = pooled
                if sink is not None:
                    for j, r in enumerate(rows):
                        sink(int(r), out[r], int(kept[r]), int(lengths[r]))
                update(min(start + self.batch_size, n), n)
        finally:
            finish()
        if out is None:
            out = np.zeros((0, int(lm.config.hidden_size)), dtype=np.float32)
        return out, np.asarray(kept, dtype=np.int32), lengths


def last_hidden_states(lm, input_ids, attention_mask):
    """The LM's last hidden states (after its final norm), float32, without the LM head."""
    import torch

    from recguard.kit.lm.models import compute_context

    with torch.inference_mode(), compute_context(lm):   # bf16 autocast when dtype=auto chose it
        base = getattr(lm, "base_model", lm)
        if base is not lm:
            hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            hidden = lm(input_ids=input_ids, attention_mask=attention_mask,
                        output_hidden_states=True).hidden_states[-1]
    return hidden.float()
