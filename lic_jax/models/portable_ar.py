"""Portable mbt2018: an integer hyper-synthesis, context model and entropy-parameter network (issue 13).

Minnen, Ballé & Toderici, NeurIPS 2018 (§2, eqs. 3–4, Fig. 2): the Gaussian parameters of ŷ at
(h, w) are ``(σ, μ) = g_ep(h_s(ẑ), g_cm(ŷ_{<(h,w)}))`` with a 5×5 masked convolution g_cm and a
1×1 three-layer g_ep. In a float model one ulp of σ at a scale-table boundary changes a symbol and
the rest of the stream decodes to garbage, and unlike the hyperprior the context model feeds each
decoded ŷ back into the next distribution, so a single flipped index derails everything after it.
Ballé, Johnston & Minnen, ICLR 2019 (§1–2) remove the risk by computing every input of the
coding distribution with integers; here all three networks are integer networks of
:mod:`lic_jax.layers.integer` (eqs. 1–2 with power-of-two divisors):

* h_s: ẑ (12-bit signed, scale 2**−k_z) → deconv 5/2 → integer leaky ReLU (10 bit, 2**−k_h1) →
  deconv 5/2 → integer leaky ReLU (10 bit, 2**−k_h2) → conv 3/1 → clip to ``feature_bits`` signed
  at scale 2**−k_e;
* g_cm: ŷ is fed back as ``ŷ_int = clip(sym · 2**k_y + round_shift(μ_int, 16 − k_y))``
  (``input_bits`` signed: the exact decoded value ``sym + μ_int·2**−16`` on the 2**−k_y grid) →
  the masked 5×5 kernel (mask applied before quantisation) → clip to ``feature_bits`` at 2**−k_e;
* g_ep: [h_s, g_cm] (both at 2**−k_e) → 1×1 → leaky (10 bit, 2**−k_e1) → 1×1 → leaky
  (2**−k_e2) → 1×1 → σ·2**16, μ·2**16, as in :class:`~lic_jax.models.portable.IntegerHyperSynthesis`
  (table index by the integer thresholds of the pinned scale table; μ clipped to 24 bits, exact
  in float32).

``int_shifts = (k_z, k_h1, k_h2, k_e, k_y, k_e1, k_e2)``, calibrated once on training crops
(:meth:`PortableJointAutoregressive.calibration_maxima`). With 8-bit weights, 10-bit hidden
activations and 12-bit ŷ / features, the widest accumulator (g_cm at M = 320: 12 causal taps × 320
channels × 127 × 2048 ≈ 1.0·10**9) stays below 2**31; :func:`lic_jax.layers.integer.check_bounds`
proves it for the actual weights before anything runs, so int32 evaluation is exact in any
summation order, on any backend and under any XLA flags.

The float "fake-quant" twin (training, rate estimates) computes the same quantities on the same
grids (``hyper_synthesis`` / ``gaussian_params``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..layers import causal_mask
from ..layers import integer as il
from .mbt2018 import JointAutoregressiveHierarchicalPriors
from .portable import OUT_BITS, OUT_SHIFT, _centres, hash_layers, sigma_thresholds

__all__ = ["PortableJointAutoregressive", "IntegerContextModel", "integer_context_model", "integer_network"]

_H_S = (("h_s_0", True, 2, "leaky"), ("h_s_2", True, 2, "leaky"), ("h_s_4", False, 1, "clip"))
_EP = (("entropy_parameters_0", "leaky"), ("entropy_parameters_2", "leaky"), ("entropy_parameters_4", "none"))


def _masked_kernel(params, k: int):
    return np.asarray(params["context_prediction"]["kernel"], np.float32) * causal_mask(k, "A")[:, :, None, None]


@dataclasses.dataclass(frozen=True, eq=False)
class IntegerContextModel:
    """The integer entropy path of ``mbt2018-int``: z symbols → features; (features, decoded ŷ) → (index, μ).

    hyper: the integer h_s; ctx: the masked conv; ep: the 1×1 chain; z_shift / z_max / centres: ẑ's
    integer input (as :class:`~lic_jax.models.portable.IntegerHyperSynthesis`); y_shift / y_max: ŷ's
    grid and clip; kernel / anchor: the causal window (``ctx_kernel``, ``ctx_anchor``).
    """

    hyper: tuple
    ctx: il.IntegerConv
    ep: tuple
    z_shift: int
    z_max: int
    centres: np.ndarray
    y_shift: int
    y_max: int
    feature_max: int
    thresholds: np.ndarray
    kernel: int
    anchor: tuple

    def __post_init__(self):
        # the exactness proof of every chain, before anything runs (module docstring)
        il.check_bounds(self.hyper, self.z_max)
        il.check_bounds((self.ctx,), self.y_max)
        il.check_bounds(self.ep, self.feature_max)
        object.__setattr__(self, "_features", jax.jit(self._features_fn))
        object.__setattr__(self, "step", jax.jit(self._step_fn, donate_argnums=(0,)))

    def _features_fn(self, q):
        a = q.astype(jnp.int32) * jnp.int32(2**self.z_shift) + jnp.asarray(self.centres, jnp.int32)
        return il.apply_integer_network(self.hyper, jnp.clip(a, -self.z_max, self.z_max))

    def features(self, q: np.ndarray):
        """q: int (1, h, w, C) z symbols → int32 (1, H, W, 2M) features at scale 2**−k_e (device array)."""
        if int(np.max(np.abs(np.asarray(q, np.int64)), initial=0)) > 2**30:
            raise ValueError("z symbols out of range for the integer network")
        return self._features(jnp.asarray(q, jnp.int32))

    def y_int(self, sym, mu_int):
        """The decoded ŷ = sym + μ_int·2**−16 on the 2**−k_y grid, clipped to ``y_max`` (int32).

        sym is clipped to ±2**12 first, which cannot change the result (|sym| ≥ 2**12 puts
        sym·2**k_y + round_shift(μ_int, 16 − k_y) beyond ±y_max with either value, since
        |round_shift(μ_int, ·)| ≤ 2**(8 + k_y)), and keeps every term in int32."""
        s = jnp.clip(jnp.asarray(sym, jnp.int32), -(2**12), 2**12)
        v = s * jnp.int32(2**self.y_shift) + il.round_shift(mu_int, OUT_SHIFT - self.y_shift)
        return jnp.clip(v, -self.y_max, self.y_max)

    def params_at(self, feats, patches):
        """(index, μ_int) of K positions from their features (K, 2M) and integer ŷ windows (K, k, k, M)."""
        ctx = il.apply_integer_taps(self.ctx, patches)
        h = jnp.concatenate([feats, ctx], axis=-1)[:, None, None, :]
        for layer in self.ep:
            h = il.apply_integer_taps(layer, h)[:, None, None, :]
        out = h[:, 0, 0, :]
        m = out.shape[-1] // 2
        idx = jnp.sum((out[:, :m, None] >= jnp.asarray(self.thresholds, jnp.int32)).astype(jnp.int32), axis=-1)
        return idx, jnp.clip(out[:, m:], -(2**OUT_BITS - 1), 2**OUT_BITS - 1)

    def _step_fn(self, state, feats, pos, t, sym, mu_int):
        """Write wavefront t − 1's integer ŷ into the context state, then (index, μ_int) of wavefront t
        (the same function in encoder and decoder; see ``coding/latent_coders/portable.py``)."""
        k, (ah, aw) = self.kernel, self.anchor
        H, W, M = feats.shape[0], feats.shape[1], state.shape[-1]
        prev = pos[t - 1]
        state = state.at[prev[:, 0] + ah, prev[:, 1] + aw].set(self.y_int(sym, mu_int), mode="drop")
        cur = pos[t]
        hh, ww = cur[:, 0], cur[:, 1]
        patches = jax.vmap(lambda h, w: lax.dynamic_slice(state, (h, w, 0), (k, k, M)))(hh, ww)
        idx, mu = self.params_at(feats[jnp.clip(hh, 0, H - 1), jnp.clip(ww, 0, W - 1)], patches)
        return state, idx, mu

    def digest(self) -> str:
        """SHA-256 of every integer and shift (a file's distributions are a function of exactly this)."""
        h = hash_layers((*self.hyper, self.ctx, *self.ep))
        h.update(np.asarray(self.centres, np.int64).tobytes())
        h.update(np.asarray(self.thresholds, np.int64).tobytes())
        h.update(repr((self.z_shift, self.z_max, self.y_shift, self.y_max, self.feature_max, self.kernel,
                       tuple(self.anchor))).encode())
        return h.hexdigest()


def integer_context_model(model, params) -> IntegerContextModel:
    """The integer entropy path of a calibrated ``mbt2018-int`` (a pure function of the float params and
    ``model.int_shifts``)."""
    shifts = tuple(int(s) for s in model.int_shifts)
    if len(shifts) != 7:
        raise ValueError(f"mbt2018-int needs 7 int_shifts (k_z, k_h1, k_h2, k_e, k_y, k_e1, k_e2), got {shifts or 'none'} "
                         "(calibrate with lic_jax.models.portable.portable_spec)")
    kz, kh1, kh2, ke, ky, ke1, ke2 = shifts
    wb, ab, fb = model.weight_bits, model.act_bits, model.feature_bits
    hyper = []
    for (name, transpose, stride, act), (i, o), bits in zip(_H_S, ((kz, kh1), (kh1, kh2), (kh2, ke)), (ab, ab, fb)):
        p = params[name]
        hyper.append(il.quantize_conv(p["kernel"], p["bias"], i, wb, out_shift=o, stride=stride, transpose=transpose,
                                      activation=act, act_bits=bits))
    k = int(model.ctx_kernel)
    ctx = il.quantize_conv(_masked_kernel(params, k), params["context_prediction"]["bias"], ky, wb, out_shift=ke,
                           activation="clip", act_bits=fb)
    ep = []
    for (name, act), (i, o), bits in zip(_EP, ((ke, ke1), (ke1, ke2), (ke2, OUT_SHIFT)), (ab, ab, OUT_BITS)):
        p = params[name]
        ep.append(il.quantize_conv(p["kernel"], p["bias"], i, wb, out_shift=o, activation=act, act_bits=bits))
    cz = np.asarray(params["h_s_0"]["kernel"]).shape[2]
    return IntegerContextModel(tuple(hyper), ctx, tuple(ep), kz, 2 ** (model.input_bits - 1) - 1,
                               _centres(params, kz, cz), ky, 2 ** (model.input_bits - 1) - 1, 2 ** (fb - 1),
                               sigma_thresholds(OUT_SHIFT), k, tuple(int(a) for a in model.ctx_anchor))


def integer_network(model, params):
    """The integer entropy network of any calibrated portable model (its ``digest()`` identifies it)."""
    from .portable import integer_hyper_synthesis

    if isinstance(model, PortableJointAutoregressive):
        return integer_context_model(model, params)
    return integer_hyper_synthesis(model, params)


class PortableJointAutoregressive(JointAutoregressiveHierarchicalPriors):
    """``mbt2018-int``: Minnen et al. 2018's joint autoregressive + hierarchical model (§2, eqs. 3–4,
    Fig. 2) with integer h_s, context model and entropy-parameter network (module docstring; Ballé,
    Johnston & Minnen 2019 eqs. 1–2). Same parameters as ``mbt2018`` (its weights load 1:1)."""

    int_shifts: tuple = ()
    weight_bits: int = 8
    act_bits: int = 10
    input_bits: int = 12
    feature_bits: int = 12

    # calibration: (what, bits attribute, signed, floor) per int_shifts entry
    calibration = (("z_hat", "input_bits", True, 1.0), ("h_s hidden 1", "act_bits", True, 2.0**-6),
                   ("h_s hidden 2", "act_bits", True, 2.0**-6), ("h_s out, context out", "feature_bits", True, 2.0**-6),
                   ("y_hat", "input_bits", True, 1.0), ("g_ep hidden 1", "act_bits", True, 2.0**-6),
                   ("g_ep hidden 2", "act_bits", True, 2.0**-6))

    def _shifts(self):
        return tuple(int(s) for s in self.int_shifts)

    def hyper_synthesis(self, z_hat):
        if not self.int_shifts:
            return super().hyper_synthesis(z_hat)
        p = self.variables["params"]
        kz, kh1, kh2, ke = self._shifts()[:4]
        a = il.fake_quant_act(z_hat, kz, self.input_bits, signed=True)
        for (name, transpose, stride, act), (i, o), bits in zip(_H_S, ((kz, kh1), (kh1, kh2), (kh2, ke)),
                                                               (self.act_bits, self.act_bits, self.feature_bits)):
            a = il.fake_quant_conv(p[name]["kernel"], p[name]["bias"], a, in_shift=i, out_shift=o,
                                   weight_bits=self.weight_bits, stride=stride, transpose=transpose, activation=act,
                                   act_bits=bits)
        return {"hyper": a}

    def gaussian_params(self, hyper, y_hat):
        if not self.int_shifts:
            return super().gaussian_params(hyper, y_hat)
        p = self.variables["params"]
        _, _, _, ke, ky, ke1, ke2 = self._shifts()
        k = self.ctx_kernel
        kern = p["context_prediction"]["kernel"] * causal_mask(k, "A")[:, :, None, None]
        yq = il.fake_quant_act(y_hat, ky, self.input_bits, signed=True)
        ctx = il.fake_quant_conv(kern, p["context_prediction"]["bias"], yq, in_shift=ky, out_shift=ke,
                                 weight_bits=self.weight_bits, activation="clip", act_bits=self.feature_bits)
        a = jnp.concatenate([hyper, ctx], axis=-1)
        for (name, act), (i, o), bits in zip(_EP, ((ke, ke1), (ke1, ke2), (ke2, OUT_SHIFT)),
                                             (self.act_bits, self.act_bits, OUT_BITS)):
            a = il.fake_quant_conv(p[name]["kernel"], p[name]["bias"], a, in_shift=i, out_shift=o,
                                   weight_bits=self.weight_bits, activation=act, act_bits=bits)
        scales, means = jnp.split(a, 2, axis=-1)
        return scales, means

    def gaussian_params_at(self, features, patches, taps=None):
        if self.int_shifts:
            raise NotImplementedError("mbt2018-int codes with its integer network (IntegerContextModel)")
        return super().gaussian_params_at(features, patches, taps)

    def calibration_maxima(self, x):
        """max |·| of each quantity that ``int_shifts`` scales (see :attr:`calibration`), float path."""
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        med = self.entropy_bottleneck.medians()
        z_hat = jnp.round(z - med) + med
        a1 = self.h_s[1](self.h_s[0](z_hat))
        a2 = self.h_s[3](self.h_s[2](a1))
        hyper = self.h_s[4](a2)
        y_hat = jnp.round(y)
        ctx = self.context_prediction(y_hat)
        e1 = self.entropy_parameters[1](self.entropy_parameters[0](jnp.concatenate([hyper, ctx], axis=-1)))
        e2 = self.entropy_parameters[3](self.entropy_parameters[2](e1))
        m = lambda t: jnp.max(jnp.abs(t))  # noqa: E731
        return [m(z_hat), m(a1), m(a2), jnp.maximum(m(hyper), m(ctx)), m(y_hat), m(e1), m(e2)]
