"""Integer convolution layers whose outputs are bit-exact on every platform.

Ballé, Johnston & Minnen, "Integer Networks for Data Compression with Latent-Variable Models",
ICLR 2019 (below: *the paper*). A range coder fails catastrophically if the entropy-model
parameters differ by one ulp between the encoder and the decoder; the paper's remedy (§1, §2) is
to compute them with integer arithmetic only, so the result is a mathematical function of the
integer inputs and not of the platform.

The paper's integer layer (§2, eqs. 1–2) is

    v = (H u + b) ⊘ c,        w = g(v),

with integer kernel ``H``, integer bias ``b``, a positive integer divisor ``c``, ``⊘`` rounding
division and a bounded integer nonlinearity ``g`` (QReLU, ``g(v) = max(min(v, 2**L − 1), 0)``).
This module restricts ``c`` to powers of two, ``c = 2**s``, so ``⊘`` is :func:`round_shift`
(add half, arithmetic right shift), and gives every activation a power-of-two scale: an integer
activation ``a`` at shift ``k`` stands for the real value ``a · 2**−k``. A float layer with kernel
``w`` and bias ``b`` then becomes (:func:`quantize_conv`)

    Wq[..., c] = rint(w[..., c] · 2**q_c)          (per output channel, |Wq| ≤ 2**(B−1) − 1)
    bq[c]      = rint(b[c] · 2**(q_c + k_in))
    a_out      = g(round_shift(conv(a_in, Wq) + bq, q_c + k_in − k_out))

Exactness (:func:`accumulator_bound`, :func:`check_bounds`): with an exact worst-case bound on
every accumulator below 2**31 − 1, int32 evaluation equals exact integer arithmetic. See
:func:`check_bounds` for the proof.

Conventions: NHWC activations, HWIO kernels (the float layers' (kh, kw, in, out) layout, also for
transposed convolutions), int32 only (JAX runs without x64). Padding matches
:mod:`lic_jax.layers.conv`: ``Conv`` pads ``k // 2`` on every side; ``ConvTranspose`` is PyTorch's
``ConvTranspose2d(k, s, padding=k // 2, output_padding=s − 1)``.

All functions are pure; layers are frozen dataclasses of numpy arrays (host constants).

This module imports only numpy and jax (no other lic_jax module), so it can be loaded by file
path in another environment (the cross-version test does that).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "INT32_MAX",
    "LEAKY_NUM",
    "LEAKY_SHIFT",
    "IntegerConv",
    "round_shift",
    "round_shift_per_channel",
    "qrelu",
    "qleaky_relu",
    "activation_range",
    "weight_exponents",
    "quantize_conv",
    "apply_integer_conv",
    "apply_integer_taps",
    "apply_integer_network",
    "accumulator_bound",
    "check_bounds",
    "fake_quant_weights",
    "fake_quant_bias",
    "fake_quant_act",
    "fake_quant_leaky",
    "fake_quant_conv",
]

INT32_MAX = 2**31 - 1
# Integer leaky ReLU: negative side multiplied by LEAKY_NUM / 2**LEAKY_SHIFT = 41/4096
# = 0.010009765625 (≈ 0.01, the slope of nn.leaky_relu), then round_shift'ed (ties up).
LEAKY_NUM = 41
LEAKY_SHIFT = 12
_DN = ("NHWC", "HWIO", "NHWC")
_ACTIVATIONS = ("none", "qrelu", "leaky", "clip")


# ---------------------------------------------------------------------------------------------
# rounding division by a power of two (the paper's ⊘ with c = 2**n)
# ---------------------------------------------------------------------------------------------
def round_shift(x, n: int):
    """``x ⊘ 2**n`` for int32 ``x`` and a static integer ``n`` (the paper's rounding division,
    §2 eq. 1, with a power-of-two divisor).

    ``n > 0``: ``(x + 2**(n−1)) >> n`` with an arithmetic shift, i.e. ``floor(x / 2**n + 1/2)``:
    round to nearest, **ties toward +∞** (``round_shift(-3, 1) == -1``, ``round_shift(3, 1) == 2``).
    ``n == 0``: ``x``. ``n < 0``: ``x << −n`` (exact multiplication by ``2**−n``).
    The caller guarantees ``x + 2**(n−1)`` (resp. ``x · 2**−n``) fits in int32 (:func:`check_bounds`).
    """
    n = int(n)
    x = jnp.asarray(x, jnp.int32)
    if n > 31 or n < -31:
        raise ValueError(f"shift {n} out of range for int32")
    if n == 0:
        return x
    if n > 0:
        return jnp.right_shift(x + jnp.int32(1 << (n - 1)), jnp.int32(n))
    return jnp.left_shift(x, jnp.int32(-n))


def round_shift_per_channel(x, n):
    """:func:`round_shift` with one shift per channel (last axis); ``n``: static int array (C,).

    Vectorised and exact: ``where(n > 0, (x + half) >> max(n, 0), x << max(−n, 0))`` with
    ``half = where(n > 0, 2**(n−1), 0)``. Both branches are evaluated on every channel, but the
    discarded one is the identity there (``x << 0`` where n > 0, ``(x + 0) >> 0`` where n ≤ 0), so
    neither can overflow beyond what :func:`check_bounds` already covers.
    """
    n = np.asarray(n, np.int64)
    if n.ndim != 1:
        raise ValueError("per-channel shifts must be a 1-D array")
    if (n > 31).any() or (n < -31).any():
        raise ValueError(f"shifts {n.min()}..{n.max()} out of range for int32")
    x = jnp.asarray(x, jnp.int32)
    if (n == n[0]).all():
        return round_shift(x, int(n[0]))
    pos = np.maximum(n, 0)
    neg = np.maximum(-n, 0)
    half = np.where(n > 0, np.left_shift(1, np.maximum(n - 1, 0)), 0)
    right = jnp.right_shift(x + jnp.asarray(half, jnp.int32), jnp.asarray(pos, jnp.int32))
    left = jnp.left_shift(x, jnp.asarray(neg, jnp.int32))
    return jnp.where(jnp.asarray(n > 0), right, left)


# ---------------------------------------------------------------------------------------------
# bounded integer nonlinearities
# ---------------------------------------------------------------------------------------------
def activation_range(kind: str, bits: int) -> tuple[int, int]:
    """The integer output range [lo, hi] of a nonlinearity (None-kind: unbounded → int32 range)."""
    if kind == "qrelu":
        return 0, 2**bits - 1
    if kind in ("leaky", "clip"):
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if kind == "none":
        return -INT32_MAX, INT32_MAX
    raise ValueError(f"unknown activation {kind!r}; one of {_ACTIVATIONS}")


def qrelu(x, bits: int):
    """QReLU (the paper's bounded ReLU, §2): ``clip(x, 0, 2**bits − 1)``."""
    return jnp.clip(jnp.asarray(x, jnp.int32), 0, 2**bits - 1).astype(jnp.int32)


def qleaky_relu(x, bits: int):
    """Integer leaky ReLU (for mbt2018-style networks): clip ``x`` to the signed range
    ``[−2**(bits−1), 2**(bits−1) − 1]``, then negatives become ``round_shift(x · 41, 12)``:
    slope exactly **41/4096 = 0.010009765625**, ties toward +∞ (−1…−49 → 0, −50 … −149 → −1,
    since ``round_shift(−50·41, 12) = floor(−2050/4096 + ½) = −1``). Clipping first keeps
    ``x · 41`` in int32 for any ``bits ≤ 24``.
    """
    if bits > 24:
        raise ValueError("qleaky_relu supports bits <= 24")
    lo, hi = activation_range("leaky", bits)
    x = jnp.clip(jnp.asarray(x, jnp.int32), lo, hi).astype(jnp.int32)
    return jnp.where(x < 0, round_shift(x * jnp.int32(LEAKY_NUM), LEAKY_SHIFT), x)


def sclip(x, bits: int):
    """Bounded identity (a linear layer whose output feeds another integer layer): clip ``x`` to the
    signed range ``[−2**(bits−1), 2**(bits−1) − 1]``."""
    lo, hi = activation_range("clip", bits)
    return jnp.clip(jnp.asarray(x, jnp.int32), lo, hi).astype(jnp.int32)


def _activate(x, kind: str, bits: int):
    if kind == "qrelu":
        return qrelu(x, bits)
    if kind == "clip":
        return sclip(x, bits)
    if kind == "leaky":
        return qleaky_relu(x, bits)
    if kind == "none":
        return x
    raise ValueError(f"unknown activation {kind!r}; one of {_ACTIVATIONS}")


# ---------------------------------------------------------------------------------------------
# quantisation of a float layer
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class IntegerConv:
    """One integer convolution layer (host constants; see the module docstring).

    kernel: int32 (kh, kw, in, out) — HWIO, also for ``transpose`` (the float layers' layout);
    bias: int32 (out,) at scale 2**−(q + in_shift); q: int32 (out,) weight exponents;
    in_shift / out_shift: activation scales 2**−in_shift / 2**−out_shift; stride;
    transpose: ConvTranspose (PyTorch padding k//2, output_padding stride−1) instead of Conv;
    activation: 'none' | 'qrelu' | 'leaky'; act_bits: the nonlinearity's bit width.
    """

    kernel: np.ndarray
    bias: np.ndarray
    q: np.ndarray
    in_shift: int
    out_shift: int
    stride: int = 1
    transpose: bool = False
    activation: str = "none"
    act_bits: int = 8

    @property
    def shifts(self) -> np.ndarray:
        """Per-channel rescale ``q_c + in_shift − out_shift`` (round_shift amounts)."""
        return np.asarray(self.q, np.int64) + self.in_shift - self.out_shift


def weight_exponents(kernel, weight_bits: int = 8) -> np.ndarray:
    """Per output channel (last axis), the largest integer q_c with
    ``max|w_c| · 2**q_c ≤ 2**(weight_bits−1) − 1``, computed exactly with ``np.frexp`` on the
    float64 of the float32 weights (no log2). With ``max|w_c| = m · 2**e``, m ∈ [½, 1):
    ``q = weight_bits − 1 − e``, minus one if ``m · 2**(weight_bits−1)`` exceeds the limit (exact
    in float64). All-zero channels get ``q = weight_bits − 1``.
    """
    w = np.asarray(np.asarray(kernel, np.float32), np.float64)
    lim = float(2 ** (weight_bits - 1) - 1)
    amax = np.abs(w.reshape(-1, w.shape[-1])).max(axis=0)
    m, e = np.frexp(amax)
    q = (weight_bits - 1) - e.astype(np.int64)
    q = np.where(m * 2.0 ** (weight_bits - 1) > lim, q - 1, q)
    q = np.where(amax == 0, weight_bits - 1, q)
    assert (np.ldexp(amax, q) <= lim).all() and ((np.ldexp(amax, q + 1) > lim) | (amax == 0)).all()
    return q.astype(np.int32)


def quantize_conv(kernel, bias, in_shift: int, weight_bits: int = 8, *, out_shift: int = 0, stride: int = 1,
                  transpose: bool = False, activation: str = "none", act_bits: int = 8) -> IntegerConv:
    """Quantise a float conv layer (kernel HWIO, bias (out,)) for inputs at scale 2**−in_shift.

    Power-of-two per-output-channel weight scales (the paper §3 rescales each filter; here the
    scale is restricted to 2**q_c so the divisor c of eq. 1 is a power of two):
    ``Wq = rint(w · 2**q_c)``, ``bq = rint(b · 2**(q_c + in_shift))`` (host float64, round half
    to even; exact since multiplying by a power of two is exact).
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; one of {_ACTIVATIONS}")
    w = np.asarray(np.asarray(kernel, np.float32), np.float64)
    b = np.zeros(w.shape[-1]) if bias is None else np.asarray(np.asarray(bias, np.float32), np.float64)
    q = weight_exponents(kernel, weight_bits)
    wq = np.rint(np.ldexp(w, q.astype(np.int64)))
    bq = np.rint(np.ldexp(b, q.astype(np.int64) + int(in_shift)))
    if np.abs(bq).max(initial=0) > INT32_MAX:
        raise ValueError("quantised bias does not fit in int32 (in_shift too large?)")
    return IntegerConv(wq.astype(np.int32), bq.astype(np.int32), q, int(in_shift), int(out_shift), int(stride),
                       bool(transpose), activation, int(act_bits))


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
_BLOCK_ELEMS = 1 << 23  # im2col block size (int32 elements, 32 MiB): rows per block = this / (W_out · taps · C_in)


def _taps_dot(a_pad, offsets, wmat, Ho: int, Wo: int, stride: int):
    """``out[n, m, j] = Σ_t a_pad[n, oh_t + s·m, ow_t + s·j, :] · W_t`` for the taps ``offsets`` =
    [(oh_t, ow_t)] and ``wmat`` = the W_t stacked in the same order, (T·C_in, C_out): im2col blocks
    of output rows and one int32 matrix product per block (XLA:CPU evaluates integer convolutions
    with a slow generic loop, integer dots with Eigen's contraction, ~10× faster here)."""
    n, cin = a_pad.shape[0], a_pad.shape[-1]
    rows = max(1, _BLOCK_ELEMS // max(1, n * Wo * len(offsets) * cin))
    outs = []
    for r0 in range(0, Ho, rows):
        r1 = min(Ho, r0 + rows)
        cols = [a_pad[:, oh + stride * r0: oh + stride * (r1 - 1) + 1: stride, ow: ow + stride * (Wo - 1) + 1: stride, :]
                for oh, ow in offsets]
        patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
        outs.append(jnp.dot(patches, wmat, preferred_element_type=jnp.int32))
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=1)


def _int_conv(a, kernel, stride: int, transpose: bool):
    """int32 convolution with lic_jax's float geometry (:mod:`lic_jax.layers.conv`), as int32 matrix
    products (:func:`_taps_dot`). Exact under :func:`check_bounds` whatever the evaluation order."""
    kh, kw, cin, cout = kernel.shape
    kern = np.asarray(kernel, np.int32)
    N, H, W, _ = a.shape
    if not transpose:
        ph, pw = kh // 2, kw // 2
        a_pad = jnp.pad(a, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        Ho, Wo = (H + 2 * ph - kh) // stride + 1, (W + 2 * pw - kw) // stride + 1
        offsets = [(th, tw) for th in range(kh) for tw in range(kw)]
        return _taps_dot(a_pad, offsets, jnp.asarray(kern.reshape(kh * kw * cin, cout)), Ho, Wo, stride)
    if kw != kh:
        raise ValueError("only square transposed kernels are supported")
    # ConvTranspose2d(k, s, padding p = k//2, output_padding s − 1): out[i·s − p + t] += a[i] · W[t].
    # Output o = s·m + r (phase r) receives the taps t ≡ r + p (mod s) from a[m + d_t], d_t = (r + p − t) / s:
    # each phase is a small stride-1 correlation (no multiplications by inserted zeros).
    k, s, p = kh, stride, kh // 2
    if s * H + k - 2 * p - 1 != s * H:
        raise ValueError("transposed integer convolutions need an odd kernel (output = stride × input)")
    taps = [[(t, (r + p - t) // s) for t in range(k) if (t - r - p) % s == 0] for r in range(s)]
    lo = max(0, -min(d for ts in taps for _, d in ts))
    hi = max(0, max(d for ts in taps for _, d in ts))
    a_pad = jnp.pad(a, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
    phases = []
    for rh in range(s):
        row = []
        for rw in range(s):
            pairs = [(th, dh, tw, dw) for th, dh in taps[rh] for tw, dw in taps[rw]]
            wmat = np.concatenate([kern[th, tw] for th, _, tw, _ in pairs], axis=0)
            offsets = [(lo + dh, lo + dw) for _, dh, _, dw in pairs]
            row.append(_taps_dot(a_pad, offsets, jnp.asarray(wmat), H, W, 1))
        phases.append(jnp.stack(row, axis=3))  # (N, H, W, s_w, C)
    out = jnp.stack(phases, axis=2)  # (N, H, s_h, W, s_w, C)
    return out.reshape(N, s * H, s * W, cout)


def apply_integer_conv(layer: IntegerConv, a):
    """``g(round_shift(conv(a, Wq) + bq, q_c + in_shift − out_shift))`` — the paper's eqs. 1–2 with
    c_c = 2**(q_c + in_shift − out_shift). ``a``: int32 NHWC at scale 2**−in_shift; returns int32
    at scale 2**−out_shift. Exact when :func:`check_bounds` accepts the layer for ``a``'s range."""
    a = jnp.asarray(a, jnp.int32)
    acc = _int_conv(a, layer.kernel, layer.stride, layer.transpose) + jnp.asarray(layer.bias, jnp.int32)
    return _activate(round_shift_per_channel(acc, layer.shifts), layer.activation, layer.act_bits)


def apply_integer_taps(layer: IntegerConv, patches):
    """One output pixel of a (stride-1, non-transposed) integer convolution per window:
    ``patches`` int32 (..., kh, kw, in) → (..., out), the same ``g(round_shift(Σ Wq·a + bq, n))``
    as :func:`apply_integer_conv` at the window's centre (a 1×1 layer takes (..., 1, 1, in)).
    An int32 ``dot_general``; exact under the same :func:`check_bounds` proof (the sum runs over a
    subset of the taps that bound covers)."""
    if layer.transpose or layer.stride != 1:
        raise ValueError("apply_integer_taps needs a stride-1 convolution")
    a = jnp.asarray(patches, jnp.int32)
    kern = jnp.asarray(layer.kernel, jnp.int32)
    acc = lax.dot_general(a, kern, (((a.ndim - 3, a.ndim - 2, a.ndim - 1), (0, 1, 2)), ((), ())),
                          preferred_element_type=jnp.int32) + jnp.asarray(layer.bias, jnp.int32)
    return _activate(round_shift_per_channel(acc, layer.shifts), layer.activation, layer.act_bits)


def apply_integer_network(layers: Sequence[IntegerConv], a):
    """Apply layers in order (each output feeds the next)."""
    for layer in layers:
        a = apply_integer_conv(layer, a)
    return a


# ---------------------------------------------------------------------------------------------
# bounds: why int32 evaluation is exact
# ---------------------------------------------------------------------------------------------
def _tap_abs_sums(layer: IntegerConv) -> np.ndarray:
    """(out,) max over output positions of Σ_{taps that reach it, in} |Wq| (python ints via int64)."""
    w = np.abs(np.asarray(layer.kernel, np.int64))  # (kh, kw, in, out)
    per_tap = w.sum(axis=2)  # (kh, kw, out)
    if not layer.transpose or layer.stride == 1:
        return per_tap.sum(axis=(0, 1))
    # transposed: output o receives taps t ≡ (o + p) (mod s) in each dimension; all phases occur
    s = layer.stride
    best = np.zeros(w.shape[-1], np.int64)
    for rh in range(s):
        for rw in range(s):
            best = np.maximum(best, per_tap[rh::s, rw::s].sum(axis=(0, 1)))
    return best


def accumulator_bound(layer: IntegerConv, in_max: int) -> np.ndarray:
    """Exact worst case of |conv(a, Wq) + bq| per output channel for |a| ≤ in_max (int64, host):
    ``Σ_{taps reaching one output} |Wq| · in_max + |bq|`` (zero padding only removes terms; for a
    transposed convolution only the taps of one output phase ``t ≡ o + p (mod s)`` reach an
    output). The bound is attained (for a suitable sign pattern of ``a``), so it is not loose."""
    return _tap_abs_sums(layer) * int(in_max) + np.abs(np.asarray(layer.bias, np.int64))


def _out_max(layer: IntegerConv, bound: np.ndarray) -> int:
    lo, hi = activation_range(layer.activation, layer.act_bits)
    if layer.activation != "none":
        return max(-lo, hi)
    s = layer.shifts
    # |round_shift(v, s)| ≤ ceil(|v| / 2**s) for s > 0; |v| · 2**−s for s ≤ 0
    post = np.where(s > 0, -((-bound) >> np.maximum(s, 0)), bound << np.maximum(-s, 0))
    return int(post.max())


def check_bounds(layers: Sequence[IntegerConv], in_max: int) -> list[int]:
    """Prove, before anything runs, that int32 evaluation of ``layers`` is exact for inputs with
    |a| ≤ ``in_max``; raise ``ValueError`` naming the layer otherwise. Returns each layer's
    largest accumulator bound.

    Proof. Let B_c = Σ|Wq|·in_max + |bq_c| (:func:`accumulator_bound`) and suppose
    B_c + 2**(n_c − 1) ≤ 2**31 − 1 (n_c > 0: the rounding offset of :func:`round_shift`), resp.
    B_c · 2**−n_c ≤ 2**31 − 1 (n_c ≤ 0). Any partial sum of the accumulator — a sum over any
    subset of the products Wq·a and the bias, in any order and any grouping — is bounded in
    absolute value by the sum of the absolute values of *all* its terms, which is ≤ B_c. So no
    intermediate result overflows, and since integer addition without overflow is exact,
    associative and commutative, every evaluation order gives the one mathematical sum: the
    result is independent of summation order, tiling, fusion, threading, vectorisation and XLA
    flags (fast-math only licenses float reassociation; integer sums without overflow are exact
    in any order). Float evaluation would not be: above 2**24 float32 partial sums round, and
    the rounding depends on the order.
    The rounding offset and the shift are then exact integer ops, the nonlinearity clips to a
    known range, which bounds the next layer's input (qrelu: 2**bits − 1, leaky and clip: 2**(bits−1),
    none: ceil(B / 2**n)); induction over the layers completes the proof.
    """
    bounds = []
    in_max = int(in_max)
    for i, layer in enumerate(layers):
        b = accumulator_bound(layer, in_max)
        s = layer.shifts
        half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
        peak = np.where(s > 0, b + half, b << np.maximum(-s, 0))
        worst = int(peak.max())
        if worst >= INT32_MAX or int(b.max()) >= INT32_MAX:
            c = int(peak.argmax())
            raise ValueError(f"layer {i}: worst-case accumulator {worst} (channel {c}, inputs |a| <= {in_max}) "
                             f"reaches int32's limit {INT32_MAX}; int32 evaluation would not be exact. "
                             f"Use fewer weight/activation bits or smaller shifts.")
        bounds.append(int(b.max()))
        in_max = _out_max(layer, b)
    return bounds


# ---------------------------------------------------------------------------------------------
# float "fake-quant" twin (quantisation-aware training)
# ---------------------------------------------------------------------------------------------
def _ste(x, value):
    """``value`` in the forward pass, identity gradient w.r.t. ``x``."""
    return x + lax.stop_gradient(value - x)


def fake_quant_weights(w, bits: int = 8):
    """Float twin of :func:`quantize_conv`'s weights: ``rint(w · 2**q_c) · 2**−q_c`` with q_c as in
    :func:`weight_exponents` (per output channel = last axis; computed with ``jnp.frexp``,
    exactly like the host version), straight-through gradient (identity)."""
    w = jnp.asarray(w, jnp.float32)
    wd = lax.stop_gradient(w)
    amax = jnp.max(jnp.abs(wd.reshape(-1, wd.shape[-1])), axis=0)
    m, e = jnp.frexp(amax)
    lim = float(2 ** (bits - 1) - 1)
    q = (bits - 1) - e
    q = jnp.where(m * 2.0 ** (bits - 1) > lim, q - 1, q)
    q = jnp.where(amax == 0, bits - 1, q)
    value = jnp.ldexp(jnp.round(jnp.ldexp(wd, q)), -q)  # jnp.round: half to even, as np.rint
    return _ste(w, value), q


def fake_quant_bias(b, q, in_shift: int):
    """Float twin of the quantised bias: ``rint(b · 2**(q_c + in_shift)) · 2**−(q_c + in_shift)``, STE."""
    b = jnp.asarray(b, jnp.float32)
    e = q + in_shift
    return _ste(b, jnp.ldexp(jnp.round(jnp.ldexp(lax.stop_gradient(b), e)), -e))


def fake_quant_act(x, shift: int, bits: int, signed: bool = False):
    """Float twin of an activation at scale 2**−shift: ``clip(floor(x · 2**shift + ½), lo, hi) ·
    2**−shift`` (round half up, as :func:`round_shift`; unsigned = QReLU range [0, 2**bits − 1],
    signed = [−2**(bits−1), 2**(bits−1) − 1]). Gradient: identity inside the clip range, 0 outside
    (straight-through estimator; the paper §3 instead substitutes a smooth gradient for QReLU)."""
    x = jnp.asarray(x, jnp.float32)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    v = jnp.floor(jnp.ldexp(lax.stop_gradient(x), shift) + 0.5)
    value = jnp.ldexp(jnp.clip(v, lo, hi), -shift)
    inside = (x >= lo * 2.0**-shift) & (x <= hi * 2.0**-shift)
    xs = jnp.where(inside, x, lax.stop_gradient(x))
    return _ste(xs, value)


def fake_quant_leaky(x, shift: int, bits: int):
    """Float twin of :func:`qleaky_relu` at scale 2**−shift (STE: slope 1 / 41/4096 / 0)."""
    v = fake_quant_act(x, shift, bits, signed=True)  # value: integer · 2**−shift
    vi = jnp.ldexp(lax.stop_gradient(v), shift)  # exact integer in float32 (|vi| ≤ 2**23)
    neg = jnp.ldexp(jnp.floor(vi * LEAKY_NUM / 2.0**LEAKY_SHIFT + 0.5), -shift)
    slope = jnp.where(vi < 0, LEAKY_NUM / 2.0**LEAKY_SHIFT, 1.0)
    return _ste(v * slope, jnp.where(vi < 0, neg, v))


def fake_quant_conv(kernel, bias, x, *, in_shift: int, out_shift: int, weight_bits: int = 8, stride: int = 1,
                    transpose: bool = False, activation: str = "none", act_bits: int = 8,
                    precision=lax.Precision.HIGHEST):
    """Float forward of the same layer as ``apply_integer_conv(quantize_conv(...), a)``.

    Equals ``integer output · 2**−out_shift`` exactly when ``x`` is on the 2**−in_shift grid and
    every accumulator bound plus rounding offset (in integer units, B_c + 2**(n_c−1)) is < 2**24:
    then every product and every partial sum is an integer multiple of 2**−(q_c + in_shift) of
    magnitude < 2**24 units, so float32 represents it exactly, the float sum equals the integer
    one in any order, and ``y · 2**out_shift + ½`` is the exact ``(acc + 2**(n−1)) · 2**−n``. Beyond 2**24
    (large fan-in × wide activations), or with reduced-precision matmuls (TF32/bf16 on GPUs —
    hence ``precision=HIGHEST``) the float twin rounds and can differ by one step of the output
    grid near rounding ties; the integer path is the reference. ``activation='none'`` is not
    clipped (as in the integer path).
    """
    wq, q = fake_quant_weights(kernel, weight_bits)
    bq = jnp.zeros(wq.shape[-1], jnp.float32) if bias is None else fake_quant_bias(bias, q, in_shift)
    k = wq.shape[0]
    if not transpose:
        pad = ((k // 2, k // 2), (wq.shape[1] // 2, wq.shape[1] // 2))
        y = lax.conv_general_dilated(x, wq, (stride, stride), pad, dimension_numbers=_DN, precision=precision)
    else:
        p, op = k // 2, stride - 1
        pad = ((k - 1 - p, k - 1 - p + op),) * 2
        y = lax.conv_general_dilated(x, wq[::-1, ::-1], (1, 1), pad, lhs_dilation=(stride, stride),
                                     dimension_numbers=_DN, precision=precision)
    y = y + bq
    if activation == "qrelu":
        return fake_quant_act(y, out_shift, act_bits, signed=False)
    if activation == "leaky":
        return fake_quant_leaky(y, out_shift, act_bits)
    if activation == "clip":
        return fake_quant_act(y, out_shift, act_bits, signed=True)
    if activation == "none":
        v = jnp.floor(jnp.ldexp(lax.stop_gradient(y), out_shift) + 0.5)
        return _ste(y, jnp.ldexp(v, -out_shift))
    raise ValueError(f"unknown activation {activation!r}; one of {_ACTIVATIONS}")
