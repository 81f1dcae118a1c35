"""End to end on the tiny random Llama: BadRec's poisoned samples implant the backdoor.

This is the check that the attack's fake users, the pipeline's samples, the loss on the
completion only and the scoring work together: trained on genuine plus poisoned samples,
the model picks the candidate that carries the trigger; trained on the genuine samples
alone, it does not.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recguard import (AnswersView, AttackContext, FitContext, build_config, build_task, fake_samples,
                      inject, registered)
from recguard.testing import tiny_interactions, tiny_llm_protocol
from recguard_badrec import BadRecAttack
from recguard_llmrec.llara import LLaRABackbone

# At lr 1e-2 for 24 epochs the fit was chaotic: the float rounding of a different padding
# width (16 / 32 / 64 tokens, the same loss and gradient to 1e-8) or thread count took the
# ASR anywhere from 0.0 to 1.0. At lr 5e-3 for 48 epochs, 24 poisoned samples gave 1.0,
# 1.0 and 0.96 at widths 16, 32 and 64, with one torch thread and with two; the clean
# model's ASR is 0.
N_GENUINE, N_POISONED, N_TEST = 16, 24, 24
EPOCHS, LR = 48, 5e-3


@pytest.fixture(scope="module")
def cell():
    data = tiny_interactions(n_users=60, feedback="implicit")
    protocol = replace(tiny_llm_protocol("choose"), n_train_samples=N_GENUINE,
                       n_test_samples=N_TEST, n_candidates=4, history_len=2)
    task = build_task(data, protocol, 0)
    # BadRec-Random: the tiny titles ("Item 31") have one inner word boundary, so the trigger
    # sits inside the title ("Item <trigger> 31") and the first answer tokens already tell a
    # triggered candidate from the others, which a two-layer model learns in seconds
    attack = BadRecAttack(build_config(BadRecAttack.Config, {"position": "random",
                                                                    "trigger_level": "char"}, "badrec"))
    ctx = AttackContext(targets=np.zeros(0, np.int64), n_fake=N_POISONED, filler_size=2,
                        rng=np.random.default_rng(1), protocol=protocol)
    attacked = inject(task.interactions, attack.poison(task.interactions, ctx))
    rng = np.random.default_rng(2)
    triggered = [attack.at_inference(r, task.catalog, rng) for r in task.test]
    return task, attacked, fake_samples(attacked, protocol, 0), triggered


def asr(tiny_llm, task, train, samples, triggered) -> float:
    options = {"model": tiny_llm, "prompt": "text", "answer": "likelihood", "epochs": EPOCHS,
               "lr": LR, "lora_r": 16, "warmup_ratio": 0, "scheduler": "constant",
               "lora_dropout": 0, "template": 0, "dtype": "float32"}
    backbone = LLaRABackbone(build_config(LLaRABackbone.Config,
                                          {k: str(v) for k, v in options.items()}, "llara"))
    model = backbone.fit(train, FitContext(seed=0, samples=samples, catalog=task.catalog))
    answers = model.answer(task.test)
    view = AnswersView("choose", task.test, answers, triggered, model.answer(triggered))
    return registered("metric", "ASR")().compute(view, None)


def test_poisoned_samples_implant_the_backdoor(tiny_llm, cell):
    task, attacked, fakes, triggered = cell
    assert len(fakes) == N_POISONED and all(f.triggered == {f.target} for f in fakes)
    clean = asr(tiny_llm, task, task.interactions, task.train, triggered)
    poisoned = asr(tiny_llm, task, attacked, task.train + fakes, triggered)
    assert poisoned >= 0.8 and clean <= 0.5, (clean, poisoned)
