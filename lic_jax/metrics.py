"""Differentiable image-quality metrics in JAX (NHWC).

``ms_ssim`` follows Wang, Simoncelli & Bovik 2003 with the conventions of ``pytorch-msssim``
(the implementation CompressAI trains and evaluates with): 11-tap Gaussian window (σ = 1.5),
'valid' filtering, K = (0.01, 0.03), weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), SSIM
and contrast-structure computed per channel, cs clamped at 0 (ReLU) at scales 1–4 and SSIM at
scale 5, 2×2 average pooling that pads odd sizes by one zero on each side (counted in the
mean), product over scales per channel, then the mean over channels.

Images whose shorter side is ≤ 160 px cannot be filtered at the coarsest scale; like
pytorch-msssim, ``ms_ssim`` refuses them (``ValueError``). ``small='shrink'`` instead shrinks
the window at coarse scales to the image size (σ scaled by size/11, as Toderici's
``msssim.py``) for training on small patches.

Differences measured against TensorFlow's ``tf.image.ssim_multiscale`` are documented in
``docs/METRICS.md``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["psnr", "mse", "ssim", "ms_ssim", "ms_ssim_db", "MS_SSIM_WEIGHTS"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def mse(x, y):
    return jnp.mean(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)))


def psnr(x, y, data_range: float = 1.0):
    """PSNR in dB: 10·log10(range² / MSE) over all pixels and channels."""
    return 10.0 * jnp.log10(data_range**2 / mse(x, y))


def _gauss_1d(size: int, sigma: float):
    coords = np.arange(size, dtype=np.float32) - size // 2
    g = np.exp(-(coords**2) / (2 * sigma**2)).astype(np.float32)
    return g / g.sum()


def _filter(x, win):
    """Separable 'valid' Gaussian filtering of (B, H, W, 1) arrays; skips axes shorter than the window."""
    k = win.shape[0]
    out = x
    if out.shape[1] >= k:
        out = lax.conv_general_dilated(out, win.reshape(k, 1, 1, 1), (1, 1), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if out.shape[2] >= k:
        out = lax.conv_general_dilated(out, win.reshape(1, k, 1, 1), (1, 1), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out


def _ssim_maps(x, y, data_range, win, k1=0.01, k2=0.03):
    """SSIM and contrast-structure maps ('valid' filtered) of (B·C, H, W, 1) planes."""
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu1, mu2 = _filter(x, win), _filter(y, win)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = _filter(x * x, win) - mu1_sq
    s2 = _filter(y * y, win) - mu2_sq
    s12 = _filter(x * y, win) - mu12
    cs_map = (2 * s12 + c2) / (s1 + s2 + c2)
    return ((2 * mu12 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map, cs_map


def _ssim_cs(x, y, data_range, win, k1=0.01, k2=0.03):
    """Per-(image, channel) SSIM and contrast-structure; x, y are (B·C, H, W, 1)."""
    ssim_map, cs_map = _ssim_maps(x, y, data_range, win, k1, k2)
    return ssim_map.mean(axis=(1, 2, 3)), cs_map.mean(axis=(1, 2, 3))


def _to_planes(x):
    b, h, w, c = x.shape
    return jnp.transpose(x.astype(jnp.float32), (0, 3, 1, 2)).reshape(b * c, h, w, 1), b, c


def ssim(x, y, data_range: float = 1.0, win_size: int = 11, win_sigma: float = 1.5, reduce: bool = True):
    """Single-scale SSIM (mean over channels and, if ``reduce``, over the batch)."""
    xp, b, c = _to_planes(x)
    yp, _, _ = _to_planes(y)
    s, _ = _ssim_cs(xp, yp, data_range, jnp.asarray(_gauss_1d(win_size, win_sigma)))
    s = s.reshape(b, c).mean(axis=1)
    return s.mean() if reduce else s


def _avg_pool_pad_odd(x):
    ph, pw = x.shape[1] % 2, x.shape[2] % 2
    if ph or pw:
        x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    s = lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return s / 4.0


def ms_ssim(x, y, data_range: float = 1.0, win_size: int = 11, win_sigma: float = 1.5,
            weights=MS_SSIM_WEIGHTS, reduce: bool = True, small: str = "error"):
    """Multi-scale SSIM of NHWC batches (see module docstring). ``reduce=False`` gives one value per image."""
    if x.shape != y.shape:
        raise ValueError(f"ms_ssim: shapes differ: {x.shape} vs {y.shape}")
    levels = len(weights)
    min_side = (win_size - 1) * 2 ** (levels - 1)
    if small not in ("error", "shrink"):
        raise ValueError("small must be 'error' or 'shrink'")
    if small == "error" and min(x.shape[1:3]) <= min_side:
        raise ValueError(
            f"ms_ssim needs images larger than {min_side} px on the shorter side (got {x.shape[1]}x{x.shape[2]}); "
            "pass small='shrink' to shrink the window at coarse scales"
        )
    xp, b, c = _to_planes(x)
    yp, _, _ = _to_planes(y)
    w = jnp.asarray(weights, jnp.float32)
    mcs = []
    for i in range(levels):
        size = min(win_size, xp.shape[1], xp.shape[2]) if small == "shrink" else win_size
        if small == "shrink" and size % 2 == 0:
            size -= 1
        sigma = win_sigma * size / win_size
        s, cs = _ssim_cs(xp, yp, data_range, jnp.asarray(_gauss_1d(size, sigma)))
        if i < levels - 1:
            mcs.append(jax.nn.relu(cs))
            xp, yp = _avg_pool_pad_odd(xp), _avg_pool_pad_odd(yp)
    vals = jnp.stack(mcs + [jax.nn.relu(s)], axis=0)  # (levels, B·C)
    out = jnp.prod(vals ** w[:, None], axis=0).reshape(b, c).mean(axis=1)
    return out.mean() if reduce else out


def ms_ssim_db(v):
    """MS-SSIM in dB: −10·log10(1 − v)."""
    return -10.0 * (jnp.log10(1.0 - v) if not isinstance(v, float) else math.log10(1.0 - v))
