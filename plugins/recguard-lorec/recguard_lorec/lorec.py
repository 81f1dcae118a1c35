"""LoRec (Zhang et al., 2024, sec. 5.3-5.4, Eq. 9-20): the LLM-enhanced calibrator (LCT).

Trained beside a sequential backbone, the LCT estimates p_u, the probability that
user u is a fraudster, and turns it into a loss weight w_u for the backbone (Eq. 21):

- Specific knowledge (Eq. 9-11): for each position of u's window the backbone gives
  k_v = [e_v, e'_v] (item embedding, sequence output); a learnable k_0 is put before
  K_u = [k_v1 ...], sinusoidal position embeddings are added to K_u (the Transformer
  of [28], as the authors' code), a bidirectional self-attention encoder runs over
  [k_0, K_u] and r_u is its output at k_0; the two-layer perceptron h maps r_u to p_u.
- Open-world knowledge (Eq. 12-14): l_u = DT(LLM(prompt_u)), the dimension-
  transformation block (linear + GELU, the authors' ``MLP_Layers``) over the LLM
  embedding of u's LoRec prompt; L_LLM = -mean cos(l_u, r_u) over U and U_atk.
- Loss (Eq. 15): L_F + λ1 L_ER + λ2 L_LLM, with L_F and L_ER as for LLM4Dec
  (`detection`): U_atk (a Bandwagon attack on 10% new users) labelled 1, U labelled 0.
- Calibration (Eq. 16-17, 20): μ_o = mean p_u over U; the weight pool ξ_u (initially
  ξ̂) loses 1 for every u with p_u > μ_o and the others share the loss equally
  (+ n_above / n_below each), so the pool's total stays |U| ξ̂; w_u = σ(ξ_u) / σ(ξ̂).

Schedule (the authors' code, ``utls/trainer.py``; the paper says only "from epoch
30"): the LCT takes ``lct_passes`` passes over U (batches of U paired with
proportional slices of U_atk) after every backbone epoch, with the backbone frozen;
the pool is updated every ``pool_interval`` epochs up to ``lct_start`` and every
2 x ``pool_interval`` after, and an update is put off to the next epoch while at
least ``max_flagged_share`` of U is above μ_o (the p_u are not yet skewed, sec. 5.4's
premise); the weights multiply the backbone's loss from epoch ``lct_start`` on.

Ablations (sec. 6.3.1): ``entropy_weight=0`` (w/o Reg), ``llm_weight=0`` (w/o LLM: no
LLM is loaded), ``recommender_feedback=false`` (w/o RS: r_u is l_u itself, so the LCT
is LLM4Dec's detector inside LoRec's calibration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from recguard import Defense, DefenseContext, FitHooks, Interactions, RecguardError, param

from recguard_lorec.detection import (FraudDetectorConfig, fraud_loss, standardised,
                                      with_supervised_fraudsters)
from recguard_lorec.llm4dec import PAPER


@dataclass
class LoRecConfig(FraudDetectorConfig):
    llm_weight: float = param(1.0, "λ2 of Eq. 15 (PROTOCOLS.md: 1.0); 0 is the w/o LLM ablation "
                                   "(no LLM is loaded)", low=0)
    recommender_feedback: bool = param(True, "false is the w/o RS ablation: the LCT reads only the "
                                             "LLM embedding (r_u = l_u)")
    lct_start: int = param(30, "epoch (1-based) from which w_u weights the backbone's loss "
                               "(PROTOCOLS.md: after 30 epochs)", low=1)
    init_coefficient: float = param(3.0, "ξ̂, every user's initial weight coefficient "
                                         "(PROTOCOLS.md: 3.0)")
    pool_interval: int = param(5, "epochs between weight-pool updates (Eq. 17) up to lct_start, "
                                  "twice as many after (authors' code: 5)", low=1)
    max_flagged_share: float = param(1 / 3, "put a pool update off while at least this share of U "
                                            "is above μ_o (authors' code: 1/3; 1 never does)",
                                     low=0, high=1, open_low=True)
    lct_passes: int = param(2, "LCT passes over U after each backbone epoch (authors' code: 2)", low=1)
    lct_batch_size: int = param(256, "observed users per LCT batch, with a proportional slice of "
                                     "U_atk (authors' code: the backbone's 512)", low=1)
    lct_lr: float = param(0.01, "AdamW learning rate of the LCT (authors' code: 0.01)", low=0,
                          open_low=True)
    lct_weight_decay: float = param(5e-4, "AdamW weight decay of the LCT (authors' code: 5e-4)", low=0)
    lct_blocks: int = param(2, "self-attention blocks (authors' code: 2)", low=1)
    lct_heads: int = param(2, "attention heads; must divide 2d (authors' code: 2)", low=1)
    lct_ffn: int = param(128, "feed-forward width of each block (authors' code: 128)", low=1)
    lct_hidden: int = param(128, "hidden width of the projection h (authors' code: 128)", low=1)
    lct_dropout: float = param(0.1, "dropout in the LCT (authors' code: 0.1)", low=0, high=1,
                               open_high=True)
    batch_norm: bool = param(True, "h as the authors' ProjLayer: batch normalisation after each "
                                   "linear layer, the last on the logit (false: the paper's plain "
                                   "two-layer perceptron, whose LCT can collapse to p_u = 0.5; README)")

    def __post_init__(self):
        if not self.recommender_feedback and self.llm_weight == 0:
            raise ValueError("recommender_feedback=false leaves the LCT only the LLM's embedding; "
                             "it cannot also run without the LLM (llm_weight=0)")

    @property
    def uses_llm(self) -> bool:
        return self.llm_weight > 0 or not self.recommender_feedback


# ---------------------------------------------------------------- weight pool (Eq. 16, 17, 20)


def pool_update(xi: np.ndarray, p: np.ndarray, max_flagged_share: float = 1.0
                ) -> tuple[np.ndarray, bool, float]:
    """One iterative weight compensation step (Eq. 17) at the adaptive threshold μ_o (Eq. 16).

    Returns (new ξ, whether it was applied, μ_o). Users with p_u > μ_o lose 1; the
    others gain n_above / n_below each. Not applied (ξ returned unchanged) when at
    least ``max_flagged_share`` of the users are above μ_o, or none is at or below it.
    """
    p = np.asarray(p, dtype=np.float64)
    mu = float(p.mean())
    above = p > mu
    n_above = int(above.sum())
    n_below = len(p) - n_above
    if n_below == 0 or n_above >= max_flagged_share * len(p):
        return xi, False, mu
    return np.where(above, xi - 1.0, xi + n_above / n_below), True, mu


def pool_weights(xi: np.ndarray, init_coefficient: float) -> np.ndarray:
    """w_u = q σ(ξ_u) with q = 1 / σ(ξ̂), so every weight starts at 1 (Eq. 20)."""
    return _sigmoid(np.asarray(xi, dtype=np.float64)) / _sigmoid(init_coefficient)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def pool_due(epoch: int, cfg: LoRecConfig) -> bool:
    """Whether the pool is updated after 1-based ``epoch`` (the authors' schedule)."""
    interval = cfg.pool_interval if epoch <= cfg.lct_start else 2 * cfg.pool_interval
    return epoch % interval == 0


# ---------------------------------------------------------------- the calibrator network


def check_heads(cfg: LoRecConfig, width: int) -> None:
    """The LCT's attention heads must split the composite width 2d evenly."""
    if width % cfg.lct_heads:
        raise RecguardError(f"lorec: lct_heads={cfg.lct_heads} does not divide the composite "
                            f"embedding width 2 x dim = {width}")


def build_calibrator(width: int, llm_width: int | None, cfg: LoRecConfig, max_len: int):
    """The LCT as a torch module over composite embeddings of ``width`` = 2d.

    ``forward(K, mask, llm)`` returns (p, r, l): p_u (B,), r_u (B, width) and l_u
    (B, width), or None without an LLM embedding.
    """
    import torch
    from torch import nn

    check_heads(cfg, width)

    class Calibrator(nn.Module):
        def __init__(self):
            super().__init__()
            self.k0 = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, width)))
            self.register_buffer("positions", sinusoidal_positions(max_len, width), persistent=False)
            layer = nn.TransformerEncoderLayer(width, cfg.lct_heads, cfg.lct_ffn, cfg.lct_dropout,
                                               activation="gelu", batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.lct_blocks, enable_nested_tensor=False)
            self.h = (nn.Sequential(nn.Linear(width, cfg.lct_hidden), nn.BatchNorm1d(cfg.lct_hidden),
                                    nn.Dropout(cfg.lct_dropout), nn.GELU(),
                                    nn.Linear(cfg.lct_hidden, 1), nn.BatchNorm1d(1))
                      if cfg.batch_norm else
                      nn.Sequential(nn.Linear(width, cfg.lct_hidden), nn.GELU(),
                                    nn.Dropout(cfg.lct_dropout), nn.Linear(cfg.lct_hidden, 1)))
            self.dt = (nn.Sequential(nn.Linear(llm_width, width), nn.GELU())
                       if llm_width else None)
            for module in (self.h, self.dt):
                for sub in (module or []):
                    if isinstance(sub, nn.Linear):
                        nn.init.xavier_normal_(sub.weight)
                        nn.init.zeros_(sub.bias)

        def represent(self, k, mask):
            """r_u (Eq. 10): the encoder's output at k_0 over [k_0, K_u + positions]."""
            batch, length, _ = k.shape
            x = torch.cat([self.k0.expand(batch, 1, width), k + self.positions[:length]], dim=1)
            ignore = torch.cat([torch.zeros(batch, 1, dtype=torch.bool, device=k.device), ~mask],
                               dim=1)
            return self.encoder(x, src_key_padding_mask=ignore)[:, 0]

        def forward(self, k, mask, llm=None):
            l_u = self.dt(llm) if llm is not None else None
            r_u = self.represent(k, mask) if cfg.recommender_feedback else l_u
            p = torch.sigmoid(self.h(r_u)).squeeze(-1)
            return p, r_u, l_u

    return Calibrator()


def sinusoidal_positions(length: int, width: int):
    """The Transformer's fixed sine / cosine position embeddings, (length, width)."""
    import torch

    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    out = torch.zeros(length, width)
    out[:, 0::2] = torch.sin(position * freq)
    out[:, 1::2] = torch.cos(position * freq)[:, :width // 2]
    return out


def paired_batches(n_observed: int, n_atk: int, batch_size: int, rng: np.random.Generator):
    """Shuffled batches of U, each with a proportional slice of U_atk (as many slices as
    batches of U, so every epoch shows the LCT every supervised fraudster)."""
    observed, atk = rng.permutation(n_observed), rng.permutation(n_atk)
    n_batches = max(1, math.ceil(n_observed / batch_size))
    return list(zip(np.array_split(observed, n_batches), np.array_split(atk, n_batches)))


# ---------------------------------------------------------------- the hooks


class LoRecHooks(FitHooks):
    """Trains the LCT after every backbone epoch and weights the backbone's users."""

    def __init__(self, train: Interactions, combined: Interactions, llm: np.ndarray | None,
                 cfg: LoRecConfig, ctx: DefenseContext):
        self.cfg, self.ctx = cfg, ctx
        self.n_observed = train.n_users
        self.combined = combined
        self.llm = None if llm is None else standardised(llm)
        self.xi = np.full(train.n_users, cfg.init_coefficient, dtype=np.float64)
        self.rng = np.random.default_rng([ctx.seed, 0x10EC])
        self.lct = self.optimizer = self.atk_windows = None
        self.pending = False          # a due pool update was put off
        self.updates: list[dict[str, Any]] = []

    # ------------------------------------------------------------ FitHooks

    def user_weights(self, epoch: int, model: Any, train: Interactions) -> np.ndarray | None:
        if epoch + 1 < self.cfg.lct_start:
            return None
        return pool_weights(self.xi, self.cfg.init_coefficient)

    def on_epoch_end(self, epoch: int, model: Any) -> None:
        if self.lct is None:
            self._build(model)
        for _ in range(self.cfg.lct_passes):
            self._train_pass(model)
        p = None
        if self.pending or pool_due(epoch + 1, self.cfg):
            p = self._update_pool(epoch + 1, model)
        if epoch + 1 == model.cfg.epochs:
            self._finish(self.scores(model) if p is None else p)

    # ------------------------------------------------------------ pieces

    def _build(self, model) -> None:
        import torch

        from recguard.kit.cf.loop import seed_everything

        seed_everything(self.ctx.seed)
        self.atk_windows = model.windows(self.combined)[self.n_observed:]
        width = 2 * model.cfg.dim
        # built on the CPU (the same initial weights everywhere), then beside the backbone
        self.lct = build_calibrator(width, None if self.llm is None else self.llm.shape[1],
                                    self.cfg, model.cfg.max_len).to(model.device)
        self.optimizer = torch.optim.AdamW(self.lct.parameters(), lr=self.cfg.lct_lr,
                                           weight_decay=self.cfg.lct_weight_decay)

    def _inputs(self, model, windows: np.ndarray, llm_rows: np.ndarray):
        import torch

        k, mask = model.composite_embeddings(windows) if self.cfg.recommender_feedback else (None, None)
        llm = (None if self.llm is None
               else torch.as_tensor(self.llm[llm_rows], device=model.device))
        return k, mask, llm

    def _train_pass(self, model) -> None:
        import torch
        from torch.nn import functional as F

        cfg = self.cfg
        self.lct.train()
        n_atk = len(self.atk_windows)
        for users, fakes in paired_batches(self.n_observed, n_atk, cfg.lct_batch_size, self.rng):
            windows = np.concatenate([model.sequences[users], self.atk_windows[fakes]])
            rows = np.concatenate([users, self.n_observed + fakes])
            k, mask, llm = self._inputs(model, windows, rows)
            p, r_u, l_u = self.lct(k, mask, llm)
            n = len(users)
            loss = fraud_loss(p[n:], p[:n], cfg.entropy_weight)
            if cfg.llm_weight > 0 and cfg.recommender_feedback:
                loss = loss - cfg.llm_weight * F.cosine_similarity(l_u, r_u, dim=-1).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

    def scores(self, model) -> np.ndarray:
        """p_u of every observed user under the current LCT (evaluation mode)."""
        import torch

        self.lct.eval()
        out = []
        with torch.no_grad():
            for start in range(0, self.n_observed, 1024):
                users = np.arange(start, min(start + 1024, self.n_observed))
                p, _, _ = self.lct(*self._inputs(model, model.sequences[users], users))
                out.append(p.cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def _update_pool(self, epoch: int, model) -> np.ndarray:
        """Eq. 17 at this epoch's scores; returns them."""
        p = self.scores(model)
        self.xi, applied, mu = pool_update(self.xi, p, self.cfg.max_flagged_share)
        self.pending = not applied
        self.updates.append({"epoch": epoch, "applied": applied, "mu_o": round(mu, 6),
                             "above": int((p > mu).sum())})
        return p

    def _finish(self, p: np.ndarray) -> None:
        """Leave the final p_u, weights and pool history for the record."""
        weights = pool_weights(self.xi, self.cfg.init_coefficient)
        self.ctx.user_scores = p
        self.ctx.user_weights = weights
        applied = [u["epoch"] for u in self.updates if u["applied"]]
        self.ctx.notes.update({
            "pool_updates": len(applied), "pool_update_epochs": applied,
            "pool_updates_put_off": len(self.updates) - len(applied),
            "final_mu_o": float(p.mean()), "min_weight": float(weights.min()),
            "supervised_fraudsters": len(self.atk_windows)})


class LoRecDefense(Defense):
    name = "lorec"
    summary = ("LoRec: an LLM-enhanced calibrator trained beside a sequential backbone "
               "re-weights suspected fraudsters")
    paper = f"{PAPER}, sec. 5, Eq. 9-21"
    prefers_gpu = True     # the LLM encodes every user's history
    stages = frozenset({"during_fit"})
    backbone_kinds = frozenset({"sequential"})
    feedback = frozenset({"implicit"})
    needs = frozenset({"user_weights", "epoch_callbacks", "composite_embeddings"})
    default_protocol = "lorec"
    Config = LoRecConfig

    def during_fit(self, train: Interactions, ctx: DefenseContext) -> FitHooks:
        cfg = self.config
        dim = getattr(getattr(ctx.backbone, "config", None), "dim", None)
        if dim is not None:  # refuse before any fitting, not after the first epoch
            check_heads(cfg, 2 * dim)
        combined = with_supervised_fraudsters(train, cfg, ctx.seed, ctx.protocol)
        llm = cfg.encoder(ctx.use_cache).encode(combined, progress=ctx.progress) if cfg.uses_llm else None
        return LoRecHooks(train, combined, llm, cfg, ctx)
