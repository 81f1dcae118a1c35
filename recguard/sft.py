"""Fine-tuning and querying causal LMs, shared by every LLM plugin.

`fine_tune` is supervised fine-tuning with LoRA through TRL's ``SFTTrainer``
and PEFT (prompt / completion pairs, loss on the completion only), so the same
code runs under ``accelerate launch`` on several GPUs. After training the
adapter is saved and checked: some peft versions silently save an adapter
without weights (a few hundred bytes), which leaves the model untrained and
gives AUC 0.5 (TALLRec's known trap).

The query helpers batch prompts with left padding and run without gradient:
`yes_probability` (P(Yes) from the Yes / No logits, TALLRec's score),
`completion_logprob` (log-likelihood of a completion: ranking candidates),
`perplexity` (ONION), `generate` (greedy or sampled decoding).

torch, transformers, trl and peft are imported inside the functions.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from recguard.errors import RecguardError

Progress = Callable[..., None]   # progress(done, total, **info); info such as loss= is optional


def _no_progress(done: int, total: int, **info) -> None:
    pass


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


def load_prompt(package: str, file_name: str) -> str:
    """The text of the prompt template ``file_name`` that the plugin ``package`` ships in
    its ``prompts/`` folder, as package data: there in a wheel install as in a checkout."""
    from importlib import resources

    try:
        return (resources.files(package) / "prompts" / file_name).read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError) as exc:
        raise RecguardError(f"prompt template {file_name} of {package} cannot be read ({exc}); "
                            f"reinstall {package.replace('_', '-')}") from exc


# ---------------------------------------------------------------- training


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


def _trainer_class(shuffle: bool):
    from trl import SFTTrainer

    if shuffle:
        return SFTTrainer

    class OrderedSFTTrainer(SFTTrainer):
        """Samples in the order given: a curriculum is an order."""

        def _get_train_sampler(self, *args, **kwargs):
            import torch

            return torch.utils.data.SequentialSampler(self.train_dataset)

    return OrderedSFTTrainer


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
              progress: Progress = _no_progress, adapter_dir: str | os.PathLike | None = None,
              label: str = ""):
    """Supervised fine-tuning with LoRA; returns the peft model in eval mode.

    Loss on the completion tokens only. The adapter is saved to ``adapter_dir``
    (a temporary folder, removed after, when None) and checked to hold weights.
    """
    if len(prompts) != len(completions) or not prompts:
        raise RecguardError(f"fine-tuning{' ' + label if label else ''} needs as many prompts as "
                            f"completions and at least one (got {len(prompts)} and {len(completions)})")
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig

    from recguard.llm import quiet_transformers

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = Dataset.from_dict({"prompt": list(prompts), "completion": list(completions)})
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(lora.target_modules),
                             modules_to_save=list(lora.modules_to_save) or None,
                             task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory(prefix="recguard-sft-") as work:
        args = SFTConfig(
            output_dir=work, max_length=train.max_length, completion_only_loss=True,
            **checkpointing_off(SFTConfig), use_cpu=_on_cpu(model),
            num_train_epochs=train.epochs, learning_rate=train.lr,
            per_device_train_batch_size=train.batch_size,
            gradient_accumulation_steps=train.grad_accum,
            warmup_steps=train.warmup_ratio, lr_scheduler_type=train.scheduler,  # < 1: a share
            seed=seed, data_seed=seed, save_strategy="no", report_to=[],
            logging_strategy="steps", logging_steps=1,   # each step's loss, for the progress line
            disable_tqdm=True, dataset_num_proc=None, remove_unused_columns=True,
            bf16=_trains_in_bf16(model))
        with quiet_transformers(), _quiet_datasets(), warnings.catch_warnings():
            # trl calls transformers' deprecated is_gradient_checkpointing: not ours to fix
            warnings.simplefilter("ignore", FutureWarning)
            trainer = _trainer_class(train.shuffle)(
                model=model, args=args, train_dataset=data, processing_class=tokenizer,
                peft_config=peft_config, callbacks=[_progress_callback(progress)])
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)   # recguard shows its own progress
            trainer.train()
        tuned = trainer.model
        target = Path(adapter_dir) if adapter_dir is not None else Path(work) / "adapter"
        tuned.save_pretrained(str(target))
        check_adapter(target)
    tuned.eval()
    return tuned


def checkpointing_off(config_cls) -> dict[str, bool]:
    """The training-arguments option that turns activation checkpointing off, under the name
    ``config_cls`` knows: transformers 5.25 says ``activation_checkpointing``, older 5.x
    (5.17, seen on a GPU image) ``gradient_checkpointing`` and refuses the new name."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    return {"activation_checkpointing" if "activation_checkpointing" in names
            else "gradient_checkpointing": False}


def _trains_in_bf16(model) -> bool:
    """Mixed precision: the model runs under bf16 autocast (`recguard.llm.resolve_precision`),
    or its weights are bfloat16 (a GPU's "auto")."""
    import torch

    from recguard.llm import uses_autocast

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


# ---------------------------------------------------------------- querying


def _device_of(model):
    try:
        return next(model.parameters()).device
    except StopIteration:
        import torch

        return torch.device("cpu")


def _batches(n: int, size: int):
    for start in range(0, n, max(1, size)):
        yield start, min(n, start + max(1, size))


def _encode_pairs(tokenizer, prompts: Sequence[str], completions: Sequence[str]):
    """Token ids of prompt + completion, and how many of them belong to the prompt.

    The completion is tokenised in context (prompt + completion), so a leading
    space merges as it would in training."""
    out = []
    for prompt, completion in zip(prompts, completions):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
        n_prompt = len(p)
        while n_prompt > 0 and full[:n_prompt] != p[:n_prompt]:
            n_prompt -= 1  # the boundary token merged with the completion's first piece
        out.append((full, n_prompt))
    return out


def _left_padded(tokenizer, sequences: list[list[int]], device):
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq)
            mask[row, width - len(seq):] = 1
    return ids.to(device), mask.to(device)


def _forward_logits(model, ids, mask, last_only: bool = False):
    import torch

    from recguard.llm import compute_context

    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    extra = {"logits_to_keep": 1} if last_only else {}   # the vocabulary projection of one position
    with torch.no_grad(), compute_context(model):
        return model(input_ids=ids, attention_mask=mask, position_ids=positions, **extra).logits.float()


def completion_logprob(model, tokenizer, prompts: Sequence[str], completions: Sequence[str],
                       batch_size: int = 8, reduce: str = "mean",
                       progress: Progress = _no_progress) -> np.ndarray:
    """log p(completion | prompt), the mean (or "sum") over the completion's tokens."""
    import torch

    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', not {reduce!r}")
    pairs = _encode_pairs(tokenizer, prompts, completions)
    device = _device_of(model)
    out = np.zeros(len(pairs))
    for start, end in _batches(len(pairs), batch_size):
        chunk = pairs[start:end]
        ids, mask = _left_padded(tokenizer, [full for full, _ in chunk], device)
        logp = torch.log_softmax(_forward_logits(model, ids, mask), dim=-1)
        width = ids.shape[1]
        for row, (full, n_prompt) in enumerate(chunk):
            offset = width - len(full)
            first = max(n_prompt, 1)        # a token is predicted from the one before it
            positions = torch.arange(offset + first, width, device=device)
            if len(positions) == 0:
                out[start + row] = 0.0
                continue
            token_logp = logp[row, positions - 1, ids[row, positions]]
            out[start + row] = float(token_logp.mean() if reduce == "mean" else token_logp.sum())
        progress(end, len(pairs))
    return out


def perplexity(model, tokenizer, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
    """exp of the mean negative log-likelihood of each text's tokens (the first excluded)."""
    return np.exp(-completion_logprob(model, tokenizer, [""] * len(texts), list(texts),
                                      batch_size=batch_size))


def _first_token(tokenizer, prompt: str, word: str) -> int:
    full, n_prompt = _encode_pairs(tokenizer, [prompt], [word])[0]
    if n_prompt >= len(full):
        raise RecguardError(f"the tokenizer gives no token for {word!r}")
    return full[n_prompt]


def yes_probability(model, tokenizer, prompts: Sequence[str], yes: str = "Yes", no: str = "No",
                    batch_size: int = 8, progress: Progress = _no_progress) -> np.ndarray:
    """P(Yes) = softmax over the logits of the first token of ``yes`` and of ``no`` as
    each would follow its prompt, at the first answer position."""
    import torch

    device = _device_of(model)
    out = np.zeros(len(prompts))
    for start, end in _batches(len(prompts), batch_size):
        chunk = list(prompts[start:end])
        encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in chunk]
        ids, mask = _left_padded(tokenizer, encoded, device)
        last = _forward_logits(model, ids, mask, last_only=True)[:, -1, :]
        yes_ids = torch.tensor([_first_token(tokenizer, p, yes) for p in chunk], device=device)
        no_ids = torch.tensor([_first_token(tokenizer, p, no) for p in chunk], device=device)
        rows = torch.arange(len(chunk), device=device)
        pair = torch.stack([last[rows, yes_ids], last[rows, no_ids]], dim=-1)
        out[start:end] = torch.softmax(pair, dim=-1)[:, 0].cpu().numpy()
        progress(end, len(prompts))
    return out


def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32,
             batch_size: int = 8, sample: bool = False, temperature: float = 1.0, seed: int = 0,
             progress: Progress = _no_progress) -> list[str]:
    """The text each prompt continues with (new tokens only, special tokens dropped).

    Greedy by default; ``sample=True`` draws with ``temperature``, seeded."""
    import torch

    from recguard.llm import compute_context

    device = _device_of(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    texts: list[str] = []
    try:
        for start, end in _batches(len(prompts), batch_size):
            encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start:end]]
            ids, mask = _left_padded(tokenizer, encoded, device)
            options = dict(max_new_tokens=max_new_tokens, do_sample=sample,
                           pad_token_id=tokenizer.pad_token_id)
            if sample:
                options.update(temperature=temperature, top_k=0, top_p=1.0)
            else:
                options.update(temperature=None, top_k=None, top_p=None)
            with torch.no_grad(), compute_context(model):
                produced = model.generate(input_ids=ids, attention_mask=mask, **options)
            new = produced[:, ids.shape[1]:]
            texts += tokenizer.batch_decode(new, skip_special_tokens=True)
            progress(end, len(prompts))
    finally:
        torch.random.set_rng_state(generator_state)
    return texts
