"""Lee, Cho, Beack: "Context-adaptive entropy model for end-to-end optimized image
compression", ICLR 2019, §3 (summary: ``docs/SYSTEMS_NOTES.md``).

ŷ ~ N(μ, σ²) ∗ U where (μ, σ) at latent position (h, w) are predicted from two contexts read
through the same 4×4 window (rows h−3…h, columns w−2…w+1, as the reference decoder's
``extractor_prime/doubleprime``):
* the *bit-free* context c″: that window of ŷ (all M channels) with (h, w) and (h, w+1) masked;
* the *bit-consuming* context c′: that window of the hyper-synthesis output (not masked).
The parameter network P: 4×4 window conv on concat(c″, c′) → LReLU → 1×1 → LReLU → 1×1 → 2M,
split into (log σ, μ), σ = exp(·) ≥ 0.11.

Choices (the authors' release is a frozen inference graph, not the training code — all configurable):
* transforms: the bmshj2018 g_a / g_s (5×5, stride 2, GDN), N = M = 192 (base model, q1–5);
* h_a / h_s: the mbt2018 hyper networks with h_s ending in M channels (c′ has M channels);
* P widths: 10M/3 → 8M/3 → 2M (mbt2018's entropy-parameter widths);
* z: zero-mean Gaussian with a learned per-channel scale (the reference test code,
  ``z_model='gaussian'``) or the deep factorized density (``z_model='factorized'``);
* ŷ is rounded around μ for coding, like CompressAI's mbt2018 (the reference clips round(y)
  to [−255, 256] and codes integers); the eval-mode forward uses round(y) as context input;
* the hybrid model of qualities 6–9 (extra M2 channels) is not implemented.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..entropy_models import EntropyBottleneck, GaussianConditional, gaussian_likelihood, quantize
from ..layers import Conv, ConvTranspose, conv2d
from .base import dense_run, leaky_relu, run, window_dot, window_taps
from .bmshj2018 import analysis_transform, synthesis_transform
from .mbt2018 import JointAutoregressiveHierarchicalPriors

__all__ = ["Lee2019", "lee_window_mask"]


def lee_window_mask(k: int = 4, anchor=(3, 2)) -> np.ndarray:
    """(k, k) mask of the bit-free window: 0 at the current position and the one to its right."""
    m = np.ones((k, k), np.float32)
    m[anchor[0], anchor[1]:] = 0
    return m


class WindowConv(nn.Module):
    """k×k conv anchored at ``anchor`` on concat(ŷ [y_channels, masked], hyper [hyper_channels])."""

    features: int
    y_channels: int
    hyper_channels: int
    kernel_size: int = 4
    anchor: tuple = (3, 2)
    dtype: Any = None

    @nn.compact
    def __call__(self, x, valid: bool = False, part: str = "all"):
        """``part``: 'all' (x = concat(ŷ, hyper); both branches + bias), 'hyper' (x = hyper; its branch
        + bias) or 'y' (x = ŷ; its branch only). ``valid``: one output per full window."""
        k, (ah, aw), my = self.kernel_size, self.anchor, self.y_channels
        cin = my + self.hyper_channels
        bound = 1.0 / math.sqrt(cin * k * k)
        init = lambda key, s: jax.random.uniform(key, s, jnp.float32, -bound, bound)  # noqa: E731
        kernel = self.param("kernel", init, (k, k, cin, self.features))
        bias = self.param("bias", init, (self.features,))
        mask = np.ones((k, k, cin, 1), np.float32)
        mask[:, :, :my, 0] = lee_window_mask(k, self.anchor)[:, :, None]
        kernel = kernel * mask
        kernel = {"all": kernel, "y": kernel[:, :, :my], "hyper": kernel[:, :, my:]}[part]
        pad = ((0, 0), (0, 0)) if valid else ((ah, k - 1 - ah), (aw, k - 1 - aw))
        dtype = self.dtype or x.dtype
        y = conv2d(x.astype(dtype), kernel.astype(dtype), 1, pad)
        return y if part == "y" else y + bias.astype(dtype)


class Lee2019(JointAutoregressiveHierarchicalPriors):
    """Context-adaptive entropy model — Lee et al. ICLR 2019, §3.1–3.3, eqs. 1–6 (bit-free + bit-consuming contexts)."""

    N: int = 192
    M: int = 192
    z_model: str = "gaussian"

    ctx_kernel = 4
    ctx_anchor = (3, 2)

    def setup(self):
        d, N, M, impl = self.dtype, self.N, self.M, self.conv_transpose_impl
        self.g_a = analysis_transform(N, M, d, self.simplified_gdn)
        self.g_s = synthesis_transform(N, 3, d, self.simplified_gdn, impl)
        self.h_a = [Conv(N, 3, 1, dtype=d), leaky_relu, Conv(N, 5, 2, dtype=d), leaky_relu, Conv(N, 5, 2, dtype=d)]
        self.h_s = [ConvTranspose(M, 5, 2, impl=impl, dtype=d), leaky_relu,
                    ConvTranspose(M * 3 // 2, 5, 2, impl=impl, dtype=d), leaky_relu, Conv(M, 3, 1, dtype=d)]
        self.window = WindowConv(M * 10 // 3, M, M, self.ctx_kernel, self.ctx_anchor, dtype=d)
        self.entropy_parameters = [leaky_relu, Conv(M * 8 // 3, 1, 1, dtype=d), leaky_relu, Conv(M * 2, 1, 1, dtype=d)]
        self.gaussian_conditional = GaussianConditional()
        if self.z_model == "factorized":
            self.entropy_bottleneck = EntropyBottleneck(N, filters=self.eb_filters)
        elif self.z_model == "gaussian":
            self.z_scale = self.param("z_scale", nn.initializers.ones, (N,))
        else:
            raise ValueError(f"z_model must be 'gaussian' or 'factorized', got {self.z_model!r}")

    def z_scales(self):
        return jnp.abs(self.z_scale)

    def _quantize_z(self, z, rate_mode, syn_mode):
        if self.z_model == "factorized":
            return super()._quantize_z(z, rate_mode, syn_mode)
        rng = self.make_rng("noise") if rate_mode == "noise" else None
        z_rate = quantize(z, rate_mode, None, rng)
        z_lik = gaussian_likelihood(z_rate, jnp.broadcast_to(self.z_scales(), z.shape))
        z_hat = z_rate if syn_mode == rate_mode else quantize(z, syn_mode)
        return z_hat, z_lik

    def _params_from(self, out):
        scales, means = jnp.split(run(self.entropy_parameters, out).astype(jnp.float32), 2, axis=-1)
        return jnp.exp(scales), means

    def ctx_features(self, hyper):
        """Hyper branch of the window conv (+ bias) at every position."""
        return self.window(hyper, part="hyper").astype(jnp.float32)

    def gaussian_params(self, hyper, y_hat):
        return self._params_from(self.window(jnp.concatenate([y_hat, hyper], axis=-1)))

    def context_taps(self):
        """The ŷ part of the window kernel's unmasked taps as a (taps·M, F) matrix (:func:`window_taps`)."""
        kernel = self.window.variables["params"]["kernel"][:, :, : self.M]
        return window_taps(kernel, lee_window_mask(self.ctx_kernel, self.ctx_anchor))

    def gaussian_params_at(self, features, patches, taps=None):
        """(σ, μ) of shape (K, M) from hyper features (K, F) and ŷ windows (K, 4, 4, M), as matrix
        products (the same arithmetic as ``gaussian_params`` at K positions). ``taps``:
        ``context_taps()``, precomputed once by the coder."""
        kernel = self.window.variables["params"]["kernel"][:, :, : patches.shape[-1]]
        out = window_dot(patches, kernel, lee_window_mask(self.ctx_kernel, self.ctx_anchor), self.dtype, taps) + features
        scales, means = jnp.split(dense_run(self.entropy_parameters, out, self.dtype), 2, axis=-1)
        return jnp.exp(scales), means
