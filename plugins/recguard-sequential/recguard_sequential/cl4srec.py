"""CL4SRec: SASRec trained with a contrastive loss between two augmented views of each
sequence (Xie et al., Contrastive Learning for Sequential Recommendation, ICDE 2022).

Each training batch of N user windows is augmented twice: for every sequence two operators
``a_i, a_j`` are drawn uniformly (with replacement) from the enabled set ``A`` and applied
independently (sec. IV-B), over the user's real items ``s = [v_1 .. v_n]``:

- crop (Eq. 3): the contiguous ``[v_c .. v_{c + L_c - 1}]``, ``L_c = floor(eta n)`` (at least 1),
  ``c`` uniform;
- mask (Eq. 4): ``L_m = floor(gamma n)`` positions drawn uniformly become the special
  ``[mask]`` item (a trainable embedding of its own);
- reorder (Eq. 5): the contiguous ``[v_r .. v_{r + L_r - 1}]``, ``L_r = floor(beta n)``, is
  shuffled in place.

Both views pass the shared SASRec encoder (the `sasrec` module's, not a copy); a view's
representation is the output at its last position. InfoNCE over the 2N views (Eq. 6),
with the other 2(N - 1) views of the batch as negatives and ``sim(u, v) = u^T v / tau``
(the paper's inner product; tau = 1):

    L_cl(u) = -log exp(sim(s_u^{a_i}, s_u^{a_j}))
                   / (exp(sim(s_u^{a_i}, s_u^{a_j})) + sum_{s^- in S^-} exp(sim(s_u^{a_i}, s^-)))

averaged over the 2N anchors, and the training loss is ``L_main + lambda L_cl`` (Eq. 7), with
``L_main`` the backbones' next-item loss (`common`). Per-user weights (a defense's, e.g.
LoRec's Eq. 21) weight each user's two anchor terms as they weight its next-item terms; a
user of weight 0 is left out of the contrastive batch entirely (neither anchor nor negative),
so it is exactly as if absent, as in the next-item loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard import Interactions, param

from recguard_sequential.sasrec import SASRecBackbone, SASRecConfig

AUGMENTATIONS = ("crop", "mask", "reorder")
MASK = -1   # the [mask] item in an augmented numpy window (its embedding is `net.mask_token`)

XIE = "Xie et al., Contrastive Learning for Sequential Recommendation, ICDE 2022"


@dataclass
class CL4SRecConfig(SASRecConfig):
    cl_weight: float = param(0.1, "lambda, the contrastive loss's weight in L_main + lambda L_cl "
                                  "(CL4SRec Eq. 7; 0.1 in the paper's experiments)", low=0)
    augmentations: tuple[Literal["crop", "mask", "reorder"], ...] = param(
        ("crop",), "the operators a_i, a_j are drawn from: LoRec sec. 6.1.3 uses crop only; "
                   "crop,mask,reorder is CL4SRec's full set (its ablation switches)")
    crop_ratio: float = param(0.6, "eta: a crop keeps floor(eta n) items (CL4SRec's example and "
                                   "sec. V grid 0.1..0.9)", low=0, high=1, open_low=True)
    mask_ratio: float = param(0.3, "gamma: share of items masked (CL4SRec's example, grid 0.1..0.9)",
                              low=0, high=1)
    reorder_ratio: float = param(0.6, "beta: share of items in the shuffled span (CL4SRec's "
                                      "example, grid 0.1..0.9)", low=0, high=1)
    temperature: float = param(1.0, "tau in sim(u, v) = u^T v / tau (CL4SRec: the plain inner "
                                    "product, tau = 1)", low=0, open_low=True)

    def __post_init__(self):
        super().__post_init__()
        if not self.augmentations:
            raise ValueError("augmentations is empty: name one or more of crop, mask, reorder")


def augment(window: np.ndarray, op: str, cfg: CL4SRecConfig, pad: int,
            rng: np.random.Generator) -> np.ndarray:
    """One augmented view of a left-padded window (same length, left-padded with ``pad``;
    masked items are `MASK`)."""
    real = window[window != pad]
    n = len(real)
    if op == "crop":
        size = max(1, int(np.floor(cfg.crop_ratio * n)))
        start = int(rng.integers(0, n - size + 1))
        view = real[start:start + size]
    elif op == "mask":
        view = real.copy()
        view[rng.choice(n, size=int(np.floor(cfg.mask_ratio * n)), replace=False)] = MASK
    elif op == "reorder":
        size = int(np.floor(cfg.reorder_ratio * n))
        start = int(rng.integers(0, n - size + 1))
        view = real.copy()
        view[start:start + size] = rng.permutation(view[start:start + size])
    else:  # pragma: no cover - the config only admits the three
        raise ValueError(f"unknown augmentation {op!r}")
    out = np.full(len(window), pad, dtype=np.int64)
    out[len(window) - len(view):] = view
    return out


def two_views(windows: np.ndarray, cfg: CL4SRecConfig, pad: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each window's two views, each by an operator drawn uniformly from ``cfg.augmentations``."""
    ops = rng.choice(len(cfg.augmentations), size=(len(windows), 2))
    first = np.stack([augment(w, cfg.augmentations[o], cfg, pad, rng) for w, o in zip(windows, ops[:, 0])])
    second = np.stack([augment(w, cfg.augmentations[o], cfg, pad, rng) for w, o in zip(windows, ops[:, 1])])
    return first, second


def info_nce(first, second, temperature: float = 1.0, weights=None):
    """CL4SRec Eq. 6 over a batch: ``first[k]`` and ``second[k]`` (the two views of sequence k)
    are the positive pair; every other of the 2N views is a negative. The mean over the 2N
    anchors, or the ``weights``-weighted mean (a weight per sequence, for both its anchors)."""
    import torch
    from torch.nn import functional as F

    z = torch.cat([first, second])                          # (2N, d)
    n = first.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    losses = F.cross_entropy(sim, positive, reduction="none")
    if weights is None:
        return losses.mean()
    w = torch.cat([weights, weights])
    return (losses * w).sum() / w.sum().clamp_min(1e-12)


class CL4SRecBackbone(SASRecBackbone):
    name = "cl4srec"
    summary = ("CL4SRec: SASRec plus an InfoNCE loss between two augmented views (crop / mask / "
               "reorder) of each sequence")
    paper = f"{XIE}, sec. IV (Eq. 3-7); LoRec (Zhang et al., 2024) sec. 6.1.3 baseline (crop)"
    Config = CL4SRecConfig

    def build(self, cfg: CL4SRecConfig):
        import torch

        net = super().build(cfg)
        if "mask" in cfg.augmentations:   # else no [mask] item: the very parameters of SASRec
            net.mask_token = torch.nn.Parameter(torch.empty(1, cfg.dim))
        return net

    def init(self, module) -> None:
        """SASRec's initialisation, and the [mask] embedding's like an item embedding's."""
        super().init(module)
        if "mask_token" in getattr(module, "_parameters", {}):
            self.init_weight(module.mask_token)

    def auxiliary(self, train: Interactions, ctx):
        cfg = self.config
        if cfg.cl_weight == 0:
            return None
        rng = np.random.default_rng([ctx.seed, 0xC145])

        def contrastive(epoch, model, batch):
            users = np.arange(len(batch["items"]))
            weights = batch["user_weight"]
            if weights is not None:   # a user of weight 0 is left out, as in the next-item loss
                users = np.flatnonzero(weights.detach().cpu().numpy() > 0)
                weights = weights[model.tensor(users)]
            if len(users) < 2:
                return batch["items"].new_zeros((), dtype=batch["item_emb"].dtype)
            windows = batch["items"].cpu().numpy()[users]
            first, second = two_views(windows, cfg, model.pad, rng)
            return cfg.cl_weight * info_nce(represent_views(model, first), represent_views(model, second),
                                            cfg.temperature, weights)

        return contrastive


def represent_views(model, views: np.ndarray):
    """(len(views), d): the encoder's output at the last position of each augmented window
    (in the autograd graph, in the model's current mode)."""
    import torch

    index = model.tensor(np.where(views == MASK, model.pad, views))
    emb = model.item_vectors(index)
    mask = index != model.pad
    if (views == MASK).any():   # only with the mask operator, hence a [mask] embedding
        masked = model.tensor(views == MASK)
        emb = torch.where(masked.unsqueeze(-1), model.net.mask_token.to(emb.dtype).expand_as(emb), emb)
        mask = mask | masked
    return model.encode_fn(model.net, emb, mask)[:, -1]
