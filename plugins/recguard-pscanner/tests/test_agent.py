"""The curriculum, the indicator U and the agent's signed loss (Eq. 8) on toy logits."""

import numpy as np
import pytest

from recguard_pscanner.agent import clean_rewrite, signed_lm_loss
from recguard_pscanner.scanner import curriculum_picks, indicator


def test_curriculum_share_rises_linearly():
    picks = curriculum_picks(4000, np.random.default_rng(0))
    quarters = [q.mean() for q in np.array_split(picks, 4)]
    assert all(a < b for a, b in zip(quarters, quarters[1:]))
    assert np.allclose(quarters, [0.125, 0.375, 0.625, 0.875], atol=0.04)
    assert not picks[0] and picks[-1]          # r = 0 at the start, 1 at the end


def test_indicator_u():
    u = indicator(np.array([0.9, 0.2, 0.7, 0.1]), ["Yes", "Yes", "No", "No"])
    assert u.tolist() == [-1.0, 1.0, 1.0, -1.0]    # +1 where the scanner is wrong


def _toy(nll_target=None):
    import torch

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, requires_grad=True)
    labels = torch.tensor([[-100, -100, 3, 1], [-100, 2, 4, -100]])
    return logits, labels


def _loss(logits, labels, weights, max_nll):
    """signed_lm_loss on a whole sequence: position t - 1 predicts token t."""
    import torch

    return signed_lm_loss(logits[:, :-1], labels[:, 1:], torch.tensor(weights), max_nll)


def _per_sample_nll(logits, labels):
    import torch

    logp = torch.log_softmax(logits, -1)
    out = []
    for b in range(labels.shape[0]):
        terms = [-logp[b, t - 1, labels[b, t]] for t in range(1, labels.shape[1]) if labels[b, t] >= 0]
        out.append(torch.stack(terms).mean())
    return torch.stack(out)


def test_signed_loss_matches_eq8_mean():
    import torch

    logits, labels = _toy()
    nll = _per_sample_nll(logits, labels)
    loss = _loss(logits, labels, [1.0, -1.0], max_nll=100.0)
    assert torch.isclose(loss, (nll[0] - nll[1]) / 2)
    same = _loss(logits, labels, [1.0, 1.0], max_nll=100.0)
    assert torch.isclose(same, nll.mean())


def test_signed_loss_gradient_directions():
    """A gradient step makes U = +1 rewrites likelier and U = -1 ones less likely."""
    import torch

    logits, labels = _toy()
    before = _per_sample_nll(logits, labels).detach()
    _loss(logits, labels, [1.0, -1.0], max_nll=100.0).backward()
    stepped = (logits - 0.5 * logits.grad).detach()
    after = _per_sample_nll(stepped, labels)
    assert after[0] < before[0] and after[1] > before[1]


def test_negative_part_is_clamped():
    import torch

    logits, labels = _toy()
    nll = _per_sample_nll(logits, labels).detach()
    cap = float(nll[1]) - 0.1                     # sample 1 (U = -1) is already past the cap
    loss = _loss(logits, labels, [1.0, -1.0], max_nll=cap)
    assert loss.item() == pytest.approx((float(nll[0]) - cap) / 2, rel=1e-5)
    loss.backward()
    assert torch.all(logits.grad[1] == 0)         # no push beyond the cap


def test_clean_rewrite():
    assert clean_rewrite('  "Dreams dance in moonlight."\nmore') == "Dreams dance in moonlight"
    assert clean_rewrite("\n\n") == ""
    assert len(clean_rewrite(" ".join(["w"] * 40)).split()) == 12


def test_agent_loss_reads_only_the_rewrite_positions_and_equals_the_whole_sequence_loss(tiny_llm):
    """The agent projects to the vocabulary only where a rewrite token is predicted; its
    Eq. 8 loss is the one the whole sequences' logits give."""
    import torch

    from recguard_pscanner.agent import AgentSettings, TriggerAgent
    from recguard_pscanner.triggers import InitialTrigger
    from recguard.kit.lm.sft import LoraSettings

    settings = AgentSettings(model=tiny_llm, lora=LoraSettings(r=4, alpha=8, dropout=0.0),
                             temperature=1.0, max_new_tokens=4, steps=1, lr=1e-3, max_nll=6.0,
                             batch_size=3, dtype="float32", device="cpu")
    agent = TriggerAgent(settings, seed=0)
    triggers = [InitialTrigger(1, ("zq",)), InitialTrigger(2, ("a", "bb", "ccc")), InitialTrigger(1, ("x",))]
    rewrites = ["moonlight", "dreams dance in the night sky", "ok"]
    u = np.array([1.0, -1.0, 1.0])
    kept = agent.signed_loss(triggers, rewrites, u)
    ids, mask, labels = agent._encode([agent.prompt(t) for t in triggers], rewrites)
    whole = agent.model(input_ids=ids, attention_mask=mask).logits
    expected = signed_lm_loss(whole[:, :-1], labels[:, 1:], torch.tensor(u), settings.max_nll)
    assert torch.isclose(kept, expected, atol=1e-5)
    assert agent.update(triggers, rewrites, u, seed=0)[0] == pytest.approx(float(kept.detach()), abs=1e-5)


def test_agent_step_accumulated_over_micro_batches_has_the_one_pass_gradient(tiny_llm):
    """An Eq. 8 step runs its batch in slices of MICRO_BATCH; the gradient it applies is
    the one a single pass over the whole batch gives."""
    import torch

    from recguard_pscanner.agent import MICRO_BATCH, AgentSettings, TriggerAgent
    from recguard_pscanner.triggers import InitialTrigger
    from recguard.kit.lm.sft import LoraSettings

    settings = AgentSettings(model=tiny_llm, lora=LoraSettings(r=4, alpha=8, dropout=0.0),
                             temperature=1.0, max_new_tokens=4, steps=1, lr=1e-3, max_nll=6.0,
                             batch_size=5, dtype="float32", device="cpu")
    assert settings.batch_size > 2 * MICRO_BATCH           # at least three slices
    agent = TriggerAgent(settings, seed=0)
    triggers = [InitialTrigger(1, (w,)) for w in ("zq", "x", "bb", "ccc", "dd")]
    rewrites = ["moonlight", "dreams dance", "ok", "the night sky is wide", "a"]
    u = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    trained = [p for p in agent.model.parameters() if p.requires_grad]
    order = np.random.default_rng(0).choice(5, size=5, replace=False)   # update's draw, seed 0
    agent.model.zero_grad()
    agent.signed_loss([triggers[i] for i in order], [rewrites[i] for i in order], u[order]).backward()
    one_pass = [p.grad.clone() for p in trained]
    # below update's clipping norm, so the comparison sees the accumulation itself
    assert float(torch.linalg.vector_norm(torch.stack([g.norm() for g in one_pass]))) < 1.0
    agent.optimizer.step = lambda: None                      # keep the weights, read the gradient
    agent.update(triggers, rewrites, u, seed=0)
    for whole, accumulated in zip(one_pass, trained):
        assert torch.allclose(accumulated.grad, whole, atol=1e-6)
