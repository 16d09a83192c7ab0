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
* ``psnr-rgb@mask`` / ``ms-ssim-rgb@mask`` (and ``ms-ssim-db-rgb@mask``): the same inside a region
  mask (bool (H, W): a face / text mask of seed 002, ``eval.py run --masks DIR``; issue 20). PSNR:
  the MSE over the masked pixels only. MS-SSIM: every scale's spatial mean of the cs map (scales
  1–4) and of the SSIM map (scale 5) becomes the weighted mean Σ ω·map / Σ ω with ω = G ∗ A_s(mask)
  — A_s the images' 2×2 average pooling applied s − 1 times, G ∗ the same 'valid' Gaussian filter,
  so each window counts by the share of its footprint inside the mask. This is the training loss's
  weighted MS-SSIM (``lic_jax.losses_gan.weighted_ms_ssim``) with ε = 0 and the 0/1 mask as t_a. A
  full mask gives ``ms-ssim-rgb`` (exactly when the sides stay even through the poolings; an odd
  side is zero-padded, so the padded border weighs less: |Δ| ≈ 1e-9). An empty mask gives NaN for both (left out of averages).

CompressAI (``compressai.utils.eval_model``, v1.2.8) computes PSNR and MS-SSIM on reconstructions
rounded to 8 bit, which is what a uint8 ``rec`` gives here.
"""

from __future__ import annotations

import math

import numpy as np

from .hvs import psnr_hvs_hvsm, rgb_to_luma

__all__ = ["ALL_METRICS", "DEFAULT_METRICS", "MASK_METRICS", "compute_metrics", "ms_ssim_db", "psnr", "psnr_masked", "ms_ssim_255"]

MASK_METRICS = ("psnr-rgb@mask", "ms-ssim-rgb@mask")  # need a mask per image
ALL_METRICS = ("psnr-rgb", "psnr-y", "ms-ssim-rgb", "psnr-hvs-m") + MASK_METRICS  # psnr-hvs comes with psnr-hvs-m
DEFAULT_METRICS = ("psnr-rgb", "psnr-y", "ms-ssim-rgb", "psnr-hvs-m")

_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr(a, b, peak: float = 255.0) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr_masked(a, b, mask, peak: float = 255.0) -> float:
    """PSNR over the pixels where ``mask`` (H, W) is true (all channels); NaN for an empty mask."""
    m = np.asarray(mask, bool)
    if not m.any():
        return math.nan
    d = np.asarray(a, np.float64)[m] - np.asarray(b, np.float64)[m]
    mse = float(np.mean(d**2))
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


def _ssim_cs(x, y, data_range, g, w=None):
    """Per-channel spatial means of the SSIM and cs maps; ``w`` (H, W, 1): window weights on the
    image grid (filtered like the statistics, then a weighted mean), or None (plain mean)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    f = _valid_filter(np.stack([x, y, x * x, y * y, x * y]), g)
    mu1, mu2 = f[0], f[1]
    s1, s2, s12 = f[2] - mu1 * mu1, f[3] - mu2 * mu2, f[4] - mu1 * mu2
    cs_map = (2 * s12 + c2) / (s1 + s2 + c2)
    ssim_map = ((2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1)) * cs_map
    if w is None:
        return ssim_map.mean(axis=(0, 1)), cs_map.mean(axis=(0, 1))  # per channel
    om = _valid_filter(w, g)
    tot = float(om.sum())
    if tot <= 0:
        return None, None
    return (ssim_map * om).sum(axis=(0, 1)) / tot, (cs_map * om).sum(axis=(0, 1)) / tot


def _pool(x):
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    if ph or pw:
        x = np.pad(x, ((ph, ph), (pw, pw), (0, 0)))
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    x = x[:h, :w]
    return (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) / 4.0


def ms_ssim_255(a, b, data_range: float = 255.0, mask=None) -> float:
    """MS-SSIM of two (H, W, C) images (pytorch-msssim semantics, float64); NaN if a side is ≤ 160 px.
    ``mask`` (H, W) bool: the masked MS-SSIM of the module docstring (NaN for an empty mask)."""
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    if min(x.shape[:2]) <= 160:
        return math.nan
    w = None
    if mask is not None:
        w = np.asarray(mask, np.float64)
        if w.shape != x.shape[:2]:
            raise ValueError(f"mask shape {w.shape} differs from the image's {x.shape[:2]}")
        w = w[..., None]
    g = _gauss()
    mcs = []
    for i in range(len(_WEIGHTS)):
        ssim_c, cs_c = _ssim_cs(x, y, data_range, g, w)
        if ssim_c is None:
            return math.nan
        if i < len(_WEIGHTS) - 1:
            mcs.append(np.maximum(cs_c, 0.0))
            x, y = _pool(x), _pool(y)
            w = None if w is None else _pool(w)
    vals = np.stack(mcs + [np.maximum(ssim_c, 0.0)])  # (levels, C)
    return float(np.mean(np.prod(vals ** np.asarray(_WEIGHTS)[:, None], axis=0)))


def ms_ssim_db(v: float) -> float:
    """−10·log10(1 − MS-SSIM); NaN stays NaN (an image too small, an empty mask)."""
    return math.nan if math.isnan(v) else (-10.0 * math.log10(1.0 - v) if v < 1.0 else math.inf)


def compute_metrics(orig, rec, metrics=DEFAULT_METRICS, mask=None) -> dict[str, float]:
    """The requested metrics of a reconstruction ``rec`` of the uint8 image ``orig`` (both (H, W, 3));
    ``mask`` (H, W) bool: the region of the ``…@mask`` metrics (required by them)."""
    out: dict[str, float] = {}
    if orig.shape != rec.shape:
        raise ValueError(f"reconstruction shape {rec.shape} differs from the original's {orig.shape}")
    for m in metrics:
        if m in MASK_METRICS:
            if mask is None:
                raise ValueError(f"metric {m!r} needs a mask per image (eval.py run --masks DIR)")
            if np.shape(mask) != orig.shape[:2]:
                raise ValueError(f"mask shape {np.shape(mask)} differs from the image's {orig.shape[:2]}")
            if m == "psnr-rgb@mask":
                out[m] = psnr_masked(orig, rec, mask)
            else:
                v = ms_ssim_255(orig, rec, mask=mask)
                out[m] = v
                out["ms-ssim-db-rgb@mask"] = ms_ssim_db(v)
            continue
        if m == "psnr-rgb":
            out["psnr-rgb"] = psnr(orig, rec)
        elif m == "psnr-y":
            out["psnr-y"] = psnr(rgb_to_luma(orig), rgb_to_luma(rec))
        elif m in ("ms-ssim-rgb", "ms-ssim"):
            v = ms_ssim_255(orig, rec)
            out["ms-ssim-rgb"] = v
            out["ms-ssim-db-rgb"] = ms_ssim_db(v)
        elif m in ("psnr-hvs-m", "psnr-hvs"):
            if min(orig.shape[:2]) < 8:
                out["psnr-hvs-m"] = out["psnr-hvs"] = math.nan
            else:
                out["psnr-hvs-m"], out["psnr-hvs"] = psnr_hvs_hvsm(orig, rec)
        else:
            raise ValueError(f"unknown metric {m!r}; available: {', '.join(ALL_METRICS)}")
    return out
