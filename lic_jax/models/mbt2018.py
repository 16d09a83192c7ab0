"""Minnen, Ballé, Toderici: "Joint autoregressive and hierarchical priors for learned image
compression", NeurIPS 2018 — the mean-scale hyperprior (``mbt2018-mean``) and the joint
autoregressive + hierarchical model (``mbt2018``), in CompressAI's layer layout.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..entropy_models import quantize
from ..layers import Conv, ConvTranspose, MaskedConv, causal_mask
from .base import crop_image, dense_run, leaky_relu, pad_image, quant_modes, run, window_dot, window_taps
from .bmshj2018 import ScaleHyperprior

__all__ = ["MeanScaleHyperprior", "JointAutoregressiveHierarchicalPriors"]

# the old private names of the shared helpers (now lic_jax.models.base.window_dot / dense_run)
_window_dot, _dense_run = window_dot, dense_run


class MeanScaleHyperprior(ScaleHyperprior):
    """Mean-scale hyperprior — Minnen et al. NeurIPS 2018, §2 eq. 3 without the context model (ŷ ~ N(μ, σ²) ∗ U)."""

    def make_h_a(self):
        d = self.dtype
        return [Conv(self.N, 3, 1, dtype=d), leaky_relu, Conv(self.N, 5, 2, dtype=d), leaky_relu,
                Conv(self.N, 5, 2, dtype=d)]

    def make_h_s(self):
        d, impl, M = self.dtype, self.conv_transpose_impl, self.M
        return [ConvTranspose(M, 5, 2, impl=impl, dtype=d), leaky_relu,
                ConvTranspose(M * 3 // 2, 5, 2, impl=impl, dtype=d), leaky_relu, Conv(M * 2, 3, 1, dtype=d)]

    def hyper_analysis(self, y):
        return run(self.h_a, y).astype(jnp.float32)

    def hyper_synthesis(self, z_hat):
        p = run(self.h_s, z_hat).astype(jnp.float32)
        scales, means = jnp.split(p, 2, axis=-1)
        return {"scales": scales, "means": means}


class JointAutoregressiveHierarchicalPriors(MeanScaleHyperprior):
    """Joint autoregressive + hierarchical priors — Minnen et al. NeurIPS 2018, §2, eqs. 3–4 and Fig. 2
    (5×5 masked context, 1×1 entropy-parameter network)."""

    N: int = 192
    M: int = 192

    def setup(self):
        super().setup()
        d, M = self.dtype, self.M
        self.context_prediction = MaskedConv(2 * M, 5, "A", dtype=d)
        self.entropy_parameters = [Conv(M * 10 // 3, 1, 1, dtype=d), leaky_relu, Conv(M * 8 // 3, 1, 1, dtype=d),
                                   leaky_relu, Conv(M * 2, 1, 1, dtype=d)]

    # Autoregressive interface (shared with Lee2019, used by the coders):
    #   ctx_kernel / ctx_anchor: the causal window of ŷ that the parameters at (h, w) read —
    #   rows h − a_h … h − a_h + k − 1 and columns w − a_w … w − a_w + k − 1;
    #   ctx_features(hyper): everything that does not depend on ŷ, precomputed for all positions;
    #   gaussian_params_at(features, patches, taps=None): (σ, μ) at K positions from their ŷ
    #   windows; ``taps`` = context_taps(), precomputed once by the coders (issue 19).
    ctx_kernel = 5
    ctx_anchor = (2, 2)

    def hyper_synthesis(self, z_hat):
        return {"hyper": run(self.h_s, z_hat).astype(jnp.float32)}

    def ctx_features(self, hyper):
        return hyper

    def _entropy_parameters(self, hyper, ctx):
        p = run(self.entropy_parameters, jnp.concatenate([hyper, ctx], axis=-1)).astype(jnp.float32)
        scales, means = jnp.split(p, 2, axis=-1)
        return scales, means

    def gaussian_params(self, hyper, y_hat):
        """(σ, μ) at every position from the hyperprior features and the (causally masked) context of ŷ."""
        return self._entropy_parameters(hyper, self.context_prediction(y_hat).astype(jnp.float32))

    def context_taps(self):
        """The context kernel's unmasked taps as a (taps·M, 2M) matrix (:func:`window_taps`)."""
        return window_taps(self.context_prediction.variables["params"]["kernel"], causal_mask(self.ctx_kernel, "A"))

    def gaussian_params_at(self, features, patches, taps=None):
        """(σ, μ) of shape (K, M) from features (K, F) and ŷ windows (K, 5, 5, M).

        The same arithmetic as ``gaussian_params`` at K positions, written as matrix products
        (one output pixel of a k×k 'valid' convolution is a dot product; XLA:CPU runs these
        dots ~4× faster than the equivalent tiny convolutions). ``taps``: ``context_taps()``,
        precomputed (the same result bit for bit, without copying the kernel's taps per call)."""
        p = self.context_prediction.variables["params"]
        ctx = window_dot(patches, p["kernel"], causal_mask(self.ctx_kernel, "A"), self.dtype, taps) + p["bias"]
        h = jnp.concatenate([features, ctx], axis=-1)
        scales, means = jnp.split(dense_run(self.entropy_parameters, h, self.dtype), 2, axis=-1)
        return scales, means

    def __call__(self, x, train: bool = False, quant: str | None = None):
        """Forward pass. Eval mode reproduces CompressAI's ``forward``: the context and g_s see
        round(y) and the rate is that of round(y − μ) + μ (what the coder writes). In training
        the context, the rate and (unless ``quant='mixed'``) g_s share one noisy sample; CompressAI
        draws a second, independent noise sample for the rate term."""
        h, w = x.shape[1:3]
        rate_mode, syn_mode = quant_modes(train, quant)
        y = self.analysis(pad_image(x, self.downsampling))
        z = self.hyper_analysis(y)
        z_hat, z_lik = self._quantize_z(z, rate_mode, syn_mode)
        hyper = self.hyper_synthesis(z_hat)["hyper"]
        rng = self.make_rng("noise") if rate_mode == "noise" else None
        y_ctx = quantize(y, rate_mode, None, rng)
        scales, means = self.gaussian_params(hyper, y_ctx)
        y_rate = y_ctx if rate_mode == "noise" else quantize(y, rate_mode, means)
        y_lik = self.gaussian_conditional.likelihood(y_rate, scales, means)
        y_hat = y_ctx if syn_mode == rate_mode else quantize(y, syn_mode)
        x_hat = crop_image(self.synthesis(y_hat), h, w)
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}, "y": y, "z": z, "y_hat": y_hat,
                "z_hat": z_hat, "scales": scales, "means": means}
