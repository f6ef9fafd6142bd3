"""The one rule for colours given to pcseg: uint8 0..255, or float in [0, 1]."""

from __future__ import annotations

import numpy as np

__all__ = ["check_color_values"]


def check_color_values(colors: np.ndarray, name: str = "colors") -> np.ndarray:
    """Checks colour values of any shape (..., 3) against pcseg's one colour rule.

    Args:
        colors: (..., 3) uint8 0..255, or float in [0, 1].
        name: the argument's name, for the error message.

    Returns:
        colors: uint8 as given, or float32 in [0, 1].

    Raises:
        ValueError: naming `name` when the dtype is neither a float nor uint8, when floats hold
            NaN or inf, or lie outside [0, 1] (floats that look like 0..255 are named as such).
    """
    colors = np.asarray(colors)
    if colors.dtype == np.uint8:
        return colors
    if not np.issubdtype(colors.dtype, np.floating):
        raise ValueError(f"{name} must be float in [0, 1] or uint8 0..255, got dtype {colors.dtype}")
    rows = colors.reshape(-1, colors.shape[-1]) if colors.ndim else colors.reshape(1, 1)
    bad = ~np.isfinite(rows).all(1)
    if bad.any():
        raise ValueError(
            f"{name} contain NaN or inf at {int(bad.sum())} of {len(rows)} points "
            f"(first at row {int(np.flatnonzero(bad)[0])})"
        )
    if rows.size and (rows.min() < 0 or rows.max() > 1.0 + 1e-6):
        low, high = float(rows.min()), float(rows.max())
        looks_255 = low >= 0 and high <= 255
        raise ValueError(
            f"float {name} must lie in [0, 1], got {low:g}..{high:g}"
            + (": they look like 0..255; divide by 255 or pass uint8" if looks_255 else "")
        )
    return colors.astype(np.float32)
