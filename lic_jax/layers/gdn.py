"""Generalized divisive normalization (Ballé, Laparra, Simoncelli 2016), NHWC.

Square-root form (the papers', CompressAI ``GDN``):
    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)          (inverse: multiply)
Simplified form (Johnston et al. 2019, CompressAI ``GDN1``, ``tfc.GDN()`` default since 2021):
    y_i = x_i / (beta_i + sum_j gamma_ij |x_j|)

Parameters are stored re-parameterised exactly as CompressAI stores them (``beta``: (C,),
``gamma``: (C_out, C_in)), so CompressAI weights load unchanged. TFC's ``gamma`` is indexed
[input, output]: transpose it when porting TFC weights.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from .bounds import nonneg_init, nonneg_value

__all__ = ["GDN"]


class GDN(nn.Module):
    """GDN / IGDN layer over the last (channel) axis.

    Attributes:
      inverse: IGDN (multiply by the norm) instead of GDN.
      simplified: use the simplified L1 form instead of the square-root form.
      beta_min: lower bound on beta.
      gamma_init: gamma is initialised to ``gamma_init * I``.
    """

    inverse: bool = False
    simplified: bool = False
    beta_min: float = 1e-6
    gamma_init: float = 0.1
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        beta_p = self.param("beta", lambda _k, s: nonneg_init(jnp.ones(s, jnp.float32)), (c,))
        gamma_p = self.param(
            "gamma", lambda _k, s: nonneg_init(self.gamma_init * jnp.eye(s[0], dtype=jnp.float32)), (c, c)
        )
        beta = nonneg_value(beta_p, self.beta_min)
        gamma = nonneg_value(gamma_p)
        dtype = self.dtype or x.dtype
        x = x.astype(dtype)
        beta = beta.astype(dtype)
        gamma = gamma.astype(dtype)
        # norm_i = beta_i + sum_j gamma[i, j] * f(x_j)
        f = jnp.abs(x) if self.simplified else x * x
        norm = jnp.einsum("...j,ij->...i", f, gamma) + beta
        if self.simplified:
            return x * norm if self.inverse else x / norm
        return x * jnp.sqrt(norm) if self.inverse else x * lax.rsqrt(norm)
