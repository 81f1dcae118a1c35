"""PGA's own objective before and after its gradient steps (issue 20, hypothesis 1).

For each seed and each ``pga_steps`` value this runs the PGA attack exactly as
`recguard eval` does (same split, targets, fake-user count, filler size and rng) and
evaluates the attacker's integrity utility - the mean predicted rating of the targets over
the genuine users who have not rated them - on a freshly fitted ALS surrogate (the attack's
rank, lambda and initial sweeps, ``--sweeps`` sweeps from a fixed initialisation):

- ``relaxed``: the relaxed fake rows the ascent returns, every fake entry weighing 1 (the
  objective the ascent climbs under ``relaxation=dense``; under ``relaxation=support`` the
  rows are 0 off their support, and the ``discrete`` column is the climbed objective);
- ``discrete``: the final profiles the victim is trained on, each fake user observed only on
  its targets and fillers (the sparse weights genuine users have).

It also prints the surrogate's target hit ratio at 50 (``hr``: share of eligible
(user, target) pairs with the target in the user's top 50 unrated items) for both, the
utility trace of the ascent (first and last step, at the partly re-fitted factors) and the
mean rating and training popularity of the final fillers.

    python benchmarks/pga_utility.py --seeds 10,11,12 --steps 0,20
    python benchmarks/pga_utility.py --seeds 10,11,12 --steps 0,5,20 --opt relaxation=dense --opt step=0.5
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from recguard.config import build_config
from recguard.kit.poison.als import als_sweeps
from recguard.kit.poison.profiles import discrete_profiles
from recguard.kit.poison.surrogate import dense_ratings
from recguard.pipeline.cell import load
from recguard.pipeline.kinds.ranking import attack_context
from recguard.data.prepare import prepare
from recguard.plan import CellSpec, make_plan


def surrogate_utility(genuine, observed, fake, fake_observed, targets, cfg, sweeps: int):
    """(utility, hr@50) of ALS fitted on the genuine rows plus ``fake`` weighted by
    ``fake_observed``, from a fixed initialisation."""
    n_gen, n_items = genuine.shape
    generator = torch.Generator().manual_seed(0)
    user = torch.randn(n_gen + len(fake), cfg.surrogate_dim, generator=generator) * 0.1
    item = torch.randn(n_items, cfg.surrogate_dim, generator=generator) * 0.1
    with torch.no_grad():
        weights = torch.as_tensor(np.vstack([observed, fake_observed]))
        ratings = torch.as_tensor(np.vstack([genuine, fake]))
        user, item = als_sweeps(user, item, weights, ratings, cfg.surrogate_l2, sweeps)
    scores = (user[:n_gen] @ item.T).numpy()
    eligible = 1.0 - observed[:, targets]
    utility = float((scores[:, targets] * eligible).sum() / eligible.sum())
    scores[observed > 0] = -np.inf
    rank = (scores[:, None, :] > scores[:, targets][:, :, None]).sum(axis=2)  # (n_gen, n_targets)
    hr = float(((rank < 50) * eligible).sum() / eligible.sum())
    return utility, hr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="10,11,12")
    parser.add_argument("--steps", default="0,20", help="pga_steps values")
    parser.add_argument("--budget", type=float, default=0.01)
    parser.add_argument("--sweeps", type=int, default=20, help="ALS sweeps of the evaluation fit")
    parser.add_argument("--opt", action="append", default=[], help="attack option key=value")
    args = parser.parse_args()
    options = dict(pair.split("=", 1) for pair in args.opt)
    plan = make_plan(CellSpec(backbone="mf", attack="pga", protocol="apt",
                              protocol_options={"budget": str(args.budget)}, attack_options=options))
    _, data = load(plan)
    print(f"options {options or 'default'}, budget {args.budget}, evaluation fit {args.sweeps} sweeps")
    print("seed steps | trace first -> last | relaxed util  hr | discrete util  hr | filler rating  popularity")
    for seed in (int(s) for s in args.seeds.split(",")):
        prepared = prepare(data, plan.protocol, seed)
        train = prepared.train
        genuine, observed = dense_ratings(train)
        counts = observed.sum(axis=0)
        for steps in (int(s) for s in args.steps.split(",")):
            ctx = attack_context(plan, prepared, seed)
            attack = type(plan.attack)(build_config(type(plan.attack.config),
                                                    {**options, "pga_steps": str(steps)}, "attack"))
            targets = np.unique(ctx.targets)
            trace: list[float] = []
            relaxed = attack.optimise(train, targets, ctx.n_fake, ctx.filler_size, ctx.rng, trace)
            profiles = discrete_profiles(train, relaxed, targets, ctx.filler_size, ctx.rng)
            if attack.config.filler_rating == "max":     # as PGAAttack.poison
                profiles.rating[:] = train.rating_max
            fake = np.zeros_like(relaxed)
            fake_observed = np.zeros_like(relaxed)
            fake[profiles.user, profiles.item] = profiles.rating
            fake_observed[profiles.user, profiles.item] = 1.0
            cfg = attack.config
            r_util, r_hr = surrogate_utility(genuine, observed, relaxed, np.ones_like(relaxed), targets,
                                             cfg, args.sweeps)
            d_util, d_hr = surrogate_utility(genuine, observed, fake, fake_observed, targets, cfg,
                                             args.sweeps)
            fillers = ~np.isin(profiles.item, targets)
            span = f"{trace[0]:.4f} -> {trace[-1]:.4f}" if trace else "-"
            print(f"{seed:4d} {steps:5d} | {span:>16} | {r_util:12.4f} {r_hr:.3f} | {d_util:13.4f} "
                  f"{d_hr:.3f} | {profiles.rating[fillers].mean():13.3f} "
                  f"{counts[profiles.item[fillers]].mean():10.1f}")


if __name__ == "__main__":
    main()
