"""AUSH: Attacking Recommender Systems with Augmented User Shilling (Lin et al., CIKM 2020).

A fake profile is a real user's profile (the *template*) "augmented" by a generator:

- **targets**: every target item, rated the maximum;
- **selected items** I_S: a few popular items the attacker wants to associate with the
  targets (the paper's domain-knowledge items), rated the maximum;
- **fillers** I_F: ``filler_size`` items sampled from the template's own rated items; their
  ratings are the generator's output, rounded to the rating levels of the data.

The generator G (an MLP over the item space) reads the template restricted to its sampled
fillers, x^(0), and outputs a rating for every item. It is trained with three losses
(paper sec. 4): L_rec, the squared error on the template's observed ratings (the sampled
fillers, the selected items it rated, and a zero-reconstruction sample of the selected items
it did not rate); L_shill, the squared gap between the selected items' outputs and the
maximum rating; L_adv, the non-saturating GAN loss against a discriminator D (an MLP) that
tells real profiles (restricted to the same fillers and the selected items) from generated
ones. D and G are updated alternately, one pass each per epoch, for 150 epochs.

Both networks read sparse profiles: the first layer gathers the rows of the sampled items
(an exact sparse matrix product), and G's output is evaluated only at the items D and the
losses look at (the fillers and selected items) during training, and at every item when
profiles are generated. ``ctx.rng`` is the only source of randomness.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from recguard import Attack, AttackContext, Config, Interactions, Poisoned, RecguardError, param
from recguard.kit.poison.profiles import check_request, shuffled_rows, snap_to_levels

PAPER = ("Lin, Chen, Li, Xiao, Li & Yang, Attacking Recommender Systems with Augmented User "
         "Profiles (AUSH), CIKM 2020")


# ---------------------------------------------------------------- options


@dataclass
class AUSHConfig(Config):
    """AUSH's options; defaults from the authors' release (XMUDM/ShillingAttack) unless noted."""

    n_selected: int = param(3, "number of selected items I_S rated the maximum in every fake profile "
                               "(the release's examples use 2-3)", low=0)
    selected_pool: int = param(20, "selected items are chosen among the top-N most popular "
                                   "non-target items (release: top 20)", low=1)
    selected_items: tuple[int, ...] = param((), "explicit selected item indices; empty = choose "
                                                "them from the data (see README)")
    epochs: int = param(150, "alternating D/G epochs (release: totalEpochs 150)", low=1)
    batch_size_g: int = param(256, "generator batch size (release: 128 * 2)", low=1)
    batch_size_d: int = param(64, "discriminator batch size (release: 64)", low=1)
    lr_g: float = param(0.01, "generator Adam learning rate (release: 0.01)", low=0, open_low=True)
    lr_d: float = param(1e-4, "discriminator Adam learning rate (release: 1e-4)", low=0, open_low=True)
    reg_g: float = param(1e-4, "generator L2 weight, times sum(w^2)/2 (release: 1e-4)", low=0)
    reg_d: float = param(1e-5, "discriminator L2 weight, times sum(w^2)/2 (release: 1e-5)", low=0)
    gen_hidden: int = param(128, "generator hidden units (the authors' full-profile AUSH "
                                 "generator in Leg-UP: 128)", low=1)
    dis_hidden: int = param(150, "discriminator hidden units per layer (release: 150)", low=1)
    dis_layers: int = param(3, "discriminator hidden layers (release: 3)", low=1)
    zr_ratio: float = param(0.5, "zero-reconstruction: share of a template's unrated selected items "
                                 "reconstructed as 0 in L_rec (release: ZR_ratio 0.5)", low=0, high=1)
    weight_adv: float = param(1.0, "weight of L_adv in the generator loss (release: 1)", low=0)
    weight_rec: float = param(1.0, "weight of L_rec (release: 1)", low=0)
    weight_shill: float = param(1.0, "weight of L_shill (release: 1)", low=0)
    selected_rating: Literal["max", "generated"] = param(
        "max", "selected items' output rating: the maximum, or the generator's output rounded "
               "to a rating level (the release)", choices=("max", "generated"))
    torch_threads: int = param(1, "torch threads while training (not a paper option: the networks' "
                                  "sparse batches are small, and extra threads only contend)", low=1)


# ---------------------------------------------------------------- the networks


def _glorot(n_in: int, n_out: int, shape, generator):
    import torch

    scale = math.sqrt(6.0 / (n_in + n_out))
    return (torch.rand(*shape, generator=generator) * 2 - 1) * scale


def _bias(n: int, generator):
    import torch

    return (torch.rand(n, generator=generator) * 2 - 1) * 0.01


def _make_networks(n_items: int, config: AUSHConfig, scale: float, seed: int):
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)

    class Generator(nn.Module):
        """x^(0) (ratings on the sampled fillers) -> a rating in (0, scale) for every item."""

        def __init__(self):
            super().__init__()
            h = config.gen_hidden
            self.w_in = nn.Parameter(_glorot(n_items, h, (n_items, h), generator))
            self.b_in = nn.Parameter(_bias(h, generator))
            self.w_out = nn.Parameter(_glorot(h, n_items, (n_items, h), generator))
            self.b_out = nn.Parameter(_bias(n_items, generator))

        def hidden(self, fill_idx, fill_val):
            # x^(0) @ W_in for a sparse x^(0): gather the fillers' rows
            return torch.sigmoid(torch.einsum("bk,bkh->bh", fill_val, self.w_in[fill_idx]) + self.b_in)

        def forward(self, fill_idx, fill_val, out_idx):
            h = self.hidden(fill_idx, fill_val)
            logits = torch.einsum("bh,bmh->bm", h, self.w_out[out_idx]) + self.b_out[out_idx]
            return torch.sigmoid(logits) * scale

        def full(self, fill_idx, fill_val):
            h = self.hidden(fill_idx, fill_val)
            return torch.sigmoid(h @ self.w_out.T + self.b_out) * scale

    class Discriminator(nn.Module):
        """A profile (values at ``idx``, zero elsewhere) -> the logit of "real"."""

        def __init__(self):
            super().__init__()
            h = config.dis_hidden
            self.w_in = nn.Parameter(_glorot(n_items, h, (n_items, h), generator))
            self.b_in = nn.Parameter(_bias(h, generator))
            layers = []
            for _ in range(config.dis_layers - 1):
                layer = nn.Linear(h, h)
                with torch.no_grad():
                    layer.weight.copy_(_glorot(h, h, (h, h), generator))
                    layer.bias.copy_(_bias(h, generator))
                layers += [layer, nn.Sigmoid()]
            out = nn.Linear(h, 1)
            with torch.no_grad():
                out.weight.copy_(_glorot(h, 1, (1, h), generator))
                out.bias.copy_(_bias(1, generator))
            self.body = nn.Sequential(*layers, out)

        def forward(self, idx, values):
            x = torch.sigmoid(torch.einsum("bm,bmh->bh", values, self.w_in[idx]) + self.b_in)
            return self.body(x).squeeze(-1)

    return Generator(), Discriminator()


def _l2(module) -> "torch.Tensor":  # noqa: F821
    return sum((p ** 2).sum() for p in module.parameters()) / 2


# ---------------------------------------------------------------- selected items


def choose_selected(train: Interactions, targets: np.ndarray, n_selected: int, pool_size: int
                    ) -> np.ndarray:
    """The release's selected items: among the ``pool_size`` most popular non-target items, the
    ``n_selected`` whose fans overlap most: the combination liked (rating >= min(mean rating,
    0.6 * max)) by the most users who rated no target. The release takes the first random
    combination with at least 30 such users; we take the best one (exhaustive search up to
    20,000 combinations, greedy beyond), which needs no randomness."""
    counts = np.bincount(train.item, minlength=train.n_items)
    candidates = np.setdiff1d(np.arange(train.n_items), targets)
    ranked = candidates[np.lexsort((candidates, -counts[candidates]))]
    pool = ranked[:min(pool_size, len(ranked))]
    n = min(n_selected, len(pool))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rating = train.rating.astype(np.float64)
    threshold = min(rating.mean(), 0.6 * train.rating_max) if len(rating) else 0.0
    rated_target = np.zeros(train.n_users, dtype=bool)
    rated_target[train.user[np.isin(train.item, targets)]] = True
    column = np.full(train.n_items, -1)
    column[pool] = np.arange(len(pool))
    keep = (column[train.item] >= 0) & (rating >= threshold) & ~rated_target[train.user]
    liked = np.zeros((train.n_users, len(pool)), dtype=bool)
    liked[train.user[keep], column[train.item[keep]]] = True
    if math.comb(len(pool), n) <= 20_000:
        best, best_count = tuple(range(n)), -1
        for combo in itertools.combinations(range(len(pool)), n):
            count = int(liked[:, list(combo)].all(axis=1).sum())
            if count > best_count:
                best, best_count = combo, count
        return np.sort(pool[list(best)]).astype(np.int64)
    chosen: list[int] = []
    fans = np.ones(train.n_users, dtype=bool)
    for _ in range(n):
        scores = [(-1 if j in chosen else int((fans & liked[:, j]).sum())) for j in range(len(pool))]
        j = int(np.argmax(scores))
        chosen.append(j)
        fans &= liked[:, j]
    return np.sort(pool[chosen]).astype(np.int64)


# ---------------------------------------------------------------- training


@dataclass
class AUSHTrainer:
    """The GAN of AUSH on one training set: templates, filler sampling, alternating updates."""

    train: Interactions
    targets: np.ndarray
    selected: np.ndarray
    filler_size: int
    config: AUSHConfig
    rng: np.random.Generator
    history: list[dict] = field(default_factory=list)

    def __post_init__(self):
        import torch

        train, config = self.train, self.config
        self.explicit = train.feedback == "explicit"
        self.scale = float(train.rating_max)
        self.levels = np.unique(train.rating).astype(np.float32) if len(train) else \
            np.array([self.scale], dtype=np.float32)
        ratings = np.zeros((train.n_users, train.n_items), dtype=np.float32)
        ratings[train.user, train.item] = train.rating
        self.ratings = torch.from_numpy(ratings)
        # the filler candidates: every item but the targets and the selected items
        excluded = np.zeros(train.n_items, dtype=bool)
        excluded[self.targets] = True
        excluded[self.selected] = True
        self.candidates = np.flatnonzero(~excluded)
        keep = ~excluded[train.item]
        order = np.argsort(train.user[keep], kind="stable")
        self.cand_user = train.user[keep][order].astype(np.int64)
        self.cand_item = train.item[keep][order].astype(np.int64)
        per_user = np.bincount(self.cand_user, minlength=train.n_users)
        self.start = np.concatenate([[0], np.cumsum(per_user)[:-1]])
        # templates: users with at least k candidate ratings (k = filler_size when anyone has
        # that many, otherwise the longest candidate profile)
        self.k = int(min(self.filler_size, per_user.max() if len(per_user) else 0))
        self.templates = np.flatnonzero(per_user >= self.k)
        self.sel = torch.from_numpy(self.selected.astype(np.int64))
        self.G, self.D = _make_networks(train.n_items, config, self.scale,
                                        int(self.rng.integers(2 ** 31)))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d)

    # ---- sampling

    def sample_fillers(self, users: np.ndarray) -> np.ndarray:
        """``k`` distinct items drawn uniformly from each user's rated candidates: (len(users), k)."""
        keys = self.cand_user + self.rng.random(len(self.cand_user))
        shuffled = self.cand_item[np.argsort(keys, kind="stable")]  # segments stay in place
        return shuffled[self.start[users][:, None] + np.arange(self.k)]

    def batch(self, users: np.ndarray, fillers: np.ndarray):
        """(fill_idx, idx, real): the fillers, fillers + selected items, the real ratings there."""
        import torch

        fill_idx = torch.from_numpy(fillers)
        idx = torch.cat([fill_idx, self.sel.expand(len(users), -1)], dim=1)
        real = self.ratings[torch.from_numpy(users)[:, None], idx]
        return fill_idx, idx, real

    # ---- updates

    def d_step(self, users: np.ndarray, fillers: np.ndarray) -> None:
        import torch
        import torch.nn.functional as F

        fill_idx, idx, real = self.batch(users, fillers)
        with torch.no_grad():
            fake = self.G(fill_idx, real[:, :self.k], idx)
        logit_real, logit_fake = self.D(idx, real), self.D(idx, fake)
        loss = (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
                + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
                + self.config.reg_d * _l2(self.D))
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()

    def g_step(self, users: np.ndarray, fillers: np.ndarray) -> None:
        import torch
        import torch.nn.functional as F

        config = self.config
        fill_idx, idx, real = self.batch(users, fillers)
        fake = self.G(fill_idx, real[:, :self.k], idx)
        logit = self.D(idx, fake)
        loss_adv = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        # L_rec: the template's observed ratings (fillers, rated selected items) and a
        # zero-reconstruction sample of its unrated selected items
        mask = torch.ones_like(real)
        if len(self.selected):
            sel_real = real[:, self.k:]
            zr = torch.from_numpy(self.rng.random(tuple(sel_real.shape)) < config.zr_ratio)
            mask[:, self.k:] = ((sel_real > 0) | zr).float()
        loss_rec = (((fake - real) ** 2) * mask).sum() / mask.sum().clamp(min=1)
        loss_shill = ((fake[:, self.k:] - self.scale) ** 2).mean() if len(self.selected) \
            else fake.new_zeros(())
        loss = (config.weight_adv * loss_adv + config.weight_rec * loss_rec
                + config.weight_shill * loss_shill + config.reg_g * _l2(self.G))
        self.opt_g.zero_grad()
        loss.backward()
        self.opt_g.step()

    def epoch(self) -> None:
        """One D pass then one G pass over every template (release: step_D = step_G = 1), with
        freshly sampled fillers."""
        fillers = self.sample_fillers(self.templates)
        n = len(self.templates)
        order = self.rng.permutation(n)
        for start in range(0, n, self.config.batch_size_d):
            rows = order[start:start + self.config.batch_size_d]
            self.d_step(self.templates[rows], fillers[rows])
        order = self.rng.permutation(n)
        for start in range(0, n, self.config.batch_size_g):
            rows = order[start:start + self.config.batch_size_g]
            self.g_step(self.templates[rows], fillers[rows])

    def fit(self, epochs: int | None = None, monitor_every: int = 0) -> "AUSHTrainer":
        epochs = self.config.epochs if epochs is None else epochs
        for e in range(epochs):
            self.epoch()
            if monitor_every and ((e + 1) % monitor_every == 0 or e + 1 == epochs):
                self.history.append({"epoch": e + 1, **self.monitor()})
        return self

    def monitor(self, n: int = 512) -> dict:
        """D's accuracy (real vs generated) and the gap between the mean generated and mean real
        filler rating, on up to ``n`` templates. Draws from a separate generator, so monitoring
        never changes the attack's random stream."""
        import torch

        own = np.random.default_rng(len(self.history))
        users = self.templates[own.permutation(len(self.templates))[:n]]
        saved, self.rng = self.rng, own
        try:
            fill_idx, idx, real = self.batch(users, self.sample_fillers(users))
        finally:
            self.rng = saved
        with torch.no_grad():
            fake = self.G(fill_idx, real[:, :self.k], idx)
            p_real, p_fake = torch.sigmoid(self.D(idx, real)), torch.sigmoid(self.D(idx, fake))
        accuracy = float(((p_real > 0.5).float().mean() + (p_fake < 0.5).float().mean()) / 2)
        gap = float(fake[:, :self.k].mean() - real[:, :self.k].mean())
        return {"d_accuracy": accuracy, "filler_mean_gap": gap,
                "selected_mean": float(fake[:, self.k:].mean()) if len(self.selected) else None}

    # ---- generation

    def snap(self, values: np.ndarray) -> np.ndarray:
        """Clip to the lowest / highest rating level, round to the nearest level (ties go up)."""
        return snap_to_levels(values, self.levels)

    def generate(self, n_fake: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(fillers, filler ratings, selected ratings) per fake user, plus its template user.

        Templates are drawn without replacement while they last (release: a shuffled template
        list, repeated when too short). Explicit data: the fillers are the template's sampled
        rated items, rated by G; implicit data: the ``filler_size`` candidates G rates highest."""
        import torch

        n_filler = min(self.filler_size, len(self.candidates))
        reps = -(-n_fake // len(self.templates)) if n_fake else 0
        pick = np.concatenate([self.rng.permutation(len(self.templates)) for _ in range(reps)])[:n_fake] \
            if reps else np.zeros(0, dtype=np.int64)
        users = self.templates[pick]
        fillers = self.sample_fillers(users)
        fill_idx, _, real = self.batch(users, fillers)
        with torch.no_grad():
            full = self.G.full(fill_idx, real[:, :self.k]).numpy().astype(np.float64)
        blocked = np.zeros_like(full, dtype=bool)
        blocked[:, self.targets] = True
        blocked[:, self.selected] = True
        if self.explicit:
            # the template's fillers, topped up (only when no template is long enough) with
            # the candidates G rates highest
            chosen = fillers
            if n_filler > self.k:
                scores = np.where(blocked, -np.inf, full)
                np.put_along_axis(scores, fillers, -np.inf, axis=1)
                extra = np.argsort(-scores, axis=1, kind="stable")[:, :n_filler - self.k]
                chosen = np.concatenate([fillers, extra], axis=1)
        else:
            scores = np.where(blocked, -np.inf, full)
            chosen = np.argsort(-scores, axis=1, kind="stable")[:, :n_filler]
        filler_ratings = self.snap(np.take_along_axis(full, chosen, axis=1)) if self.explicit \
            else np.ones(chosen.shape, dtype=np.float32)
        selected_ratings = self.snap(full[:, self.selected]) if self.explicit else \
            np.ones((n_fake, len(self.selected)), dtype=np.float32)
        return chosen.astype(np.int64), filler_ratings, selected_ratings, users


# ---------------------------------------------------------------- the attack


class AUSHAttack(Attack):
    name: ClassVar[str] = "aush"
    summary: ClassVar[str] = ("AUSH: a GAN augments sampled real users' profiles into fake ones "
                              "(generated filler ratings, selected items and targets at the maximum)")
    paper: ClassVar[str] = PAPER
    knowledge: ClassVar[str] = "black-box"
    backbone_kinds: ClassVar[frozenset[str]] = frozenset({"cf", "sequential"})
    Config = AUSHConfig

    def poison(self, train: Interactions, ctx: AttackContext) -> Poisoned:
        import torch

        config: AUSHConfig = self.config
        targets = check_request(self.name, self.feedback, train, ctx)
        n_fake = int(ctx.n_fake)
        if n_fake == 0:
            return Poisoned.empty()
        if config.selected_items:
            selected = np.unique(np.asarray(config.selected_items, dtype=np.int64))
            if selected.min() < 0 or selected.max() >= train.n_items or np.isin(selected, targets).any():
                raise RecguardError(f"attack 'aush': selected_items must be non-target items in "
                                    f"0..{train.n_items - 1}, got {list(config.selected_items)}")
        else:
            selected = choose_selected(train, targets, config.n_selected, config.selected_pool)

        threads = torch.get_num_threads()
        torch.set_num_threads(config.torch_threads)
        try:
            trainer = AUSHTrainer(train, targets, selected, int(ctx.filler_size), config, ctx.rng)
            trainer.fit()
            fillers, filler_ratings, selected_ratings, _ = trainer.generate(n_fake)
        finally:
            torch.set_num_threads(threads)

        explicit = train.feedback == "explicit"
        top = np.float32(train.rating_max if explicit else 1.0)
        if config.selected_rating == "max" or not explicit:
            selected_ratings = np.full((n_fake, len(selected)), top, dtype=np.float32)
        items = np.concatenate([np.broadcast_to(targets, (n_fake, len(targets))),
                                np.broadcast_to(selected, (n_fake, len(selected))), fillers], axis=1)
        ratings = np.concatenate([np.full((n_fake, len(targets)), top, dtype=np.float32),
                                  selected_ratings, filler_ratings], axis=1)
        return shuffled_rows(train, items, ratings, ctx.rng)
