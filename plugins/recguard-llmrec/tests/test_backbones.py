"""Fits and answers on the tiny random LM (seconds each)."""

import numpy as np
import pytest

from recguard import FitContext, RecguardError, Request, build_config
from recguard.kit.lm.models import load_causal_lm
from recguard.testing import tiny_interactions

import recguard_llmrec.llara as llara
from recguard_llmrec.hybrid import install_hybrid, item_token, projector_parameters
from recguard_llmrec.llara import LLaRABackbone
from recguard_llmrec.tallrec import TALLRecBackbone


@pytest.fixture(scope="module")
def data():
    return tiny_interactions(feedback="implicit")


def requests(data, n, seed=0, yes_no=False):
    rng = np.random.default_rng(seed)
    out = []
    for u in range(n):
        items = [int(i) for i in rng.choice(data.n_items, 8, replace=False)]
        if yes_no:
            out.append(Request(user=u, history=tuple(items[:4]), candidates=(items[7],),
                               target=items[7], disliked=tuple(items[4:6]), label=bool(u % 2)))
        else:
            out.append(Request(user=u, history=tuple(items[:4]), candidates=tuple(items[4:]),
                               target=items[5]))
    return out


def context(data, samples, seed=0):
    ctx = FitContext(seed=seed, samples=samples)
    ctx.catalog = list(data.item_text)
    return ctx


def test_hybrid_embedding_replaces_exactly_the_slots(tiny_llm):
    import torch

    lm, tokenizer = load_causal_lm(tiny_llm, dtype="float32")
    base = lm.get_input_embeddings()
    tied = lm.get_output_embeddings().weight is base.weight
    vectors = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    first = install_hybrid(lm, tokenizer, vectors)
    emb = lm.get_input_embeddings()
    assert first == base.num_embeddings and lm.config.vocab_size == base.num_embeddings
    assert emb.weight is base.weight                               # shared, not copied
    assert (lm.get_output_embeddings().weight is base.weight) == tied  # a tie survives
    ids = torch.tensor([tokenizer(f"Heat {item_token(3)}, Fargo {item_token(0)}",
                                  add_special_tokens=False)["input_ids"]])
    slots = ids >= first
    assert slots.sum() == 2
    out = emb(ids)
    assert torch.equal(out[~slots], base.weight[ids[~slots]])
    projected = emb.projector(torch.as_tensor(vectors[[3, 0]]))
    assert torch.allclose(out[slots], projected)
    out[slots].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in emb.projector.parameters())


def test_hybrid_projector_trains_in_float32_under_bf16_weights(tiny_llm):
    import torch

    lm, tokenizer = load_causal_lm(tiny_llm, dtype="bfloat16")
    install_hybrid(lm, tokenizer, np.ones((3, 4), dtype=np.float32))
    emb = lm.get_input_embeddings()
    assert all(p.dtype == torch.float32 for p in emb.projector.parameters())
    ids = torch.tensor([tokenizer(f"Heat {item_token(2)}", add_special_tokens=False)["input_ids"]])
    assert emb(ids).dtype == torch.bfloat16


def test_llara_hybrid_fit_trains_the_projector(tiny_llm, data, monkeypatch):
    import torch

    installed = {}

    def spy(lm, tokenizer, vectors):
        first = install_hybrid(lm, tokenizer, vectors)
        installed.update({k: p.detach().clone() for k, p in projector_parameters(lm).items()})
        return first

    monkeypatch.setattr(llara, "install_hybrid", spy)
    cfg = build_config(LLaRABackbone.Config, {"model": tiny_llm, "sasrec_epochs": 1, "epochs": 2,
                                              "max_new_tokens": 8, "curriculum": False,
                                              "merge_lora": False}, "llara")
    samples = requests(data, 8)
    model = LLaRABackbone(cfg).fit(data, context(data, samples))
    trained = projector_parameters(model.lm)
    assert len(trained) == len(installed) == 4
    assert all("modules_to_save" in name for name in trained)
    assert any(not torch.equal(a.detach(), b) for a, b in zip(trained.values(), installed.values()))
    answers = model.answer(samples[:4])
    assert len(answers) == 4
    assert all(a.choice is None or a.choice in r.candidates for a, r in zip(answers, samples))


def test_llara_merged_lora_answers_as_the_adapter_does(tiny_llm, data):
    """merge_lora (the default) folds the adapter and the trained projector into the base
    model: no LoRA module is left, and in float32 its logits are the adapter's."""
    import torch

    from recguard.kit.lm.generation import pad_batch
    from recguard.kit.lm.sft import merged_lora

    cfg = build_config(LLaRABackbone.Config, {"model": tiny_llm, "sasrec_epochs": 1, "epochs": 2,
                                              "max_new_tokens": 8, "curriculum": False,
                                              "merge_lora": False, "lr": 1e-2,
                                              "dtype": "float32"}, "llara")
    samples = requests(data, 8)
    model = LLaRABackbone(cfg).fit(data, context(data, samples))
    encoded = [model.tokenizer(p, add_special_tokens=False)["input_ids"]
               for p in model.prompts(samples[:4])]
    ids, mask = pad_batch(model.tokenizer, encoded, "cpu")
    with torch.no_grad():
        adapter = model.lm(input_ids=ids, attention_mask=mask).logits
        base = model.lm.get_base_model()
        with model.lm.disable_adapter():
            untuned = model.lm(input_ids=ids, attention_mask=mask).logits
        merged = merged_lora(model.lm)
        folded = merged(input_ids=ids, attention_mask=mask).logits
    assert merged is base
    assert not any("lora_" in name or "modules_to_save" in name
                   for name, _ in merged.named_parameters())
    effect = (adapter - untuned).abs().max()
    assert effect > 0.05                                           # the adapter changes the logits
    # the merged model gives the adapter's logits: to 1e-6 with the current versions; under
    # the lower bounds (peft 0.12, trl 0.18), after another fine-tune in the same process,
    # to 2.6e-3 (not explained; autocast and matmul precision were ruled out)
    assert (folded - adapter).abs().max() < 0.02 * effect
    default = LLaRABackbone(build_config(LLaRABackbone.Config, {
        "model": tiny_llm, "sasrec_epochs": 1, "epochs": 1, "max_new_tokens": 8},
        "llara")).fit(data, context(data, samples))
    assert not any("lora_" in name for name, _ in default.lm.named_parameters())   # merged


def test_llara_hybrid_trains_its_sasrec_on_the_llm_device(tiny_llm, data, monkeypatch):
    import torch

    from recguard_llmrec.hybrid import sasrec_item_vectors

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    auto = sasrec_item_vectors(data, 0, 1, 8)                  # device=auto: the CPU here
    np.testing.assert_array_equal(auto, sasrec_item_vectors(data, 0, 1, 8, device="cpu"))
    with pytest.raises(RecguardError, match="cuda"):
        sasrec_item_vectors(data, 0, 1, 8, device="cuda")
    asked = []

    class Stop(Exception):
        pass

    def spy(train, seed, epochs, dim, device="auto"):
        asked.append(device)
        raise Stop                                             # enough: the LM is not tuned

    monkeypatch.setattr(llara, "sasrec_item_vectors", spy)
    cfg = build_config(LLaRABackbone.Config, {"model": tiny_llm, "device": "cpu"}, "llara")
    with pytest.raises(Stop):
        LLaRABackbone(cfg).fit(data, context(data, requests(data, 2)))
    assert asked == ["cpu"]


def test_llara_text_likelihood_round_trip(tiny_llm, data):
    cfg = build_config(LLaRABackbone.Config, {"model": tiny_llm, "prompt": "text",
                                              "answer": "likelihood"}, "llara")
    samples = requests(data, 6)
    progress = []
    model = LLaRABackbone(cfg).fit(data, context(data, samples))
    tests = requests(data, 3, seed=1)
    first = model.answer(tests, lambda done, total: progress.append((done, total)))
    assert all(a.choice in r.candidates for a, r in zip(first, tests))  # always valid
    assert [a.choice for a in first] == [a.choice for a in model.answer(tests)]
    assert progress and progress[-1][0] == progress[-1][1]
    assert "<|item_" not in model.prompts(tests)[0]


def test_tallrec_round_trip(tiny_llm, data):
    cfg = build_config(TALLRecBackbone.Config, {"model": tiny_llm, "epochs": 1}, "tallrec")
    samples = requests(data, 6, yes_no=True)
    steps = []
    model = TALLRecBackbone(cfg).fit(data, context(data, samples))
    tests = requests(data, 5, seed=2, yes_no=True)
    tests[0] = tests[0].with_titles({tests[0].target: "Item trigger cf"})
    assert '"Item trigger cf"?' in model.prompts(tests)[0]
    p = np.array([a.p_yes for a in model.answer(tests, lambda d, t: steps.append(d))])
    assert p.shape == (5,) and np.all((p >= 0) & (p <= 1)) and steps[-1] == 5


def test_bad_input_is_one_line(tiny_llm, data):
    with pytest.raises(RecguardError, match="ctx.samples"):
        TALLRecBackbone(build_config(TALLRecBackbone.Config, {"model": tiny_llm}, "tallrec")
                        ).fit(data, FitContext(seed=0))
    cfg = build_config(LLaRABackbone.Config, {"model": tiny_llm, "template": 7}, "llara")
    with pytest.raises(RecguardError, match="template"):
        LLaRABackbone(cfg).fit(data, context(data, requests(data, 2)))
    cfg = build_config(LLaRABackbone.Config, {"model": tiny_llm, "prompt": "text",
                                              "max_length": 20}, "llara")
    with pytest.raises(RecguardError, match="max_length"):
        LLaRABackbone(cfg).fit(data, context(data, requests(data, 2)))


def test_llara_reuses_the_adapter_of_an_identical_fit(tiny_llm, data, fresh_cache):
    """A second identical hybrid fit loads the saved adapter, its trained projector included,
    and answers as the first; a fit told not to use caches trains again."""
    import torch

    cfg = build_config(LLaRABackbone.Config, {"model": tiny_llm, "sasrec_epochs": 1, "epochs": 2,
                                              "max_new_tokens": 8, "curriculum": False,
                                              "lr": 1e-2}, "llara")
    samples = requests(data, 8)
    first_ctx, again_ctx = context(data, samples), context(data, samples)
    first = LLaRABackbone(cfg).fit(data, first_ctx)
    again = LLaRABackbone(cfg).fit(data, again_ctx)
    assert "train" in first_ctx.timings and "load_adapter" not in first_ctx.timings
    assert "load_adapter" in again_ctx.timings and "train" not in again_ctx.timings
    for (name, a), (_, b) in zip(first.lm.named_parameters(), again.lm.named_parameters()):
        assert torch.equal(a, b), name
    assert ([a.choice for a in first.answer(samples)] == [a.choice for a in again.answer(samples)])
    off = context(data, samples)
    off.use_cache = False
    LLaRABackbone(cfg).fit(data, off)
    assert "train" in off.timings
    other = context(data, samples, seed=1)            # another seed: another SASRec, another fit
    LLaRABackbone(cfg).fit(data, other)
    assert "train" in other.timings
