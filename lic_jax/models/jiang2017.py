"""ComCNN → standard codec → RecCNN: Jiang et al. 2017, "An End-to-End Compression Framework
Based on Convolutional Neural Networks" (arXiv:1708.00838; seed 004; docs/COMCNN.md,
``/work/shared/docs/SYSTEMS.md`` §9).

* **ComCNN** (§3.1, Fig. 2): conv 3×3 N + ReLU → conv 3×3 N, **stride 2** (+ BN in the paper's
  figure, not in the official code: ``com_bn``, default off) + ReLU → conv 3×3 c. It maps the
  image x to a compact image of half the size, Cr(x) (Eq. 1), which a standard codec codes.
* **RecCNN** (§3.2, Fig. 3): the decoded compact image is upscaled ×2 (bicubic), then
  conv 3×3 N + ReLU → (depth − 2) × (conv 3×3 N + BN + ReLU) → conv 3×3 c predicts the
  *residual*; the output is ``upscaled − residual`` (DnCNN-style residual learning; the
  official code's loss is the MSE of that residual, Eq. 2–3).
* Objective (Eq. 1–3): x̂ = Re(Co(Cr(x))), min ‖x̂ − x‖²; the codec Co is not differentiable, so
  training alternates (Eq. 4–5): RecCNN on (upscaled decoded, original) pairs with ComCNN fixed;
  ComCNN with RecCNN fixed, the codec taken as the identity in the backward pass (§3.3; the
  official code instead approximates the compact image's gradient by the bicubic-downscaled
  output error: ``lic_jax/restoration/comcnn_train.py``).

Bicubic resampling is ``jax.image.resize(method='bicubic')``: Keys' cubic with a = −0.5, pixel
centres at half-integers, the kernel renormalised where it leaves the image, antialiased (kernel
stretched ×2) when downscaling. That is Pillow's ``Image.BICUBIC`` on mode 'F' images: measured
max |difference| 2.4e-7 (×2 up) and 1.2e-7 (×2 down) on random 20×28 / 40×56 arrays
(``tests/test_jiang2017.py`` holds it to 1e-6). MATLAB's ``imresize`` (the official code) uses the
same kernel but mirrors at the border instead of renormalising, so only the outermost 2 pixels differ.

Colour: the nets are grey (c = 1), as in the paper and the official code. ``Codec`` always hands
the model 3 channels (a grey image is replicated), so ``colour`` chooses:
  * ``'grey'`` (default): ComCNN sees luma Y′ = 0.299 R + 0.587 G + 0.114 B (Pillow's 'L'); the
    payload is a one-channel JPEG; the output is grey (replicated to 3 channels). For grey
    images this is exact; colour images lose their colour.
  * ``'per-channel'``: the same grey nets run on R, G and B separately (channels folded into
    the batch); the payload is a 3-channel 4:4:4 JPEG (Pillow converts it to YCbCr).

Batch norm: trained with ``bn_collection='batch_stats'`` (``flax.linen.BatchNorm``: batch
statistics and a running-average update of the ``batch_stats`` collection when ``train``,
the running averages otherwise). The registered, exported model (the default,
``bn_collection='params'``) is the same network with the four BN arrays (scale, bias, mean,
var) stored in ``params`` — ``Codec`` and the artifact carry ``params`` only — and
:class:`FrozenBatchNorm` computes exactly what ``nn.BatchNorm(use_running_average=True)``
computes. :func:`export_variables` converts; the result is bit-for-bit the training model's eval
output (tested).

Parameter counts (N = 64, depth = 20, c = 1): ComCNN 640 + 36 928 + 577 = 38 145; RecCNN
640 + 18 · (36 864 + 128) + 577 = 667 073 (convolutions before BN have no bias) plus 18 · 128
running statistics.
"""

from __future__ import annotations

import io as _io
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

__all__ = ["ComCNN", "RecCNN", "ComCNNJpeg", "FrozenBatchNorm", "bicubic_up2", "bicubic_down2", "jpeg_roundtrip",
           "jpeg_np", "jpeg_straight_through", "export_variables", "training_model", "LUMA"]

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 (Pillow's convert('L'))


def _he_init(fan_in_channels: int):
    """N(0, √(2 / (9 · C_in))): the official code's init (√(2/576) for 64 input channels)."""
    return nn.initializers.normal(stddev=float(np.sqrt(2.0 / (9 * fan_in_channels))))


def bicubic_up2(x):
    """(B, h, w, C) → (B, 2h, 2w, C), bicubic (Keys a = −0.5, = Pillow BICUBIC), differentiable."""
    B, h, w, C = x.shape
    return jax.image.resize(x, (B, 2 * h, 2 * w, C), "bicubic")


def bicubic_down2(x):
    """(B, H, W, C) → (B, H/2, W/2, C), antialiased bicubic (= Pillow BICUBIC); H, W even."""
    B, H, W, C = x.shape
    if H % 2 or W % 2:
        raise ValueError(f"bicubic_down2 needs even sides, got {H}×{W}")
    return jax.image.resize(x, (B, H // 2, W // 2, C), "bicubic")


# ------------------------------------------------------------------------------------------------
# the standard codec, on the host (Pillow): the encoder writes exactly these bytes
# (lic_jax.coding.latent_coders.external.write_payload uses the same settings)
# ------------------------------------------------------------------------------------------------
def jpeg_roundtrip(a: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
    """uint8 (H, W, C), C ∈ {1, 3} → (decoded uint8 (H, W, C), bytes): Pillow JPEG at ``quality``,
    4:4:4, baseline, no optimisation (the ExternalCoder's payload settings)."""
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"jpeg_roundtrip takes uint8 H×W×1 or H×W×3, got {a.dtype} {a.shape}")
    img = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
    buf = _io.BytesIO()
    img.save(buf, "JPEG", quality=int(quality), subsampling=0, optimize=False)
    data = buf.getvalue()
    with Image.open(_io.BytesIO(data)) as im:
        d = np.asarray(im.convert("L" if a.shape[2] == 1 else "RGB"), np.uint8)
    return d.reshape(a.shape), len(data)


def jpeg_np(y, quality: int) -> np.ndarray:
    """float (B, h, w, C) in [0, 1] (clipped) → the decoded JPEG of each image, float32 in [0, 1]."""
    y = np.asarray(y, np.float32)
    a = np.round(np.clip(y, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    out = np.stack([jpeg_roundtrip(ai, quality)[0] for ai in a])
    return out.astype(np.float32) / np.float32(255.0)


def _jpeg_callback(y, quality: int):
    return jax.pure_callback(lambda v: jpeg_np(v, quality), jax.ShapeDtypeStruct(y.shape, jnp.float32), y)


def jpeg_straight_through(y, quality: int):
    """Real JPEG (a host ``jax.pure_callback`` to Pillow) in the forward pass; the identity in the
    backward pass (the paper's §3.3 treatment of the codec in the ComCNN update)."""

    @jax.custom_vjp
    def f(v):
        return _jpeg_callback(v, quality)

    f.defvjp(lambda v: (_jpeg_callback(v, quality), None), lambda _, g: (g,))
    return f(y)


# ------------------------------------------------------------------------------------------------
class FrozenBatchNorm(nn.Module):
    """Inference batch norm with its statistics in ``params`` (the exported form of ``nn.BatchNorm``):
    the same variable names (scale, bias, mean, var) and flax's arithmetic,
    ``(x − mean) · (rsqrt(var + ε) · scale) + bias``."""

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool = False):
        C = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (C,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (C,), jnp.float32)
        mean = self.param("mean", nn.initializers.zeros, (C,), jnp.float32)
        var = self.param("var", nn.initializers.ones, (C,), jnp.float32)
        if train and not self.is_initializing():
            raise ValueError("this is the exported comcnn-jpeg (batch-norm statistics frozen in params); "
                             "train the model built with bn_collection='batch_stats'")
        mul = jax.lax.rsqrt(var + self.epsilon) * scale
        return (x - mean) * mul + bias


def _bn(collection: str, name: str):
    if collection == "batch_stats":
        return lambda x, train: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                             name=name)(x)
    if collection == "params":
        return lambda x, train: FrozenBatchNorm(epsilon=1e-5, name=name)(x, train)
    raise ValueError(f"bn_collection must be 'batch_stats' (training) or 'params' (exported), got {collection!r}")


class ComCNN(nn.Module):
    """x (B, H, W, c) in [0, 1] → compact image (B, H/2, W/2, c), unbounded (the codec clips)."""

    N: int = 64
    c: int = 1
    bn: bool = False
    bn_collection: str = "batch_stats"

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim != 4 or x.shape[-1] != self.c:
            raise ValueError(f"ComCNN takes (B, H, W, {self.c}), got {x.shape}")
        if x.shape[1] % 2 or x.shape[2] % 2:
            raise ValueError(f"ComCNN needs even sides, got {x.shape[1]}×{x.shape[2]}")
        h = nn.relu(nn.Conv(self.N, (3, 3), padding="SAME", kernel_init=_he_init(self.c), name="conv1")(x))
        h = nn.Conv(self.N, (3, 3), strides=(2, 2), padding="SAME", use_bias=not self.bn,
                    kernel_init=_he_init(self.N), name="conv2")(h)
        if self.bn:
            h = _bn(self.bn_collection, "bn2")(h, train)
        h = nn.relu(h)
        return nn.Conv(self.c, (3, 3), padding="SAME", kernel_init=_he_init(self.N), name="conv3")(h)


class RecCNN(nn.Module):
    """u (B, H, W, c), the bicubic-upscaled decoded compact image → x̂ = u − residual(u)."""

    N: int = 64
    c: int = 1
    depth: int = 20
    bn_collection: str = "batch_stats"
    zero_init_last: bool = False  # ours, optional: r(u) = 0 at init (x̂ = u), not the official init

    @nn.compact
    def residual(self, u, train: bool = False):
        """The predicted residual r(u) (the 20-layer DnCNN-style body)."""
        h = nn.relu(nn.Conv(self.N, (3, 3), padding="SAME", kernel_init=_he_init(self.c), name="conv1")(u))
        for i in range(2, self.depth):
            h = nn.Conv(self.N, (3, 3), padding="SAME", use_bias=False, kernel_init=_he_init(self.N),
                        name=f"conv{i}")(h)
            h = nn.relu(_bn(self.bn_collection, f"bn{i}")(h, train))
        last_init = nn.initializers.zeros if self.zero_init_last else _he_init(self.N)
        return nn.Conv(self.c, (3, 3), padding="SAME", kernel_init=last_init, name=f"conv{self.depth}")(h)

    def __call__(self, u, train: bool = False):
        if u.ndim != 4 or u.shape[-1] != self.c:
            raise ValueError(f"RecCNN takes (B, H, W, {self.c}), got {u.shape}")
        if self.depth < 3:
            raise ValueError(f"RecCNN depth must be ≥ 3, got {self.depth}")
        return u - self.residual(u, train)


class ComCNNJpeg(nn.Module):
    """ComCNN → JPEG (``payload_quality``) → bicubic ×2 → RecCNN, for the ``external`` latent coder.

    ``analysis``: the compact image clipped to [0, 1], (B, H/2, W/2, 1) ('grey') or 3
    ('per-channel'); ``synthesis``: RecCNN on the decoded compact image (eval-mode batch norm),
    (B, H, W, 3). ``__call__``: the whole chain with real JPEG in the forward pass
    (:func:`jpeg_straight_through`).

    ``payload_quality`` is the JPEG quality factor the encoder writes; the decoder does not need it
    (a JPEG carries its quantisation tables). ``N`` and ``depth`` are the paper's 64 and 20.
    """

    N: int = 64
    depth: int = 20
    colour: str = "grey"
    com_bn: bool = False
    bn_collection: str = "params"
    payload_codec: str = "jpeg"
    payload_quality: int = 10
    downsampling = 2

    def setup(self):
        if self.colour not in ("grey", "per-channel"):
            raise ValueError(f"colour must be 'grey' or 'per-channel', got {self.colour!r}")
        if not 1 <= int(self.payload_quality) <= 100:
            raise ValueError(f"payload_quality (JPEG QF) must be 1..100, got {self.payload_quality!r}")
        self.com = ComCNN(self.N, 1, self.com_bn, self.bn_collection)
        self.rec = RecCNN(self.N, 1, self.depth, self.bn_collection)

    def _to_nets(self, x):
        """(B, H, W, 3) → (B', H, W, 1): luma, or the channels folded into the batch."""
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"comcnn-jpeg takes (B, H, W, 3) or (B, H, W, 1), got {x.shape}")
        if x.shape[-1] == 1:
            return x
        if self.colour == "grey":
            return jnp.tensordot(x, jnp.asarray(LUMA, x.dtype), axes=[[3], [0]])[..., None]
        B, H, W, _ = x.shape
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(B * 3, H, W, 1)

    def _from_nets(self, y, B):
        """Inverse of :meth:`_to_nets` for the compact image: (B', h, w, 1) → (B, h, w, 1 or 3)."""
        if self.colour == "grey" or y.shape[0] == B:
            return y
        _, h, w, _ = y.shape
        return jnp.transpose(y.reshape(B, 3, h, w), (0, 2, 3, 1))

    def compact(self, x, train: bool = False):
        """ComCNN's raw output (before the codec's clip), (B, H/2, W/2, 1 or 3)."""
        return self._from_nets(self.com(self._to_nets(x), train), x.shape[0])

    def analysis(self, x):
        return jnp.clip(self.compact(x), 0.0, 1.0)

    def reconstruct(self, y_hat, train: bool = False):
        """Decoded compact image (B, h, w, C) → (B, 2h, 2w, C) through bicubic ×2 and RecCNN."""
        B, h, w, C = y_hat.shape
        y1 = y_hat if C == 1 else jnp.transpose(y_hat, (0, 3, 1, 2)).reshape(B * C, h, w, 1)
        out = self.rec(bicubic_up2(y1), train)
        return out if C == 1 else jnp.transpose(out.reshape(B, C, 2 * h, 2 * w), (0, 2, 3, 1))

    def synthesis(self, y_hat):
        out = self.reconstruct(y_hat)
        return jnp.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out

    def __call__(self, x, train: bool = False):
        y = self.compact(x, train)
        y_hat = jpeg_straight_through(y, int(self.payload_quality))
        out = self.reconstruct(y_hat, train)
        x_hat = jnp.repeat(out, 3, axis=-1) if (out.shape[-1] == 1 and x.shape[-1] == 3) else out
        return {"x_hat": x_hat, "y": y, "y_hat": y_hat, "likelihoods": {}}


def training_model(**hparams) -> ComCNNJpeg:
    """The trainable form (``bn_collection='batch_stats'``) of ``ComCNNJpeg(**hparams)``."""
    return ComCNNJpeg(**{**hparams, "bn_collection": "batch_stats"})


def export_variables(variables) -> dict:
    """Training variables ``{'params', 'batch_stats'}`` → ``{'params'}`` of the exported model
    (``bn_collection='params'``): each BN's running mean / var joins its scale / bias."""
    params = variables["params"]
    stats = variables.get("batch_stats", {})

    def merge(p, s):
        out = dict(p)
        for k, v in s.items():
            out[k] = merge(out.get(k, {}), v) if isinstance(v, Mapping) else v
        return out

    return {"params": merge(params, stats)}
