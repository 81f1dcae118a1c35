"""Supervised fine-tuning of causal LMs with LoRA, shared by every LLM plugin.

`fine_tune` is supervised fine-tuning with LoRA through TRL's ``SFTTrainer``
and PEFT (prompt / completion pairs, loss on the completion only), so the same
code runs under ``accelerate launch`` on several GPUs. After training the
adapter is saved and checked: some peft versions silently save an adapter
without weights (a few hundred bytes), which leaves the model untrained and
gives AUC 0.5 (TALLRec's known trap).

torch, transformers, trl and peft are imported inside the functions; the batched
queries of a fitted model are in `recguard.kit.lm.generation`.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from recguard.errors import RecguardError
from recguard.memory import release_memory
from recguard.kit.lm.generation import LENGTH_MULTIPLE, Progress, no_progress


@dataclass(frozen=True)
class LoraSettings:
    """peft ``LoraConfig`` fields."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    modules_to_save: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainSettings:
    """How `fine_tune` trains. ``shuffle=False`` keeps the order given (curricula)."""

    epochs: float = 1.0
    lr: float = 1e-4
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512
    warmup_ratio: float = 0.0
    scheduler: str = "linear"
    shuffle: bool = True


# ---------------------------------------------------------------- training


def lora_config(lora: LoraSettings):
    """peft's ``LoraConfig`` for a causal LM from ``lora``."""
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules),
                      modules_to_save=list(lora.modules_to_save) or None, task_type="CAUSAL_LM")


@contextmanager
def _no_checkpointing_deprecation():
    """trl and peft read transformers' deprecated ``is_gradient_checkpointing``: not ours to
    fix, and not the user's to see."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def with_lora(model, lora: LoraSettings):
    """``model`` with a fresh trainable LoRA adapter, for a plugin's own training loop."""
    from peft import get_peft_model

    with _no_checkpointing_deprecation():
        return get_peft_model(model, lora_config(lora))


def load_lora(model, folder: str | os.PathLike):
    """``model`` with the LoRA adapter saved in ``folder`` (peft's ``save_pretrained``)."""
    from peft import PeftModel

    with _no_checkpointing_deprecation():
        return PeftModel.from_pretrained(model, str(folder))


def merged_lora(model):
    """A fine-tuned peft model with its LoRA weights folded into the base weights (and its
    ``modules_to_save`` copies put in place), for answering; any other model as it is.

    An unmerged adapter runs beside every adapted projection, in float32, on each forward:
    on a CPU, merged weights answer a LLaRA batch about 30% faster (prefill and decoding;
    docs/main_cell.md). The merged model is the same function up to the rounding of
    ``W + scale * B @ A`` to the weights' dtype."""
    if not hasattr(model, "merge_and_unload"):
        return model
    with _no_checkpointing_deprecation():
        merged = model.merge_and_unload()
    merged.eval()
    release_memory()
    return merged


def _progress_callback(progress: Progress):
    from transformers import TrainerCallback

    from recguard.progress import taking_info

    report = taking_info(progress)

    class _Report(TrainerCallback):
        """Steps done and, on a logged step, its training loss."""

        def on_step_end(self, args, state, control, **kwargs):
            if not control.should_log:   # a logged step is reported by on_log, with its loss
                report(state.global_step, state.max_steps)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                report(state.global_step, state.max_steps, loss=logs["loss"])

    return _Report()


def labelled_logits(model, inputs: dict, labels):
    """(logits, targets) at the positions whose next token is labelled in any row:
    ``logits[:, j]`` predicts ``targets[:, j]`` (-100 where a row has no label there). The
    vocabulary projection runs only at those positions (``logits_to_keep``), or, for a
    model without that argument, over every position and is then cut; it runs in float32
    (`float32_head`), so the loss does not see a bf16 head's rounding."""
    from recguard.kit.lm.models import float32_head

    targets = labels[:, 1:]                                   # position t predicts token t + 1
    keep = (targets != -100).any(0).nonzero().squeeze(-1)
    with float32_head(model):
        try:
            logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
        except TypeError as error:
            if "logits_to_keep" not in str(error):
                raise
            logits = model(**inputs, use_cache=False).logits[:, keep]
    return logits, targets[:, keep]


def completion_loss(model, inputs: dict, num_items_in_batch=None):
    """The SFT loss, mean negative log-likelihood of the labelled (completion) tokens, with
    the vocabulary projected only at the positions that predict one.

    trl's fused head scores every position on a device without Triton (a CPU), a float32
    row over the 49,152-token vocabulary for each of a scanner batch's 8 x 64 tokens, when
    a row has one or two completion tokens: a P-Scanner round's fine-tune took 55 s and
    rose 1.9 GB above its start with it, 27 s and 1.0 GB with this. ``num_items_in_batch``
    (the Trainer's count across accumulation steps) divides the sum as in trl.
    """
    import torch

    inputs = dict(inputs)
    logits, kept = labelled_logits(model, inputs, inputs.pop("labels"))
    total = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), kept.reshape(-1),
        ignore_index=-100, reduction="sum")
    count = (kept != -100).sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


def _trainer_class(shuffle: bool):
    from trl import SFTTrainer

    class CompletionSFTTrainer(SFTTrainer):
        """trl's SFT with `completion_loss`; ``shuffle=False`` keeps the samples' order (a
        curriculum is an order)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs:
                raise RecguardError("recguard's SFT loss returns no outputs (evaluation is not "
                                    "run inside fine_tune)")
            loss = completion_loss(model, inputs, num_items_in_batch)
            # as trl: with a token count across ranks, DDP's gradient mean needs the loss x ranks
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return loss

        def _get_train_sampler(self, *args, **kwargs):
            if shuffle:
                return super()._get_train_sampler(*args, **kwargs)
            import torch

            return torch.utils.data.SequentialSampler(self.train_dataset)

    return CompletionSFTTrainer


def check_adapter(folder: str | os.PathLike) -> int:
    """The number of weight values in a saved LoRA adapter; a `RecguardError` if there are none."""
    from safetensors import safe_open

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    count = 0
    for path in files:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    count += int(np.prod(f.get_slice(key).get_shape()))
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
            count += sum(int(t.numel()) for t in state.values())
    if count == 0:
        raise RecguardError(f"the adapter saved in {folder} holds no weights (a known peft trap "
                            f"that leaves the model untrained); check the peft version")
    return count


def fine_tune(model, tokenizer, prompts: Sequence[str], completions: Sequence[str], *,
              lora: LoraSettings, train: TrainSettings, seed: int,
              progress: Progress = no_progress, adapter_dir: str | os.PathLike | None = None,
              label: str = ""):
    """Supervised fine-tuning with LoRA; returns the peft model in eval mode.

    Loss on the completion tokens only. The adapter is saved to ``adapter_dir``
    (a temporary folder, removed after, when None) and checked to hold weights.
    """
    if len(prompts) != len(completions) or not prompts:
        raise RecguardError(f"fine-tuning{' ' + label if label else ''} needs as many prompts as "
                            f"completions and at least one (got {len(prompts)} and {len(completions)})")
    from datasets import Dataset
    from trl import SFTConfig

    from recguard.kit.lm.models import quiet_transformers

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = Dataset.from_dict({"prompt": list(prompts), "completion": list(completions)})
    peft_config = lora_config(lora)
    with tempfile.TemporaryDirectory(prefix="recguard-sft-") as work:
        args = SFTConfig(
            output_dir=work, max_length=train.max_length, completion_only_loss=True,
            **checkpointing_off(SFTConfig), use_cpu=_on_cpu(model),
            num_train_epochs=train.epochs, learning_rate=train.lr,
            per_device_train_batch_size=train.batch_size,
            gradient_accumulation_steps=train.grad_accum,
            **warmup_share(SFTConfig, train.warmup_ratio), lr_scheduler_type=train.scheduler,
            seed=seed, data_seed=seed, save_strategy="no", report_to=[],
            logging_strategy="steps", logging_steps=1,   # each step's loss, for the progress line
            disable_tqdm=True, dataset_num_proc=None, remove_unused_columns=True,
            bf16=_trains_in_bf16(model),
            pad_to_multiple_of=LENGTH_MULTIPLE)   # few shapes: see generation.LENGTH_MULTIPLE
        with quiet_transformers(), _quiet_datasets(), _no_checkpointing_deprecation():
            trainer = _trainer_class(train.shuffle)(
                model=model, args=args, train_dataset=data, processing_class=tokenizer,
                peft_config=peft_config, callbacks=[_progress_callback(progress)])
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)   # recguard shows its own progress
            trainer.train()
        # without accelerate's mixed-precision wrapper of forward (bf16 training): the model
        # answers under recguard's own precision policy, as the same adapter loaded later does
        tuned = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        del trainer     # its optimiser state and batches: freed below, not at the next fit
        target = Path(adapter_dir) if adapter_dir is not None else Path(work) / "adapter"
        tuned.save_pretrained(str(target))
        check_adapter(target)
    tuned.eval()
    release_memory()
    return tuned


def checkpointing_off(config_cls) -> dict[str, bool]:
    """The training-arguments option that turns activation checkpointing off, under the name
    ``config_cls`` knows: transformers 5.25 says ``activation_checkpointing``, older 5.x
    (5.17, seen on a GPU image) ``gradient_checkpointing`` and refuses the new name."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    return {"activation_checkpointing" if "activation_checkpointing" in names
            else "gradient_checkpointing": False}


def warmup_share(config_cls, share: float) -> dict[str, float]:
    """The training-arguments option for a warm-up over ``share`` of the steps: transformers
    5 takes a float ``warmup_steps`` below 1 as a share and has no ``warmup_ratio``; 4.x has
    ``warmup_ratio`` and an integer ``warmup_steps``."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    return {"warmup_ratio": share} if "warmup_ratio" in names else {"warmup_steps": share}


def _trains_in_bf16(model) -> bool:
    """Mixed precision: the model runs under bf16 autocast (`recguard.kit.lm.models.resolve_precision`),
    or its weights are bfloat16 (a GPU's "auto")."""
    import torch

    from recguard.kit.lm.models import uses_autocast

    try:
        weights = next(model.parameters()).dtype
    except StopIteration:
        return False
    return uses_autocast(model) or weights == torch.bfloat16


def _on_cpu(model) -> bool:
    try:
        return next(model.parameters()).device.type == "cpu"
    except StopIteration:
        return True


class _quiet_datasets:
    """datasets' map() progress bars off inside (SFTTrainer tokenises with them)."""

    def __enter__(self):
        from datasets.utils import logging as ds_logging

        self.enabled = ds_logging.is_progress_bar_enabled()
        ds_logging.disable_progress_bar()

    def __exit__(self, *exc):
        from datasets.utils import logging as ds_logging

        if self.enabled:
            ds_logging.enable_progress_bar()
