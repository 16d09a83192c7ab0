"""Per-image quality metrics for evaluation (numpy / JAX, images in [0, 255]).

* ``psnr-rgb``: 10·log10(255²/MSE), MSE over all pixels and the three channels (float64).
* ``psnr-y``: the same on Y′ = 0.299 R + 0.587 G + 0.114 B (BT.601 luma, full range, unrounded).
* ``ms-ssim-rgb``: MS-SSIM with pytorch-msssim semantics (the implementation CompressAI evaluates
  with; the same definition as :func:`lic_jax.metrics.ms_ssim`, see there) and ``data_range=255``,
  computed here in float64 numpy/scipy — on XLA:CPU the single-channel 11-tap convolutions of the
  JAX version take ~2 s per Kodak image, this takes ~0.1 s. NaN for images with a side ≤ 160 px,
  which MS-SSIM's five scales cannot filter (pytorch-msssim refuses them too).
* ``ms-ssim-db-rgb``: −10·log10(1 − MS-SSIM).
* ``psnr-hvs`` / ``psnr-hvs-m``: :mod:`lic_jax.evaluation.hvs` on Y′.

CompressAI (``compressai.utils.eval_model``, v1.2.8) computes PSNR and MS-SSIM on reconstructions
rounded to 8 bit, which is what a uint8 ``rec`` gives here.
"""

from __future__ import annotations

import math

import numpy as np

from .hvs import psnr_hvs_hvsm, rgb_to_luma

__all__ = ["ALL_METRICS", "DEFAULT_METRICS", "compute_metrics", "psnr", "ms_ssim_255"]

ALL_METRICS = ("psnr-rgb", "psnr-y", "ms-ssim-rgb", "psnr-hvs-m")  # psnr-hvs comes with psnr-hvs-m
DEFAULT_METRICS = ALL_METRICS

_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr(a, b, peak: float = 255.0) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _gauss(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    c = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(c**2) / (2 * sigma**2))
    return g / g.sum()


def _valid_filter(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering over axes 1, 2 of (..., H, W, C) stacks (an axis shorter than the
    window is left unfiltered, as pytorch-msssim)."""
    from scipy.ndimage import correlate1d

    r = g.size // 2
    for ax in (-3, -2):
        if x.shape[ax] >= g.size:
            x = correlate1d(x, g, axis=ax, mode="constant")
            sl = [slice(None)] * x.ndim
            sl[ax] = slice(r, x.shape[ax] - r)
            x = x[tuple(sl)]
    return x


def _ssim_cs(x, y, data_range, g):
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    f = _valid_filter(np.stack([x, y, x * x, y * y, x * y]), g)
    mu1, mu2 = f[0], f[1]
    s1, s2, s12 = f[2] - mu1 * mu1, f[3] - mu2 * mu2, f[4] - mu1 * mu2
    cs_map = (2 * s12 + c2) / (s1 + s2 + c2)
    ssim_map = ((2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1)) * cs_map
    return ssim_map.mean(axis=(0, 1)), cs_map.mean(axis=(0, 1))  # per channel


def _pool(x):
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    if ph or pw:
        x = np.pad(x, ((ph, ph), (pw, pw), (0, 0)))
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    x = x[:h, :w]
    return (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) / 4.0


def ms_ssim_255(a, b, data_range: float = 255.0) -> float:
    """MS-SSIM of two (H, W, C) images (pytorch-msssim semantics, float64); NaN if a side is ≤ 160 px."""
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    if min(x.shape[:2]) <= 160:
        return math.nan
    g = _gauss()
    mcs = []
    for i in range(len(_WEIGHTS)):
        ssim_c, cs_c = _ssim_cs(x, y, data_range, g)
        if i < len(_WEIGHTS) - 1:
            mcs.append(np.maximum(cs_c, 0.0))
            x, y = _pool(x), _pool(y)
    vals = np.stack(mcs + [np.maximum(ssim_c, 0.0)])  # (levels, C)
    return float(np.mean(np.prod(vals ** np.asarray(_WEIGHTS)[:, None], axis=0)))


def compute_metrics(orig, rec, metrics=DEFAULT_METRICS) -> dict[str, float]:
    """The requested metrics of a reconstruction ``rec`` of the uint8 image ``orig`` (both (H, W, 3))."""
    out: dict[str, float] = {}
    if orig.shape != rec.shape:
        raise ValueError(f"reconstruction shape {rec.shape} differs from the original's {orig.shape}")
    for m in metrics:
        if m == "psnr-rgb":
            out["psnr-rgb"] = psnr(orig, rec)
        elif m == "psnr-y":
            out["psnr-y"] = psnr(rgb_to_luma(orig), rgb_to_luma(rec))
        elif m in ("ms-ssim-rgb", "ms-ssim"):
            v = ms_ssim_255(orig, rec)
            out["ms-ssim-rgb"] = v
            out["ms-ssim-db-rgb"] = -10.0 * math.log10(1.0 - v) if v < 1.0 else math.inf
        elif m in ("psnr-hvs-m", "psnr-hvs"):
            if min(orig.shape[:2]) < 8:
                out["psnr-hvs-m"] = out["psnr-hvs"] = math.nan
            else:
                out["psnr-hvs-m"], out["psnr-hvs"] = psnr_hvs_hvsm(orig, rec)
        else:
            raise ValueError(f"unknown metric {m!r}; available: {', '.join(ALL_METRICS)}")
    return out
