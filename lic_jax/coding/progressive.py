"""``ProgressiveCodec``: images ⇄ progressive ``.lic`` files (format version 2, docs/FORMAT.md §8,
docs/PROGRESSIVE.md) for recurrent codecs whose registry record names the ``progressive`` coder
(Toderici et al. 2017, ``lic_jax.models.toderici2017``).

    codec = Codec(model, spec, variables, context=(ctx_model, ctx_params))   # → a ProgressiveCodec
    enc = codec.encode(img, iterations=8)          # enc.data, enc.bits (k, h, w, 32), enc.segment_bits
    img_k = codec.decompress(enc.data[:enc.offsets[2]])     # = the 3-iteration reconstruction
    enc = codec.encode_at_bpp(img, 0.5)            # the longest prefix at ≤ 0.5 bpp (real bytes)

The encoder runs ``toderici2017.unroll`` (eval mode: sign binarizer) once on the padded image,
then codes the bits of each iteration with :class:`~.latent_coders.progressive.ProgressiveCoder`.
The decoder decodes segment t's bits and runs one jitted ``toderici2017.decode_iteration`` —
the same computation as the decoder half of ``unroll``'s scan step, so the k-iteration image is
exactly (bit for bit, measured on CPU) ``unroll``'s k-th reconstruction.

Padding: edge-replicated, centred (``models.base.pad_amounts``), to multiples of 16; the decoder
crops back. The context model comes from ``context=(model, params)``, else from the artifact's
``bitcoder.npz`` / the ``bitcoder/…`` arrays of ``tables``, else a fixed untrained one.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import numpy as np

from ..models.base import pad_amounts
from ..models.registry import record_for
from . import container, limits, pixels
from .backends import get_backend
from .codec import Codec, Decoded, _np_params, weights_fingerprint
from .environment import current_environment
from .errors import CorruptFileError, LicError, ModelMismatchError
from .latent_coders.progressive import CONTEXT_PREFIX, ProgressiveCoder

__all__ = ["ProgressiveCodec", "ProgressiveEncoded", "DEFAULT_ITERATIONS"]

DEFAULT_ITERATIONS = 16


@dataclasses.dataclass
class ProgressiveEncoded:
    data: bytes  # the whole file (all iterations)
    bits: np.ndarray  # (k, h, w, 32) float32 ±1, what was coded
    header: container.Header
    segment_bits: list  # ideal bits (Σ −log2 p of the quantised probabilities) per iteration
    offsets: tuple  # byte offset after each iteration (a file cut there decodes that many iterations)
    stats: dict

    @property
    def ideal_bits(self) -> float:
        return float(sum(self.segment_bits))

    @property
    def iterations(self) -> int:
        return len(self.offsets)

    def prefix(self, k: int) -> bytes:
        """The file cut after iteration k (1 … iterations)."""
        return self.data[: self.offsets[k - 1]]


@functools.lru_cache(maxsize=16)
def _programs(model):
    from ..models import toderici2017 as T

    unroll = jax.jit(lambda v, x, k: T.unroll(model, v, x, k), static_argnums=2)
    step = jax.jit(lambda v, b, c: T.decode_iteration(model, v, b, c))
    return unroll, step


class ProgressiveCodec(Codec):
    """A :class:`Codec` for progressive models (``Codec(...)`` returns one for them); extra
    argument ``context``: (BinaryContextModel, params) of the bit context model."""

    def __init__(self, model, spec, variables, coder: str | None = None, tables=None, fingerprint: str | None = None,
                 lmbda: float | None = None, max_pixels: int | None = None, tiling=None, context=None):
        self.model, self.spec = model, spec
        self.record = record_for(model)
        self.kind = "progressive"
        self.coder = coder or "constriction"
        if self.coder != "constriction":
            raise ValueError(f"progressive files are range-coded with constriction only, not {self.coder!r}")
        get_backend(self.coder)
        if lmbda is not None:
            raise ValueError(f"{self._name()} is progressive: its rate is the number of iterations, not λ")
        np_vars = _np_params(variables)
        self.fingerprint = fingerprint or weights_fingerprint(np_vars)
        self.tables = {} if tables is None else dict(tables)
        self.variable_rate = False
        self.lmbda = None
        self._cpu_vars = jax.device_put(np_vars, jax.devices("cpu")[0])
        self.latent_coder = ProgressiveCoder(model, self._cpu_vars, self.tables, context)
        self.tiling = None
        self.max_pixels = limits.DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
        self.record_environment = True
        hp = (getattr(spec, "hparams", None) or {}) if spec is not None else {}
        self.default_iterations = int(hp.get("iterations") or DEFAULT_ITERATIONS)

    @classmethod
    def from_artifact(cls, path_or_artifact, coder: str | None = None, verify: bool = True,
                      lmbda: float | None = None, max_pixels: int | None = None) -> "ProgressiveCodec":
        from ..artifact import Artifact, load_artifact

        art = path_or_artifact if isinstance(path_or_artifact, Artifact) else load_artifact(path_or_artifact, verify)
        tables = dict(art.tables or {})
        p = os.path.join(art.path, "bitcoder.npz") if getattr(art, "path", None) else None
        if p and os.path.exists(p):
            with np.load(p) as z:
                tables.update({CONTEXT_PREFIX + k: z[k] for k in z.files})
        return cls(art.spec.build(), art.spec, art.variables, coder=coder, tables=tables, fingerprint=art.fingerprint,
                   lmbda=lmbda, max_pixels=max_pixels)

    @property
    def context_fingerprint8(self) -> bytes:
        return bytes.fromhex(self.latent_coder.context_fingerprint)[:8]

    @property
    def downsampling(self) -> int:
        return container.PROGRESSIVE_BLOCK

    # ---------------------------------------------------------------------------------------
    def _padded(self, img):
        limits.check_image(np.shape(img), self.max_pixels)
        a, channels = pixels.prepare(img)
        (t, b), (l, r) = pad_amounts(a.shape[0], a.shape[1], self.downsampling)
        x = np.pad(a.astype(np.float32) / np.float32(255.0), ((t, b), (l, r), (0, 0)), mode="edge")[None]
        return a, channels, x

    def _iterations(self, iterations):
        k = self.default_iterations if iterations is None else int(iterations)
        if not 1 <= k <= container.MAX_ITERATIONS:
            raise ValueError(f"iterations must be 1 … {container.MAX_ITERATIONS}, got {iterations}")
        return k

    def unroll_bits(self, img, iterations: int | None = None):
        """(bits (k, h, w, 32) float32 ±1, reconstructions (k, Hp, Wp, 3)) of a uint8 image."""
        _, _, x = self._padded(img)
        unroll, _ = _programs(self.model)
        out = unroll(self._cpu_vars, x, self._iterations(iterations))
        return np.asarray(out["bits"][:, 0]), np.asarray(out["x_hat"][:, 0])

    def encode(self, img, lmbda=None, decoder=None, iterations: int | None = None) -> ProgressiveEncoded:
        """All ``iterations`` (default 16) of an image → a progressive file."""
        if lmbda is not None or decoder is not None:
            raise ValueError(f"{self._name()} is progressive: no λ or decoder choice (use iterations)")
        a, channels, x = self._padded(img)
        k = self._iterations(iterations)
        unroll, _ = _programs(self.model)
        bits = np.asarray(unroll(self._cpu_vars, x, k)["bits"][:, 0])
        stats = {"coder_s": 0.0, "symbols": 0}
        segments, ideal = [], []
        prev = np.zeros_like(bits[0])
        for t in range(k):
            seg, b = self.latent_coder.encode_iteration(t, bits[t], prev, stats)
            segments.append(seg)
            ideal.append(b)
            prev = bits[t]
        header = container.Header(
            coder_id=get_backend(self.coder).id, model_id=self.model_id,
            quality=int(self.spec.quality or 0) if self.spec is not None else 0,
            fingerprint=self.fingerprint8, height=a.shape[0], width=a.shape[1], channels=channels, bit_depth=8,
            environment=current_environment() if self.record_environment else None,
            version=container.PROGRESSIVE_VERSION, context_fingerprint=self.context_fingerprint8)
        data = container.pack_progressive(header, segments)
        header = dataclasses.replace(header, stream_lengths=tuple(len(s) for s in segments))
        return ProgressiveEncoded(data, bits, header, ideal, header.segment_offsets, stats)

    def compress(self, img, lmbda=None, decoder=None, iterations: int | None = None) -> bytes:
        return self.encode(img, lmbda, decoder, iterations).data

    def encode_at_bpp(self, img, target_bpp: float, max_iterations: int | None = None) -> ProgressiveEncoded:
        """The longest prefix (≥ 1 iteration) whose real file size is ≤ ``target_bpp``: encodes
        ``max_iterations`` (default 16) once and cuts at an iteration boundary."""
        if not (target_bpp > 0 and np.isfinite(target_bpp)):
            raise ValueError(f"target bpp must be positive, got {target_bpp}")
        enc = self.encode(img, iterations=max_iterations)
        H, W = enc.header.height, enc.header.width
        budget = target_bpp * H * W / 8.0
        k = max([1] + [i + 1 for i, off in enumerate(enc.offsets) if off <= budget])
        return dataclasses.replace(enc, data=enc.prefix(k), bits=enc.bits[:k], segment_bits=enc.segment_bits[:k],
                                   offsets=enc.offsets[:k],
                                   header=dataclasses.replace(enc.header, stream_lengths=enc.header.stream_lengths[:k]))

    def estimate_bits(self, img, lmbda=None, iterations: int | None = None) -> float:
        return self.encode(img, iterations=iterations).ideal_bits

    # ---------------------------------------------------------------------------------------
    def _check_model(self, header: container.Header):
        if not header.progressive:
            raise ModelMismatchError(f"the file is not progressive (format version {header.version}); "
                                     f"{self._name()} writes progressive files")
        super()._check_model(header)
        if header.context_fingerprint != self.context_fingerprint8:
            raise ModelMismatchError(
                f"the file was coded with another bit context model (fingerprint {header.context_fingerprint.hex()}); "
                f"this codec's is {self.context_fingerprint8.hex()}")

    def decompress(self, data: bytes, output: str = "uint8", max_pixels: int | None = None, decoder=None,
                   iterations: int | None = None):
        if output not in ("uint8", "float", "latents"):
            raise ValueError(f"output must be 'uint8', 'float' or 'latents', got {output!r}")
        return self.decode(data, output, max_pixels, decoder, iterations=iterations)[0]

    def decode(self, data: bytes, output: str = "uint8", max_pixels: int | None = None, decoder=None,
               stats: dict | None = None, iterations: int | None = None) -> Decoded:
        """(image, bits (k, h, w, 32), header) of the first ``iterations`` (default: all the file
        holds) iterations; ``output='latents'`` returns the bits without synthesis."""
        if decoder is not None:
            raise ValueError(f"{self._name()} has one decoder")
        if iterations is not None and not 1 <= int(iterations) <= container.MAX_ITERATIONS:
            raise ValueError(f"iterations must be 1 … {container.MAX_ITERATIONS}, got {iterations}")
        stats = {} if stats is None else stats
        stats.update({"coder_s": 0.0, "symbols": 0})
        data = bytes(data)
        header, pos = container.read_header(data)
        if not header.progressive:
            self._check_model(header)
        limits.check_pixels(header.height, header.width, self.max_pixels if max_pixels is None else max_pixels,
                            "image")  # before anything proportional to the image
        header, segments = container.unpack_progressive(data, header, pos, iterations)
        self._check_model(header)
        if iterations is not None and len(segments) < int(iterations):
            raise CorruptFileError(f"the file holds {len(segments)} iterations, {iterations} were asked for")
        Hp, Wp = (-(-n // self.downsampling) * self.downsampling for n in (header.height, header.width))
        h, w = Hp // self.downsampling, Wp // self.downsampling
        from ..models import toderici2017 as T

        _, step = _programs(self.model)
        carry = T.initial_carry(self.model, 1, Hp, Wp)[1]
        if header.coder_id != get_backend("constriction").id:
            raise CorruptFileError(f"corrupt header: progressive files are range-coded with constriction (coder id "
                                   f"{get_backend('constriction').id}), this one names coder id {header.coder_id}")
        bits, prev, x_hat = [], np.zeros((h, w, container.PROGRESSIVE_BITS), np.float32), None
        try:
            for t, seg in enumerate(segments):
                b = self.latent_coder.decode_iteration(t, seg, prev, stats)
                bits.append(b)
                prev = b
                if output != "latents":
                    x_hat, carry = step(self._cpu_vars, b[None], carry)
        except LicError:
            raise
        except (ValueError, IndexError, OverflowError) as e:
            raise CorruptFileError(f"corrupt bitstream ({type(e).__name__}: {e})") from None
        bits = np.stack(bits)
        if output == "latents":
            out = Decoded(bits, bits, header)
        else:
            out = Decoded(self._finish(np.asarray(x_hat), header.height, header.width, header.channels, output),
                          bits, header)
        out.stats = stats
        return out

    @staticmethod
    def _finish(x_hat, H, W, channels, output):
        return pixels.finish_image(x_hat, H, W, channels, output)

    def reconstruct(self, bits, height: int, width: int, channels: int = 3, output: str = "uint8", lmbda=None,
                    decoder=None):
        """The k-iteration image from bits (k, h, w, 32) (what ``decompress`` returns)."""
        from ..models import toderici2017 as T

        bits = np.asarray(bits, np.float32)
        _, step = _programs(self.model)
        carry = T.initial_carry(self.model, 1, bits.shape[1] * 16, bits.shape[2] * 16)[1]
        for b in bits:
            x_hat, carry = step(self._cpu_vars, b[None], carry)
        return pixels.finish_image(np.asarray(x_hat), height, width, channels, output)
