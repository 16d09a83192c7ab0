"""Codecs the evaluation runner drives: learned lic_jax models and classical codecs via Pillow.

Every codec has ``name``, ``description`` and ``run(img) -> CodecOutput`` where ``img`` is an
(H, W, 3) uint8 RGB array. ``CodecOutput.rec`` is the reconstruction as uint8 (what a decoder
writes) or, for learned codecs with ``float_recon=True``, float32 in [0, 255] (clipped, not
rounded: the float x̂ CompressAI's published ``results/image/kodak`` JSONs were computed on).

Learned codecs
--------------
:class:`LearnedCodec` wraps ``(model, spec, variables)``:

* ``entropy_estimation=False`` (default): real bitstreams through ``lic_jax.coding.Codec`` —
  ``compress`` (``encode``) gives a complete ``.lic`` file, whose **byte count** (header included)
  is the rate ``bpp``; ``decompress`` gives the reconstruction. Encode/decode times are the wall
  times of those calls. Where the codec reports them, the payload size without the container
  (``bpp-payload``, what CompressAI counts) and the ideal Σ −log2 p of the coded symbols
  (``bpp-estimate``) are recorded too (docs/EVALUATION.md).
* ``entropy_estimation=True``: one forward pass in eval mode (rounding), rate
  ``Σ −log2 p`` over all latents (CompressAI's ``inference_entropy_estimation``); the forward time is
  split half/half into encode/decode time, as CompressAI does.

Variable-rate models (``mae-*``) are evaluated at one λ per codec (``lmbda=``): the λ of the forward
pass in entropy-estimation mode, of ``Codec.encode`` for real bitstreams (the decoder reads it from
the file's header); ``eval.py --lmbda`` / ``--lmbda-grid`` make one RD point per λ.

In both modes the image is zero-padded centred to a multiple of 64 and the reconstruction is
cropped back (CompressAI's ``eval_model`` rule); bpp divides by the unpadded H·W. The first image of
every new shape is run once untimed (``warmup``) so XLA compilation is not counted as coding time.

Classical codecs
----------------
:class:`PillowCodec` follows CompressAI's ``PillowCodec`` (``compressai/utils/bench/codecs.py``):
``img.save(buf, format=fmt, quality=q)`` with Pillow's defaults otherwise (JPEG: 4:2:0 chroma
subsampling, no optimisation; WebP: lossy, method 4; AVIF: 4:2:0, speed 6), rate = the size of the
file Pillow writes, decode = ``Image.open`` + ``load``. JPEG 2000 has no ``quality`` in Pillow; its
sweep parameter is the target **compression ratio** (``quality_mode="rates"``,
``quality_layers=[ratio]``, irreversible 9/7 wavelet, colour transform on; bpp ≈ 24/ratio), the file
is a JP2.
"""

from __future__ import annotations

import dataclasses
import io
import time
from typing import Any

import numpy as np

__all__ = ["CodecOutput", "PillowCodec", "LearnedCodec", "CLASSICAL", "DEFAULT_SWEEPS", "pillow_available",
           "make_classical"]


@dataclasses.dataclass
class CodecOutput:
    nbytes: int | None  # real file size (None for an entropy estimate)
    bits: float  # the rate in bits used for bpp (8·nbytes, or the estimate)
    rec: np.ndarray  # (H, W, 3) uint8, or float32 in [0, 255]
    enc_time: float
    dec_time: float
    extra: dict = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------- classical (Pillow)

CLASSICAL = {
    # name: (Pillow format, Pillow feature name, label)
    "jpeg": ("JPEG", "jpg", "JPEG"),
    "webp": ("WEBP", "webp", "WebP"),
    "jpeg2000": ("JPEG2000", "jpg_2000", "JPEG2000"),
    "avif": ("AVIF", "avif", "AVIF"),
}

DEFAULT_SWEEPS = {
    "jpeg": list(range(5, 100, 5)),  # 19 points, as CompressAI's jpeg.json
    "webp": list(range(5, 100, 5)),
    "avif": list(range(5, 100, 10)),
    "jpeg2000": [300, 200, 150, 100, 75, 50, 35, 24, 16, 12, 8],  # compression ratios
}


def pillow_available(codec: str) -> bool:
    from PIL import features

    if codec not in CLASSICAL:
        return False
    try:
        return bool(features.check(CLASSICAL[codec][1]))
    except Exception:  # noqa: BLE001 - unknown feature name on old Pillow
        return False


def _feature_version(codec: str) -> str:
    from PIL import features

    try:
        return str(features.version(CLASSICAL[codec][1]))
    except Exception:  # noqa: BLE001
        return "?"


class PillowCodec:
    """A classical codec at one quality setting, through Pillow."""

    def __init__(self, codec: str, quality: float, **save_kwargs: Any):
        import PIL

        codec = codec.lower()
        if codec not in CLASSICAL:
            raise ValueError(f"unknown classical codec {codec!r}; available: {', '.join(CLASSICAL)}")
        if not pillow_available(codec):
            raise RuntimeError(f"this Pillow ({PIL.__version__}) was built without {codec} support")
        self.codec = codec
        self.fmt, _, label = CLASSICAL[codec]
        self.quality = quality
        self.save_kwargs = dict(save_kwargs)
        if codec == "jpeg2000":
            self.save_kwargs = {"quality_mode": "rates", "quality_layers": [float(quality)], "irreversible": True,
                                "mct": 1, **self.save_kwargs}
        else:
            self.save_kwargs = {"quality": int(quality), **self.save_kwargs}
        if codec == "jpeg":  # explicit 4:2:0 chroma subsampling (= Pillow's default: the same bytes)
            self.save_kwargs.setdefault("subsampling", 2)
        self.name = label
        self.description = f"{label}. Pillow version {PIL.__version__} (lib {_feature_version(codec)})"

    def run(self, img: np.ndarray) -> CodecOutput:
        from PIL import Image

        pil = Image.fromarray(np.ascontiguousarray(img, np.uint8), "RGB")
        t0 = time.perf_counter()
        buf = io.BytesIO()
        pil.save(buf, format=self.fmt, **self.save_kwargs)
        enc = time.perf_counter() - t0
        nbytes = buf.getbuffer().nbytes
        buf.seek(0)
        t0 = time.perf_counter()
        rec = Image.open(buf)
        rec.load()
        dec = time.perf_counter() - t0
        arr = np.asarray(rec.convert("RGB"))
        return CodecOutput(nbytes, 8.0 * nbytes, arr, enc, dec)


def make_classical(codec: str, quality: float) -> PillowCodec:
    return PillowCodec(codec, quality)


# ---------------------------------------------------------------- learned (lic_jax)



class LearnedCodec:
    """A lic_jax model (one RD point) as an evaluation codec (see the module docstring).

    Variable-rate models (``mae-*``, :func:`lic_jax.models.is_variable_rate`) need ``lmbda``: the λ
    of this point (CompressAI's scale), rounded to float32 as a ``.lic`` header stores it; it is the
    λ of the forward pass (``entropy_estimation``) or of ``Codec.encode`` (real bitstreams; the
    decoder reads it back from the header). ``codec``: an existing :class:`lic_jax.coding.Codec` of
    the same weights to reuse (the λ points of one variable-rate model share one); ``warm``: a set of
    already warmed-up image shapes shared in the same way.
    ``check_roundtrip`` (real bitstreams): decode with ``Codec.decode`` and record in ``extra``
    whether the decoded latent symbols (y, and z where there is one) equal the encoder's exactly
    (``exact_roundtrip``: 1 or 0).
    ``decoder`` (real bitstreams): decode with this of the model's decoders (its registry record's
    ``decoders``) instead of the file's, e.g. ``synthesis_fused`` for akutsu2020's main + detail
    decoding (``lic decompress --detail``); the file's bytes are the same for every decoder.
    """

    def __init__(self, model, spec, variables, entropy_estimation: bool = False, float_recon: bool = False,
                 coder: str | None = None, warmup: bool = True, name: str | None = None,
                 lmbda: float | None = None, codec=None, warm: set | None = None, check_roundtrip: bool = False,
                 decoder: str | None = None):
        from lic_jax.models import is_variable_rate

        self.model, self.spec, self.variables = model, spec, variables
        self.entropy_estimation = entropy_estimation
        self.float_recon = float_recon
        self.warmup = warmup
        self.check_roundtrip = check_roundtrip and not entropy_estimation
        self.name = name or spec.name
        self.variable_rate = is_variable_rate(spec if spec is not None else model)
        if self.variable_rate:
            if lmbda is None:
                raise ValueError(f"{self.name} is a variable-rate model: evaluating it needs a λ (lmbda=…)")
            lam = np.float32(lmbda)
            if not (np.isfinite(lam) and lam > 0):
                raise ValueError(f"λ must be positive and finite, got {lmbda!r}")
            self.lmbda = lam
        else:
            if lmbda is not None:
                raise ValueError(f"{self.name} is a fixed-rate model (its λ was fixed by training); lmbda applies "
                                 "to variable-rate mae-* models only")
            self.lmbda = None
        self._warm: set = warm if warm is not None else set()
        self._codec = None
        self._fwd = None
        if entropy_estimation:
            self.description = "lic_jax, entropy estimation (sum of -log2 likelihoods)"
        else:
            self._codec = codec if codec is not None else self._make_real_codec(coder)
            self.description = "lic_jax, real bitstream (.lic file bytes)"
        if decoder is not None:
            if entropy_estimation:
                raise ValueError("a decoder applies to real bitstreams, not to entropy estimation")
            known = tuple(getattr(self._codec, "decoders", ()))
            if decoder not in known:
                raise ValueError(f"{self.name} has no decoder {decoder!r}; its decoders: {', '.join(known)}")
            self.description += f", decoded with {decoder}"
        self.decoder = decoder

    def _make_real_codec(self, coder):
        try:
            from lic_jax.coding import Codec
        except ImportError as e:
            raise RuntimeError(
                "real-bitstream evaluation needs lic_jax.coding.Codec, which is not available in this checkout "
                f"({e}); use --entropy-estimation for model-estimated rates"
            ) from None
        return Codec(self.model, self.spec, self.variables, coder=coder)

    # -- entropy estimation
    def _forward(self):
        if self._fwd is None:
            import jax

            from lic_jax.coding.programs import cached

            model, vr = self.model, self.variable_rate

            def build():
                def fwd(variables, x, lam):
                    # variable-rate models: λ is a traced float32 scalar (one compilation for every λ)
                    out = model.apply(variables, x, lam, train=False) if vr else model.apply(variables, x, train=False)
                    bits = sum(jax.numpy.sum(-jax.numpy.log2(lik)) for lik in out["likelihoods"].values())
                    return out["x_hat"], bits

                return jax.jit(fwd)

            # one compile cache for the coding and evaluation programs (jitted per architecture)
            self._fwd = cached(model, f"eval-forward:{vr}", build)
        return self._fwd

    def _estimate(self, img):
        import jax

        from lic_jax.models import crop_image, pad_image

        h, w = img.shape[:2]
        # the codec's padding rule: centred zeros to the model's downsampling (pixels.pad)
        x = pad_image(img[None].astype(np.float32) / 255.0, int(self.model.downsampling))
        fwd = self._forward()
        t0 = time.perf_counter()
        x_hat, bits = fwd(self.variables, x, self.lmbda)
        x_hat, bits = jax.block_until_ready((x_hat, bits))
        dt = time.perf_counter() - t0
        x_hat = np.asarray(crop_image(np.asarray(x_hat), h, w))[0]
        return float(bits), x_hat, dt

    def run(self, img: np.ndarray) -> CodecOutput:
        img = np.ascontiguousarray(img, np.uint8)
        key = img.shape
        if self.warmup and key not in self._warm:
            self._run(img)
            self._warm.add(key)
        return self._run(img)

    def _to_rec(self, x_float01):
        x = np.clip(np.asarray(x_float01, np.float32), 0.0, 1.0) * 255.0
        if self.float_recon:
            return x
        return np.round(x).astype(np.uint8)

    def _run(self, img):
        if self.entropy_estimation:
            bits, x_hat, dt = self._estimate(img)
            return CodecOutput(None, bits, self._to_rec(x_hat), dt / 2.0, dt / 2.0)
        h, w = img.shape[:2]
        lam = {"lmbda": float(self.lmbda)} if self.variable_rate else {}
        extra = {}
        encoded = None
        t0 = time.perf_counter()
        if hasattr(self._codec, "encode"):  # also gives the payload size and the ideal bit count
            encoded = self._codec.encode(img, **lam)
            enc = time.perf_counter() - t0
            data = encoded.data
            try:
                extra = {"payload_bytes": int(encoded.payload_bytes),
                         "bpp-payload": 8.0 * encoded.payload_bytes / (h * w),
                         "bpp-estimate": float(encoded.ideal_bits) / (h * w)}
            except (AttributeError, TypeError):
                extra = {}
        else:
            data = self._codec.compress(img, **lam)
            enc = time.perf_counter() - t0
        output = "float" if self.float_recon else "uint8"
        t0 = time.perf_counter()
        if self.check_roundtrip:
            if encoded is None or not hasattr(self._codec, "decode"):
                raise RuntimeError("check_roundtrip needs lic_jax.coding.Codec.encode / decode")
            rec, lat, _ = self._codec.decode(data, output, decoder=self.decoder)
        else:
            rec = self._codec.decompress(data, output=output, decoder=self.decoder)
        dec = time.perf_counter() - t0
        rec = self._to_rec(rec) if self.float_recon else np.asarray(rec)
        if self.check_roundtrip:
            extra["exact_roundtrip"] = int(same_symbols(encoded.latents, lat))
        return CodecOutput(len(data), 8.0 * len(data), rec, enc, dec, extra)


def same_symbols(a, b) -> bool:
    """Two :class:`lic_jax.coding.Latents` hold exactly the same symbols (y, and z where there is one)."""
    ya, yb = np.asarray(a.y_symbols), np.asarray(b.y_symbols)
    if ya.shape != yb.shape or not np.array_equal(ya, yb):
        return False
    za, zb = getattr(a, "z_symbols", None), getattr(b, "z_symbols", None)
    if (za is None) != (zb is None):
        return False
    return za is None or (np.shape(za) == np.shape(zb) and np.array_equal(za, zb))
