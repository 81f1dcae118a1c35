"""recguard.kit.lm.adapters: an identical fine-tune loads the adapter the first one saved, and
answers as it did; anything that changes training trains again."""

import numpy as np
import pytest

from recguard.kit.lm import adapters, generation, sft
from recguard.kit.lm.models import load_causal_lm

PROMPTS = ["Q: is it red? A:", "Q: is it blue? A:"] * 4
COMPLETIONS = [" Yes", " No"] * 4
LORA = sft.LoraSettings(r=4, alpha=8, target_modules=("q_proj", "v_proj"))
TRAIN = sft.TrainSettings(epochs=2, lr=3e-2, batch_size=4)
IDENTITY = {"model": "tiny", "dtype": "float32"}


def tune(tiny_llm, completions=COMPLETIONS, identity=IDENTITY, seed=0, **kw):
    model, tok = load_causal_lm(tiny_llm)
    tuned, reused = adapters.reusable_fine_tune(model, tok, PROMPTS, completions, identity=identity,
                                                lora=LORA, train=TRAIN, seed=seed, **kw)
    scores = generation.completion_logprob(tuned, tok, PROMPTS[:2], [" Yes", " No"])
    return scores, reused


def test_a_second_identical_fine_tune_reuses_the_adapter_and_answers_the_same(tiny_llm, fresh_cache):
    first, reused_first = tune(tiny_llm)
    again, reused_again = tune(tiny_llm)
    assert (reused_first, reused_again) == (False, True)
    np.testing.assert_array_equal(first, again)
    assert len(list((fresh_cache / "adapters").iterdir())) == 1


@pytest.mark.parametrize("change", [
    {"completions": [" No", " Yes"] * 4},          # other training data
    {"seed": 1},
    {"identity": {"model": "tiny", "dtype": "bfloat16"}},
])
def test_anything_that_changes_training_trains_again(tiny_llm, fresh_cache, change):
    tune(tiny_llm)
    _, reused = tune(tiny_llm, **change)
    assert not reused
    assert len(list((fresh_cache / "adapters").iterdir())) == 2


def test_no_identity_neither_reads_nor_writes_the_cache(tiny_llm, fresh_cache, tmp_path):
    tune(tiny_llm)
    _, reused = tune(tiny_llm, identity=None, adapter_dir=tmp_path / "kept")
    assert not reused and sft.check_adapter(tmp_path / "kept") > 0
    assert len(list((fresh_cache / "adapters").iterdir())) == 1


def test_a_reused_adapter_is_also_left_where_the_caller_asked(tiny_llm, fresh_cache, tmp_path):
    tune(tiny_llm)
    _, reused = tune(tiny_llm, adapter_dir=tmp_path / "kept")
    assert reused and sft.check_adapter(tmp_path / "kept") > 0


def test_a_failed_fine_tune_leaves_no_adapter_behind(tiny_llm, fresh_cache, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(sft, "fine_tune", broken)
    with pytest.raises(RuntimeError):
        tune(tiny_llm)
    assert list((fresh_cache / "adapters").iterdir()) == []


def test_the_digest_of_added_weights_follows_their_values():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert adapters.tensors_digest([a]) == adapters.tensors_digest([a.copy()])
    assert adapters.tensors_digest([a]) != adapters.tensors_digest([a + 1])
    assert adapters.tensors_digest([a]) != adapters.tensors_digest([a.reshape(3, 2)])


def test_an_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    from recguard import atomic_folder

    target = tmp_path / "cache" / "entry"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_folder(target) as tmp:
        (tmp / "a").write_text("first")
    with atomic_folder(target) as tmp:              # a second writer of the same key: theirs stays
        (tmp / "a").write_text("second")
    assert (target / "a").read_text() == "first" and list(target.parent.iterdir()) == [target]
