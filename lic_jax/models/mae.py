"""Modulated autoencoders: one model for every rate (seed 001; Yang, Herranz, van de Weijer,
"Variable rate deep image compression with modulated autoencoder", IEEE SPL 2020).

Every analysis layer's channels are scaled by a modulation vector m_k(λ) and every synthesis
layer's by a demodulation vector d_k(λ); each is its own MLP Dense(1→50) → ReLU → Dense(50→C)
→ exp (or sigmoid), fed with λ normalised by the largest training λ (Yang et al. 2020, §II;
``docs/SYSTEMS_NOTES.md``).

λ uses CompressAI's convention throughout lic_jax: loss = bpp + λ·255²·MSE on [0, 1] images
(seed 001's {64, 256, 1024, 4096} on the MSE₀₁ scale are λ/255² here: :data:`LAMBDA_PRESETS`).

Entropy model (the paper keeps one entropy bottleneck per training λ, which cannot serve a λ
between them): here ONE shared model serves every λ — for the hyperprior backbone the
Gaussian scales come from the (modulated) hyper-latent, so the rate adapts to λ; for the
bls2017 backbone a single factorized density covers the latents of all λ (documented cost:
the rate of a mixture density, measured in ``docs/MAE.md``). Continuous λ at inference then
needs nothing but the new λ.

Backbones:
* ``ModulatedBls2017``: bls2017 with GDN after every analysis stage (MAE's mae.py), modulation
  after each analysis conv (before its GDN), demodulation after each synthesis IGDN.
* ``ModulatedHyperprior``: bmshj2018-hyperprior with modulation after each g_a conv (the
  last one included) and demodulation of g_s's input and after each IGDN; h_a/h_s unmodulated.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ..entropy_models import EntropyBottleneck, GaussianConditional, quantize
from ..layers import GDN, Conv, ConvTranspose
from .base import crop_image, pad_image, quant_modes, run

__all__ = ["Modulation", "ModulatedBls2017", "ModulatedHyperprior", "LAMBDA_PRESETS", "resolve_lmbdas", "fixed_rate"]

LAMBDA_PRESETS = {
    # seed 001 (S001 §II.E): {64, 256, 1024, 4096} on MSE over [0, 1] → CompressAI scale
    "seed001": tuple(v / 255.0**2 for v in (64.0, 256.0, 1024.0, 4096.0)),
    # CompressAI's eight qualities
    "compressai": (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800),
}


def resolve_lmbdas(lmbdas) -> tuple[float, ...]:
    """A λ set as a sorted tuple of floats (CompressAI scale) from a preset name (``'seed001'``,
    ``'compressai'``), a comma-separated string (``'0.0018,0.013'``) or a sequence of numbers."""
    if isinstance(lmbdas, str):
        name = lmbdas.strip()
        if name in LAMBDA_PRESETS:
            vals = LAMBDA_PRESETS[name]
        else:
            try:
                vals = [float(v) for v in name.split(",") if v.strip()]
            except ValueError:
                raise ValueError(f"λ set must be a preset ({', '.join(sorted(LAMBDA_PRESETS))}) or comma-separated "
                                 f"numbers, got {lmbdas!r}") from None
    else:
        vals = [float(v) for v in lmbdas]
    if not vals:
        raise ValueError("the λ set is empty")
    if any(not (v > 0 and v < float("inf")) for v in vals):
        raise ValueError(f"every λ must be positive and finite, got {vals}")
    if len(set(vals)) != len(vals):
        raise ValueError(f"λ set has repeated values: {vals}")
    return tuple(sorted(vals))


class _VariableRate:
    """Mixin: λ-set normalisation shared by the modulated models."""

    variable_rate = True  # the forward pass takes λ: __call__(x, lmbda, train, quant)

    def __post_init__(self):
        if not (isinstance(self.lmbdas, tuple) and all(type(v) is float for v in self.lmbdas)):
            object.__setattr__(self, "lmbdas", resolve_lmbdas(self.lmbdas))
        if self.activation not in ("exp", "sigmoid"):
            raise ValueError(f"activation must be 'exp' or 'sigmoid', got {self.activation!r}")
        if self.lmbda_input not in ("linear", "log"):
            raise ValueError(f"lmbda_input must be 'linear' (λ/λ_max) or 'log', got {self.lmbda_input!r}")
        super().__post_init__()

    def lmbda_norm(self, lmbda, batch: int):
        """The modulation networks' input: (batch,) float32.

        * ``'linear'`` (the papers'): λ / λ_max — trained λ in (0, 1].
        * ``'log'``: 1 + log(λ/λ_max) / log(λ_max/λ_min) — the trained λ interval mapped linearly in
          log λ onto [0, 1]. With λ/λ_max the smallest λ of a wide set sit crowded near 0 (seed 001's
          set: 1/64 and 1/16) and an MLP trained with Adam needs large weights — many steps — to tell
          them apart (measured in docs/MAE.md); the log input gives every λ of the set equal room.
        """
        lam = jnp.broadcast_to(jnp.asarray(lmbda, jnp.float32).reshape(-1), (batch,))
        lo, hi = self.lmbda_range
        if self.lmbda_input == "log" and hi > lo:
            return 1.0 + jnp.log(lam / hi) / math.log(hi / lo)
        return lam / hi

    @property
    def lmbda_max(self):
        return float(max(self.lmbdas))

    @property
    def lmbda_range(self) -> tuple[float, float]:
        """The trained λ interval (continuous λ inside it is interpolation; outside, extrapolation)."""
        return float(min(self.lmbdas)), float(max(self.lmbdas))

    def modulation_vectors(self, lmbda):
        """(analysis modulation vectors, synthesis demodulation vectors) at one λ, each of shape (C,)."""
        lam = self.lmbda_norm(lmbda, 1)
        return [m(lam)[0] for m in self.mod], [d(lam)[0] for d in self.demod]


class Modulation(nn.Module):
    """λ → per-channel scale: Dense(1→hidden) → ReLU → Dense(hidden→C) → exp | sigmoid (MAE ``scale_layer``)."""

    channels: int
    hidden: int = 50
    activation: str = "exp"

    @nn.compact
    def __call__(self, lam_norm):
        h = nn.relu(nn.Dense(self.hidden, name="hidden")(lam_norm[:, None]))
        o = nn.Dense(self.channels, kernel_init=nn.initializers.normal(0.01), name="out")(h)
        if self.activation == "exp":
            return jnp.exp(o)
        if self.activation == "sigmoid":
            return 2.0 * nn.sigmoid(o)  # centred on 1 at init, like exp
        raise ValueError(f"activation must be 'exp' or 'sigmoid', got {self.activation!r}")


def _scale(x, m):
    return x * m[:, None, None, :].astype(x.dtype)


class ModulatedBls2017(_VariableRate, nn.Module):
    """Modulated autoencoder on bls2017 — Yang et al. SPL 2020, §II (eqs. 1–4: modulated g_a/g_s, Σ_λ R + λD)."""

    N: int = 192
    lmbdas: Sequence[float] = LAMBDA_PRESETS["seed001"]
    activation: str = "exp"
    lmbda_input: str = "linear"  # 'linear' (λ/λ_max, the paper) | 'log' (see lmbda_norm)
    eb_filters: tuple = (3, 3, 3)
    conv_transpose_impl: str = "auto"
    dtype: Any = None

    downsampling = 16

    def setup(self):
        d, N, impl = self.dtype, self.N, self.conv_transpose_impl
        self.g_a = [Conv(N, 9, 4, dtype=d), Conv(N, 5, 2, dtype=d), Conv(N, 5, 2, dtype=d)]
        self.gdn = [GDN(dtype=d) for _ in range(3)]
        self.g_s = [ConvTranspose(N, 5, 2, impl=impl, dtype=d), ConvTranspose(N, 5, 2, impl=impl, dtype=d),
                    ConvTranspose(3, 9, 4, impl=impl, dtype=d)]
        self.igdn = [GDN(inverse=True, dtype=d) for _ in range(3)]
        self.mod = [Modulation(N, activation=self.activation) for _ in range(3)]
        self.demod = [Modulation(N, activation=self.activation) for _ in range(3)]
        self.entropy_bottleneck = EntropyBottleneck(N, filters=self.eb_filters)

    def analysis(self, x, lmbda):
        lam = self.lmbda_norm(lmbda, x.shape[0])
        for conv, m, g in zip(self.g_a, self.mod, self.gdn):
            x = g(_scale(conv(x), m(lam)))
        return x.astype(jnp.float32)

    def synthesis(self, y_hat, lmbda):
        lam = self.lmbda_norm(lmbda, y_hat.shape[0])
        x = y_hat
        for g, dm, conv in zip(self.igdn, self.demod, self.g_s):
            x = conv(_scale(g(x), dm(lam)))
        return x.astype(jnp.float32)

    def __call__(self, x, lmbda, train: bool = False, quant: str | None = None):
        h, w = x.shape[1:3]
        rate_mode, syn_mode = quant_modes(train, quant)
        y = self.analysis(pad_image(x, self.downsampling), lmbda)
        y_rate, y_lik = self.entropy_bottleneck(y, rate_mode)
        y_hat = y_rate if syn_mode == rate_mode else quantize(y, syn_mode, self.entropy_bottleneck.medians())
        x_hat = crop_image(self.synthesis(y_hat, lmbda), h, w)
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik}, "y": y, "y_hat": y_hat}


class ModulatedHyperprior(_VariableRate, nn.Module):
    """Modulated autoencoder on the scale hyperprior — Yang et al. SPL 2020, §II and the MAE-hyperprior variant."""

    N: int = 128
    M: int = 192
    lmbdas: Sequence[float] = LAMBDA_PRESETS["compressai"]
    activation: str = "exp"
    lmbda_input: str = "linear"  # 'linear' (λ/λ_max, the paper) | 'log' (see lmbda_norm)
    eb_filters: tuple = (3, 3, 3, 3)
    conv_transpose_impl: str = "auto"
    dtype: Any = None

    downsampling = 64

    def setup(self):
        d, N, M, impl = self.dtype, self.N, self.M, self.conv_transpose_impl
        self.g_a = [Conv(N, 5, 2, dtype=d), Conv(N, 5, 2, dtype=d), Conv(N, 5, 2, dtype=d), Conv(M, 5, 2, dtype=d)]
        self.gdn = [GDN(dtype=d) for _ in range(3)]
        self.g_s = [ConvTranspose(N, 5, 2, impl=impl, dtype=d), ConvTranspose(N, 5, 2, impl=impl, dtype=d),
                    ConvTranspose(N, 5, 2, impl=impl, dtype=d), ConvTranspose(3, 5, 2, impl=impl, dtype=d)]
        self.igdn = [GDN(inverse=True, dtype=d) for _ in range(3)]
        self.mod = [Modulation(c, activation=self.activation) for c in (N, N, N, M)]
        self.demod = [Modulation(c, activation=self.activation) for c in (M, N, N, N)]
        self.h_a = [Conv(N, 3, 1, dtype=d), nn.relu, Conv(N, 5, 2, dtype=d), nn.relu, Conv(N, 5, 2, dtype=d)]
        self.h_s = [ConvTranspose(N, 5, 2, impl=impl, dtype=d), nn.relu, ConvTranspose(N, 5, 2, impl=impl, dtype=d),
                    nn.relu, Conv(M, 3, 1, dtype=d), nn.relu]
        self.entropy_bottleneck = EntropyBottleneck(N, filters=self.eb_filters)
        self.gaussian_conditional = GaussianConditional()

    def analysis(self, x, lmbda):
        lam = self.lmbda_norm(lmbda, x.shape[0])
        for i, (conv, m) in enumerate(zip(self.g_a, self.mod)):
            x = _scale(conv(x), m(lam))
            if i < 3:
                x = self.gdn[i](x)
        return x.astype(jnp.float32)

    def synthesis(self, y_hat, lmbda):
        lam = self.lmbda_norm(lmbda, y_hat.shape[0])
        x = y_hat
        for i, (conv, dm) in enumerate(zip(self.g_s, self.demod)):
            if i > 0:
                x = self.igdn[i - 1](x)
            x = conv(_scale(x, dm(lam)))
        return x.astype(jnp.float32)

    def hyper_analysis(self, y):
        return run(self.h_a, jnp.abs(y)).astype(jnp.float32)

    def hyper_synthesis(self, z_hat):
        return {"scales": run(self.h_s, z_hat).astype(jnp.float32)}

    def __call__(self, x, lmbda, train: bool = False, quant: str | None = None):
        h, w = x.shape[1:3]
        rate_mode, syn_mode = quant_modes(train, quant)
        y = self.analysis(pad_image(x, self.downsampling), lmbda)
        z = self.hyper_analysis(y)
        z_rate, z_lik = self.entropy_bottleneck(z, rate_mode)
        z_hat = z_rate if syn_mode == rate_mode else quantize(z, syn_mode, self.entropy_bottleneck.medians())
        scales = self.hyper_synthesis(z_hat)["scales"]
        y_rate, y_lik = self.gaussian_conditional(y, scales, None, rate_mode)
        y_hat = y_rate if syn_mode == rate_mode else quantize(y, syn_mode)
        x_hat = crop_image(self.synthesis(y_hat, lmbda), h, w)
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}, "y": y, "z": z, "y_hat": y_hat,
                "z_hat": z_hat, "scales": scales}


def fixed_rate(model, variables, lmbda) -> tuple[str, dict, dict]:
    """The fixed-rate model that computes what a modulated model computes at one λ.

    Returns ``(name, hparams, variables)`` for :func:`lic_jax.models.get_model`: ``bls2017`` (with
    ``last_gdn=True``) for :class:`ModulatedBls2017`, ``bmshj2018-hyperprior`` for
    :class:`ModulatedHyperprior`. Each analysis modulation m_k(λ) scales the output channels of the
    convolution before it, so it is folded into that convolution's kernel and bias; each synthesis
    demodulation d_k(λ) scales the input channels of the convolution after it, so it is folded into that
    kernel's input axis (kernels are (k, k, in, out)). GDN, the hyper transforms and the entropy models
    are shared by every λ and copied. Same function up to float rounding: the product is taken once per
    weight instead of once per activation (``tests/test_mae.py::test_fixed_rate_matches_the_modulated_model``).
    """
    import jax
    import numpy as np

    if not isinstance(model, (ModulatedBls2017, ModulatedHyperprior)):
        raise TypeError(f"fixed_rate needs a modulated model, not {type(model).__name__}")
    ms, ds = model.apply(variables, jnp.float32(lmbda), method=model.modulation_vectors)
    ms, ds = [np.asarray(m, np.float32) for m in ms], [np.asarray(d, np.float32) for d in ds]
    p = jax.tree_util.tree_map(np.asarray, dict(variables["params"]))

    def out_scaled(conv, m):
        return {"kernel": conv["kernel"] * m, "bias": conv["bias"] * m}

    def in_scaled(conv, d):
        return {"kernel": conv["kernel"] * d[None, None, :, None], "bias": conv["bias"]}

    out = {"entropy_bottleneck": p["entropy_bottleneck"]}
    if isinstance(model, ModulatedBls2017):
        name, hparams = "bls2017", {"N": int(model.N), "last_gdn": True}
        for i in range(3):  # g_a: conv, GDN, …; g_s: IGDN, conv, … (Bls2017 with last_gdn)
            out[f"g_a_{2 * i}"], out[f"g_a_{2 * i + 1}"] = out_scaled(p[f"g_a_{i}"], ms[i]), p[f"gdn_{i}"]
            out[f"g_s_{2 * i}"], out[f"g_s_{2 * i + 1}"] = p[f"igdn_{i}"], in_scaled(p[f"g_s_{i}"], ds[i])
    else:  # ModulatedHyperprior
        name, hparams = "bmshj2018-hyperprior", {"N": int(model.N), "M": int(model.M)}
        for i in range(4):  # g_a: conv, GDN, …, conv; g_s: conv, IGDN, …, conv
            out[f"g_a_{2 * i}"] = out_scaled(p[f"g_a_{i}"], ms[i])
            out[f"g_s_{2 * i}"] = in_scaled(p[f"g_s_{i}"], ds[i])
        for i in range(3):
            out[f"g_a_{2 * i + 1}"], out[f"g_s_{2 * i + 1}"] = p[f"gdn_{i}"], p[f"igdn_{i}"]
        out.update({k: v for k, v in p.items() if k.startswith(("h_a_", "h_s_", "gaussian_conditional"))})
    return name, hparams, {**{k: v for k, v in variables.items() if k != "params"}, "params": out}
