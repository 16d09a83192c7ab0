"""Image preparation for the codec: uint8 checks, float conversion, the one padding rule, and back.

Padding rule (one for coding and evaluation): zero-pad, centred (CompressAI's ``eval_model``),
to the next multiple of the model's ``downsampling`` (``lic_jax.models.base.pad_amounts``).
"""

from __future__ import annotations

import numpy as np

from ..models.base import crop_image, pad_amounts
from . import container
from .errors import UnsupportedImageError

__all__ = ["to_uint8", "prepare", "pad", "finish_image"]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float in [0, 1] → uint8 (clip, ×255, round half to even)."""
    return np.round(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)


def prepare(img) -> tuple[np.ndarray, int]:
    """(H×W×3 uint8, channels 1 or 3) of an input image; UnsupportedImageError for anything else."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise UnsupportedImageError(f"expected a uint8 image, got dtype {a.dtype} (convert to 8 bits first)")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        channels = 1
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 3:
        channels = 3
    elif a.ndim == 3 and a.shape[2] == 4:
        raise UnsupportedImageError("image has an alpha channel; drop it first (lic compress --drop-alpha)")
    else:
        raise UnsupportedImageError(f"expected an H×W×3 or H×W image, got shape {a.shape}")
    H, W = a.shape[:2]
    if not (1 <= H <= container.MAX_SIDE and 1 <= W <= container.MAX_SIDE):
        raise UnsupportedImageError(f"image sides must be 1 … {container.MAX_SIDE}, got {H}×{W}")
    return a, channels


def pad(a: np.ndarray, multiple: int) -> np.ndarray:
    """uint8 H×W×3 → float32 (1, Hp, Wp, 3) in [0, 1], zero-padded (centred) to ``multiple``."""
    x = a.astype(np.float32) / np.float32(255.0)
    (t, b), (l, r) = pad_amounts(a.shape[0], a.shape[1], multiple)
    return np.pad(x, ((t, b), (l, r), (0, 0)))[None]


def finish_image(x_hat: np.ndarray, H: int, W: int, channels: int, output: str):
    """The decoder's (1, Hp, Wp, 3) → cropped, clipped image: uint8 or float32 ('float'); grey files: H×W."""
    x = np.nan_to_num(np.asarray(crop_image(x_hat, H, W))[0], nan=0.0)  # (only forged streams give NaN)
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    if channels == 1:
        x = np.mean(x, axis=-1, dtype=np.float32)
    return x if output == "float" else to_uint8(x)
