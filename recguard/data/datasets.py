"""Dataset specs: a registry name, a loader and its options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from recguard.contracts import Config
from recguard.data.interactions import Interactions


@dataclass(frozen=True)
class DatasetSpec:
    """A loadable dataset.

    ``load(path, config)`` returns `Interactions`; ``path`` is the user's
    ``--data-path`` (None when not given: the spec then uses its embedded
    default, or raises a `RecguardError` saying a path is needed).
    """

    name: str
    summary: str
    load: Callable[[Path | None, Config], Interactions]
    Config: type = Config
    needs_path: bool = False

    def describe(self) -> str:
        return self.summary + (" [needs --data-path]" if self.needs_path else "")
