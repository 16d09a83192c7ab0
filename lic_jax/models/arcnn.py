"""ARCNN and ARCNN+ASPP: CNN removal of JPEG compression artifacts (seed 004; SYSTEMS.md §10).

ARCNN — Dong, Deng, Loy, Tang, "Compression Artifacts Reduction by a Deep Convolutional Network",
ICCV 2015 (§3.1, Fig. 2) and the journal version Yu, Dong, Loy, Tang, arXiv:1608.02778 (§3): four
convolutions, "feature extraction → feature enhancement → mapping → reconstruction",

    F1 = act(W1 * Y + b1)      9×9, 64 filters
    F2 = act(W2 * F1 + b2)     7×7, 32 filters
    F3 = act(W3 * F2 + b3)     1×1, 16 filters
    f  = W4 * F3 + b4          5×5, c filters

``act`` is ReLU (ICCV 2015, eq. 1–3) or PReLU (arXiv:1608.02778 §3.2 and the yjn870/ARCNN-pytorch
port: one learned slope per layer, initialised at 0.25 as ``torch.nn.PReLU()``).

Choices made here (the papers use 'valid' convolutions and predict the clean image directly):

* **'SAME' padding** so the output has the input's size (a restoration filter must cover every
  pixel; zero padding at the image border only).
* **Global residual**, on by default: x̂ = y + f(y), y the decoded JPEG. The seed (004 §5) adds a
  "residual connection to prevent the problem of vanishing gradient"; SYSTEMS.md §10 recommends the
  global form. With the residual the network starts as the identity (PSNR of the JPEG) and only
  has to learn the artifact, which is what makes a short CPU budget useful. ``residual=False`` is
  the paper's direct mapping.
* **Initialisation**: ``weight_init='paper'`` draws every kernel from N(0, 0.001²) with zero biases, as
  the ICCV paper §4.1 and the port; ``weight_init='he'`` uses He-normal (fan-in) kernels, the last layer
  scaled by 0.1 so f(y) ≈ 0 at the start. The shipped weights were trained with ``'he'`` (the
  recipe JSON next to them records it): with N(0, 0.001²) the 4-layer product of weights is ~1e-9
  and the loss does not move in a few thousand steps.
* **Channels** ``c = 1``: the Y′ (BT.601) channel, as both papers; ``c = 3`` treats RGB *jointly*
  (one network sees the three channels, as the port). ``lic restore`` restores Y′ of colour
  JPEGs and keeps the decoder's chroma (docs/RESTORATION.md).

ARCNN_ASPP — the seed's modification (004 §5: "addition of an ASPP module … to increase the
receptive field … the JPEG algorithm processes the image in 8X8 chunks"), with the DeepLab-v3
ASPP (Chen et al., arXiv:1706.05587 §3.3): parallel 1×1 conv and 3×3 atrous convs at several
rates, optionally an image-level (global average pool) branch, concatenated and projected by 1×1.
The seed's figure is missing, so placement and rates are ours (SYSTEMS.md §10 recommendation):

* placement **after the 7×7 enhancement layer** (32 channels): the ASPP replaces the 1×1 mapping
  layer — its concatenated branches are projected by a 1×1 to 16 channels, then the 5×5
  reconstruction. Features there already describe 7×7+9×9−1 = 15 px neighbourhoods, so the atrous
  branches relate a pixel's block to its neighbouring 8×8 blocks.
* rates **(1, 6, 12, 18)** for the 3×3 branches next to a 1×1 branch (v3's 6/12/18 at output
  stride 16 plus a dense rate 1); ``rates=(2, 4, 8)`` aligns taps with the 8-px grid instead.
  Receptive field with the defaults: 9 + 6 + 36 + 4 = 55 px (ARCNN: 19 px).
* branch width 32 (the block's input width), the layer's activation after every branch and after
  the projection, **no batch norm** (restoration nets with small batches of 40×40 patches train
  better without it; v3 uses BN for segmentation).
* global residual as in ARCNN.

Everything is NHWC float32, pixel values in [0, 1]; the output is not clipped (callers clip and
round when they make an image).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ARCNN", "ARCNN_ASPP", "PReLU", "arcnn_param_count", "LAST_LAYER"]

LAST_LAYER = "reconstruction"  # name of the output layer (trained at 0.1× the learning rate)


class PReLU(nn.Module):
    """PReLU with one learned slope per layer (torch.nn.PReLU() default, init 0.25)."""

    init_slope: float = 0.25

    @nn.compact
    def __call__(self, x):
        a = self.param("slope", nn.initializers.constant(self.init_slope), (), jnp.float32)
        return jnp.where(x >= 0, x, a * x)


def _kernel_init(init: str, last: bool = False):
    if init == "paper":
        return nn.initializers.normal(stddev=1e-3)
    if init == "he":
        base = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
        if not last:
            return base

        def scaled(key, shape, dtype=jnp.float32):
            return 0.1 * base(key, shape, dtype)

        return scaled
    raise ValueError(f"unknown init {init!r}; expected 'paper' or 'he'")


def _check(activation: str, channels: int):
    if activation not in ("relu", "prelu"):
        raise ValueError(f"unknown activation {activation!r}; expected 'relu' or 'prelu'")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey Y') or 3 (RGB), got {channels}")


class _Base(nn.Module):
    def _act(self, x, name):
        if self.activation == "prelu":
            return PReLU(name=f"{name}_prelu")(x)
        return nn.relu(x)

    def _conv(self, feats, k, name, last=False, dilation=1):
        return nn.Conv(feats, (k, k), padding="SAME", kernel_dilation=(dilation, dilation),
                       kernel_init=_kernel_init(self.weight_init, last), bias_init=nn.initializers.zeros, name=name)


class ARCNN(_Base):
    """ARCNN, Dong et al. ICCV 2015 §3.1 / Yu et al. arXiv:1608.02778 §3 (see the module docstring).

    ``__call__(y)``: y (N, H, W, channels) float32 in [0, 1], the decoded JPEG → restored image
    (same shape, unclipped).
    """

    channels: int = 1
    activation: str = "relu"
    residual: bool = True
    weight_init: str = "paper"
    features: Sequence[int] = (64, 32, 16)
    kernels: Sequence[int] = (9, 7, 1, 5)

    @nn.compact
    def __call__(self, y):
        _check(self.activation, self.channels)
        if y.ndim != 4 or y.shape[-1] != self.channels:
            raise ValueError(f"ARCNN expects (N, H, W, {self.channels}) input, got shape {tuple(y.shape)}")
        y = y.astype(jnp.float32)
        h = y
        for i, (name, f, k) in enumerate(zip(("extraction", "enhancement", "mapping"), self.features, self.kernels)):
            h = self._act(self._conv(f, k, name)(h), name)
        out = self._conv(self.channels, self.kernels[3], LAST_LAYER, last=True)(h)
        return y + out if self.residual else out


class ARCNN_ASPP(_Base):
    """ARCNN with a DeepLab-v3 ASPP block after the 7×7 layer (seed 004 §5; Chen et al.
    arXiv:1706.05587 §3.3; placement, rates and width documented in the module docstring).

    extraction 9×9 64 → enhancement 7×7 32 → ASPP{1×1, 3×3 @ rates, [global pool]} (``width`` each)
    → concat → 1×1 16 ("projection") → 5×5 ``channels`` ("reconstruction") [+ y].
    """

    channels: int = 1
    activation: str = "relu"
    residual: bool = True
    weight_init: str = "paper"
    rates: Sequence[int] = (1, 6, 12, 18)
    width: int = 32
    global_pool: bool = False

    @nn.compact
    def __call__(self, y):
        _check(self.activation, self.channels)
        if y.ndim != 4 or y.shape[-1] != self.channels:
            raise ValueError(f"ARCNN_ASPP expects (N, H, W, {self.channels}) input, got shape {tuple(y.shape)}")
        y = y.astype(jnp.float32)
        h = self._act(self._conv(64, 9, "extraction")(y), "extraction")
        h = self._act(self._conv(32, 7, "enhancement")(h), "enhancement")
        branches = [self._act(self._conv(self.width, 1, "aspp_1x1")(h), "aspp_1x1")]
        for r in self.rates:
            name = f"aspp_r{r}"
            branches.append(self._act(self._conv(self.width, 3, name, dilation=int(r))(h), name))
        if self.global_pool:
            g = jnp.mean(h, axis=(1, 2), keepdims=True)
            g = self._act(self._conv(self.width, 1, "aspp_pool")(g), "aspp_pool")
            branches.append(jnp.broadcast_to(g, h.shape[:3] + (self.width,)))
        h = jnp.concatenate(branches, axis=-1)
        h = self._act(self._conv(16, 1, "projection")(h), "projection")
        out = self._conv(self.channels, 5, LAST_LAYER, last=True)(h)
        return y + out if self.residual else out


def arcnn_param_count(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
