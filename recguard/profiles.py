"""Small helpers attacks share when they write fake profiles."""

from __future__ import annotations

import numpy as np


def snap_to_levels(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Clip to the lowest / highest of ``levels`` (the rating values present in the data),
    then round each value to the nearest level (a tie goes up). float32."""
    levels = np.sort(np.asarray(levels, dtype=np.float64))
    x = np.clip(np.asarray(values, dtype=np.float64), levels[0], levels[-1])
    upper = np.clip(np.searchsorted(levels, x, side="left"), 0, len(levels) - 1)
    lower = np.maximum(upper - 1, 0)
    take_upper = (levels[upper] - x) <= (x - levels[lower])
    return levels[np.where(take_upper, upper, lower)].astype(np.float32)
