"""Akutsu, Suzuki, Zhong, Aizawa: "Ultra low bitrate learned image compression by selective
detail decoding", CVPR 2020 workshops (CLIC 2020, team "neuro"; seed 002;
``/work/shared/docs/SYSTEMS.md`` §8; docs/AKUTSU.md) — networks only (issue 20, increment 1).
The losses are in :mod:`lic_jax.losses_gan`.

Components (paper §2, Fig. 1; channel lists of §3.1, "first number = input"):

* encoder E: 3 →body 32 →body 64 →body 128 →body 192 →conv3×3 64 (latent /16, 64 channels);
* main decoder G_m: 64 →conv3×3 192 →body 128 →body 64 →body 32 →body 3 (conditional-GAN trained);
* selective detail decoder G_s: 64 →conv3×3 192 →body 96 →body 64 →body 32 →body 4
  (3 RGB channels + 1 mask logit, weighted-MS-SSIM trained);
* hyper encoder H_e: 64 →conv3×3 32 →body 32 →body 32 (/64); hyper decoder H_d: 32 →body 32
  →body 32 →conv3×3 128;
* entropy estimator H (§2.3): context estimator (causal) + mixing body fusing it with H_d's 128
  channels → (μ, σ) of the Gaussian of eq. 2 for every latent channel;
* conditional patch discriminator D (§3.1): 8 →body 32 →body 64 →body 128 →body 192 →conv3×3 1
  (one "fake" logit per 16×16 patch); input = 3 image channels + 5 label channels, the one-hot
  segmentation t_s reduced to 5 channels by 1×1 convolutions.
* mask fusion, eq. 1: m = sigmoid(4th channel of G_s), x̂ = x̂_s·m + x̂_m·(1 − m) (:func:`fuse`).

Bodies (§2.4, Fig. 3; blocks of ref. [14] = CVQN, with RAM-style attention, ref. [7]):

* encoder body (halves H, W): space-to-depth ×2 (C → 4C) → GDN(4C) → residual group →
  conv3×3 4C → C_out;
* decoder body (doubles H, W): conv3×3 C → 4·C_out → residual group → GDN(4·C_out) →
  pixel-shuffle ×2 (→ C_out); IGDN instead of GDN with ``decoder_norm='igdn'`` (ambiguity 3);
* residual group: x + conv3×3(RCAB_n(… RCAB_1(x))), ``blocks`` RCABs (default 6, CVQN's count);
* RCAB: r = conv3×3(ReLU(conv3×3(x))); x + r·sigmoid(CA(r) + SA(r)) where CA = 1×1 → ReLU → 1×1
  on the per-channel *variance* of r (RAM) with reduction ``ca_reduction`` (default 1, CVQN) and
  SA = depthwise 3×3 conv of r (RAM), broadcast-added before the sigmoid (G_s: local variance by
  default, ambiguity 9).

Entropy model (§2.3, eq. 2; Fig. 2 is absent from the seed, so SYSTEMS.md §8's recommendation):

* context estimator: 5×5 masked conv (type A) 64 → 128, then one causal self-attention block
  (:class:`CausalSelfAttention`: single head, key/query 16, value = 128, residual);
* mixing body: 1×1 conv on concat(context 128, H_d 128) 256 → 192, LeakyReLU, causal
  self-attention (192), 1×1 conv 192 → 128 = (μ, σ_raw) for the 64 channels, σ = softplus(σ_raw),
  bounded below at 0.11 by :class:`~lic_jax.entropy_models.GaussianConditional`;
* hyper-latent: deep factorized density (:class:`~lic_jax.entropy_models.EntropyBottleneck`).
  (The paper: "I_h can be obtained in the same way as I_f"; it gives no hyper-hyperprior, so the
  factorized density is the only self-contained reading.)

Naming: the paper's latent z is ``y`` here and its hyper-latent is ``z`` (the project's dict keys:
``likelihoods = {'y': …, 'z': …}``), so the rate losses and coders of the other models apply.

Ambiguities resolved (also in docs/AKUTSU.md) [I]:

1. latent width 64 (E / H_e say 64, G_m / G_s "start at 32" = CVQN's code width): 64, and the
   heads of G_m / G_s are conv3×3 64 → 192.
2. §3.1 says G_m consists of "encoder bodies": decoder bodies (it must upsample ×16).
3. GDN in the encoder body and, since 2026-12-04, GDN in the decoder body too, as CVQN's code has it
   (``decoder_norm``, default ``'gdn'``). Until then the decoder bodies used IGDN, our reading; a
   quarter-width model trained with it on 176² crops (z 3×3) did not carry over to 768×512 images:
   at step 1000 H_d's output grew from mean |·| 8 on a 256² crop to 219 on the whole image (its second
   IGDN took its input from 20 to 186), μ went with it and the Kodak rate was 0.94 bpp against 0.19 on
   256² crops. IGDN (x·√(β + γx²)) grows faster than its input; GDN (x / √(β + γx²)) is bounded by
   1/√γ. ``'igdn'`` keeps the old form (the registry reads a spec without the field as ``'igdn'``).
4. blocks per residual group: 6 (CVQN yaml); CA reduction 1 (CVQN); RAM fusion sigmoid(CA + SA).
5. attention: single head, d_k = 16; the mask admits keys j ≤ i (raster order) over features that
   are *already* strictly causal (type-A masked conv), so the output at i depends on latents at
   positions < i only; admitting j = i avoids an empty softmax at i = 0. No positional encoding
   (translation-equivariant; latents of any size). Full attention over the latent here; the coder
   (later increment) decodes it sequentially or with a local window.
6. D's label reducer: 1×1 conv ``label_classes`` → 16, LeakyReLU(0.2), 1×1 conv 16 → 5; D's bodies
   are the encoder bodies above (with GDN); no activation on its logits.
7. outputs are linear (no clipping / sigmoid on images; mask logit → sigmoid).
   **Mean shift** (``mean_shift``, default True since 2026-12-05), as CVQN's code has it
   (``MeanShift``, its yaml's RGB mean :data:`RGB_MEAN`): E sees x − mean, and G_m's and G_s's RGB
   outputs are + mean. Without it an image's mean has to come out of the last decoder body, whose
   GDN is odd and bounded and has no bias after it: the GDN run at step 500 decoded Kodak crops with
   a blue-channel mean of −0.18 (the images' ≈ 0.35) and 11 dB PSNR (docs/AKUTSU.md, "Why the run
   restarted again"). A stored spec without the field reads as False.
8. ``x_hat`` is the fused image (eq. 1) when ``detail=True`` (default), else G_m's output.
9. **Deviation from the paper** (``detail_ca``, default ``'local'``): G_s's RCABs pool the
   per-channel variance over a 9×9 neighbourhood (:func:`local_variance`, padding excluded)
   instead of the whole map, so that G_s has a finite receptive field (:func:`detail_body_radius`)
   and ``lic decompress --detail-roi`` decodes a region exactly (the issue asks for "equals
   full-detail decoding inside the ROI", impossible with a global statistic). ``'global'`` is the
   paper's / RAM's pooling. Same parameters (pooling has none), so weights load either way, but
   the function differs: the registry writes ``detail_ca`` into every spec, so an artifact trained
   with 'global' decodes with 'global'. E, G_m, H_e, H_d and D keep the global pooling.
12. (docs/AKUTSU.md's numbering: 10 is the weighted MS-SSIM, 11 ``detail_ca``) **Option, not the
    paper** (``attention_window`` = r, default 0 = the paper's global causal
    attention): both attention layers admit only keys at most r rows above and r columns either
    side of the query (and not after it in raster order; :func:`causal_attention_mask`). σ_i, μ_i
    then depend on nearby earlier latents only, and the coder decodes by wavefronts s·h + w = t
    with s = max(3, r + 1) (:meth:`Akutsu2020.wavefront_slope`) instead of one position at a
    time. Same parameters (the window is a mask), so weights load either way, but the function
    differs: r is part of the spec. docs/AKUTSU.md "A local attention window" measures both.

Images: NHWC in [0, 1], float32 by default; ``dtype=jnp.bfloat16`` computes convolutions, GDN and
attention products in bf16 (parameters, variance pooling, softmax, entropy parameters and outputs
stay float32). Sizes not a multiple of 64 are zero-padded (centred) and cropped back
(:mod:`lic_jax.models.base`). ``width`` scales every internal channel count (tests use tiny
widths); the 3 RGB / 4 detail / 1 logit / 5 label output channels are kept.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..entropy_models import EntropyBottleneck, GaussianConditional, quantize
from ..layers import GDN, Conv
from .akutsu_context import (  # noqa: F401  (re-exported: the context model's pieces live there)
    CausalSelfAttention,
    ContextEstimator,
    MixingBody,
    causal_attention_mask,
    window_offsets,
)
from .base import crop_image, pad_image, quant_modes

__all__ = ["Akutsu2020", "Discriminator", "EncoderBody", "DecoderBody", "RCAB", "ResidualGroup",
           "CausalSelfAttention", "ContextEstimator", "MixingBody", "space_to_depth", "depth_to_space",
           "fuse", "causal_attention_mask", "scaled", "DOWNSAMPLING", "LABEL_CHANNELS", "LOCAL_CA_WINDOW",
           "local_variance", "detail_body_radius", "detail_latent_interval", "detail_margin", "DETAIL_CA", "RGB_MEAN"]

DOWNSAMPLING = 64
LABEL_CHANNELS = 5
RGB_MEAN = (0.4488, 0.4371, 0.4040)  # CVQN's yaml DATASET.MEAN (DIV2K's RGB mean), for mean_shift
LOCAL_CA_WINDOW = 9  # G_s's local channel-attention window (detail_ca='local', ambiguity 9 above)


def scaled(c: int, width: float, minimum: int = 1) -> int:
    """round(c · width), at least ``minimum``."""
    return max(minimum, int(round(c * width)))


def depth_to_space(x, r: int = 2):
    """Pixel shuffle (B, H, W, C·r²) → (B, rH, rW, C), PyTorch ``pixel_shuffle`` channel order."""
    B, H, W, C = x.shape
    if C % (r * r):
        raise ValueError(f"depth_to_space ×{r} needs channels divisible by {r * r}, got {C}")
    x = x.reshape(B, H, W, C // (r * r), r, r)
    return x.transpose(0, 1, 4, 2, 5, 3).reshape(B, H * r, W * r, C // (r * r))


def space_to_depth(x, r: int = 2):
    """Exact inverse of :func:`depth_to_space`: (B, rH, rW, C) → (B, H, W, C·r²)."""
    B, H, W, C = x.shape
    if H % r or W % r:
        raise ValueError(f"space_to_depth ×{r} needs H, W divisible by {r}, got {H}x{W}")
    x = x.reshape(B, H // r, r, W // r, r, C)
    return x.transpose(0, 1, 3, 5, 2, 4).reshape(B, H // r, W // r, C * r * r)


def fuse(x_detail, x_main, mask):
    """Eq. 1: x̂ = x̂_s·m + x̂_m·(1 − m) (mask broadcast over the channels)."""
    return x_detail * mask + x_main * (1.0 - mask)


class DepthwiseConv3(nn.Module):
    """Depthwise 3×3 convolution, stride 1, zero padding 1 (RAM's spatial attention)."""

    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        bound = 1.0 / 3.0  # fan-in 9 (PyTorch default uniform bound 1/sqrt(fan_in))
        init = lambda k, s: jax.random.uniform(k, s, jnp.float32, -bound, bound)  # noqa: E731
        kernel = self.param("kernel", init, (3, 3, 1, c))
        bias = self.param("bias", init, (c,))
        dtype = self.dtype or x.dtype
        y = jax.lax.conv_general_dilated(x.astype(dtype), kernel.astype(dtype), (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
        return y + bias.astype(dtype)


def local_variance(x, window: int = LOCAL_CA_WINDOW):
    """Per-channel variance over the ``window``×``window`` neighbourhood of every pixel (stride 1),
    float32: E[x²] − E[x]² with both means taken over the neighbours *inside* the map (average
    pooling that excludes the padding: the sums divided by the count of valid pixels), clamped at 0.
    The value at a pixel reads only pixels within ``window // 2`` of it, so the operation commutes
    with cropping once the crop keeps that margin (or meets the map's own border) —
    :func:`detail_latent_interval`, tests/test_akutsu_coding.py."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"local variance window must be an odd integer ≥ 1, got {window!r}")
    x = x.astype(jnp.float32)
    pad = window // 2
    dims, strides, padding = (1, window, window, 1), (1, 1, 1, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0))
    box = lambda a: jax.lax.reduce_window(a, 0.0, jax.lax.add, dims, strides, padding)  # noqa: E731
    valid = lambda n: np.minimum(np.arange(n) + pad, n - 1) - np.maximum(np.arange(n) - pad, 0) + 1  # noqa: E731
    count = (valid(x.shape[1])[:, None] * valid(x.shape[2])[None, :]).astype(np.float32)[None, :, :, None]
    mean = box(x) / count
    return jnp.maximum(box(x * x) / count - mean * mean, 0.0)


class RCAB(nn.Module):
    """Residual channel-attention block with RAM-style attention (module docstring, "Bodies").
    ``ca``: 'global' — the variance over the whole map (RAM); 'local' — :func:`local_variance` over
    a ``ca_window``² neighbourhood (G_s by default: module docstring, ambiguity 9). Same parameters either way."""

    ca_reduction: int = 1
    dtype: Any = None
    ca: str = "global"
    ca_window: int = LOCAL_CA_WINDOW

    @nn.compact
    def __call__(self, x):
        c, d = x.shape[-1], self.dtype
        r = Conv(c, 3, 1, dtype=d)(x)
        r = Conv(c, 3, 1, dtype=d)(nn.relu(r))
        if self.ca == "local":
            var = local_variance(r, self.ca_window).astype(r.dtype)
        else:
            var = jnp.var(r.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(r.dtype)
        ca = Conv(max(1, c // self.ca_reduction), 1, 1, dtype=d)(var)
        ca = Conv(c, 1, 1, dtype=d)(nn.relu(ca))
        sa = DepthwiseConv3(dtype=d)(r)
        return x + r * jax.nn.sigmoid(ca + sa)


class ResidualGroup(nn.Module):
    blocks: int = 6
    ca_reduction: int = 1
    dtype: Any = None
    ca: str = "global"
    ca_window: int = LOCAL_CA_WINDOW

    @nn.compact
    def __call__(self, x):
        h = x
        for _ in range(self.blocks):
            h = RCAB(self.ca_reduction, self.dtype, self.ca, self.ca_window)(h)
        return x + Conv(x.shape[-1], 3, 1, dtype=self.dtype)(h)


class EncoderBody(nn.Module):
    """Halves H, W: space-to-depth → GDN → residual group → conv3×3 → ``features``."""

    features: int
    blocks: int = 6
    ca_reduction: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        h = space_to_depth(x)
        h = GDN(dtype=self.dtype)(h)
        h = ResidualGroup(self.blocks, self.ca_reduction, self.dtype)(h)
        return Conv(self.features, 3, 1, dtype=self.dtype)(h)


class DecoderBody(nn.Module):
    """Doubles H, W: conv3×3 → 4·``features`` → residual group → GDN (``norm='gdn'``, CVQN) or IGDN
    (``'igdn'``) → pixel shuffle."""

    features: int
    blocks: int = 6
    ca_reduction: int = 1
    dtype: Any = None
    ca: str = "global"
    ca_window: int = LOCAL_CA_WINDOW
    norm: str = "gdn"

    @nn.compact
    def __call__(self, x):
        h = Conv(4 * self.features, 3, 1, dtype=self.dtype)(x)
        h = ResidualGroup(self.blocks, self.ca_reduction, self.dtype, self.ca, self.ca_window)(h)
        h = GDN(inverse=self.norm == "igdn", dtype=self.dtype)(h)
        return depth_to_space(h)


def _bodies(kind, channels, blocks, ca_reduction, dtype, norm="gdn", **ca):
    if kind == "enc":
        return [EncoderBody(c, blocks, ca_reduction, dtype) for c in channels]
    return [DecoderBody(c, blocks, ca_reduction, dtype, norm=norm, **ca) for c in channels]


DETAIL_CA = ("global", "local")
DECODER_NORMS = ("gdn", "igdn")  # the decoder bodies: GDN (CVQN; the default) or IGDN (before 2026-12-04)


def detail_body_radius(blocks: int, detail_ca: str = "local", window: int = LOCAL_CA_WINDOW) -> int | None:
    """Receptive-field radius of one G_s decoder body, in pixels of its *input* resolution (the
    residual group runs before the pixel shuffle): conv3×3 (1) + ``blocks`` RCABs × (two conv3×3
    (2) + the gate's max(depthwise 3×3 SA (1), local CA ``window // 2``)) + the group's conv3×3
    (1). None with global CA (every pixel reads the whole map)."""
    if detail_ca != "local":
        return None
    return 1 + blocks * (2 + max(1, window // 2)) + 1


def detail_latent_interval(lo: int, hi: int, n: int, blocks: int, detail_ca: str = "local",
                           window: int = LOCAL_CA_WINDOW, shrink: int = 0) -> tuple[int, int]:
    """The latent rows (or columns) [lo', hi') that G_s needs to produce the padded-image pixels
    [lo, hi) exactly, clamped to the latent's [0, n): backwards through the four decoder bodies
    (pixel shuffle: [⌊lo/2⌋, ⌈hi/2⌉); then ± :func:`detail_body_radius` at that resolution) and
    the head conv3×3 (± 1 latent). Tight at every step. ``shrink`` (tests only): that many latents
    fewer on each side (before clamping) — the decode is then no longer exact."""
    r = detail_body_radius(blocks, detail_ca, window)
    if r is None:
        raise ValueError("G_s with global channel attention reads the whole latent (detail_ca='global'): "
                         "no region decoding")
    if not 0 <= lo < hi:
        raise ValueError(f"empty or negative pixel interval [{lo}, {hi})")
    for _ in range(4):  # the bodies, last first: output at 2s, input (and residual group) at s
        lo, hi = lo // 2 - r, -((-hi) // 2) + r
    lo, hi = lo - 1 + shrink, hi + 1 - shrink
    return max(0, lo), min(n, hi)


def detail_margin(blocks: int, detail_ca: str = "local", window: int = LOCAL_CA_WINDOW) -> int | None:
    """The largest margin, in latents, that :func:`detail_latent_interval` adds on one side of a
    region's own latents (over the 16 pixel alignments, unclamped)."""
    base = 16 * 10 ** 6  # far from the latent's border: nothing clamped
    return max(base // 16 - detail_latent_interval(base + a, base + a + 1, 10 ** 9, blocks, detail_ca, window)[0]
               for a in range(16))


def _run(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def check_width_blocks(owner: str, width, blocks):
    """``width`` a finite number > 0 (channel multiplier; 1 = the paper), ``blocks`` an integer ≥ 1."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"{owner}: width must be a finite number > 0 (channel multiplier, 1 = the paper's "
                         f"sizes), got {width!r}")
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 1:
        raise ValueError(f"{owner}: blocks (RCABs per residual group, paper 6) must be an integer ≥ 1, "
                         f"got {blocks!r}")


class Discriminator(nn.Module):
    """Conditional patch discriminator D (§3.1): one "fake" logit per 16×16 patch (float32).

    ``labels``: (B, H, W, ``label_classes``) one-hot (or soft) segmentation t_s."""

    channels: Sequence[int] = (32, 64, 128, 192)
    label_classes: int = LABEL_CHANNELS
    label_hidden: int = 16
    blocks: int = 6
    ca_reduction: int = 1
    width: float = 1.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, labels):
        d, w = self.dtype, self.width
        if labels.shape[:3] != x.shape[:3] or labels.shape[-1] != self.label_classes:
            raise ValueError(f"labels must be {x.shape[:3] + (self.label_classes,)}, got {labels.shape}")
        t = Conv(scaled(self.label_hidden, w), 1, 1, dtype=d)(labels)
        t = Conv(LABEL_CHANNELS, 1, 1, dtype=d)(nn.leaky_relu(t, 0.2))
        h = jnp.concatenate([x.astype(t.dtype), t], axis=-1)
        h = _run(_bodies("enc", [scaled(c, w) for c in self.channels], self.blocks, self.ca_reduction, d), h)
        return Conv(1, 3, 1, dtype=d)(h).astype(jnp.float32)


class Akutsu2020(nn.Module):
    """E, G_m, G_s, H_e, H_d and the entropy estimator of Akutsu et al. 2020 (D is separate:
    :class:`Discriminator`, its own parameters and optimiser).

    ``apply(variables, x, train=..., quant=..., detail=True, rngs={'noise': key})`` returns the
    project's model dict (``x_hat``, ``likelihoods`` {'y', 'z'}, ``y``, ``z``, ``y_hat``,
    ``z_hat``, ``scales``, ``means``) plus ``x_hat_main``, ``x_hat_detail``, ``mask`` (B, H, W, 1)
    and ``mask_logit``. With ``detail=False`` G_s is not run (``x_hat`` = ``x_hat_main``)."""

    latent: int = 64
    encoder_channels: Sequence[int] = (32, 64, 128, 192)
    main_channels: Sequence[int] = (192, 128, 64, 32)
    detail_channels: Sequence[int] = (192, 96, 64, 32)
    hyper: int = 32
    hyper_out: int = 128
    context: int = 128
    mix: int = 192
    key_dim: int = 16
    mix_attention: bool = True
    blocks: int = 6
    ca_reduction: int = 1
    eb_filters: tuple = (3, 3, 3, 3)
    width: float = 1.0
    dtype: Any = None
    detail_ca: str = "local"
    attention_window: int = 0
    decoder_norm: str = "gdn"  # the decoder bodies' normalisation: 'gdn' (CVQN) or 'igdn' (before 2026-12-04)
    mean_shift: bool = True  # E sees x − RGB_MEAN, G_m / G_s output + RGB_MEAN (CVQN; False before 2026-12-05)

    downsampling = DOWNSAMPLING

    def check_hparams(self):
        """Clear errors for hyper-parameters that cannot build a model (``registry.get_model`` calls it)."""
        check_width_blocks(type(self).__name__, self.width, self.blocks)
        for name in ("latent", "hyper", "hyper_out", "context", "mix", "key_dim", "ca_reduction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive integer, got {v!r}")
        for name in ("encoder_channels", "main_channels", "detail_channels"):
            v = tuple(getattr(self, name))
            if len(v) != 4 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in v):
                raise ValueError(f"{type(self).__name__}: {name} must be 4 positive integers, got {v!r}")
        w = self.attention_window
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 0:
            raise ValueError(f"{type(self).__name__}: attention_window must be 0 (global causal attention, the "
                             f"paper) or a radius ≥ 1 in latents (local, decoded by wavefronts), got {w!r}")
        if self.detail_ca not in DETAIL_CA:
            raise ValueError(f"{type(self).__name__}: detail_ca (G_s's channel attention) must be 'global' (the "
                             f"paper's whole-map variance) or 'local' ({LOCAL_CA_WINDOW}×{LOCAL_CA_WINDOW} "
                             f"variance), got {self.detail_ca!r}")
        if self.decoder_norm not in DECODER_NORMS:
            raise ValueError(f"{type(self).__name__}: decoder_norm (the decoder bodies' normalisation) must be "
                             f"'gdn' (CVQN) or 'igdn', got {self.decoder_norm!r}")
        if not isinstance(self.mean_shift, (bool, np.bool_)):
            raise ValueError(f"{type(self).__name__}: mean_shift must be True (CVQN's RGB mean shift) or False, "
                             f"got {self.mean_shift!r}")

    def discriminator(self, **kw) -> "Discriminator":
        """The D that goes with this model: same ``width``, ``blocks``, ``ca_reduction`` and dtype."""
        return Discriminator(blocks=self.blocks, ca_reduction=self.ca_reduction, width=self.width,
                             dtype=self.dtype, parent=None, **kw)

    def setup(self):
        d, w, n, r = self.dtype, self.width, self.blocks, self.ca_reduction
        s = lambda c: scaled(c, w)  # noqa: E731
        lat, hyp = s(self.latent), s(self.hyper)
        self.g_a = _bodies("enc", [s(c) for c in self.encoder_channels], n, r, d) + [Conv(lat, 3, 1, dtype=d)]
        mc, dc = [s(c) for c in self.main_channels], [s(c) for c in self.detail_channels]
        dn = self.decoder_norm
        self.g_m = [Conv(mc[0], 3, 1, dtype=d)] + _bodies("dec", mc[1:] + [3], n, r, d, norm=dn)
        self.g_d = [Conv(dc[0], 3, 1, dtype=d)] + _bodies("dec", dc[1:] + [4], n, r, d, norm=dn, ca=self.detail_ca)
        self.h_a = [Conv(hyp, 3, 1, dtype=d)] + _bodies("enc", [hyp, hyp], n, r, d)
        self.h_s = _bodies("dec", [hyp, hyp], n, r, d, norm=dn) + [Conv(s(self.hyper_out), 3, 1, dtype=d)]
        aw = int(self.attention_window)
        self.context_estimator = ContextEstimator(s(self.context), max(4, s(self.key_dim)), d, aw)
        self.mixing_body = MixingBody(lat, s(self.mix), max(4, s(self.key_dim)), self.mix_attention, d, aw)
        self.entropy_bottleneck = EntropyBottleneck(hyp, filters=self.eb_filters)
        self.gaussian_conditional = GaussianConditional()

    # -- pieces (used by losses, tests and the later coder) ---------------------------------------
    def _rgb_mean(self):
        return jnp.asarray(RGB_MEAN if self.mean_shift else (0.0, 0.0, 0.0), jnp.float32)

    def analysis(self, x):
        return self.analysis_stages(x)[-1]

    def analysis_stages(self, x) -> list:
        """E's intermediate outputs, float32: each body's (strides 2, 4, 8, 16) then the latent y (the last
        is :meth:`analysis`'s output); for probes of what E keeps (experiments/akutsu_colour_check.py). The casts of
        stages a caller drops are dead code that jit removes."""
        h, outs = x - self._rgb_mean(), []
        for layer in self.g_a:
            h = layer(h)
            outs.append(h.astype(jnp.float32))
        return outs

    def hyper_analysis(self, y):
        return _run(self.h_a, y).astype(jnp.float32)

    def hyper_synthesis(self, z_hat):
        return _run(self.h_s, z_hat).astype(jnp.float32)

    def gaussian_params(self, hyper, y_hat):
        """(σ, μ) at every position from H_d's features and the causal context of ŷ."""
        return self.mixing_body(self.context_estimator(y_hat), hyper)

    # -- the sequential coder's incremental form (issue 20, increment 3; latent_coders/attention.py) --
    def attention_cache_shapes(self, n: int, batch: int = 1) -> tuple:
        """Shapes of the key/value caches of the two attention layers for ``n`` latent positions:
        ((K, V) of the context estimator, (K, V) of the mixing body or None without its attention)."""
        s = lambda c: scaled(c, self.width)  # noqa: E731
        kd = max(4, s(self.key_dim))
        ctx = ((batch, n, kd), (batch, n, s(self.context)))
        mix = ((batch, n, kd), (batch, n, s(self.mix))) if self.mix_attention else None
        return ctx, mix

    def attention_cache(self, n: int, batch: int = 1):
        """Empty (zero) key/value caches for ``n`` positions (:meth:`attention_cache_shapes`)."""
        z = lambda shapes: None if shapes is None else tuple(jnp.zeros(sh, jnp.float32) for sh in shapes)  # noqa: E731
        return tuple(z(sh) for sh in self.attention_cache_shapes(n, batch))

    def gaussian_params_step(self, hyper_i, window, caches, index):
        """(σ_i, μ_i, caches) of raster position ``index`` alone: ``hyper_i`` (B, 1, 1, C_h) H_d's
        features there, ``window`` (B, 5, 5, M) the ŷ decoded so far around it (centred on it; zeros
        at positions ≥ i and outside), ``caches`` from :meth:`attention_cache` holding the keys and
        values of positions < i. Equals :meth:`gaussian_params` at i to float rounding
        (tests/test_akutsu_coding.py)."""
        ctx, c_ctx = self.context_estimator(window, caches[0], index)
        sigma, mu, c_mix = self.mixing_body(ctx, hyper_i, caches[1], index)
        return sigma, mu, (c_ctx, c_mix)

    # -- the wavefront form of a local attention window (attention_window > 0) ----------------------
    def wavefront_slope(self) -> int:
        """s of the wavefronts s·h + w = t (``coding/wavefront.py``): the masked 5×5 convolution needs
        s ≥ 3 (as mbt2018), and a query reads keys up to ``attention_window`` columns to its right in
        the rows above, computed in earlier wavefronts only if s > attention_window."""
        if not self.attention_window:
            raise ValueError("global causal attention has no wavefronts (attention_window = 0)")
        return max(3, int(self.attention_window) + 1)

    def attention_grid_cache(self, H: int, W: int):
        """Zero key/value grids of both attention layers for an H × W latent, padded by the window
        (:meth:`CausalSelfAttention._wavefront`)."""
        r = int(self.attention_window)
        s = lambda c: scaled(c, self.width)  # noqa: E731
        kd = max(4, s(self.key_dim))
        grid = lambda c: (jnp.zeros((H + r, W + 2 * r, kd), jnp.float32),  # noqa: E731
                          jnp.zeros((H + r, W + 2 * r, c), jnp.float32))
        return grid(s(self.context)), (grid(s(self.mix)) if self.mix_attention else None)

    def gaussian_params_wavefront(self, hyper_k, windows, caches, pos):
        """(σ, μ, caches) at the K positions ``pos`` (K, 2) of one wavefront: ``hyper_k`` (K, 1, 1, C_h),
        ``windows`` (K, 5, 5, M) the ŷ decoded so far around each (zeros where not yet decoded),
        ``caches`` from :meth:`attention_grid_cache`. Equals :meth:`gaussian_params` at those positions
        to float rounding (tests/test_akutsu_window.py); σ, μ are (K, M)."""
        ctx, c_ctx = self.context_estimator(windows, caches[0], pos)
        sigma, mu, c_mix = self.mixing_body(ctx, hyper_k, caches[1], pos)
        return sigma[:, 0, 0], mu[:, 0, 0], (c_ctx, c_mix)

    def synthesis_main(self, y_hat):
        return _run(self.g_m, y_hat).astype(jnp.float32) + self._rgb_mean()

    def synthesis_detail(self, y_hat):
        """G_s: (x̂_s, mask logit) — a pair, so not a decoder of the codec (:meth:`synthesis_fused` is)."""
        out = _run(self.g_d, y_hat).astype(jnp.float32)
        return out[..., :3] + self._rgb_mean(), out[..., 3:]

    def synthesis_fused(self, y_hat):
        """Selective detail decoding, eq. 1: fuse(x̂_s, x̂_m, sigmoid(logit)) of G_s and G_m (the
        codec's decoder ``synthesis_fused``, ``lic decompress --detail``)."""
        x_det, logit = self.synthesis_detail(y_hat)
        return fuse(x_det, self.synthesis_main(y_hat), jax.nn.sigmoid(logit))

    def __call__(self, x, train: bool = False, quant: str | None = None, detail: bool = True):
        """Forward pass with mbt2018's quantisation convention (context, rate and synthesis share
        one noisy sample in training; eval rounds, the rate is that of round(y − μ) + μ)."""
        h, w = x.shape[1:3]
        rate_mode, syn_mode = quant_modes(train, quant)
        y = self.analysis(pad_image(x, self.downsampling))
        z = self.hyper_analysis(y)
        z_rate, z_lik = self.entropy_bottleneck(z, rate_mode)
        z_hat = z_rate if syn_mode == rate_mode else quantize(z, syn_mode, self.entropy_bottleneck.medians())
        hyper = self.hyper_synthesis(z_hat)
        rng = self.make_rng("noise") if rate_mode == "noise" else None
        y_ctx = quantize(y, rate_mode, None, rng)
        scales, means = self.gaussian_params(hyper, y_ctx)
        y_rate = y_ctx if rate_mode == "noise" else quantize(y, rate_mode, means)
        y_lik = self.gaussian_conditional.likelihood(y_rate, scales, means)
        y_hat = y_ctx if syn_mode == rate_mode else quantize(y, syn_mode)
        x_main = crop_image(self.synthesis_main(y_hat), h, w)
        out = {"x_hat_main": x_main, "likelihoods": {"y": y_lik, "z": z_lik}, "y": y, "z": z, "y_hat": y_hat,
               "z_hat": z_hat, "scales": scales, "means": means}
        if detail:
            x_det, logit = self.synthesis_detail(y_hat)
            x_det, logit = crop_image(x_det, h, w), crop_image(logit, h, w)
            mask = jax.nn.sigmoid(logit)
            out.update(x_hat=fuse(x_det, x_main, mask), x_hat_detail=x_det, mask=mask, mask_logit=logit)
        else:
            out["x_hat"] = x_main
        return out
