"""ADVTrain: adversarial training of a sequential recommender on its input items
(Yue, Zeng, Kou, Shang & Wang, Defending Substitution-Based Profile Pollution Attacks on
Sequential Recommenders, RecSys 2022, sec. 4, "adversarial training"; LoRec's baseline [37]).

Each input item is represented by a vector ``x_t`` on the probability simplex over the
catalogue (a one-hot ``x_t^0`` for the item actually seen), and the encoder reads the
linear combination ``x_t^T E`` of item embeddings. Every batch:

1. Ascent, K steps from the one-hot inputs, encoder in evaluation mode, the item table
   held fixed:  ``g_t = d L(x E) / d x_t``,  ``x_t <- Pi(x_t + eta g_t / ||g_t||_2)``,
   ``Pi(z) = max(z, 0) / sum(max(z, 0))`` (back onto the simplex), i.e. the worst-case convex
   combination of item embeddings for each position. Optionally (``epsilon``) each
   ``x_t - x_t^0`` is also shrunk into an L2 ball of radius epsilon (a convex combination
   of ``x_t^0`` and ``x_t``, so it stays on the simplex).
2. Substitution: each real position independently with probability ``rho`` takes its
   adversarial ``x_t^K``, the others keep their one-hot ``x_t^0``.
3. The adversarial loss ``L(x~ E)`` (training mode, gradients to the encoder and, through
   the convex combinations, to the item table) is added to the batch loss:
   ``L(x^0 E) + lambda L(x~ E)``.

``L`` is the backbone's own weighted next-item loss with the batch's targets (the
``loss_at`` of `recguard-sequential`'s batches), so per-user weights of another defense
would apply to both terms alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from recguard import Config, Defense, DefenseContext, FitHooks, Interactions, RecguardError, param

YUE = ("Yue et al., Defending Substitution-Based Profile Pollution Attacks on Sequential "
       "Recommenders, RecSys 2022")


@dataclass
class AdvTrainConfig(Config):
    step: float = param(1.0, "eta, the normalised ascent step on each position's simplex vector "
                             "(the authors' code: adv_step 1.0)", low=0, open_low=True)
    iterations: int = param(3, "K, ascent steps per batch (the authors' code: adv_iteration 3)",
                            low=1)
    ratio: float = param(0.5, "rho, the share of real positions replaced by their adversarial "
                              "combination (the authors' code: substitution_ratio 0.5)",
                         low=0, high=1)
    adv_weight: float = param(1.0, "lambda, the adversarial loss's weight (the authors' code: an "
                                   "extra optimiser step on it at weight 1)", low=0)
    adv_start: int = param(0, "first epoch with adversarial training (the authors' code trains "
                              "adversarially from the first epoch)", low=0)
    epsilon: float | None = param(None, "optional L2 radius of x_t - x_t^0 for each position; None: "
                                        "only the simplex bounds it (the authors' code)",
                                  low=0, open_low=True)


def simplex_ascent(loss_of, x0, real, step: float, iterations: int, epsilon: float | None = None,
                   losses: list | None = None):
    """K normalised gradient-ascent steps on ``x`` (B, L, n), each projected back onto the
    simplex (and into the epsilon ball around ``x0`` when given), from the one-hot ``x0``;
    rows where ``real`` (B, L) is False stay zero. ``loss_of(x) -> scalar`` is maximised.
    Returns the detached ``x^K``; ``losses``, if given, receives loss_of(x^0) .. loss_of(x^{K-1})."""
    import torch

    keep = real.unsqueeze(-1).to(x0.dtype)
    x = x0
    for _ in range(iterations):
        x = x.detach().requires_grad_(True)
        loss = loss_of(x)
        if losses is not None:
            losses.append(float(loss.detach()))
        (grad,) = torch.autograd.grad(loss, x)
        direction = grad / (grad.norm(dim=-1, keepdim=True) + 1e-9)
        x = (x.detach() + step * direction).clamp_min(0.0)
        x = x / x.sum(-1, keepdim=True).clamp_min(1e-12)
        if epsilon is not None:
            delta = x - x0
            x = x0 + delta * (epsilon / delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
        x = x * keep
    return x.detach()


class AdvTrainHooks(FitHooks):
    def __init__(self, cfg: AdvTrainConfig, seed: int, notes: dict | None = None):
        import torch

        self.cfg, self.notes = cfg, notes if notes is not None else {}
        self.generator = torch.Generator().manual_seed(int(seed) + 0xAD7)
        self.batches = 0
        self.gain = 0.0   # sum over batches of L(x^K E) - L(x^0 E) at the ascent (eval mode)

    def extra_loss(self, epoch, model, batch):
        import torch

        cfg = self.cfg
        if epoch < cfg.adv_start or cfg.adv_weight == 0:
            return None
        if "loss_at" not in batch or "item_vectors" not in batch:
            raise RecguardError("advtrain needs batches with loss_at and item_vectors "
                                "(the recguard-sequential backbones' training loop)")
        items, real = batch["items"], batch["mask"]
        n_items = model.n_items
        table = batch["item_vectors"](torch.arange(n_items, device=items.device))
        x0 = torch.zeros(*items.shape, n_items, dtype=table.dtype, device=items.device)
        x0.scatter_(-1, items.clamp(max=n_items - 1).unsqueeze(-1), real.unsqueeze(-1).to(table.dtype))
        fixed = table.detach()
        loss_at = batch["loss_at"]
        losses = []
        xk = simplex_ascent(lambda x: loss_at(x @ fixed, dropout=False), x0, real,
                            cfg.step, cfg.iterations, cfg.epsilon, losses)
        with torch.no_grad():
            self.gain += float(loss_at(xk @ fixed, dropout=False)) - losses[0]
            self.batches += 1
        switch = torch.rand(items.shape, generator=self.generator).to(items.device) < cfg.ratio
        switch = (switch & real).unsqueeze(-1).to(table.dtype)
        mixed = switch * xk + (1.0 - switch) * x0
        return cfg.adv_weight * loss_at(mixed @ table)

    def on_epoch_end(self, epoch, model):
        if self.batches:   # for the record: how much the ascent raised the batch loss, on average
            self.notes["advtrain_mean_loss_gain"] = round(self.gain / self.batches, 6)


class AdvTrainDefense(Defense):
    name = "advtrain"
    summary = ("ADVTrain: adversarial training on the input items of a sequential recommender "
               "(worst-case convex combinations of item embeddings, gradient ascent on one-hots)")
    paper = f"{YUE}, sec. 4 (adversarial training); LoRec (Zhang et al., 2024) baseline [37]"
    Config = AdvTrainConfig
    stages = frozenset({"during_fit"})
    feedback = frozenset({"implicit"})
    backbone_kinds = frozenset({"sequential"})
    needs = frozenset({"loss_terms"})
    default_protocol = "lorec"
    default_backbone = "sasrec"

    def during_fit(self, train: Interactions, ctx: DefenseContext) -> FitHooks:
        return AdvTrainHooks(self.config, ctx.seed, ctx.notes)
