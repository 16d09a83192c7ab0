"""Rate–distortion losses with CompressAI's λ convention.

MSE:     L = bpp + λ · 255² · MSE(x, x̂)        (x in [0, 1]; = λ · MSE on the 0–255 scale)
MS-SSIM: L = bpp + λ · (1 − MS-SSIM(x, x̂))
bpp = Σ −log2 p(ŷ, ẑ) / (B · H · W), H·W the unpadded size. λ per quality:
``lic_jax.models.LAMBDAS`` (CompressAI's zoo values).
"""

from __future__ import annotations

import jax.numpy as jnp

from .metrics import ms_ssim, psnr
from .models.base import bpp as _bpp

__all__ = ["rate_distortion_loss", "DISTORTIONS"]

DISTORTIONS = ("mse", "ms-ssim")


def rate_distortion_loss(out, x, lmbda: float, metric: str = "mse", ms_ssim_small: str = "error"):
    """Return a dict with ``loss``, ``bpp``, ``mse``, ``psnr`` (and ``ms_ssim`` for the MS-SSIM loss)."""
    if metric not in DISTORTIONS:
        raise ValueError(f"metric must be one of {DISTORTIONS}, got {metric!r}")
    b, h, w = x.shape[:3]
    x_hat = out["x_hat"]
    rate = _bpp(out["likelihoods"], b * h * w)
    m = jnp.mean(jnp.square(x_hat - x))
    res = {"bpp": rate, "mse": m, "psnr": psnr(jnp.clip(x_hat, 0, 1), x)}
    if metric == "mse":
        res["loss"] = lmbda * 255.0**2 * m + rate
    else:
        s = ms_ssim(x_hat, x, data_range=1.0, small=ms_ssim_small)
        res["ms_ssim"] = s
        res["loss"] = lmbda * (1.0 - s) + rate
    return res
