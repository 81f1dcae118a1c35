"""GraphRfi (Zhang et al., SIGIR 2020): a GCN rating predictor and a neural random forest
(NRF) fraudster detector trained jointly, as PamaCF's detection baseline (App. C.1).

The GCN (sec. 3.1). A user's input is its side information x_u (here rating statistics,
see `user_features`), an item's a free embedding q_v, a rating level r an embedding e_r.
The message of a neighbour is g([q_v ⊕ e_{r_uv}]) (g a two-layer ReLU MLP), and

    z_u = ReLU(W_u [x_u ⊕ mean_{v in N(u)} g_u([q_v ⊕ e_{r_uv}])] + b_u)
    z_v = ReLU(W_v [q_v ⊕ mean_{u in N(v)} g_v([x_u ⊕ e_{r_uv}])] + b_v)
    r̂_uv = MLP([t_u(z_u) ⊕ t_v(z_v)])     (towers t and a d -> 16 -> 1 head, as the code)

The NRF (sec. 3.2; Kontschieder et al. 2015). Its input is [z_u ⊕ ε_u], ε_u the mean
squared prediction error of u's ratings. Each tree reads a random share of the
features; decision node n sends x left with d_n(x) = σ(f_n(x)); the probability of
reaching leaf ℓ is μ_ℓ(x) = Π_n d_n(x)^[ℓ ↙ n] (1 − d_n(x))^[ℓ ↘ n]; the tree predicts
P_T[y | x] = Σ_ℓ π_ℓy μ_ℓ(x) with leaf distributions π_ℓ = softmax(θ_ℓ), and the
forest averages its trees. p_u = P[fraudster | x_u].

The joint loss (sec. 3.3):

    L = Σ_(u,v) (1 − p_u) (r̂_uv − r_uv)^2 / |R|  +  λ · (−1/|U_b|) Σ_u log P[y_u | x_u]

so a user the forest calls a fraudster contributes less to the rating loss, and the
rating error feeds the forest. The labels: PamaCF trains its detectors on supervised
fake users made by the Random attack (App. C.1); they are added to the graph with
label 1, the observed users get label 0 (as LoRec's detectors; the observed users may
hide the attack's fake users).

As a defense on a CF backbone (PamaCF's use of it), GraphRfi trains one epoch at the
start of each of the backbone's first ``epochs`` epochs, and the backbone weights each
user's loss by the current 1 − p_u (soft, the weight GraphRfi gives its own rating
loss) or drops users with p_u >= threshold (hard); after that the weights stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recguard import Config, Defense, DefenseContext, FitHooks, Interactions, param
from recguard.kit.poison.supervised import mean_profile_size, with_supervised_fakes

PAPER = ("Zhang et al., GCN-Based User Representation Learning for Unifying Robust "
         "Recommendation and Fraudster Detection (GraphRfi), SIGIR 2020, sec. 3; as PamaCF's "
         "detection baseline (NeurIPS 2024, App. C.1)")


@dataclass
class GraphRfiConfig(Config):
    dim: int = param(64, "embedding size d (PamaCF's backbones: 64; GraphRfi's code: 100)", low=1)
    lr: float = param(1e-3, "Adam learning rate (GraphRfi's code: 0.001)", low=0, open_low=True)
    batch_size: int = param(4096, "rating rows per step (GraphRfi's code: 128; ours, for CPU "
                                  "time)", low=1)
    epochs: int = param(10, "GraphRfi epochs, one at the start of each of the backbone's first "
                            "epochs, then its weights stay (the code: 100; ours, for CPU time: "
                            "Detect-AUC is flat after a few, see README)", low=1)
    dropout: float = param(0.5, "dropout in the rating predictor (GraphRfi's code: F.dropout, 0.5)",
                           low=0, high=1, open_high=True)
    trees: int = param(20, "NRF trees (GraphRfi's code: 80 of depth 10, 2.6M decision weights; "
                           "ours: 20 of depth 6, for CPU time)", low=1)
    depth: int = param(6, "NRF tree depth (GraphRfi's code: 10; ours: 6)", low=1, high=16)
    feature_rate: float = param(0.5, "share of the NRF input features each tree reads "
                                     "(GraphRfi's code: 0.5)", low=0, high=1, open_low=True)
    fraud_weight: float = param(5.0, "λ of the NRF loss (GraphRfi's code: 5 * loss1 + loss2)", low=0)
    weighting: bool = param(True, "weight the rating loss by 1 - p_u (false: the ablation "
                                  "without it; the two components then share only z_u)")
    error_feature: bool = param(True, "feed the prediction error ε_u to the NRF (false: ablation)")
    supervised_fraction: float = param(0.1, "supervised fake users / observed users (not given by "
                                            "PamaCF; 10% as LoRec's detectors)", low=0, high=1,
                                       open_low=True)
    supervised_attack: str = param("random", "attack making the supervised fake users (PamaCF "
                                             "App. C.1: the Random attack)")
    supervised_targets: int = param(5, "random items the supervised fake users promote (5 as in "
                                       "the protocols; the defender does not know the targets)",
                                    low=1)
    mode: Literal["soft", "hard"] = param("soft", "soft: the backbone weights u's loss by 1 - p_u "
                                                  "(GraphRfi's own weighting); hard: drops users "
                                                  "with p_u >= threshold")
    threshold: float = param(0.5, "hard mode: the p_u from which a user is dropped", low=0, high=1)
    device: str = param("backbone", "where GraphRfi trains: backbone (the backbone config's "
                                    "device, else cpu), cpu, cuda, cuda:1 ... or auto")


def user_features(data: Interactions) -> np.ndarray:
    """x_u: statistics of u's ratings, standardised over the users (GraphRfi's Yelp side
    information is review metadata no recguard dataset has; these are what any
    Interactions offers): log profile size, mean and std of its ratings, mean and std of
    its items' log popularity, and the share of its items in the 10% most popular."""
    n = data.n_users
    count = np.bincount(data.user, minlength=n).astype(np.float64)
    safe = np.maximum(count, 1.0)
    rating = data.rating.astype(np.float64)
    mean_r = np.bincount(data.user, weights=rating, minlength=n) / safe
    var_r = np.bincount(data.user, weights=rating ** 2, minlength=n) / safe - mean_r ** 2
    pop = np.log1p(np.bincount(data.item, minlength=data.n_items).astype(np.float64))[data.item]
    mean_p = np.bincount(data.user, weights=pop, minlength=n) / safe
    var_p = np.bincount(data.user, weights=pop ** 2, minlength=n) / safe - mean_p ** 2
    popular = np.bincount(data.item, minlength=data.n_items)
    top = popular >= np.quantile(popular, 0.9)
    share_top = np.bincount(data.user, weights=top[data.item].astype(np.float64), minlength=n) / safe
    x = np.stack([np.log1p(count), mean_r, np.sqrt(np.maximum(var_r, 0)), mean_p,
                  np.sqrt(np.maximum(var_p, 0)), share_top], axis=1)
    return ((x - x.mean(0)) / np.maximum(x.std(0), 1e-6)).astype(np.float32)


def supervised_fake_users(train: Interactions, cfg: GraphRfiConfig, seed: int, protocol) -> Interactions:
    """``train`` plus the supervised fake users (numbered after the observed users) made by
    ``cfg.supervised_attack`` on random targets, with the genuine users' mean profile size."""
    n_targets = min(cfg.supervised_targets, train.n_items)
    return with_supervised_fakes(train, cfg.supervised_attack, cfg.supervised_fraction,
                                 cfg.supervised_targets, np.random.default_rng([seed, 0x6F1]),
                                 protocol, filler_size=mean_profile_size(train) - n_targets,
                                 owner="graphrfi's supervised fake users")


def forest_probabilities(x, mask, weight, bias, leaf_logits, depth: int):
    """P[y | x] of a neural random forest, averaged over its trees.

    x (B, F); mask (F, T) 1 where tree t reads feature f; weight (F, T, N) and bias (T, N)
    of the N = 2^depth − 1 decision nodes of each tree, numbered breadth-first (node k's
    children are 2k+1 and 2k+2); leaf_logits (T, 2^depth, C). d_n = σ(f_n(x)) sends x to
    the left child; μ_ℓ multiplies the decisions on the path to leaf ℓ; the tree gives
    Σ_ℓ π_ℓ μ_ℓ, π_ℓ = softmax(leaf_logits_ℓ)."""
    import torch

    n_trees, n_nodes = bias.shape
    masked = (weight * mask[:, :, None]).reshape(weight.shape[0], -1)   # unread features: 0
    decisions = torch.sigmoid((x @ masked).view(-1, n_trees, n_nodes) + bias)
    mu = x.new_ones(x.shape[0], n_trees, 1)
    # each level's nodes; split rather than sliced: the backward of a slice fills a zero
    # tensor the size of all decisions, per level (an epoch at the code's forest size took
    # 705 s sliced, 555 s split: README)
    for d in torch.split(decisions, [2 ** level for level in range(depth)], dim=2):
        mu = torch.stack([mu * d, mu * (1.0 - d)], dim=-1).flatten(2)    # left, right children
    leaves = torch.softmax(leaf_logits, dim=-1)                        # π (T, L, C)
    return torch.einsum("btl,tlc->btc", mu, leaves).mean(1)


def joint_loss(pred, target, p_fraud_rows, log_probs, labels, fraud_weight: float,
               weighting: bool = True):
    """GraphRfi's L: the rating loss, each row weighted by 1 − p_u of its user (if
    ``weighting``), plus λ times the NRF's negative log-likelihood of the labels."""
    import torch

    squared = (pred - target) ** 2
    rating = (squared * (1.0 - p_fraud_rows)).mean() if weighting else squared.mean()
    nll = torch.nn.functional.nll_loss(log_probs, labels)
    return rating + fraud_weight * nll


class GraphRfiModel:
    """The GCN rating predictor and the NRF, over a fixed graph (users, items, levels)."""

    def __init__(self, data: Interactions, cfg: GraphRfiConfig, generator, device):
        import torch

        from recguard.kit.cf.graph import mean_aggregator

        nn = torch.nn
        self.cfg, self.device = cfg, device
        self.n_users, self.n_items = data.n_users, data.n_items
        self.levels = np.unique(data.rating)
        level = np.searchsorted(self.levels, data.rating)
        n_levels = len(self.levels)
        d = cfg.dim
        self.x = torch.as_tensor(user_features(data), device=device)
        n_feat = self.x.shape[1]
        # mean over a user's (item, level) messages and over an item's (user, level) messages
        self.user_agg = mean_aggregator(data.user, data.item * n_levels + level, data.n_users,
                                        data.n_items * n_levels, device)
        self.item_agg = mean_aggregator(data.item, data.user * n_levels + level, data.n_items,
                                        data.n_users * n_levels, device)
        torch.manual_seed(int(generator.initial_seed()))
        self.item_emb = nn.Parameter(torch.randn(data.n_items, d, generator=generator).mul_(0.1).to(device))
        self.level_emb = nn.Parameter(torch.randn(n_levels, d, generator=generator).mul_(0.1).to(device))
        mlp = lambda a, b: nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b), nn.ReLU())  # noqa: E731
        self.g_user, self.g_item = mlp(d + d, d), mlp(n_feat + d, d)
        self.w_user, self.w_item = nn.Linear(n_feat + d, d), nn.Linear(d + d, d)
        self.tower_user = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(d, d))
        self.tower_item = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(d, d))
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(d, 16), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(16, 1))
        self.modules = nn.ModuleList([self.g_user, self.g_item, self.w_user, self.w_item,
                                      self.tower_user, self.tower_item, self.head]).to(device)
        # the forest: input [z_u ⊕ ε_u]
        n_in = d + 1
        used = max(1, int(n_in * cfg.feature_rate))
        rng = np.random.default_rng(int(generator.initial_seed()))
        mask = np.zeros((n_in, cfg.trees), dtype=np.float32)
        for t in range(cfg.trees):
            mask[rng.choice(n_in, used, replace=False), t] = 1.0
        self.mask = torch.as_tensor(mask, device=device)
        n_nodes, n_leaves = 2 ** cfg.depth - 1, 2 ** cfg.depth
        bound = 1.0 / np.sqrt(used)   # nn.Linear's initialisation for `used` inputs
        self.node_weight = nn.Parameter((torch.rand(n_in, cfg.trees, n_nodes, generator=generator)
                                         * 2 - 1).mul_(bound).to(device))
        self.node_bias = nn.Parameter((torch.rand(cfg.trees, n_nodes, generator=generator)
                                       * 2 - 1).mul_(bound).to(device))
        # jointly trained leaf distributions, uniform-random logits as the code's pi
        self.leaf_logits = nn.Parameter(torch.rand(cfg.trees, n_leaves, 2, generator=generator).to(device))
        self.error = torch.zeros(data.n_users, device=device)

    def parameters(self) -> list:
        return [self.item_emb, self.level_emb, self.node_weight, self.node_bias, self.leaf_logits,
                *self.modules.parameters()]

    def train(self, mode: bool = True) -> None:
        self.modules.train(mode)

    def encode(self):
        """(z_u for every user, z_v for every item)."""
        import torch

        n_levels = len(self.levels)
        d = self.cfg.dim
        item_msg = self.g_user(torch.cat([self.item_emb[:, None, :].expand(-1, n_levels, d),
                                          self.level_emb[None].expand(self.n_items, -1, -1)], -1))
        user_msg = self.g_item(torch.cat([self.x[:, None, :].expand(-1, n_levels, -1),
                                          self.level_emb[None].expand(self.n_users, -1, -1)], -1))
        z_u = torch.relu(self.w_user(torch.cat(
            [self.x, torch.sparse.mm(self.user_agg, item_msg.reshape(-1, d))], -1)))
        z_v = torch.relu(self.w_item(torch.cat(
            [self.item_emb, torch.sparse.mm(self.item_agg, user_msg.reshape(-1, d))], -1)))
        return z_u, z_v

    def predict(self, z_u, z_v, users, items):
        """r̂ of the given pairs; the towers act on each node once (the code applies them per
        row: the same function, with per-row dropout masks)."""
        import torch

        pair = torch.cat([self.tower_user(z_u)[users], self.tower_item(z_v)[items]], -1)
        return self.head(pair).squeeze(-1)

    def fraud_probability(self, z_u, users):
        """P[fraudster | [z_u ⊕ ε_u]] for the given users (ε_u zero without ``error_feature``)."""
        import torch

        error = self.error[users] if self.cfg.error_feature else torch.zeros_like(self.error[users])
        x = torch.cat([z_u[users], error[:, None]], -1)
        return forest_probabilities(x, self.mask, self.node_weight, self.node_bias,
                                    self.leaf_logits, self.cfg.depth)


class GraphRfiTrainer:
    """Trains GraphRfi on the observed users plus the supervised fake users, one epoch at a
    time, and reports p_u of the observed users."""

    def __init__(self, train: Interactions, cfg: GraphRfiConfig, ctx: DefenseContext):
        import torch

        from recguard.kit.cf.loop import torch_generator

        self.cfg = cfg
        self.n_observed = train.n_users
        self.data = supervised_fake_users(train, cfg, ctx.seed, ctx.protocol)
        self.device = resolve_device(cfg.device, ctx.backbone)
        self.generator = torch_generator(ctx.seed)
        self.model = GraphRfiModel(self.data, cfg, self.generator, self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        labels = np.zeros(self.data.n_users, dtype=np.int64)
        labels[self.n_observed:] = 1
        self.labels = torch.as_tensor(labels, device=self.device)
        self.implicit = train.feedback == "implicit"
        self.rng = np.random.default_rng([ctx.seed, 0x6F2])
        self.epochs = 0

    def rows(self):
        """This epoch's (users, items, targets): the observed ratings, and on implicit data one
        uniformly drawn unobserved item per interaction with target 0 (a rating predictor
        needs both levels; ours)."""
        from recguard.kit.cf.loop import sample_negatives

        data = self.data
        users, items, targets = data.user, data.item, data.rating.astype(np.float32)
        if self.implicit:
            negatives = sample_negatives(data, data.user, self.rng)
            users = np.concatenate([users, users])
            items = np.concatenate([items, negatives])
            targets = np.concatenate([np.ones(len(data), np.float32), np.zeros(len(data), np.float32)])
        return users, items, targets

    def refresh_error(self, users, items, targets) -> None:
        """ε_u: the mean squared prediction error of u's rows, at the epoch's start (the
        authors' code computes it per batch, also without gradient)."""
        import torch

        model = self.model
        model.train(False)
        with torch.no_grad():
            z_u, z_v = model.encode()
            u = torch.as_tensor(users, device=self.device)
            pred = model.predict(z_u, z_v, u, torch.as_tensor(items, device=self.device))
            sq = (pred - torch.as_tensor(targets, device=self.device)) ** 2
            total = torch.zeros(self.data.n_users, device=self.device).index_add_(0, u, sq)
            count = torch.bincount(u, minlength=self.data.n_users).clamp(min=1)
            model.error = total / count

    def epoch(self) -> float:
        import torch

        cfg, model = self.cfg, self.model
        users, items, targets = self.rows()
        self.refresh_error(users, items, targets)
        model.train(True)
        u_all = torch.as_tensor(users)
        i_all = torch.as_tensor(items)
        t_all = torch.as_tensor(targets)
        order = torch.randperm(len(users), generator=self.generator)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start:start + cfg.batch_size]
            u = u_all[rows].to(self.device)
            z_u, z_v = model.encode()
            pred = model.predict(z_u, z_v, u, i_all[rows].to(self.device))
            batch_users, inverse = torch.unique(u, return_inverse=True)
            probs = model.fraud_probability(z_u, batch_users)
            loss = joint_loss(pred, t_all[rows].to(self.device), probs[inverse, 1],
                              torch.log(probs.clamp_min(1e-12)), self.labels[batch_users],
                              cfg.fraud_weight, cfg.weighting)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(rows)
        self.epochs += 1
        return total / max(len(order), 1)

    def scores(self) -> np.ndarray:
        """p_u of every observed user under the current model."""
        import torch

        model = self.model
        model.train(False)
        with torch.no_grad():
            z_u, _ = model.encode()
            users = torch.arange(self.n_observed, device=self.device)
            return model.fraud_probability(z_u, users)[:, 1].cpu().numpy().astype(np.float64)


def resolve_device(option: str, backbone):
    """The device GraphRfi trains on: ``backbone`` follows the backbone config's ``device``
    (cpu when it has none); otherwise as `recguard.kit.lm.models.resolve_device`."""
    import torch

    if option == "backbone":
        declared = getattr(getattr(backbone, "config", None), "device", None)
        if declared is None:
            return torch.device("cpu")
        option = declared
    from recguard.kit.lm.models import resolve_device as resolve

    return torch.device(resolve(option))


class GraphRfiHooks(FitHooks):
    def __init__(self, defense: "GraphRfiDefense", train: Interactions, ctx: DefenseContext):
        self.config = defense.config
        self.ctx = ctx
        self.train_n_users = train.n_users
        self.trainer = GraphRfiTrainer(train, self.config, ctx)
        self.weights = None

    def user_weights(self, epoch, model, train):
        cfg = self.config
        if self.weights is None or self.trainer.epochs < cfg.epochs:
            self.update()
        out = np.ones(train.n_users, dtype=np.float32)   # users a hook injected keep weight 1
        n = min(len(self.weights), train.n_users)
        out[:n] = self.weights[:n]
        return out

    def update(self) -> None:
        """One GraphRfi epoch, then p_u and the backbone's weights from it."""
        from recguard.kit.cf.loop import torch_threads

        cfg = self.config
        with torch_threads(1):
            loss = self.trainer.epoch()
            p = self.trainer.scores()
        self.weights = (p < cfg.threshold).astype(np.float64) if cfg.mode == "hard" else 1.0 - p
        self.ctx.user_scores = p
        self.ctx.user_weights = self.weights
        notes = self.ctx.notes
        notes.update({"mode": cfg.mode, "graphrfi_epochs": self.trainer.epochs,
                      "supervised_fake_users": self.trainer.data.n_users - self.trainer.n_observed,
                      "mean_p": round(float(p.mean()), 6), "min_p": round(float(p.min()), 6),
                      "max_p": round(float(p.max()), 6), "flagged": int((p >= cfg.threshold).sum())})
        notes.setdefault("graphrfi_loss", []).append(round(float(loss), 6))


class GraphRfiDefense(Defense):
    name = "graphrfi"
    summary = ("GraphRfi: a GCN rating predictor and a neural random forest trained jointly; "
               "the backbone weights users by 1 - P(fraudster)")
    paper = PAPER
    Config = GraphRfiConfig
    stages = frozenset({"during_fit"})
    backbone_kinds = frozenset({"cf"})
    needs = frozenset({"user_weights"})
    default_protocol = "pamacf"
    default_backbone = "mf"

    def during_fit(self, train: Interactions, ctx: DefenseContext) -> FitHooks:
        return GraphRfiHooks(self, train, ctx)
