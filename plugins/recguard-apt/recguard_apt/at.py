"""AT: the adversarial-training baseline of APT (Wu et al., SIGIR 2021, sec. 2.2 and 5.1.3).

Formula 2 of the paper, on the MF of sec. 2.1:

    min_θ  max_{Δ, ‖Δ‖ ≤ ε}  L(D, θ) + λ_adv · L(D, θ + Δ)

"In each training step, it first uses SGD to optimize the inner objective to
generate small perturbations and adds them to the parameters, and then performs
training" (sec. 5.1.3). Per mini-batch: Δ (on the batch's user and item
embeddings, one vector per row) starts at zero and takes ``inner_steps`` SGD
ascent steps on L(θ + Δ), each followed by a projection onto ‖Δ_row‖ ≤ ε;
then the parameters take one optimiser step on L(θ) + λ_adv · L(θ + Δ) with Δ
held constant. ε = 0.03 (sec. 5.1.5). APR (recguard-pamacf) is the special
case of one normalised step that lands on the sphere ‖Δ‖ = ε.
"""

from __future__ import annotations

from dataclasses import dataclass

from recguard import Config, Defense, DefenseContext, FitHooks, Interactions, param
from recguard.kit.cf.adversarial import PerturbationHooks, perturbed_loss, sgd_perturbation

PAPER = ("Wu et al., Fight Fire with Fire: Towards Robust Recommender Systems via Adversarial "
         "Poisoning Training, SIGIR 2021")


@dataclass
class ATConfig(Config):
    eps: float = param(0.03, "ε, the bound on each row's perturbation (sec. 5.1.5: 0.03, 'about "
                             "5% of the parameter weight')", low=0, open_low=True)
    adv_weight: float = param(1.0, "λ_adv of Formula 2 (not given; 1, as APR and PamaCF's code)",
                              low=0)
    inner_steps: int = param(5, "SGD steps on Δ per training step (sec. 5.1.3 says SGD, not how "
                                "many; ours)", low=1)
    inner_lr: float = param(0.1, "step size of the inner SGD on the summed per-row loss (not "
                                 "given; ours: MF's median row gradient on ML-100K is 0.2-0.4, so "
                                 "a first step is about ε; see README)", low=0, open_low=True)
    adv_start: int = param(0, "first epoch with adversarial training (sec. 5.1.3: every step)",
                           low=0)


class ATDefense(Defense):
    name = "at"
    summary = "AT: min-max adversarial training, the inner max by projected SGD on the embeddings"
    paper = f"{PAPER}, Formula 2, sec. 5.1.3 and 5.1.5 (APT's baseline)"
    Config = ATConfig
    stages = frozenset({"during_fit"})
    backbone_kinds = frozenset({"cf"})
    needs = frozenset({"embedding_batch", "loss_terms", "epoch_callbacks"})
    default_protocol = "apt"

    def during_fit(self, train: Interactions, ctx: DefenseContext) -> FitHooks:
        c = self.config

        def term(batch, magnitude):
            deltas = sgd_perturbation(batch, magnitude, c.inner_steps, c.inner_lr)
            return perturbed_loss(batch, deltas)

        return PerturbationHooks(term, c.adv_weight, c.adv_start, c.eps, notes=ctx.notes)
