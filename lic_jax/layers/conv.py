"""Convolutions with CompressAI's padding semantics, NHWC.

* ``Conv``: stride-s convolution padded symmetrically by ``k // 2`` (CompressAI ``conv``), so a
  PyTorch ``Conv2d(k, s, padding=k//2)`` weight gives the same output. Flax's ``padding='SAME'``
  pads (1, 2) for k=5, s=2 and does **not** match. On XLA:CPU its gradient (not its forward)
  goes through the Winograd form where that is faster (``conv2d``'s custom VJP; the switch is
  ``LIC_JAX_CONV_GRAD=xla``).
* ``ConvTranspose``: PyTorch ``ConvTranspose2d(k, s, padding=p, output_padding=op)`` (CompressAI
  ``deconv``: p = k//2, op = s-1, output = s·input). The kernel is kept in the papers' layout
  (kh, kw, in, out; ``out[i·s − p + t] += x[i] · W[t]``) and computed by one of five
  equivalent formulations (exact up to float rounding), chosen per backend (``impl='auto'``):

  - ``'transpose'``: input-dilated convolution with the flipped kernel (``lax.conv_transpose``);
  - ``'subpixel'``: a stride-1 convolution whose s² output phases are gathered from the same
    kernel, followed by depth-to-space. On XLA:CPU the gradient of a transposed convolution is
    15–19× slower than that of a plain convolution (``shared/docs/PERF_ANCHORS.md``); the
    sub-pixel form turns it into plain convolutions. It is the default on CPU.
  - ``'winograd'``: the sub-pixel form with its 3×3 convolution computed by Winograd's minimal
    filtering F(2×2, 3×3) (Lavin & Gray 2016, eq. 8): 16 matrix products between an input and an
    output tile transform, 2.25× fewer multiplies. On XLA:CPU its forward is 16–22 % faster than
    the sub-pixel convolution on the synthesis layers with many output channels and its backward
    up to 6.8× faster (all matrix products), but it is 3–4× slower on the 3-channel last layer
    (``benchmarks/conv_forms.py``, ``docs/SPEED.md``). Its float error is below the sub-pixel form's.
    ``'auto'`` (training) uses it on CPU for layers with more than 4 output channels
    (:func:`resolve_transpose_impl`). Its floats depend on where the 2×2 tiles start, on the
    number of tiles (XLA:CPU's matrix products round differently per shape) and, where the
    transposed kernel has zero sub-pixel taps, on one input more than the exact receptive field.
  - ``'winograd-blocked'``: the same, with every matrix product done in fixed blocks of
    :data:`WINOGRAD_BLOCK` tiles (the last block zero-padded), so every product has one shape
    whatever the image size, and a tile's floats no longer depend on the number of tiles. The
    tiler (``coding/tiling.py``) aligns the tiles' starts and widens the halo for the other two
    dependences, and tiled x̂ then equals untiled x̂ bit for bit (``docs/LARGE_IMAGES.md``). The
    codec's decoder (``'auto-inference'``) uses it on CPU; it is also the fallback of the next form.
  - ``'winograd-phases'`` (5×5 stride 2, the CompressAI ``deconv`` of every synthesis here): Winograd
    over the four output phases with their exact taps, F(2, 3) for the 3-tap phase and F(2, 2)
    for the 2-tap phase per axis: 49 products of width out per 4 × 4 output tile instead of 16 of
    width 4·out, 0.77× the multiplies (:func:`winograd_phases_5x5s2`), in the same fixed-shape
    blocks. Opt-in: mbt2018's synthesis runs 13–17 % faster than in the blocked sub-pixel form
    (hyperprior 8–15 %), but XLA:CPU compiles the synthesis ≈ 3× longer (13.6–15.9 s against
    3.9–5.3 s, side by side), which a one-image ``lic decompress`` pays in full (``docs/SPEED.md``). Its outputs depend only on their
    exact taps (the tiler's halo stays the receptive field's) and on the tiles' starts (aligned).
* ``MaskedConv``: PixelCNN masked convolution, type 'A' (excludes the centre) or 'B'.

Initialisation follows PyTorch's defaults (``U(±1/sqrt(fan_in))`` with PyTorch's fan-in), so
training from scratch behaves like CompressAI's.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["Conv", "ConvTranspose", "MaskedConv", "conv2d", "conv_transpose2d", "causal_mask", "winograd_conv3x3",
           "resolve_transpose_impl", "subpixel_taps", "WINOGRAD_BLOCK", "WINOGRAD_FORMS"]

_DN = ("NHWC", "HWIO", "NHWC")


def _uniform_init(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def conv2d(x, kernel, stride: int = 1, padding: Sequence[tuple[int, int]] | None = None, grad: str = "auto"):
    """Cross-correlation with explicit padding (default: ``k//2`` on every side).

    ``grad``: how the gradient is computed; the forward value is XLA's convolution in every case
    (coded files do not change). ``'auto'``: on CPU, for the shapes where it is faster (5×5 stride 2
    and 3×3 stride 1 with ``k//2`` padding, more than 16 output channels, float32), the input and
    kernel gradients of the Winograd form (:func:`_fast_form`: matrix products, where XLA:CPU's
    convolution backward costs 4–6× its forward; ``docs/SPEED.md``); elsewhere, with ``'xla'``, or
    when the environment sets ``LIC_JAX_CONV_GRAD=xla`` (read when tracing), XLA's own."""
    kh, kw = kernel.shape[:2]
    if padding is None:
        padding = ((kh // 2, kh // 2), (kw // 2, kw // 2))
    padding = tuple(tuple(int(v) for v in p) for p in padding)
    if grad not in ("auto", "xla"):
        raise ValueError(f"conv2d grad must be 'auto' or 'xla', got {grad!r}")
    if (grad == "auto" and os.environ.get("LIC_JAX_CONV_GRAD", "auto") != "xla" and x.dtype == jnp.float32 and kernel.dtype == jnp.float32
            and _fast_form(kernel.shape, stride, padding) and jax.default_backend() == "cpu"):
        return _conv_fastgrad(x, kernel, stride, padding)
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DN)


def _fast_form(shape, stride, padding):
    """The Winograd form of a convolution with this kernel shape, stride and padding whose
    gradient beats XLA:CPU's, or None."""
    kh, kw, _, cout = shape
    if kh != kw or cout <= 16 or padding != ((kh // 2, kh // 2),) * 2:
        return None
    if kh == 3 and stride == 1:
        return lambda x, w: winograd_conv3x3(x, w, padding)
    if kh == 5 and stride == 2:
        return _s2d_winograd_conv5x5s2
    return None


def _s2d_winograd_conv5x5s2(x, kernel):
    """5×5 stride-2 convolution padded by 2 as a 3×3 stride-1 one over the space-to-depth input.

    ``out[o] = Σ_t x[2o − 2 + t]·W[t]``; with ``x[2(o + j) + r] = z[o + j, r]`` (r ∈ {0, 1}) the tap is
    ``t = 2(j + 1) + r`` (t = 5 does not exist: zero), a 3×3 kernel over 4·C channels, computed by
    Winograd F(2×2, 3×3)."""
    n, h, w, c = x.shape
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    z = x.reshape(n, h2, 2, w2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h2, w2, 4 * c)
    k = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0))).reshape(3, 2, 3, 2, c, kernel.shape[3])
    k = k.transpose(0, 2, 1, 3, 4, 5).reshape(3, 3, 4 * c, kernel.shape[3])
    return winograd_conv3x3(z, k, ((1, 1), (1, 1)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_fastgrad(x, kernel, stride, padding):
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DN)


def _conv_fastgrad_fwd(x, kernel, stride, padding):
    return _conv_fastgrad(x, kernel, stride, padding), (x, kernel)


def _conv_fastgrad_bwd(stride, padding, res, g):
    x, kernel = res
    _, vjp = jax.vjp(_fast_form(kernel.shape, stride, padding), x, kernel)
    return vjp(g.astype(x.dtype))


_conv_fastgrad.defvjp(_conv_fastgrad_fwd, _conv_fastgrad_bwd)


def _subpixel_kernel(kernel, stride: int, padding: int):
    """Rearrange a transposed-conv kernel into a stride-1 kernel with s² output phases.

    For output o = s·q + r, ``out[o] = Σ_j x[q + j] · W[r + p − s·j]``; returns the stacked
    kernel (J, J, in, s·s·out) and the input padding (−j_min, j_max).
    """
    k = kernel.shape[0]
    s, p = stride, padding
    j_min, j_max = subpixel_taps(k, s, p)  # j_min = min_r ceil((r + p − (k−1)) / s)
    js = np.arange(j_min, j_max + 1)
    # tap index t[r, j] = r + p − s·j, valid if 0 <= t < k
    t = np.arange(s)[:, None] + p - s * js[None, :]
    valid = (t >= 0) & (t < k)
    t_c = np.clip(t, 0, k - 1)
    # gather: W[t[rh, jh], t[rw, jw]] -> (rh, jh, rw, jw, in, out)
    g = kernel[t_c[:, :, None, None], t_c[None, None, :, :]]
    mask = (valid[:, :, None, None] & valid[None, None, :, :]).astype(kernel.dtype)
    g = g * mask[..., None, None]
    # -> (jh, jw, in, rh, rw, out)
    g = jnp.transpose(g, (1, 3, 4, 0, 2, 5))
    J = len(js)
    cin, cout = kernel.shape[2], kernel.shape[3]
    return g.reshape(J, J, cin, s * s * cout), (-j_min, j_max)


# Winograd F(2, 3): y = Aᵀ[(G g) ⊙ (Bᵀ d)] for a 4-sample input tile d and a 3-tap filter g.
_WB = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)  # Bᵀ
_WG = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_WA = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)  # Aᵀ


def _lin(coefs, arrays):
    """Σ c·a over the nonzero coefficients (all are ±1 in Bᵀ and Aᵀ: adds only)."""
    out = None
    for c, a in zip(coefs, arrays):
        if c:
            v = a if c == 1 else (-a if c == -1 else a * c)
            out = v if out is None else out + v
    return out


# Tiles per matrix product in the blocked form: XLA:CPU emits another product (and another
# summation order) for another number of rows, so the decoder's products all get this one shape.
# On the default model's synthesis (kodim01, quiet) blocks of 128 / 256 / 512 cost 4-6 % over one
# product per tap, and the blocked form is still 12 % faster than the sub-pixel convolution
# (docs/SPEED.md).
WINOGRAD_BLOCK = 128
# the Winograd forms of conv_transpose2d and the block size each passes to winograd_conv3x3
# (coding/tiling.py asks transpose_form which one a layer runs: they need its aligned crops and halo)
WINOGRAD_FORMS = {"winograd": None, "winograd-blocked": WINOGRAD_BLOCK, "winograd-phases": WINOGRAD_BLOCK}


def _blocked_matmul(a, b, block: int):
    m = a.shape[0]
    nb = -(-m // block)
    ab = jnp.pad(a, ((0, nb * block - m), (0, 0))).reshape(nb, block, a.shape[1])
    return jnp.einsum("nbc,co->nbo", ab, b).reshape(nb * block, b.shape[1])[:m]


def winograd_conv3x3(x, kernel, padding, block: int | None = None):
    """Stride-1 3×3 cross-correlation (NHWC, HWIO, explicit padding) by Winograd F(2×2, 3×3).

    Per 2×2 output tile: ``Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A``. The input transform of every 4×4 tile
    is done separably with strided slices, the 16 element-wise products over channels are 16
    matrix products ``(tiles, in) @ (in, out)``, then the output transform, also separable.
    ``block``: do each product in blocks of that many tiles, all of one shape (see
    :data:`WINOGRAD_BLOCK`)."""
    if kernel.shape[:2] != (3, 3):
        raise ValueError("winograd_conv3x3 needs a 3×3 kernel")
    (n, h, w, c), o = x.shape, kernel.shape[3]
    (pt, pb), (pl, pr) = padding
    ho, wo = h + pt + pb - 2, w + pl + pr - 2
    th, tw = -(-ho // 2), -(-wo // 2)
    xp = jnp.pad(x, ((0, 0), (pt, pb + 2 * th - ho), (pl, pr + 2 * tw - wo), (0, 0)))
    rows = [xp[:, k:k + 2 * th:2] for k in range(4)]
    vh = [_lin(_WB[a], rows) for a in range(4)]  # (n, th, W, c) each
    u = jnp.einsum("ai,ijco,bj->abco", _WG.astype(kernel.dtype), kernel, _WG.astype(kernel.dtype))
    prod = []
    for a in range(4):
        cols = [vh[a][:, :, k:k + 2 * tw:2] for k in range(4)]
        mats = [_lin(_WB[b], cols).reshape(-1, c) for b in range(4)]
        prod.append([m @ u[a, b] if block is None else _blocked_matmul(m, u[a, b], block)
                     for b, m in enumerate(mats)])
    out = []
    for r in range(2):
        pr_ = [_lin(_WA[r], [prod[a][b] for a in range(4)]) for b in range(4)]
        out += [_lin(_WA[q], pr_) for q in range(2)]
    y = jnp.stack(out, 1).reshape(n, th, tw, 2, 2, o)
    return jnp.transpose(y, (0, 1, 3, 2, 4, 5)).reshape(n, 2 * th, 2 * tw, o)[:, :ho, :wo]


# Winograd F(2, 2): y = Aᵀ[(G g) ⊙ (Bᵀ d)] for a 3-sample input tile d and a 2-tap filter g
# (m₀ = (d₀ − d₁)g₀, m₁ = d₁(g₀ + g₁), m₂ = (d₂ − d₁)g₁; y₀ = m₀ + m₁, y₁ = m₁ + m₂).
_WB2 = np.array([[1, -1, 0], [0, 1, 0], [0, -1, 1]], np.float32)  # Bᵀ
_WG2 = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
_WA2 = np.array([[1, 1, 0], [0, 1, 1]], np.float32)  # Aᵀ


def _phase_taps(k: int, s: int, p: int, r: int) -> list[int]:
    """Kernel taps of output phase r of a transposed convolution, in the order of their inputs
    q + j, j = j_r0 … j_r1 (``out[s·q + r] = Σ_j x[q + j] · W[r + p − s·j]``)."""
    j_min, j_max = subpixel_taps(k, s, p)
    return [r + p - s * j for j in range(j_min, j_max + 1) if 0 <= r + p - s * j < k]


def winograd_phases_5x5s2(x, kernel, block: int | None = WINOGRAD_BLOCK):
    """PyTorch ``conv_transpose2d`` (5×5, stride 2, padding 2, output padding 1) on NHWC by
    Winograd over the four output phases, with the exact taps: per axis, phase 0 is a 3-tap
    correlation over inputs q − 1 … q + 1 (F(2, 3): 4 products per 2 outputs) and phase 1 a 2-tap
    one over q … q + 1 (F(2, 2): 3 products). Per 4 × 4 output tile that is 16 + 12 + 12 + 9 = 49
    matrix products ``(tiles, in) @ (in, out)``, against the sub-pixel Winograd form's 16 products
    of width 4·out (64 in out-units): 0.77× the multiplies, none on the sub-pixel kernel's zero taps.
    The tiles start at even inputs as in :func:`winograd_conv3x3`, and every output depends only on
    its exact receptive field. ``block``: the products in fixed-shape blocks of that many tiles
    (:data:`WINOGRAD_BLOCK`), so that a tiled decoder's floats equal the untiled ones."""
    if kernel.shape[:2] != (5, 5):
        raise ValueError("winograd_phases_5x5s2 needs a 5×5 kernel")
    (n, h, w, c), o = x.shape, kernel.shape[3]
    th, tw = -(-h // 2), -(-w // 2)
    # xp[e] = x[e − 1]; phase 0 of tile i reads x[2i − 1 … 2i + 2], phase 1 reads x[2i … 2i + 2]
    xp = jnp.pad(x, ((0, 0), (1, 2 * th + 1 - h), (1, 2 * tw + 1 - w), (0, 0)))
    tr = {0: _WB, 1: _WB2}  # per phase: the input transform over its input tile
    off = {0: 0, 1: 1}  # the phase's input tile starts at xp[2i + off]
    gm = {0: _WG, 1: _WG2}
    am = {0: _WA, 1: _WA2}
    taps = {r: _phase_taps(5, 2, 2, r) for r in (0, 1)}  # phase 0: W[4], W[2], W[0]; phase 1: W[3], W[1]
    rows = [xp[:, k:k + 2 * th:2] for k in range(4)]
    vh = {rh: [_lin(tr[rh][a], rows[off[rh]:]) for a in range(tr[rh].shape[0])] for rh in (0, 1)}
    out = {}
    for rh in (0, 1):
        for rw in (0, 1):
            g = kernel[np.array(taps[rh])][:, np.array(taps[rw])]
            u = jnp.einsum("ai,ijco,bj->abco", gm[rh].astype(kernel.dtype), g, gm[rw].astype(kernel.dtype))
            prod = []
            for a in range(tr[rh].shape[0]):
                cols = [vh[rh][a][:, :, k:k + 2 * tw:2] for k in range(4)]
                mats = [_lin(tr[rw][b], cols[off[rw]:]).reshape(-1, c) for b in range(tr[rw].shape[0])]
                prod.append([m @ u[a, b] if block is None else _blocked_matmul(m, u[a, b], block)
                             for b, m in enumerate(mats)])
            for uu in range(2):
                pr_ = [_lin(am[rh][uu], [prod[a][b] for a in range(len(prod))]) for b in range(len(prod[0]))]
                for vv in range(2):
                    out[uu, rh, vv, rw] = _lin(am[rw][vv], pr_).reshape(n, th, tw, o)
    y = jnp.stack([out[uu, rh, vv, rw] for uu in range(2) for rh in range(2) for vv in range(2) for rw in range(2)], 3)
    y = jnp.transpose(y.reshape(n, th, tw, 2, 2, 2, 2, o), (0, 1, 3, 4, 2, 5, 6, 7))
    return y.reshape(n, 4 * th, 4 * tw, o)[:, :2 * h, :2 * w]


def resolve_transpose_impl(impl: str, out_channels: int, backend: str | None = None) -> str:
    """The concrete form (``'transpose'``, ``'subpixel'``, ``'winograd'``, ``'winograd-blocked'``, ``'winograd-phases'``)
    that ``impl`` selects for a layer with ``out_channels`` outputs on ``backend`` (default: JAX's default backend).

    XLA:CPU, ``'auto'`` (training, the eval forward): Winograd for layers with > 4 output channels
    (forward + backward 2-6.8x faster than sub-pixel), sub-pixel for the last layer (<= 4 output
    channels, where Winograd is 3-4x slower). ``'auto-inference'`` (the codec's synthesis, forward
    only): the blocked Winograd form (12-16 % faster than sub-pixel; its fixed-shape products keep
    the tiled decoder's x̂ equal to the untiled one, ``docs/LARGE_IMAGES.md``; the opt-in
    ``'winograd-phases'`` runs 8-17 % faster still but compiles ≈ 3x longer), and the dilated
    form for the last layer (2x faster forward than sub-pixel, 3.6x slower backward). Elsewhere
    the dilated form.
    ``benchmarks/conv_forms.py``, ``docs/SPEED.md``."""
    if impl not in ("auto", "auto-inference"):
        return impl
    if (backend or jax.default_backend()) != "cpu":
        return "transpose"
    if impl == "auto-inference":
        return "transpose" if out_channels <= 4 else "winograd-blocked"
    return "winograd" if out_channels > 4 else "subpixel"


def subpixel_taps(kernel_size: int, stride: int, padding: int) -> tuple[int, int]:
    """(j_min, j_max): sub-pixel output q of a transposed convolution reads inputs q + j_min … q + j_max."""
    k, s, p = kernel_size, stride, padding
    return (min(-((k - 1 - r - p) // s) for r in range(s)), max((r + p) // s for r in range(s)))


def transpose_form(impl: str, k: int, stride: int, padding: int, output_padding: int) -> str:
    """What :func:`conv_transpose2d` runs for a ``k``×``k`` layer of this geometry, ``impl`` resolved
    (:func:`resolve_transpose_impl`): ``'conv'`` (stride 1: a flipped convolution),
    ``'winograd-phases'`` (5×5 stride 2 in PyTorch's padding: :func:`winograd_phases_5x5s2`),
    ``'winograd'`` (the sub-pixel kernel is 3×3: :func:`winograd_conv3x3`, blocked or not),
    ``'subpixel'`` or ``'transpose'``. ``coding/tiling.py`` reads it for the receptive fields."""
    if stride == 1 and output_padding == 0:
        return "conv"
    if impl == "winograd-phases" and (k, stride, padding, output_padding) == (5, 2, 2, 1):
        return "winograd-phases"
    if impl not in ("transpose", "subpixel", *WINOGRAD_FORMS):
        raise ValueError(f"unknown transposed-convolution impl {impl!r}")
    if impl == "transpose" or k - 2 * padding + output_padding != stride:
        return "transpose"  # the sub-pixel forms need an output of exactly stride × the input
    j_min, j_max = subpixel_taps(k, stride, padding)
    return "winograd" if impl in WINOGRAD_FORMS and j_max - j_min == 2 else "subpixel"


def conv_transpose2d(x, kernel, stride: int, padding: int | None = None, output_padding: int | None = None,
                     impl: str = "auto"):
    """PyTorch ``conv_transpose2d`` semantics on NHWC with an (kh, kw, in, out) kernel.

    ``impl``: ``'subpixel'`` (a stride-1 convolution to s²·out channels + depth-to-space),
    ``'transpose'`` (input dilation), ``'winograd'`` (sub-pixel, its 3×3 convolution by Winograd
    F(2×2, 3×3)), ``'winograd-blocked'`` (the same in fixed-shape products), ``'winograd-phases'``
    (5×5 stride 2 only, else ``'winograd-blocked'``: Winograd over the four output phases with the
    exact taps, :func:`winograd_phases_5x5s2`, in fixed-shape products), ``'auto'`` or
    ``'auto-inference'`` (:func:`resolve_transpose_impl`); which one runs: :func:`transpose_form`."""
    k = kernel.shape[0]
    if kernel.shape[1] != k:
        raise ValueError("only square kernels are supported")
    p = k // 2 if padding is None else padding
    op = stride - 1 if output_padding is None else output_padding
    impl = resolve_transpose_impl(impl, kernel.shape[3])
    form = transpose_form(impl, k, stride, p, op)
    if form == "conv":
        return conv2d(x, kernel[::-1, ::-1], 1, ((k - 1 - p, k - 1 - p),) * 2)
    if form == "winograd-phases":
        return winograd_phases_5x5s2(x, kernel, WINOGRAD_FORMS[impl])
    if form in ("winograd", "subpixel"):
        w, (lo, hi) = _subpixel_kernel(kernel, stride, p)
        if form == "winograd":
            y = winograd_conv3x3(x, w, ((lo, hi), (lo, hi)), WINOGRAD_FORMS.get(impl))
        else:
            y = conv2d(x, w, 1, ((lo, hi), (lo, hi)))
        n, h, wd, _ = y.shape
        cout = kernel.shape[3]
        y = y.reshape(n, h, wd, stride, stride, cout)
        y = jnp.transpose(y, (0, 1, 3, 2, 4, 5))
        return y.reshape(n, h * stride, wd * stride, cout)
    pad = ((k - 1 - p, k - 1 - p + op),) * 2
    return lax.conv_general_dilated(
        x, kernel[::-1, ::-1], (1, 1), pad, lhs_dilation=(stride, stride), dimension_numbers=_DN
    )


class Conv(nn.Module):
    """``Conv2d(k, stride, padding=k//2)`` as in CompressAI (kernel (k, k, in, out))."""

    features: int
    kernel_size: int = 5
    stride: int = 2
    use_bias: bool = True
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        bound = 1.0 / math.sqrt(x.shape[-1] * k * k)
        kernel = self.param("kernel", _uniform_init(bound), (k, k, x.shape[-1], self.features))
        dtype = self.dtype or x.dtype
        y = conv2d(x.astype(dtype), kernel.astype(dtype), self.stride)
        if self.use_bias:
            y = y + self.param("bias", _uniform_init(bound), (self.features,)).astype(dtype)
        return y


class ConvTranspose(nn.Module):
    """``ConvTranspose2d(k, stride, padding=k//2, output_padding=stride-1)`` (CompressAI ``deconv``)."""

    features: int
    kernel_size: int = 5
    stride: int = 2
    use_bias: bool = True
    impl: str = "auto"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        # PyTorch computes the fan-in of a ConvTranspose2d weight (in, out, k, k) as out·k·k.
        bound = 1.0 / math.sqrt(self.features * k * k)
        kernel = self.param("kernel", _uniform_init(bound), (k, k, x.shape[-1], self.features))
        dtype = self.dtype or x.dtype
        y = conv_transpose2d(x.astype(dtype), kernel.astype(dtype), self.stride, impl=self.impl)
        if self.use_bias:
            y = y + self.param("bias", _uniform_init(bound), (self.features,)).astype(dtype)
        return y


def causal_mask(kernel_size: int, mask_type: str = "A") -> np.ndarray:
    """(k, k) raster-order mask: 1 for rows above the centre and columns left of it ('B': and the centre)."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    m = np.ones((kernel_size, kernel_size), np.float32)
    c = kernel_size // 2
    m[c, c + (mask_type == "B"):] = 0
    m[c + 1:] = 0
    return m


class MaskedConv(nn.Module):
    """Masked stride-1 convolution (PixelCNN, van den Oord et al. 2016); CompressAI ``MaskedConv2d``."""

    features: int
    kernel_size: int = 5
    mask_type: str = "A"
    dtype: jnp.dtype | None = None

    def masked_kernel(self, cin: int):
        k = self.kernel_size
        bound = 1.0 / math.sqrt(cin * k * k)
        kernel = self.param("kernel", _uniform_init(bound), (k, k, cin, self.features))
        bias = self.param("bias", _uniform_init(bound), (self.features,))
        return kernel * causal_mask(k, self.mask_type)[:, :, None, None], bias

    @nn.compact
    def __call__(self, x, valid: bool = False):
        """Same-size output (padding k//2), or with ``valid=True`` one output per full k×k window."""
        kernel, bias = self.masked_kernel(x.shape[-1])
        dtype = self.dtype or x.dtype
        pad = ((0, 0), (0, 0)) if valid else None
        return conv2d(x.astype(dtype), kernel.astype(dtype), 1, pad) + bias.astype(dtype)
