"""LLaRA's hybrid item representation: a SASRec item embedding projected into the LLM's
input space at a slot token after each title.

Mechanism (trl's SFTTrainer and ``generate`` run untouched): the tokenizer gets one
special token per item, ``<|item_i|>``, with consecutive ids from ``first_id``; the
LM's input embedding module is replaced by `hybrid_embedding`, an ``nn.Embedding``
that *shares the base weight Parameter* (so a tied output head stays tied to the base
vocabulary and state-dict names do not change) and whose output at ids >= first_id
is ``projector(item_vectors[id - first_id])``. The output head keeps the base
vocabulary: the model never predicts a slot token. The projector (Linear -> GELU ->
Linear, SASRec dim -> LLM hidden, LLaRA's) is trained as a peft ``modules_to_save``
module named `PROJECTOR`; the SASRec vectors are a frozen buffer.

torch is imported only inside functions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from recguard import RecguardError, build_config

ITEM_TOKEN = "<|item_{}|>"
PROJECTOR = "projector"          # the submodule name peft's modules_to_save matches


def item_token(item: int) -> str:
    return ITEM_TOKEN.format(item)


def add_item_tokens(tokenizer, n_items: int) -> int:
    """Add ``<|item_0|>`` ... to the tokenizer; the id of item 0's token (ids are consecutive)."""
    tokens = [item_token(i) for i in range(n_items)]
    tokenizer.add_tokens(tokens, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    first = ids[0]
    if list(ids) != list(range(first, first + n_items)):
        raise RecguardError("the tokenizer gave the item slot tokens non-consecutive ids "
                            "(some already existed); use a fresh tokenizer")
    return first


@lru_cache(maxsize=None)
def _hybrid_class():
    import torch
    from torch import nn

    class HybridEmbedding(nn.Embedding):
        """Token embeddings, except at slot ids (>= first_id): the projected item vector."""

        def __init__(self, base: nn.Embedding, item_vectors: torch.Tensor, first_id: int):
            nn.Module.__init__(self)
            self.num_embeddings, self.embedding_dim = base.num_embeddings, base.embedding_dim
            self.padding_idx, self.max_norm = base.padding_idx, base.max_norm
            self.norm_type, self.scale_grad_by_freq = base.norm_type, base.scale_grad_by_freq
            self.sparse = base.sparse
            self.weight = base.weight          # the same Parameter: ties and names unchanged
            self.first_id = int(first_id)
            # float32 like the LoRA adapters: a trained projector in bf16 weights would lose
            # most of AdamW's small updates to rounding; its output takes the LM's dtype
            device = base.weight.device
            self.register_buffer("item_vectors", item_vectors.to(device=device, dtype=torch.float32),
                                 persistent=False)
            hidden, d_item = base.embedding_dim, item_vectors.shape[1]
            setattr(self, PROJECTOR, nn.Sequential(nn.Linear(d_item, hidden), nn.GELU(),
                                                   nn.Linear(hidden, hidden)).to(device=device))

        def forward(self, ids):
            slots = ids >= self.first_id
            out = super().forward(ids.masked_fill(slots, 0))
            # always through the projector (an empty batch of slots included), so every rank
            # of a distributed run uses its parameters in every step
            projector = getattr(self, PROJECTOR)
            vectors = projector(self.item_vectors[ids[slots] - self.first_id])
            return out.index_put((slots,), vectors.to(out.dtype))

        def extra_repr(self) -> str:
            return (f"{self.num_embeddings}, {self.embedding_dim}, slots from {self.first_id}: "
                    f"{self.item_vectors.shape[0]} items of dim {self.item_vectors.shape[1]}")

    return HybridEmbedding


def hybrid_embedding(base, item_vectors, first_id: int):
    """A `HybridEmbedding` over ``base`` (the LM's input ``nn.Embedding``)."""
    import torch

    return _hybrid_class()(base, torch.as_tensor(np.asarray(item_vectors, dtype=np.float32)),
                           first_id)


def install_hybrid(lm, tokenizer, item_vectors: np.ndarray) -> int:
    """Add the item slot tokens to ``tokenizer`` and the hybrid embedding to ``lm`` (in place);
    returns the first slot id. The LM's config vocabulary (its output head) is unchanged."""
    first = add_item_tokens(tokenizer, len(item_vectors))
    lm.set_input_embeddings(hybrid_embedding(lm.get_input_embeddings(), item_vectors, first))
    return first


def projector_parameters(lm) -> dict:
    """name -> parameter of the projector(s) the model uses (peft's trained copy once
    wrapped by ``modules_to_save``), for checks that it trains."""
    return {name: p for name, p in lm.named_parameters()
            if f".{PROJECTOR}." in name and "original_module" not in name}


def sasrec_item_vectors(train, seed: int, epochs: int, dim: int,
                        device: str = "auto") -> np.ndarray:
    """(n_items, dim) item embeddings of a SASRec (the registered ``sasrec`` backbone of
    recguard-sequential) fitted on ``device`` on ``train``, all of its rows (fake users
    included)."""
    from recguard import FitContext, registered

    try:
        cls = registered("backbone", "sasrec")
    except RecguardError:
        raise RecguardError("llara prompt=hybrid needs the sasrec backbone of the "
                            "recguard-sequential plugin: install it, or use prompt=text") from None
    # threads=0: the LLM's process's torch threads (sasrec's own default is one thread; on
    # 2 cores two fit LLaRA's 20-epoch SASRec on ML-100K in 12.8 s instead of 19.5 s)
    config = build_config(cls.Config, {"epochs": epochs, "dim": dim, "device": device,
                                       "threads": 0}, "sasrec")
    model = cls(config).fit(train, FitContext(seed=seed))
    vectors = np.asarray(model.item_embeddings(), dtype=np.float32)
    if vectors.shape != (train.n_items, dim):
        raise RecguardError(f"sasrec gave item embeddings of shape {vectors.shape}, expected "
                            f"({train.n_items}, {dim})")
    return vectors
