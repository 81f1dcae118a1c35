"""What the two LLM backbones share: their common options, loading the LM, the LoRA and
training settings handed to `recguard.kit.lm.sft.fine_tune`, and quoting titles.

torch and transformers are imported only inside functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Sequence

from recguard import Config, RecguardError, param


@dataclass
class LLMRecConfig(Config):
    """Options of both backbones; each subclass re-declares the defaults of its paper."""

    model: str | None = param(None, "causal LM: None = the packaged SmolLM2-135M-Instruct, or a "
                                    "local Hugging Face folder, or a hub id (the papers: LLaMA-7B "
                                    "/ LLaMA2-7B)")
    dtype: Literal["auto", "float32", "bfloat16", "float16", "mixed"] = param(
        "auto", "weights' dtype; auto: bfloat16 where the device computes it natively (a GPU, "
                "a CPU with AMX), else float32; mixed: float32 weights under bf16 autocast")
    device: str = param("auto", "cpu, cuda, cuda:1 ... or auto (cuda when there is one; the local "
                                "rank's GPU under accelerate launch)")
    batch_size: int = param(8, "prompts per forward pass when answering (the answers are the "
                               "same at 8, 16 and 32; on 2 CPU cores the larger ones answered "
                               "at most a sixth faster, and held more memory: "
                               "docs/main_cell.md)", low=1)
    lora_r: int = param(8, "LoRA rank", low=1)
    lora_alpha: int = param(16, "LoRA alpha", low=1)
    lora_dropout: float = param(0.05, "LoRA dropout", low=0, high=1, open_high=True)
    target_modules: tuple[str, ...] = param(("q_proj", "v_proj"), "modules LoRA adapts")
    epochs: float = param(1.0, "training epochs over ctx.samples", low=0, open_low=True)
    lr: float = param(1e-4, "peak learning rate", low=0, open_low=True)
    train_batch_size: int = param(4, "samples per training step (per device)", low=1)
    grad_accum: int = param(1, "gradient accumulation steps", low=1)
    max_length: int = param(768, "longest prompt + completion in tokens; a longer sample is an "
                                 "error, not silently cut", low=8)
    warmup_ratio: float = param(0.0, "share of the steps spent warming the learning rate up",
                                low=0, high=1, open_high=True)
    scheduler: str = param("linear", "learning-rate schedule (transformers' names: linear, "
                                     "cosine, constant, ...)")
    merge_lora: bool = param(True, "answer with the LoRA weights merged into the base weights "
                                   "(about 30% faster on a CPU; the same model up to the "
                                   "weights' rounding); off: the adapter runs beside them")
    adapter_dir: str | None = param(None, "folder to keep the trained LoRA adapter in (None: a "
                                          "temporary folder, removed after the fit)")


def load_lm(cfg: LLMRecConfig):
    """(model, tokenizer) of ``cfg.model`` on ``cfg.device`` (`recguard.kit.lm.models.load_causal_lm`:
    "auto" is this process's GPU under accelerate launch, else the CPU)."""
    from recguard.kit.lm.models import load_causal_lm

    return load_causal_lm(cfg.model, dtype=cfg.dtype, device=cfg.device)


def lora_settings(cfg: LLMRecConfig, modules_to_save: Sequence[str] = ()):
    from recguard.kit.lm.sft import LoraSettings

    return LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                        target_modules=tuple(cfg.target_modules),
                        modules_to_save=tuple(modules_to_save))


def train_settings(cfg: LLMRecConfig, shuffle: bool = True, epochs: float | None = None):
    from recguard.kit.lm.sft import TrainSettings

    return TrainSettings(epochs=cfg.epochs if epochs is None else epochs, lr=cfg.lr,
                         batch_size=cfg.train_batch_size, grad_accum=cfg.grad_accum,
                         max_length=cfg.max_length, warmup_ratio=cfg.warmup_ratio,
                         scheduler=cfg.scheduler, shuffle=shuffle)


def tune(cfg: LLMRecConfig, lm, tokenizer, prompts: Sequence[str], completions: Sequence[str],
         ctx, name: str, lora, train, added_weights: bool = False):
    """LoRA SFT of ``lm`` on the rendered samples (`recguard.kit.lm.sft.fine_tune`, adapter
    checked), after refusing samples too long to train whole; or, when ``ctx.use_cache``, the
    adapter an identical fine-tune saved (`recguard.kit.lm.adapters`). Records the phase in
    ``ctx.timings`` ("train", or "load_adapter" when reused) and returns the tuned model.
    ``added_weights``: the caller changed ``lm``'s input embeddings (LLaRA's hybrid prompt),
    so their values are part of what identifies the fine-tune."""
    from recguard.kit.lm.adapters import reusable_fine_tune

    check_lengths(tokenizer, prompts, completions, cfg.max_length, name)
    clock = time.perf_counter()
    tuned, reused = reusable_fine_tune(
        lm, tokenizer, prompts, completions, identity=fit_identity(cfg, lm, ctx, added_weights),
        lora=lora, train=train, seed=ctx.seed, progress=ctx.progress,
        adapter_dir=cfg.adapter_dir, label=name)
    ctx.timings["load_adapter" if reused else "train"] = round(time.perf_counter() - clock, 2)
    return tuned


def fit_identity(cfg: LLMRecConfig, lm, ctx, added_weights: bool) -> dict | None:
    """What names the model a fit tunes, for the adapter cache; None when the cell asks
    for no caches."""
    if not ctx.use_cache:
        return None
    from recguard.kit.lm.adapters import tensors_digest
    from recguard.kit.lm.models import model_identity, precision_name, resolve_device

    identity = {"model": model_identity(cfg.model), "device": resolve_device(cfg.device).split(":")[0],
                "dtype": precision_name(cfg.dtype, cfg.device)}
    if added_weights:
        identity["input_embeddings"] = tensors_digest(lm.get_input_embeddings().state_dict().values())
    return identity


def for_answering(cfg: LLMRecConfig, tuned):
    """The fitted model answers with: ``tuned`` with its LoRA merged (``merge_lora``), or as is."""
    from recguard.kit.lm.sft import merged_lora

    return merged_lora(tuned) if cfg.merge_lora else tuned


def check_lengths(tokenizer, prompts: Sequence[str], completions: Sequence[str], max_length: int,
                  what: str) -> None:
    """SFT truncates on the right, which would cut the completion (the only trained part):
    refuse a sample longer than ``max_length`` tokens instead (+1 for the end token)."""
    longest, worst = 0, 0
    for i, (p, c) in enumerate(zip(prompts, completions)):
        n = len(tokenizer(p + c, add_special_tokens=False)["input_ids"]) + 1
        if n > longest:
            longest, worst = n, i
    if longest > max_length:
        raise RecguardError(f"{what}: training sample {worst} has {longest} tokens, more than "
                            f"max_length={max_length}; raise max_length or shorten the histories")


def quoted(titles: Sequence[str]) -> str:
    """``"T1", "T2"`` (TALLRec's listing of titles)."""
    return ", ".join(f'"{t}"' for t in titles)


def require_samples(samples, task: str, name: str) -> list:
    """The training samples of ``ctx``, checked to carry the answers this task trains on."""
    if not samples:
        raise RecguardError(f"{name} is fitted on the LLM training samples (ctx.samples), and "
                            f"none were given; run it under an LLM protocol")
    for s in samples:
        if task == "yes_no" and s.label is None:
            raise RecguardError(f"{name}: a yes_no training sample (user {s.user}) has no label")
    return list(samples)


def fit_catalog(ctx, train) -> list[str]:
    """The titles a fit prompts with, by item index: ``ctx.catalog`` (the protocol's titles, set by the pipeline),
    else the training data's item texts."""
    catalog = ctx.catalog
    if catalog is None:
        catalog = getattr(train, "item_text", None)
    if catalog is None:
        raise RecguardError("an LLM recommender needs item titles: the dataset has none and the "
                            "pipeline gave no catalog")
    return [str(t) for t in catalog]
