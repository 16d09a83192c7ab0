"""Portable hyperprior models: the entropy parameters come from an integer network (issue 13).

Ballé, Johnston & Minnen, "Integer Networks for Data Compression with Latent-Variable Models"
(ICLR 2019; below *the paper*). A range decoder must see exactly the distribution the encoder
used. In a float model the hyper-synthesis σ (and μ) of one file can move by one ulp on another
jax / XLA / CPU, cross a scale-table boundary and garble the rest of the stream
(docs/FORMAT.md §7). The paper's fix (§1–2): compute everything that decides the coding
distribution with integer arithmetic, which every platform evaluates identically; the synthesis
transform may stay float (it changes pixels slightly, never decodability).

Here the hyper-synthesis h_s of ``bmshj2018-hyperprior`` (Ballé et al. 2018, eq. 9–10) and of
``mbt2018-mean`` (Minnen et al. 2018, eq. 3 without context) becomes an integer network of
:mod:`lic_jax.layers.integer` layers (the paper's eq. 1–2 with power-of-two divisors):

* input: ẑ = q + median (factorized z) at scale 2**−k₀ as the integer ``q·2**k₀ + m_c`` with
  ``m_c = floor(median_c·2**k₀ + ½)``, clipped to ``input_bits`` signed;
* hidden layers: ``act_bits`` QReLU (bmshj2018) or the integer leaky ReLU (mbt2018, slope
  41/4096), scales 2**−k_i calibrated once from training crops (:func:`calibrate_shifts`);
* output at scale 2**−16 (:data:`OUT_SHIFT`): the integer σ is turned into a table index by
  integer thresholds (:func:`sigma_thresholds`, derived from the *pinned* scale table
  :data:`PINNED_SCALE_TABLE`, never recomputed with libm); the integer μ gives the float32
  ``μ = μ_int · 2**−16`` exactly (|μ_int| < 2**24).

The integer weights are a pure function of the float parameters (``quantize_conv``: per-channel
power-of-two scales found with ``frexp``, products with powers of two, ``rint`` — IEEE-exact on
every platform) and of the calibrated shifts, which are hyper-parameters of the model
(``int_shifts``, stored in the artifact's spec). The same float weights therefore always give the
same integer network; ``tests/test_portable.py`` pins its digest.

In training (quantisation-aware fine-tuning, ``configs`` ``integer_entropy``) and in the forward
pass used for rate estimates, ``hyper_synthesis`` runs the float "fake-quant" twin of that network
(:func:`lic_jax.layers.integer.fake_quant_conv`), so the estimated rate is the integer path's.
Before calibration (``int_shifts == ()``) the model is the float model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..layers import integer as il
from .bmshj2018 import ScaleHyperprior
from .mae import ModulatedHyperprior
from .mbt2018 import MeanScaleHyperprior

__all__ = ["PortableScaleHyperprior", "PortableMeanScaleHyperprior", "PortableModulatedHyperprior", "IntegerHyperSynthesis", "PINNED_SCALE_TABLE",
           "OUT_SHIFT", "OUT_BITS", "sigma_thresholds", "integer_hyper_synthesis", "calibrate_shifts",
           "is_portable", "portable_spec", "float_spec"]

# The 64 Gaussian scales of lic_jax.entropy_models.gaussian.scale_table() (CompressAI's
# exp(linspace(log 0.11, log 256, 64)) rounded to float32), pinned as IEEE-754 bit patterns so
# that the integer thresholds never depend on a platform's exp(); tests/test_portable.py checks
# that scale_table() still equals it.
_PINNED_BITS = (
    0x3DE147AE, 0x3DFEC794, 0x3E10122F, 0x3E22EFC6, 0x3E3845C8, 0x3E506705, 0x3E6BB124, 0x3E854709,
    0x3E96BACD, 0x3EAA779A, 0x3EC0CA0D, 0x3EDA08CA, 0x3EF695CB, 0x3F0B6FF2, 0x3F1DB233, 0x3F325888,
    0x3F49B317, 0x3F641C85, 0x3F80FDAB, 0x3F91E1BC, 0x3FA4FC06, 0x3FBA96AE, 0x3FD3058E, 0x3FEEA77B,
    0x4006F3DB, 0x40189FC6, 0x402C9C15, 0x4043365A, 0x405CC650, 0x4079AF2F, 0x408D3096, 0x409FAD96,
    0x40B4965C, 0x40CC3C0F, 0x40E6FA78, 0x41029CB2, 0x4113B71C, 0x41270EDD, 0x413CEF07, 0x4155AC84,
    0x4171A75A, 0x4188A611, 0x419A8AD8, 0x41AEC774, 0x41C5AA73, 0x41DF8CA8, 0x41FCD28B, 0x420EF6DD,
    0x4221AF5A, 0x4236DB67, 0x424ECD2F, 0x4269E1A4, 0x428440F1, 0x42959262, 0x42A9285F, 0x42BF4EEC,
    0x42D85C03, 0x42F4B0E0, 0x430A5DBC, 0x431C7C15, 0x4330F9CF, 0x43482670, 0x43625BEE, 0x43800000,
)
PINNED_SCALE_TABLE = np.array(_PINNED_BITS, np.uint32).view(np.float32)
OUT_SHIFT = 16  # σ and μ leave the integer network at scale 2**-16
OUT_BITS = 24  # |σ_int|, |μ_int| < 2**24: σ, μ < 256, and μ_int · 2**-16 is exact in float32


def sigma_thresholds(out_shift: int = OUT_SHIFT) -> np.ndarray:
    """T_i (i = 0 … 62): the table index of σ = σ_int · 2**−out_shift is ``#{i: σ_int ≥ T_i}``.

    ``scale_indexes`` picks ``#{i < 63: t_i < max(σ, 0.11)}`` (t = the scale table; t_0 = 0.11, so
    the lower bound never changes the count). ``t_i < σ_int · 2**−k`` ⇔ ``σ_int > t_i · 2**k`` ⇔
    ``σ_int ≥ floor(t_i · 2**k) + 1`` — exact in float64 (t_i is a float32, times a power of two).
    """
    t = PINNED_SCALE_TABLE[:-1].astype(np.float64)
    return (np.floor(np.ldexp(t, int(out_shift))) + 1).astype(np.int64)


def is_portable(model) -> bool:
    """True for a model whose entropy parameters come from a calibrated integer network."""
    return bool(getattr(model, "int_shifts", ()))


# ---------------------------------------------------------------------------------------------
# the integer network (decoder and encoder)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class IntegerHyperSynthesis:
    """ẑ's integer symbols → (table indexes, μ) with integer arithmetic only.

    layers: the integer h_s; in_shift / in_max: the input scale and clip; centres: ``m_c`` (int32,
    per z channel; zeros for a zero-mean z); n_scales: output channels that are σ (the rest μ);
    thresholds: :func:`sigma_thresholds`.
    """

    layers: tuple
    in_shift: int
    in_max: int
    centres: np.ndarray
    n_scales: int
    thresholds: np.ndarray
    has_means: bool

    def __post_init__(self):
        il.check_bounds(self.layers, self.in_max)  # the exactness proof, before anything runs
        object.__setattr__(self, "_fn", jax.jit(self._apply))

    def _apply(self, q):
        a = q.astype(jnp.int32) * jnp.int32(2**self.in_shift) + jnp.asarray(self.centres, jnp.int32)
        a = jnp.clip(a, -self.in_max, self.in_max)
        out = il.apply_integer_network(self.layers, a)
        s = out[..., : self.n_scales]
        idx = jnp.sum((s[..., None] >= jnp.asarray(self.thresholds, jnp.int32)).astype(jnp.int32), axis=-1)
        if not self.has_means:
            return idx, None
        mu = jnp.clip(out[..., self.n_scales:], -(2**OUT_BITS - 1), 2**OUT_BITS - 1)
        return idx, mu

    def __call__(self, q: np.ndarray):
        """q: int (1, h, w, C) z symbols → (indexes int32, μ float32 or None), numpy, (1, H, W, M)."""
        if abs(int(np.max(np.abs(q), initial=0))) > 2**30:
            raise ValueError("z symbols out of range for the integer network")
        idx, mu = self._fn(jnp.asarray(q, jnp.int32))
        idx = np.asarray(idx, np.int32)
        if mu is None:
            return idx, None
        return idx, np.ldexp(np.asarray(mu, np.int64).astype(np.float64), -OUT_SHIFT).astype(np.float32)

    def digest(self) -> str:
        """SHA-256 of every integer and shift (a file's distribution is a function of exactly this)."""
        h = hash_layers(self.layers)
        h.update(np.asarray(self.centres, np.int64).tobytes())
        h.update(np.asarray(self.thresholds, np.int64).tobytes())
        h.update(repr((self.in_shift, self.in_max, self.n_scales, self.has_means)).encode())
        return h.hexdigest()


def hash_layers(layers):
    """A SHA-256 object fed with every integer and shift of ``layers`` (the common part of the
    integer networks' ``digest()``)."""
    h = hashlib.sha256()
    for layer in layers:
        for a in (layer.kernel, layer.bias, layer.q):
            h.update(np.ascontiguousarray(a, np.int64).tobytes())
        h.update(repr((layer.in_shift, layer.out_shift, layer.stride, layer.transpose, layer.activation,
                       layer.act_bits)).encode())
    return h


def _centres(params, in_shift: int, channels: int) -> np.ndarray:
    eb = params.get("entropy_bottleneck")
    if eb is None or "quantiles" not in eb:
        return np.zeros(channels, np.int32)
    med = np.asarray(eb["quantiles"], np.float32).reshape(channels, -1)[:, 1].astype(np.float64)
    return np.floor(np.ldexp(med, int(in_shift)) + 0.5).astype(np.int32)


def integer_hyper_synthesis(model, params) -> IntegerHyperSynthesis:
    """The integer h_s of a calibrated portable model (a pure function of the float params and
    ``model.int_shifts``)."""
    if not is_portable(model):
        raise ValueError(f"{type(model).__name__} has no calibrated integer entropy path (int_shifts is empty)")
    layout, shifts = model.integer_layout, tuple(int(s) for s in model.int_shifts)
    if len(shifts) != len(layout):
        raise ValueError(f"int_shifts has {len(shifts)} entries; the integer h_s has {len(layout)} layers "
                         "(input shift + one per hidden layer)")
    outs = list(shifts[1:]) + [OUT_SHIFT]
    layers = []
    for i, (name, transpose, stride, act) in enumerate(layout):
        last = i == len(layout) - 1
        p = params[name]
        layers.append(il.quantize_conv(p["kernel"], p["bias"], shifts[i], model.weight_bits, out_shift=outs[i],
                                       stride=stride, transpose=transpose, activation=act,
                                       act_bits=OUT_BITS if last else model.act_bits))
    cz = np.asarray(params[layout[0][0]]["kernel"]).shape[2]
    means = model.hyper_means
    m_out = np.asarray(params[layout[-1][0]]["kernel"]).shape[3]
    return IntegerHyperSynthesis(tuple(layers), shifts[0], 2 ** (model.input_bits - 1) - 1,
                                 _centres(params, shifts[0], cz), m_out // 2 if means else m_out,
                                 sigma_thresholds(OUT_SHIFT), means)


# ---------------------------------------------------------------------------------------------
# calibration (once, from training crops)
# ---------------------------------------------------------------------------------------------
def _shift_for(amax: float, bits: int, signed: bool, floor: float) -> int:
    """Largest k with max(amax, floor) · 2**k ≤ the largest value of a ``bits``-bit (un)signed
    integer. ``floor`` keeps the scale sane for (nearly) dead inputs: ẑ is integer-spaced, so
    |ẑ| ≥ 1 is always representable; hidden activations keep at least 2**−6 of range."""
    lim = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return int(math.floor(math.log2(lim / max(float(amax), floor))))


def calibrate_shifts(model, variables, images: Sequence[np.ndarray]) -> tuple:
    """``int_shifts`` for ``model`` (a portable class, calibrated or not) from float images in [0, 1]
    (H, W, 3): the input shift from max |ẑ|, each hidden layer's from the max of its float
    activations (signed for leaky layers). Use training crops, never the evaluation set."""
    from .base import pad_image

    float_model = model.clone(int_shifts=())

    def maxima_over(method):
        f = jax.jit(lambda v, x: float_model.apply(v, x, method=method))
        maxima = None
        for img in images:
            x = pad_image(jnp.asarray(img, jnp.float32)[None], model.downsampling)
            m = [float(v) for v in f(variables, x)]
            maxima = m if maxima is None else [max(a, b) for a, b in zip(maxima, m)]
        return maxima

    if hasattr(model, "calibration"):  # a model that lists its own scaled quantities (mbt2018-int)
        return tuple(_shift_for(m, getattr(model, bits), signed, fl)
                     for m, (_, bits, signed, fl) in zip(maxima_over("calibration_maxima"), model.calibration))
    n_hidden = len(model.integer_layout) - 1

    def acts_at(m, x, lmbda):
        z = m.hyper_analysis(m.analysis(x) if lmbda is None else m.analysis(x, lmbda))
        med = m.entropy_bottleneck.medians()
        a = jnp.round(z - med) + med
        out = [a]
        for i in range(n_hidden):  # h_s = [conv, act, conv, act, …]
            a = m.h_s[2 * i + 1](m.h_s[2 * i](a))
            out.append(a)
        return [jnp.max(jnp.abs(o)) for o in out]

    def acts(m, x):
        if not getattr(m, "variable_rate", False):
            return acts_at(m, x, None)
        # a variable-rate model (mae-hyperprior-int): h_s is not modulated, but its input ẑ depends on
        # λ; the scales must hold at every trained λ, so each maximum is taken over the whole λ set
        per = [acts_at(m, x, jnp.float32(lam)) for lam in m.lmbdas]
        return [jnp.max(jnp.stack(v)) for v in zip(*per)]

    maxima = maxima_over(acts)
    hidden_signed = [act == "leaky" for _, _, _, act in model.integer_layout[:-1]]
    shifts = [_shift_for(maxima[0], model.input_bits, True, 1.0)]
    shifts += [_shift_for(m, model.act_bits, s, 2.0**-6) for m, s in zip(maxima[1:], hidden_signed)]
    return tuple(shifts)


# ---------------------------------------------------------------------------------------------
# the model classes
# ---------------------------------------------------------------------------------------------
def _fake_quant_h_s(model, z_hat):
    p = model.variables["params"]
    shifts = tuple(int(s) for s in model.int_shifts)
    outs = list(shifts[1:]) + [OUT_SHIFT]
    a = il.fake_quant_act(z_hat, shifts[0], model.input_bits, signed=True)
    n = len(model.integer_layout)
    for i, (name, transpose, stride, act) in enumerate(model.integer_layout):
        a = il.fake_quant_conv(p[name]["kernel"], p[name]["bias"], a, in_shift=shifts[i], out_shift=outs[i],
                               weight_bits=model.weight_bits, stride=stride, transpose=transpose, activation=act,
                               act_bits=OUT_BITS if i == n - 1 else model.act_bits)
    return a


class PortableScaleHyperprior(ScaleHyperprior):
    """``bmshj2018-hyperprior-int``: the scale hyperprior (Ballé et al. 2018, eq. 9–10) with an integer
    h_s (the paper above, eq. 1–2 with QReLU): deconv 5/2 → QReLU → deconv 5/2 → QReLU → conv 3/1 →
    QReLU(24 bit) = σ · 2**16. Same parameters as ``bmshj2018-hyperprior`` (its weights load 1:1)."""

    int_shifts: tuple = ()
    weight_bits: int = 8
    act_bits: int = 10
    input_bits: int = 12

    integer_layout = (("h_s_0", True, 2, "qrelu"), ("h_s_2", True, 2, "qrelu"), ("h_s_4", False, 1, "qrelu"))
    hyper_means = False

    def hyper_synthesis(self, z_hat):
        if not self.int_shifts:
            return super().hyper_synthesis(z_hat)
        return {"scales": _fake_quant_h_s(self, z_hat)}


class PortableMeanScaleHyperprior(MeanScaleHyperprior):
    """``mbt2018-mean-int``: the mean-scale hyperprior (Minnen et al. 2018, eq. 3 without context) with an
    integer h_s: deconv 5/2 → integer leaky ReLU → deconv 5/2 → integer leaky ReLU → conv 3/1, whose
    2M outputs are σ · 2**16 and μ · 2**16 (integers). Same parameters as ``mbt2018-mean``."""

    int_shifts: tuple = ()
    weight_bits: int = 8
    act_bits: int = 10
    input_bits: int = 12

    integer_layout = (("h_s_0", True, 2, "leaky"), ("h_s_2", True, 2, "leaky"), ("h_s_4", False, 1, "none"))
    hyper_means = True

    def hyper_synthesis(self, z_hat):
        if not self.int_shifts:
            return super().hyper_synthesis(z_hat)
        scales, means = jnp.split(_fake_quant_h_s(self, z_hat), 2, axis=-1)
        return {"scales": scales, "means": means}


class PortableModulatedHyperprior(ModulatedHyperprior):
    """``mae-hyperprior-int``: the variable-rate modulated hyperprior (Yang et al., IEEE SPL 2020, §II,
    eqs. 1–4, on Ballé et al. 2018's scale hyperprior, eq. 9–10) with the integer h_s of
    :class:`PortableScaleHyperprior`. Only g_a and g_s are modulated by λ; h_s is not, so one integer
    network serves every λ (its scales are calibrated over the whole trained λ set,
    :func:`calibrate_shifts`). Same parameters as ``mae-hyperprior``. The bundled default model."""

    int_shifts: tuple = ()
    weight_bits: int = 8
    act_bits: int = 10
    input_bits: int = 12

    integer_layout = PortableScaleHyperprior.integer_layout
    hyper_means = False

    def hyper_synthesis(self, z_hat):
        if not self.int_shifts:
            return super().hyper_synthesis(z_hat)
        return {"scales": _fake_quant_h_s(self, z_hat)}


def portable_spec(spec, variables, images: Sequence[np.ndarray]):
    """The :class:`~lic_jax.models.registry.ModelSpec` of ``spec``'s portable twin, calibrated on
    ``images`` (float (H, W, 3) in [0, 1]; training crops, never the evaluation set). The twin uses
    the same ``variables``, so an artifact needs no second copy of the weights:
    ``save_artifact(path, portable_spec(spec, v, crops), v)``."""
    from .registry import ModelSpec, portable_twin

    name = portable_twin(spec.name)
    hp = {k: v for k, v in spec.hparams.items() if k != "int_shifts"}
    model = ModelSpec(name, spec.quality, hp).build()
    shifts = calibrate_shifts(model, variables, images)
    return ModelSpec(name, spec.quality, {**hp, "int_shifts": list(shifts)})


def float_spec(spec):
    """The float twin of a portable spec (same weights): decodes files written by the float model."""
    from .registry import ModelSpec, record

    rec = record(spec.name)
    if rec.portable_of is None:
        return spec
    hp = {k: v for k, v in spec.hparams.items()
          if k not in ("int_shifts", "weight_bits", "act_bits", "input_bits", "feature_bits")}
    return ModelSpec(rec.portable_of, spec.quality, hp)
