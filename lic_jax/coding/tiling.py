"""Tiled analysis and synthesis transforms: large images in bounded memory (docs/LARGE_IMAGES.md).

A 24-megapixel photo through an N = 128 synthesis produces 3008 × 2016 × 128 float32
activations (3.1 GB each); untiled, peak memory grows by ≈ 0.4 GB per megapixel (≈ 10 GB at
24 MP; tiled: < 2 GB, docs/LARGE_IMAGES.md). Here the image (or
the latent) is cut into tiles on the latent grid; each tile is computed from a crop that adds a
**halo** of latents on every side, and only the tile's own part of the crop's output is kept.

**Receptive field, from the layer stack.** :func:`transform_geometry` reads the model's
``g_a`` / ``g_s`` layer lists: every ``Conv`` (kernel k, stride s, symmetric padding k//2) and
``ConvTranspose`` (PyTorch ``padding = k//2``, ``output_padding = s − 1``) is recorded, and every
other layer must be pointwise (GDN / IGDN; the modulations of the ``mae-*`` models, which live
outside those lists, scale channels per pixel). :func:`required_halo` propagates a tile's output
interval back through the stack (conv: input ``[j·s − p, j·s − p + k − 1]``; transposed conv:
input ``[⌈(o + p − k + 1)/s⌉, ⌊(o + p)/s⌋]``) and returns, per side, the smallest number of
latents such that at **every** layer the interval the tile needs lies inside the crop — so no
value the tile keeps ever reads the crop's own zero padding. At the image border the crop
starts at the border itself and the padding is the transform's own. Results (stride 16):

* 4 × 5×5/2 (bmshj2018, mbt2018, lee2019, mae-hyperprior): y at latent j reads input pixels
  16j − 30 … 16j + 30 → analysis halo (2, 1) latents (left, right); synthesis halo (1, 2);
* 9×9/4 + 2 × 5×5/2 (bls2017, mae-bls2017): the same halos.

**Winograd layers (the decoder's default on CPU).** The decoder's synthesis
(``'auto-inference'``) runs the transposed convolutions with more than 4 output channels as
sub-pixel + Winograd F(2×2, 3×3) in fixed-shape blocked products (``'winograd-blocked'``,
``layers/conv.py``); a model may opt in to the unblocked form (``'winograd'``, training's) or to
Winograd over the four output phases of its 5×5 stride-2 layers in the same blocked products
(``'winograd-phases'``; other kernels fall back to ``'winograd-blocked'``). Their floats depend on where the tiles
start, so crops start on even latents (:func:`crop_alignment`; ``ConvGeom.winograd``). The phase
form's outputs depend on their exact taps only (``ConvGeom.phases``: synthesis halo (1, 2)); the
sub-pixel forms' outputs depend, for some outputs, on one input more than the exact receptive field
(a zero tap's contribution cancels only up to rounding: :func:`_winograd_support`), so their halo
comes from that float support — synthesis (2, 2). Both are checked against the layers themselves. The unblocked form's floats also depend on the
number of tiles (XLA:CPU's matrix products round differently for another number of rows: tiled
x̂ differed from untiled x̂ by ≤ 5.4e-7 on 62 % of the values at real width); the blocked form's
products have one shape whatever the crop, and tiled x̂ equals untiled x̂ bit for bit.

With such halos the tiled transform equals the untiled one **mathematically** (every kept
output is the same sum of the same products). In float32 the two can still differ if XLA picks
other convolution code for another operand shape: measured with jax 0.10.2 on XLA:CPU at real
widths, tiles of ≥ 5 latents give y and x̂ bit for bit, tiles of ≤ 3 latents do not (≤ 1e-5),
and at width 8 a few crop sizes differ by ≤ 3e-8 (``tests/test_large_images.py``,
docs/LARGE_IMAGES.md). Therefore:

* the **encoder's analysis** always uses :data:`ANALYSIS_TILE` (64) latents per tile, whatever
  ``Tiling.tile`` says, so the coded file never depends on the tile size (only on whether the
  image is tiled at all, where tiled and untiled files were identical in every case measured);
* ``Tiling.tile`` sets the **synthesis** tiles (the decoder's image and the PSNR
  reconstruction of ``lic compress``); the latents do not depend on it by construction.

Crops all have one shape per axis (``min(n, tile + halo_left + halo_right)`` latents, shifted
inward at the borders), so a whole image compiles each transform once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import numpy as np

from ..layers.conv import resolve_transpose_impl, subpixel_taps, transpose_form
from .programs import inference_model

__all__ = ["Tiling", "ConvGeom", "TilingUnsupported", "as_tiling", "transform_geometry", "required_halo",
           "needed_intervals", "crop_alignment", "axis_plan", "tiled_apply", "TiledTransforms", "analyse", "synthesise"]

DEFAULT_TILE = 1024           # synthesis: pixels per tile side (64 latents at stride 16)
LATENT_STRIDE = 16            # of every lic_jax model's y (checked by TiledTransforms)
AUTO_THRESHOLD = 1 << 21      # 'auto' tiles images whose padded size exceeds 2 097 152 pixels (1920×1088 does not)
ANALYSIS_TILE = 64            # the encoder's analysis tiles, in latents: fixed, whatever ``Tiling.tile`` says


class TilingUnsupported(ValueError):
    """The transform contains a layer whose spatial extent the tiler cannot derive."""


@dataclasses.dataclass(frozen=True)
class Tiling:
    """How ``Codec`` runs its analysis and synthesis transforms.

    mode: ``'auto'`` (tile when the padded image has more than :data:`AUTO_THRESHOLD` pixels),
      ``'on'`` (always) or ``'off'`` (never: the untiled programs, at any size).
    tile: the **synthesis** tile side in output pixels, rounded down to a multiple of the latent
      stride (≥ 1 latent). The encoder's analysis always uses :data:`ANALYSIS_TILE` latents, so
      the coded file never depends on ``tile``.
    """

    mode: str = "auto"
    tile: int = DEFAULT_TILE

    def __post_init__(self):
        if self.mode not in ("auto", "on", "off"):
            raise ValueError(f"tiling mode must be 'auto', 'on' or 'off', got {self.mode!r}")
        if int(self.tile) < 1:
            raise ValueError(f"tile must be ≥ 1 pixel, got {self.tile}")

    def active(self, height: int, width: int) -> bool:
        return self.mode == "on" or (self.mode == "auto" and height * width > AUTO_THRESHOLD)


def as_tiling(value) -> Tiling:
    """``None``/'auto' → Tiling(); 'on'/'off'; an int → tiles of that many pixels (0 = off); a Tiling."""
    if value is None:
        return Tiling()
    if isinstance(value, Tiling):
        return value
    if isinstance(value, str):
        return Tiling(mode=value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return Tiling(mode="off") if int(value) == 0 else Tiling(mode="on", tile=int(value))
    raise ValueError(f"tiling must be None, 'auto', 'on', 'off', a tile size in pixels or a Tiling, got {value!r}")


# ------------------------------------------------------------------------------------------
# receptive field
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConvGeom:
    """One spatial layer along one axis: kernel k, stride s, padding p (transposed: PyTorch's)."""

    kernel: int
    stride: int
    padding: int
    transposed: bool = False
    winograd: bool = False  # transposed, computed in Winograd tiles (layers/conv.py): crops start on even inputs
    phases: bool = False  # … by 'winograd-phases', whose outputs depend on their exact taps only

    def needed(self, lo: int, hi: int) -> tuple[int, int]:
        """The input interval that outputs ``lo … hi`` read (for Winograd: whose floats they depend on)."""
        k, s, p = self.kernel, self.stride, self.padding
        if not self.transposed:
            return lo * s - p, hi * s - p + k - 1
        if self.winograd and not self.phases:  # the bounds are monotone in o: the ends of a short window decide
            return (min(_winograd_support(k, s, p, o)[0] for o in range(lo, min(hi, lo + 4 * s) + 1)),
                    max(_winograd_support(k, s, p, o)[1] for o in range(max(lo, hi - 4 * s), hi + 1)))
        return _transposed_taps(k, s, p, lo, hi)


def _transposed_taps(k: int, s: int, p: int, lo: int, hi: int) -> tuple[int, int]:
    """The inputs that outputs ``lo … hi`` of a transposed convolution (kernel k, stride s, PyTorch
    padding p) read exactly: ⌈(lo + p − k + 1)/s⌉ … ⌊(hi + p)/s⌋."""
    return -((-(lo + p - k + 1)) // s), (hi + p) // s


def _winograd_support(k: int, s: int, p: int, o: int) -> tuple[int, int]:
    """The inputs whose floats output ``o`` of a transposed convolution computed as sub-pixel +
    Winograd F(2, 3) (per axis; ``layers/conv.py:winograd_conv3x3``) depends on.

    o = s·q + r reads inputs q + j for the phase's taps j ∈ [j_r0, j_r1] ⊆ [j_min, j_min + 2].
    Sub-pixel output q is output e = q mod 2 of its Winograd tile (tiles start at even q: the tiler
    aligns its crops), whose input tile is d_0..d_3 = inputs q − e + j_min + (0..3):
    y₀ = m₀ + m₁ + m₂, y₁ = m₁ − m₂ − m₃ with m₀ ∝ d₀ − d₂, m₁ ∝ d₁ + d₂, m₂ ∝ d₂ − d₁, m₃ ∝ d₁ − d₃.
    A zero tap cancels only where its whole m is zero: y₀ reads d₀ only if tap j_min is real, but
    always d₁, d₂; y₁ always d₁, d₂ and d₃ only if tap j_min + 2 is real."""
    q, r = divmod(o, s)
    j_min, _ = subpixel_taps(k, s, p)
    j_r0, j_r1 = _transposed_taps(k, s, p, r, r)  # this phase's real taps
    if q % 2 == 0:
        return q + (j_min if j_r0 == j_min else j_min + 1), q + j_min + 2
    return q + j_min, q + (j_min + 2 if j_r1 == j_min + 2 else j_min + 1)


def transform_geometry(model, variables, which: str) -> tuple[ConvGeom, ...]:
    """The spatial layers of ``g_a`` (``which='analysis'``) or ``g_s`` ('synthesis'), in order."""
    from ..layers import GDN, Conv, ConvTranspose

    bound = model.bind(variables)
    name = {"analysis": "g_a", "synthesis": "g_s"}[which]
    layers = getattr(bound, name, None)
    if layers is None:
        raise TilingUnsupported(f"{type(model).__name__} has no {name} layer list")
    geoms = []
    for layer in layers:
        if isinstance(layer, ConvTranspose):
            k, s = int(layer.kernel_size), int(layer.stride)
            # what conv_transpose2d runs on this backend, with its defaults p = k//2, op = s − 1
            form = transpose_form(resolve_transpose_impl(layer.impl, int(layer.features)), k, s, k // 2, s - 1)
            phases = form == "winograd-phases"
            geoms.append(ConvGeom(k, s, k // 2, True, phases or form == "winograd", phases))
        elif isinstance(layer, Conv):
            k, s = int(layer.kernel_size), int(layer.stride)
            geoms.append(ConvGeom(k, s, k // 2, False))  # conv2d default padding k//2
        elif isinstance(layer, GDN):
            continue  # pointwise over space
        else:
            raise TilingUnsupported(f"cannot derive the receptive field of {type(layer).__name__} in {name}")
    if not geoms:
        raise TilingUnsupported(f"{name} has no convolution")
    return tuple(geoms)


def crop_alignment(geoms) -> int:
    """Crops must start on a multiple of this many latents for a tiled transform to give the untiled
    floats: Winograd's 2×2 tiles start at each layer's crop start, so that start must be even in
    the units of every Winograd layer's input (1 for no Winograd layer)."""
    align = 1
    for g, u in zip(geoms, _units(geoms)):
        if g.winograd and u % 2:
            align = 2
    return align


def stride_of(geoms) -> int:
    return math.prod(g.stride for g in geoms)


def _units(geoms) -> list[int]:
    """Units of each layer's input per latent (analysis: S … 1 from the image; synthesis: 1 … S)."""
    if geoms[0].transposed:
        u, out = 1, []
        for g in geoms:
            out.append(u)
            u *= g.stride
        return out + [u]
    u, out = stride_of(geoms), []
    for g in geoms:
        out.append(u)
        u //= g.stride
    return out + [u]


def needed_intervals(geoms, lo: int, hi: int) -> list[tuple[int, int]]:
    """Per layer (input of layer 0 first, then each later layer's input, then the output):
    the interval needed to compute outputs ``lo … hi`` of the last layer."""
    out = [(lo, hi)]
    for g in reversed(geoms):
        lo, hi = g.needed(lo, hi)
        out.append((lo, hi))
    return out[::-1]


def required_halo(geoms) -> tuple[int, int]:
    """(left, right) halo in latents so that a tile's outputs only read values inside its crop at
    every layer (the crop starts and ends on the latent grid)."""
    units = _units(geoms)
    a = 1000  # any tile start far from the border; the geometry is periodic in the latent grid
    left = right = 0
    for b in (a + 1, a + 7):
        iv = needed_intervals(geoms, a * units[-1], b * units[-1] - 1)
        for (lo, hi), u in zip(iv, units):
            left = max(left, -((lo - a * u) // u))        # ceil((a·u − lo) / u)
            right = max(right, -(-(hi + 1 - b * u) // u))  # ceil((hi + 1 − b·u) / u)
    return left, right


# ------------------------------------------------------------------------------------------
# tiles
# ------------------------------------------------------------------------------------------
def axis_plan(n: int, tile: int, left: int, right: int, align: int = 1) -> list[tuple[int, int, int, int]]:
    """Tiles of one axis of n latents: (crop start, crop end, keep start, keep end), every crop of
    one length (``min(n, tile + left + right)``, or up to ``align − 1`` more); a crop edge inside
    the image is ≥ the halo away from what the tile keeps; every crop starts on a multiple of
    ``align`` (the tile and the left halo are rounded to multiples of it)."""
    tile = max(align, tile - tile % align)
    left = -(-left // align) * align
    size = min(n, tile + left + right)
    size = min(n, size + (n - size) % align)  # so that the last crop, ending at n, starts aligned
    plan = []
    for k0 in range(0, n, tile):
        k1 = min(k0 + tile, n)
        c0 = max(0, min(k0 - left, n - size))
        c1 = c0 + size
        if not ((c0 == 0 or k0 - c0 >= left) and (c1 == n or c1 - k1 >= right) and c0 % align == 0):
            raise AssertionError("tile plan violates the halo")  # unreachable by construction
        plan.append((c0, c1, k0, k1))
    return plan


def tiled_apply(fn: Callable, x: np.ndarray, unit_in: int, unit_out: int, tile: int, halo: tuple[int, int],
                device=None, align: int = 1) -> np.ndarray:
    """Apply ``fn`` (NHWC → NHWC, batch 1) tile by tile. ``x`` spans n latents per axis of
    ``unit_in`` elements each; the output has ``unit_out`` elements per latent; crops start on
    multiples of ``align`` latents (:func:`crop_alignment`). Returns numpy."""
    _, H, W, _ = x.shape
    if H % unit_in or W % unit_in:
        raise ValueError(f"{H}×{W} is not a multiple of {unit_in}")
    nh, nw = H // unit_in, W // unit_in
    ui, uo = unit_in, unit_out
    out = None
    for r0, r1, a0, a1 in axis_plan(nh, tile, *halo, align):
        for c0, c1, b0, b1 in axis_plan(nw, tile, *halo, align):
            crop = np.ascontiguousarray(x[:, r0 * ui : r1 * ui, c0 * ui : c1 * ui])
            o = np.asarray(fn(crop if device is None else jax.device_put(crop, device)))
            if out is None:
                out = np.empty((1, nh * uo, nw * uo, o.shape[-1]), o.dtype)
            out[:, a0 * uo : a1 * uo, b0 * uo : b1 * uo] = o[:, (a0 - r0) * uo : (a1 - r0) * uo,
                                                             (b0 - c0) * uo : (b1 - c0) * uo]
    return out


class TiledTransforms:
    """The jitted pieces a ``Codec`` needs for tiling one architecture (one instance per codec)."""

    def __init__(self, model, variables, conditioned: bool | None = None, hyper: bool | None = None):
        if conditioned is None or hyper is None:  # from the model's record
            from ..models.registry import record_for
            from .latent_coders import coder_class

            conditioned, hyper = bool(record_for(model).variable_rate), coder_class(model).hyper
        lam_args = (lambda lam: (lam,)) if conditioned else (lambda lam: ())
        self.analysis_geom = transform_geometry(model, variables, "analysis")
        # the synthesis as the decoder runs it (its transposed-convolution forms decide the halo)
        self.synthesis_geom = transform_geometry(inference_model(model), variables, "synthesis")
        self.synthesis_align = crop_alignment(self.synthesis_geom)
        self.stride = stride_of(self.analysis_geom)
        if stride_of(self.synthesis_geom) != self.stride or self.stride != LATENT_STRIDE:
            raise TilingUnsupported(f"latent stride {self.stride} / {stride_of(self.synthesis_geom)}, "
                                    f"expected {LATENT_STRIDE}")
        self.analysis_halo = required_halo(self.analysis_geom)
        self.synthesis_halo = required_halo(self.synthesis_geom)
        self.analysis = jax.jit(lambda v, x, lam=None: model.apply(v, x, *lam_args(lam), method="analysis"))
        self.hyper_analysis = jax.jit(lambda v, y: model.apply(v, y, method="hyper_analysis")) if hyper else None

    def tile_latents(self, tiling: Tiling) -> int:
        return max(1, int(tiling.tile) // self.stride)


def _transforms(codec, height: int, width: int):
    """The codec's TiledTransforms if its tiling applies to a padded height × width image, else None
    ('auto' falls back to the untiled programs for a model the tiler cannot handle)."""
    tiling = codec.tiling
    if not tiling.active(height, width):
        return None
    if codec._tiled is None:
        try:
            codec._tiled = TiledTransforms(codec.model, codec._cpu_vars, codec.variable_rate,
                                           codec.latent_coder.hyper)
        except TilingUnsupported:
            if tiling.mode == "on":
                raise
            codec._tiled = False
    return codec._tiled or None


def analyse(codec, x: np.ndarray, lam=None):
    """(y, z) of the padded float image ``x`` (1, Hp, Wp, 3), device arrays or numpy, as
    ``codec._fns.encode_transform`` — tiled when ``codec.tiling`` says so."""
    tt = _transforms(codec, x.shape[1], x.shape[2])
    if tt is None:
        return codec._fns.encode_transform(codec._dev_vars, jax.device_put(x, codec._dev), lam)
    v = codec._dev_vars
    y = tiled_apply(lambda c: tt.analysis(v, c, lam), x, tt.stride, 1, ANALYSIS_TILE, tt.analysis_halo, codec._dev)
    if tt.hyper_analysis is None:
        return y, None
    return y, tt.hyper_analysis(v, jax.device_put(y, codec._dev))


def synthesise(codec, y_hat: np.ndarray, lam=None, method: str = "synthesis") -> np.ndarray:
    """The synthesis ``method`` (a decoder of the model) of ŷ (H', W', M) → (1, Hp, Wp, 3) numpy,
    tiled when ``codec.tiling`` says so."""
    y = np.asarray(y_hat)[None]
    tiling = codec.tiling
    s = LATENT_STRIDE
    tt = _transforms(codec, y.shape[1] * s, y.shape[2] * s)
    if tt is None:
        return np.asarray(codec._fns.synthesis(method)(codec._dev_vars, jax.device_put(y, codec._dev), lam))
    v, synthesis = codec._dev_vars, codec._fns.synthesis(method)
    return tiled_apply(lambda c: synthesis(v, c, lam), y, 1, tt.stride, tt.tile_latents(tiling),
                       tt.synthesis_halo, codec._dev, tt.synthesis_align)
