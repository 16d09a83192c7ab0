"""Loss pieces of Akutsu et al. 2020 (seed 002; ``/work/shared/docs/SYSTEMS.md`` §8; docs/AKUTSU.md),
pure functions of arrays (the alternating G/D training that combines them is a later increment).

* Eq. 5 (non-saturating GAN loss with softplus, D emits a "fake" logit):
  L_g = E[softplus(D(x, t_s))] + E[softplus(r·D(x̂_m, t_s))], r = −1 in the D step, r = +1 in the
  G step. :func:`discriminator_loss` is the D-step value; :func:`generator_gan_loss` is the part of
  the G-step value that depends on the generator, E[softplus(D(x̂_m, t_s))] (the first term is
  constant in the generator's parameters). :func:`discriminator_accuracy`: a real patch counts as
  correct when its logit < 0, a fake one when its logit > 0 (0 counts as wrong for both).
* Eq. 3 distortion: L_d = E[1 − MS-SSIM(x, x̂_m)] + λ_p·E[1 − wMS-SSIM(x, x̂, t_a)]
  (:func:`distortion_loss`; λ_p = 5), total L_d + λ_e·L_e + λ_g·L_g with λ_e = 0.18 (L_e in bits
  per pixel, our reading), λ_g = 0.01 (:data:`LAMBDAS`).
* Weighted MS-SSIM (ref. [3], Akutsu & Naruko CVPRW 2019; the formula is not in the seed, so this
  definition is ours [I]): MS-SSIM of :func:`lic_jax.metrics.ms_ssim` (pytorch-msssim semantics:
  per channel, ReLU on cs / SSIM, product over scales, mean over channels) where every scale's
  *spatial mean* of the cs map (scales 1–4) and of the SSIM map (scale 5) is replaced by a
  weighted mean Σ ω·map / Σ ω with

      ω_s = G ∗ (A_s(t_a) + ε)                           (ε = ``eps`` = 1e-3)

  A_s = the same 2×2 average pooling (odd sizes padded) that the images undergo, applied s − 1
  times to t_a ∈ [0, 1]; G ∗ = the same 'valid' Gaussian filter as the image statistics, so ω_s
  sits on the grid of the SSIM map and each map value is weighted by the importance of the window
  it summarises. Normalisation: divide by Σ ω_s per image and channel at every scale (so a
  constant map gives exactly MS-SSIM, and the value stays in [0, 1]). ε floor: keeps Σ ω > 0 for
  images without faces or text (then the loss is plain MS-SSIM) and gives the background a small
  weight; with t_a covering a fraction f of the image, the marked region holds f/(f + ε) of the
  weight (91 % at f = 1 %).
* MSE pre-training (``gan.mse_steps``, docs/AKUTSU.md "Colour"; not in the paper [I]): for the first
  steps eq. 3's two MS-SSIM terms are replaced by MSEs, L_d = κ·(MSE(x, x̂_m) + λ_p·wMSE(x, x̂, t_a))
  with κ = λ_e·λ·255² (:func:`mse_distortion_loss`), so L_d + λ_e·L_e is λ_e times CompressAI's
  λ·255²·MSE + bpp (its MS-SSIM models are fine-tuned from MSE ones). wMSE weights each pixel's
  squared error by t_a + ε over Σ(t_a + ε), the same ε floor and normalisation as wMS-SSIM (a constant
  map gives the MSE). ``gan.mse_weighted`` False (the CPU recipe) passes a uniform t_a in this phase: with
  the masks' t_a the faces and text held ≈ 96 % of the fused term and the model coded no colour
  (docs/AKUTSU.md "The masks in the MSE phase").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .metrics import MS_SSIM_WEIGHTS, _avg_pool_pad_odd, _filter, _gauss_1d, _ssim_maps, _to_planes, ms_ssim

__all__ = ["weighted_ms_ssim", "weighted_mse", "discriminator_loss", "generator_gan_loss", "discriminator_accuracy",
           "distortion_loss", "mse_distortion_loss", "LAMBDAS", "WEIGHT_EPS"]

WEIGHT_EPS = 1e-3
LAMBDAS = {"lambda_p": 5.0, "lambda_e": 0.18, "lambda_g": 0.01}  # S002 §3.1


def _weight_map(owner: str, x, y, weight, eps: float):
    """The checks shared by the weighted measures: x and y alike, ``weight`` (B, H, W) or (B, H, W, 1)
    (returned as float32 (B, H, W, 1)), ε > 0."""
    if x.shape != y.shape:
        raise ValueError(f"{owner}: shapes differ: {x.shape} vs {y.shape}")
    weight = jnp.asarray(weight, jnp.float32)
    if weight.ndim == 3:
        weight = weight[..., None]
    if weight.shape != x.shape[:3] + (1,):
        raise ValueError(f"weight must be {x.shape[:3]} or {x.shape[:3] + (1,)}, got {weight.shape}")
    if eps <= 0:
        raise ValueError("eps must be > 0")
    return weight


def weighted_ms_ssim(x, y, weight, data_range: float = 1.0, win_size: int = 11, win_sigma: float = 1.5,
                     weights=MS_SSIM_WEIGHTS, eps: float = WEIGHT_EPS, reduce: bool = True, small: str = "error"):
    """t_a-weighted MS-SSIM of NHWC batches (module docstring). ``weight``: (B, H, W) or
    (B, H, W, 1), non-negative (t_a in [0, 1]); ``small`` as :func:`lic_jax.metrics.ms_ssim`."""
    weight = _weight_map("weighted_ms_ssim", x, y, weight, eps)
    levels = len(weights)
    min_side = (win_size - 1) * 2 ** (levels - 1)
    if small not in ("error", "shrink"):
        raise ValueError("small must be 'error' or 'shrink'")
    if small == "error" and min(x.shape[1:3]) <= min_side:
        raise ValueError(f"weighted_ms_ssim needs images larger than {min_side} px on the shorter side "
                         f"(got {x.shape[1]}x{x.shape[2]}); pass small='shrink'")
    xp, b, c = _to_planes(x)
    yp, _, _ = _to_planes(y)
    wp = jnp.repeat(weight, c, axis=0)  # planes are batch-major: (b0c0, b0c1, …)
    pw = jnp.asarray(weights, jnp.float32)
    vals = []
    for i in range(levels):
        size = min(win_size, xp.shape[1], xp.shape[2]) if small == "shrink" else win_size
        if small == "shrink" and size % 2 == 0:
            size -= 1
        win = jnp.asarray(_gauss_1d(size, win_sigma * size / win_size))
        ssim_map, cs_map = _ssim_maps(xp, yp, data_range, win)
        om = _filter(wp + eps, win)
        mean = lambda m: jnp.sum(m * om, axis=(1, 2, 3)) / jnp.sum(om, axis=(1, 2, 3))  # noqa: E731
        if i < levels - 1:
            vals.append(jax.nn.relu(mean(cs_map)))
            xp, yp, wp = _avg_pool_pad_odd(xp), _avg_pool_pad_odd(yp), _avg_pool_pad_odd(wp)
        else:
            vals.append(jax.nn.relu(mean(ssim_map)))
    out = jnp.prod(jnp.stack(vals) ** pw[:, None], axis=0).reshape(b, c).mean(axis=1)
    return out.mean() if reduce else out


def weighted_mse(x, y, weight, eps: float = WEIGHT_EPS, reduce: bool = True):
    """Σ (t_a + ε)·(x − y)² / Σ (t_a + ε) per image, averaged over channels (module docstring);
    ``weight`` (B, H, W) or (B, H, W, 1), non-negative."""
    w = _weight_map("weighted_mse", x, y, weight, eps) + eps
    err = jnp.mean(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)), axis=-1, keepdims=True)
    out = jnp.sum(w * err, axis=(1, 2, 3)) / jnp.sum(w, axis=(1, 2, 3))
    return out.mean() if reduce else out


def mse_distortion_loss(x, x_hat_main, x_hat, t_a, lambda_p: float, kappa: float, eps: float = WEIGHT_EPS):
    """The MSE pre-training's L_d = κ·(MSE(x, x̂_m) + λ_p·wMSE(x, x̂, t_a)) (module docstring); a dict
    with ``loss``, ``mse_main`` and ``wmse``."""
    m = jnp.mean(jnp.square(x_hat_main.astype(jnp.float32) - x.astype(jnp.float32)))
    w = weighted_mse(x_hat, x, t_a, eps=eps)
    return {"loss": kappa * (m + lambda_p * w), "mse_main": m, "wmse": w}


def discriminator_loss(real_logits, fake_logits):
    """D step of eq. 5 (r = −1): E[softplus(D(x))] + E[softplus(−D(x̂_m))]."""
    return jnp.mean(jax.nn.softplus(real_logits.astype(jnp.float32))) + \
        jnp.mean(jax.nn.softplus(-fake_logits.astype(jnp.float32)))


def generator_gan_loss(fake_logits):
    """G step of eq. 5 (r = +1), generator-dependent part: E[softplus(D(x̂_m))]."""
    return jnp.mean(jax.nn.softplus(fake_logits.astype(jnp.float32)))


def discriminator_accuracy(real_logits, fake_logits):
    """{'real', 'fake', 'mean'}: fraction of patches D classifies correctly (fake logit > 0 ⇒ fake)."""
    real = jnp.mean((real_logits < 0).astype(jnp.float32))
    fake = jnp.mean((fake_logits > 0).astype(jnp.float32))
    return {"real": real, "fake": fake, "mean": 0.5 * (real + fake)}


def distortion_loss(x, x_hat_main, x_hat, t_a, lambda_p: float = LAMBDAS["lambda_p"], small: str = "error",
                    eps: float = WEIGHT_EPS):
    """Eq. 3's distortion: (1 − MS-SSIM(x, x̂_m)) + λ_p·(1 − wMS-SSIM(x, x̂, t_a)); returns a dict
    with ``loss``, ``ms_ssim_main`` and ``wms_ssim`` (x̂ is the fused image of eq. 1)."""
    s_main = ms_ssim(x_hat_main, x, data_range=1.0, small=small)
    s_w = weighted_ms_ssim(x_hat, x, t_a, data_range=1.0, small=small, eps=eps)
    return {"loss": (1.0 - s_main) + lambda_p * (1.0 - s_w), "ms_ssim_main": s_main, "wms_ssim": s_w}

