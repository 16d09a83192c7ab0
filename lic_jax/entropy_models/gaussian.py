"""Conditional Gaussian entropy model (Ballé et al. 2018 eq. 4 with σ from the hyperprior;
Minnen et al. 2018 eq. 3 with mean and scale).

p(ŷ | μ, σ) = Φ((½ − |ŷ − μ|)/σ) − Φ((−½ − |ŷ − μ|)/σ), σ lower-bounded by ``scale_bound``
(0.11) and p floored at ``likelihood_bound`` (1e-9), exactly as CompressAI's
``GaussianConditional``. For coding, σ is mapped to the index of the smallest entry ≥ σ of a
64-entry log-spaced table over [0.11, 256] (:func:`scale_table`, :func:`scale_indexes`).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..layers.bounds import lower_bound
from .quantization import quantize

__all__ = [
    "GaussianConditional",
    "gaussian_likelihood",
    "scale_table",
    "scale_indexes",
    "SCALES_MIN",
    "SCALES_MAX",
    "SCALES_LEVELS",
]

SCALES_MIN = 0.11
SCALES_MAX = 256.0
SCALES_LEVELS = 64


def scale_table(min_scale: float = SCALES_MIN, max_scale: float = SCALES_MAX, levels: int = SCALES_LEVELS):
    """exp(linspace(log min, log max, levels)) as float32 (computed in float64, then rounded)."""
    return np.exp(np.linspace(math.log(min_scale), math.log(max_scale), levels)).astype(np.float32)


def _std_cdf(v):
    # Φ(v) = ½ erfc(−v/√2): erfc keeps precision in the lower tail.
    return 0.5 * lax.erfc(v * (-(2.0**-0.5)))


def gaussian_likelihood(values, scales, means=None, scale_bound: float = SCALES_MIN, likelihood_bound: float = 1e-9):
    """Probability of the unit bin around ``values`` under N(means, scales²)."""
    v = values if means is None else values - means
    s = lower_bound(scales, scale_bound) if scale_bound > 0 else scales
    v = jnp.abs(v)
    lik = _std_cdf((0.5 - v) / s) - _std_cdf((-0.5 - v) / s)
    if likelihood_bound > 0:
        lik = lower_bound(lik, likelihood_bound)
    return lik


def scale_indexes(scales, table=None, scale_bound: float = SCALES_MIN):
    """Index of the smallest table entry ≥ max(σ, bound), capped at the last entry (CompressAI
    ``build_indexes``). Works on numpy (exact, host) and JAX arrays."""
    table = scale_table() if table is None else table
    if isinstance(scales, np.ndarray):
        s = np.maximum(scales.astype(np.float32), np.float32(scale_bound))
        return np.searchsorted(np.asarray(table[:-1], np.float32), s, side="left").astype(np.int32)
    s = jnp.maximum(scales, scale_bound)
    return jnp.searchsorted(jnp.asarray(table[:-1]), s, side="left").astype(jnp.int32)


class GaussianConditional(nn.Module):
    """Gaussian conditional layer (parameter-free): ``(ŷ, p(ŷ))`` from y, σ and optional μ."""

    scale_bound: float = SCALES_MIN
    likelihood_bound: float = 1e-9

    def __call__(self, y, scales, means=None, mode: str = "round", rng=None):
        if mode == "noise" and rng is None:
            rng = self.make_rng("noise")
        y_hat = quantize(y, mode, means, rng)
        return y_hat, self.likelihood(y_hat, scales, means)

    def likelihood(self, y_hat, scales, means=None):
        return gaussian_likelihood(y_hat, scales, means, self.scale_bound, self.likelihood_bound)
