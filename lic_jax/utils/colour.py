"""BT.601 full-range Y′CbCr (JFIF), the one conversion the project uses (numpy, float64).

    Y′ = 0.299 R + 0.587 G + 0.114 B
    Cb = offset − 0.168736 R − 0.331264 G + 0.5 B
    Cr = offset + 0.5 R − 0.418688 G − 0.081312 B

and JFIF's published inverse (R = Y′ + 1.402 (Cr − offset), G = Y′ − 0.344136 (Cb − offset) −
0.714136 (Cr − offset), B = Y′ + 1.772 (Cb − offset)), which undoes the forward transform to about
1e−6 of the range (its coefficients are rounded to six decimals). ``offset`` is 128 on the 0–255
scale (JPEG's, Pillow's ``convert('YCbCr')``; ``lic restore``) and 0 for centred chroma on any scale
(Cb, Cr in [−½, ½] for RGB in [0, 1]: ``experiments/akutsu_colour_check.py``). Checked against
Pillow's conversion in ``tests/test_restore.py::test_ycbcr_matches_pillow``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rgb_to_ycbcr", "ycbcr_to_rgb"]


def rgb_to_ycbcr(rgb, offset: float = 128.0) -> np.ndarray:
    """(…, 3) R′G′B′ → (…, 3) Y′, Cb, Cr in float64 (unrounded, unclipped)."""
    a = np.asarray(rgb, np.float64)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = offset - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = offset + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.stack([y, cb, cr], axis=-1)


def ycbcr_to_rgb(ycc, offset: float = 128.0) -> np.ndarray:
    """The inverse of :func:`rgb_to_ycbcr`: (…, 3) Y′, Cb, Cr → (…, 3) R′G′B′ in float64 (unrounded, unclipped)."""
    a = np.asarray(ycc, np.float64)
    y, cb, cr = a[..., 0], a[..., 1] - offset, a[..., 2] - offset
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return np.stack([r, g, b], axis=-1)
