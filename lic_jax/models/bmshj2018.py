"""Ballé, Minnen, Singh, Hwang, Johnston: "Variational image compression with a scale
hyperprior", ICLR 2018 — the factorized-prior and scale-hyperprior models, with CompressAI's
layer layout (``bmshj2018-factorized``, ``bmshj2018-hyperprior``) so its weights load 1:1.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ..entropy_models import EntropyBottleneck, GaussianConditional, quantize
from ..layers import GDN, Conv, ConvTranspose
from .base import crop_image, pad_image, quant_modes, run

__all__ = ["FactorizedModel", "FactorizedPrior", "ScaleHyperprior", "analysis_transform", "synthesis_transform"]


def analysis_transform(N, M, dtype=None, simplified_gdn=False):
    """g_a: 4 × (5×5 conv, stride 2) with GDN between them (Ballé 2018 Fig. 4)."""
    g = lambda: GDN(simplified=simplified_gdn, dtype=dtype)  # noqa: E731
    return [Conv(N, 5, 2, dtype=dtype), g(), Conv(N, 5, 2, dtype=dtype), g(), Conv(N, 5, 2, dtype=dtype), g(),
            Conv(M, 5, 2, dtype=dtype)]


def synthesis_transform(N, out_ch=3, dtype=None, simplified_gdn=False, impl="auto"):
    """g_s: 4 × (5×5 transposed conv, stride 2) with IGDN between them."""
    g = lambda: GDN(inverse=True, simplified=simplified_gdn, dtype=dtype)  # noqa: E731
    t = lambda c: ConvTranspose(c, 5, 2, impl=impl, dtype=dtype)  # noqa: E731
    return [t(N), g(), t(N), g(), t(N), g(), t(out_ch)]


class FactorizedModel(nn.Module):
    """Shared forward pass of models with one latent coded by a factorized density (subclasses
    define ``setup`` with ``g_a``, ``g_s`` and ``entropy_bottleneck``)."""

    def analysis(self, x):
        return run(self.g_a, x).astype(jnp.float32)

    def synthesis(self, y_hat):
        return run(self.g_s, y_hat).astype(jnp.float32)

    def __call__(self, x, train: bool = False, quant: str | None = None):
        h, w = x.shape[1:3]
        rate_mode, syn_mode = quant_modes(train, quant)
        y = self.analysis(pad_image(x, self.downsampling))
        y_rate, y_lik = self.entropy_bottleneck(y, rate_mode)
        y_hat = y_rate if syn_mode == rate_mode else quantize(y, syn_mode, self.entropy_bottleneck.medians())
        x_hat = crop_image(self.synthesis(y_hat), h, w)
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik}, "y": y, "y_hat": y_hat}


class FactorizedPrior(FactorizedModel):
    """Factorized-prior model — Ballé et al. ICLR 2018, §2 and eq. 2 (rate of ŷ under the EB of App. 6.1)."""

    N: int = 128
    M: int = 192
    eb_filters: tuple = (3, 3, 3, 3)
    simplified_gdn: bool = False
    conv_transpose_impl: str = "auto"
    dtype: Any = None

    downsampling = 16

    def setup(self):
        self.g_a = analysis_transform(self.N, self.M, self.dtype, self.simplified_gdn)
        self.g_s = synthesis_transform(self.N, 3, self.dtype, self.simplified_gdn, self.conv_transpose_impl)
        self.entropy_bottleneck = EntropyBottleneck(self.M, filters=self.eb_filters)


class ScaleHyperprior(nn.Module):
    """Scale hyperprior — Ballé et al. ICLR 2018, §3, eqs. 4–10 (ŷ ~ N(0, σ²) ∗ U, σ = h_s(ẑ))."""

    N: int = 128
    M: int = 192
    eb_filters: tuple = (3, 3, 3, 3)
    simplified_gdn: bool = False
    conv_transpose_impl: str = "auto"
    dtype: Any = None

    downsampling = 64

    def setup(self):
        d = self.dtype
        self.g_a = analysis_transform(self.N, self.M, d, self.simplified_gdn)
        self.g_s = synthesis_transform(self.N, 3, d, self.simplified_gdn, self.conv_transpose_impl)
        self.h_a = self.make_h_a()
        self.h_s = self.make_h_s()
        self.entropy_bottleneck = EntropyBottleneck(self.N, filters=self.eb_filters)
        self.gaussian_conditional = GaussianConditional()

    def make_h_a(self):
        d = self.dtype
        return [Conv(self.N, 3, 1, dtype=d), nn.relu, Conv(self.N, 5, 2, dtype=d), nn.relu, Conv(self.N, 5, 2, dtype=d)]

    def make_h_s(self):
        d, impl = self.dtype, self.conv_transpose_impl
        return [ConvTranspose(self.N, 5, 2, impl=impl, dtype=d), nn.relu,
                ConvTranspose(self.N, 5, 2, impl=impl, dtype=d), nn.relu, Conv(self.M, 3, 1, dtype=d), nn.relu]

    # -- transforms (used by the coders) -------------------------------------------------------
    def analysis(self, x):
        return run(self.g_a, x).astype(jnp.float32)

    def synthesis(self, y_hat):
        return run(self.g_s, y_hat).astype(jnp.float32)

    def hyper_analysis(self, y):
        return run(self.h_a, jnp.abs(y)).astype(jnp.float32)

    def hyper_synthesis(self, z_hat):
        """Gaussian parameters from ẑ: {'scales': σ} (``means`` for mean-scale models)."""
        return {"scales": run(self.h_s, z_hat).astype(jnp.float32)}

    def _quantize_z(self, z, rate_mode, syn_mode):
        z_rate, z_lik = self.entropy_bottleneck(z, rate_mode)
        z_hat = z_rate if syn_mode == rate_mode else quantize(z, syn_mode, self.entropy_bottleneck.medians())
        return z_hat, z_lik

    def __call__(self, x, train: bool = False, quant: str | None = None):
        h, w = x.shape[1:3]
        rate_mode, syn_mode = quant_modes(train, quant)
        y = self.analysis(pad_image(x, self.downsampling))
        z = self.hyper_analysis(y)
        z_hat, z_lik = self._quantize_z(z, rate_mode, syn_mode)
        p = self.hyper_synthesis(z_hat)
        means = p.get("means")
        y_rate, y_lik = self.gaussian_conditional(y, p["scales"], means, rate_mode)
        y_hat = y_rate if syn_mode == rate_mode else quantize(y, syn_mode, means)
        x_hat = crop_image(self.synthesis(y_hat), h, w)
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}, "y": y, "z": z, "y_hat": y_hat,
                "z_hat": z_hat, **p}
