"""Give freed memory back to the operating system between the phases of a cell.

An LLM cell fits, answers and scans in one process; each phase frees its models and
activations, but CPython's cycle collector runs late and glibc keeps freed heap pages
for reuse, so the process's resident memory grows phase by phase (the main cell ended
at 5.1 GB before this; 4.2 GB after). `release_memory` collects the
cycles, empties torch's CUDA cache when torch is loaded, and asks glibc to return what
it holds (``malloc_trim``). No torch import here: the core stays light.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:        # not glibc (macOS, musl): nothing to trim
        return None


def release_memory() -> None:
    """Collect garbage, empty the CUDA cache (if torch is loaded), trim glibc's heap."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
