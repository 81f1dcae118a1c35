"""Fine-tuned LoRA adapters kept on disk by what they were trained from, so an identical
fine-tune is done once.

An LLM cell's poisoned model takes minutes to fine-tune on a CPU, and every cell of a grid
that varies only the defense (each `recguard eval --defense ...`, each `recguard sweep` cell
in its own process) needs that same model again. `reusable_fine_tune` keys the adapter by
its inputs, not by the cell: the base model's identity and precision (the caller's
``identity``, which also names anything the caller added to the model, such as LLaRA's
item-embedding projector), the exact prompt and completion texts in their order, the LoRA
and training settings, the seed, the number of training processes, this package's source
and the library versions. The same
key loads the same adapter that a re-run would train; anything that changes training
changes the key. Adapters go to ``cache_dir()/adapters/<key>`` (a temporary folder beside,
renamed into place) and are checked to hold weights when loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from recguard.files import atomic_folder, cache_dir, json_digest

CACHE_VERSION = 1
LIBRARIES = ("torch", "transformers", "peft", "trl")


def _source_digest() -> str:
    """A hash of recguard.kit.lm's source: a change to how it trains or loads re-trains."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def tensors_digest(tensors) -> str:
    """A hash of tensors' or arrays' values, shapes and dtypes, in order (for an
    ``identity`` that must name weights the caller added to a base model)."""
    import numpy as np

    digest = hashlib.sha256()
    for tensor in tensors:
        array = tensor.detach().float().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def adapter_key(identity: dict[str, Any], prompts: Sequence[str], completions: Sequence[str],
                lora, train, seed: int) -> str:
    """The key of the adapter `fine_tune` would train from these inputs."""
    texts = hashlib.sha256()
    for prompt, completion in zip(prompts, completions):
        texts.update(json.dumps([prompt, completion]).encode())
    record = {"version": CACHE_VERSION, "identity": identity, "samples": texts.hexdigest(),
              "n": len(prompts), "lora": asdict(lora), "train": asdict(train), "seed": seed,
              "code": _source_digest(), "libraries": _versions(),
              # under accelerate launch each process trains a share of every batch
              "processes": int(os.environ.get("WORLD_SIZE", "1"))}
    return json_digest(record, 24)


def adapter_folder(key: str) -> Path:
    return cache_dir() / "adapters" / key


def reusable_fine_tune(model, tokenizer, prompts: Sequence[str], completions: Sequence[str], *,
                       identity: dict[str, Any] | None, lora, train, seed: int, progress=None,
                       adapter_dir: str | os.PathLike | None = None, label: str = ""):
    """`recguard.kit.lm.sft.fine_tune`, or the adapter an identical fine-tune saved before
    loaded onto ``model``; returns (the peft model in eval mode, whether it was reused).

    ``identity`` None trains without looking or saving (``--no-cache``, or a model the
    caller cannot name). With ``adapter_dir`` the adapter is also left there either way."""
    from recguard.kit.lm.generation import no_progress
    from recguard.kit.lm.sft import check_adapter, fine_tune, load_lora

    progress = progress or no_progress
    if identity is None:
        return fine_tune(model, tokenizer, prompts, completions, lora=lora, train=train, seed=seed,
                         progress=progress, adapter_dir=adapter_dir, label=label), False
    folder = adapter_folder(adapter_key(identity, prompts, completions, lora, train, seed))
    if folder.is_dir():
        check_adapter(folder)
        tuned = load_lora(model, folder)
        tuned.eval()
        if adapter_dir is not None:
            shutil.copytree(folder, adapter_dir, dirs_exist_ok=True)
        return tuned, True
    with atomic_folder(folder) as tmp:
        target = Path(adapter_dir) if adapter_dir is not None else tmp
        tuned = fine_tune(model, tokenizer, prompts, completions, lora=lora, train=train,
                          seed=seed, progress=progress, adapter_dir=target, label=label)
        if adapter_dir is not None:
            shutil.copytree(target, tmp, dirs_exist_ok=True)
    return tuned, False
