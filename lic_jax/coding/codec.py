"""``Codec``: images ⇄ ``.lic`` bytes for every registered lic_jax model.

    from lic_jax.coding import Codec
    codec = Codec.from_artifact("path/to/model_dir")            # or Codec(model, spec, variables)
    data = codec.compress(img)                                 # uint8 H×W×3 (or H×W grey)
    img2 = codec.decompress(data)                              # uint8, same shape as img
    x = codec.decompress(data, output="float")                 # float32 in [0, 1]
    bits = codec.estimate_bits(img)                            # Σ −log2 p under the coding tables

The codec does image preparation (``pixels.py``), the header and identity checks, and delegates:

* the transforms (analysis, hyper-analysis, the chosen synthesis) to ``programs.Transforms``,
  jitted once per architecture, on the default JAX device (tiled for large images: ``tiling.py``);
* everything between the latents and the streams to the model's **latent coder**
  (``latent_coders/``: the record's ``coder``), which runs one coding order for both
  directions — docs/ARCHITECTURE.md, docs/FORMAT.md §4.

Statistics (the entropy coder's time and symbol count) come back with each result
(``Encoded.stats``, ``Decoded.stats``); the codec keeps no per-call state.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from ..models.registry import record_for
from . import container, limits, pixels
from . import tiling as _tiling
from .backends import backend_by_id, get_backend
from .errors import CorruptFileError, LicError, ModelMismatchError
from .latent_coders import DecoderIO, EncoderIO, Latents, LatentShapes, coder_class
from .latent_coders.base import check_finite
from .environment import current_environment
from .pixels import to_uint8
from .programs import Transforms, cpu, cpu_model as _cpu_model  # noqa: F401  (_cpu_model: tests)
from .tables import CdfTable, tables_from_arrays, verify_tables

__all__ = ["Codec", "Latents", "Encoded", "Decoded", "to_uint8", "weights_fingerprint", "info_dict"]


def _new_stats() -> dict:
    return {"coder_s": 0.0, "symbols": 0}


@dataclasses.dataclass
class Encoded:
    data: bytes
    latents: Latents
    header: container.Header
    # Σ −log2 p from the tables + TFC-style bypass bits of escapes: the reference the payload is held to
    # (within 1 %, docs/FORMAT.md §4). Not a lower bound: constriction re-quantises each row's
    # probabilities and codes escapes in n + 5 bits rather than Elias-gamma's 2n − 1, so a trained
    # model's payload was measured up to 216 bits below it (issue 12)
    ideal_bits: float
    stats: dict = dataclasses.field(default_factory=_new_stats)  # entropy-coder seconds and symbols

    @property
    def payload_bytes(self) -> int:
        return sum(self.header.stream_lengths)


class _DecodedFields(NamedTuple):
    image: Any  # uint8 / float image, or the Latents for output='latents'
    latents: Latents
    header: container.Header


class Decoded(_DecodedFields):
    """``(image, latents, header)`` of :meth:`Codec.decode`; ``.stats``: entropy-coder seconds and symbols."""

    stats: dict


def _np_params(variables):
    params = variables["params"] if "params" in variables else variables
    return {"params": jax.tree_util.tree_map(lambda a: np.asarray(a), dict(params))}


def weights_fingerprint(variables) -> str:
    """SHA-256 (hex) of ``flax.serialization.to_bytes({'params': …})`` — equal to the artifact's
    fingerprint (``lic_jax.artifact.save_artifact``)."""
    return hashlib.sha256(serialization.to_bytes(_np_params(variables))).hexdigest()


def _valid_lmbda(lmbda) -> np.float32:
    """λ as the header stores it (float32), checked positive and finite."""
    try:
        lam = np.float32(lmbda)
    except (TypeError, ValueError):
        raise ValueError(f"λ must be a number, got {lmbda!r}") from None
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"λ must be positive and finite, got {lmbda!r}")
    return lam


class Codec:
    """Compress / decompress images with one model and its exact weights.

    Args:
      model: the Flax module (e.g. from ``lic_jax.models.get_model``); its class must be
        registered (``lic_jax.models.registry``): the record names its latent coder, its
        container id and its decoders.
      spec: its :class:`~lic_jax.models.ModelSpec` (name and quality go into the header).
      variables: ``{'params': …}``.
      coder: ``'constriction'`` (default) or ``'tfc'`` for compression; decompression always
        uses the coder recorded in the file.
      tables: stored coding tables (``{'z': CdfTable, 'y': CdfTable}`` or the ``tables.npz``
        arrays); verified against a rebuild from ``variables``.
      fingerprint: hex SHA-256 of the weights (computed if omitted).
      lmbda: variable-rate models (``mae-*``): the default λ of ``compress`` / ``encode`` (each
        call may pass its own; :mod:`lic_jax.coding.rate_control` picks one for a target bpp).
        ``from_artifact`` takes it from the artifact's metadata ``default_lmbda`` when there is one.
        Fixed-rate models: an optional, informational λ for the header.
      tiling: large images (docs/LARGE_IMAGES.md): None / 'auto', 'on', 'off', a tile size in
        pixels, or a :class:`~lic_jax.coding.tiling.Tiling`; also the attribute ``codec.tiling``.
        The latents and the file do not depend on it.

    Variable-rate models code every λ with the same tables (their entropy models do not depend
    on λ); the λ used — rounded to float32, as the header stores it — goes into the header, and
    the decoder reads it from there: the analysis and synthesis both see exactly that float32.
    """

    def __new__(cls, model=None, *args, **kwargs):
        # progressive models (record coder 'progressive') get a ProgressiveCodec (progressive.py)
        if cls is Codec and model is not None and _is_progressive(model):
            from .progressive import ProgressiveCodec

            return object.__new__(ProgressiveCodec)
        return object.__new__(cls)

    def __init__(self, model, spec, variables, coder: str | None = None, tables=None, fingerprint: str | None = None,
                 lmbda: float | None = None, max_pixels: int | None = None, tiling=None):
        self.model, self.spec = model, spec
        self.record = record_for(model)  # unregistered → ValueError (never an id-0 file)
        coder_cls = coder_class(model)
        self.kind = coder_cls.kind
        self.coder = coder or "constriction"
        get_backend(self.coder)  # fail early if unavailable
        np_vars = _np_params(variables)
        self.fingerprint = fingerprint or weights_fingerprint(np_vars)
        if tables is not None and not all(isinstance(t, CdfTable) for t in tables.values()):
            tables = tables_from_arrays(tables)
        self.tables = (coder_cls.build_tables(model, np_vars["params"]) if tables is None
                       else verify_tables(model, np_vars, tables))
        self.variable_rate = bool(self.record.variable_rate)
        self.lmbda = None if lmbda is None else _valid_lmbda(lmbda)
        self._fns = Transforms.of(model, self.variable_rate, coder_cls.hyper)
        self._cpu_vars = jax.device_put(np_vars, cpu())
        self._dev = jax.devices()[0]
        self._dev_vars = self._cpu_vars if self._dev == cpu() else jax.device_put(np_vars, self._dev)
        self.latent_coder = coder_cls(model, self._cpu_vars, self.tables)
        self._shapes: dict = {}
        self.tiling = _tiling.as_tiling(tiling)  # large images: tiled transforms (tiling.py); settable
        self._tiled = None  # tiling.TiledTransforms, built when first needed
        self.max_pixels = limits.DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)  # limits.py
        # non-portable files record where they were written (header flags bit 6, environment.py)
        self.record_environment = True

    @classmethod
    def from_artifact(cls, path_or_artifact, coder: str | None = None, verify: bool = True,
                      lmbda: float | None = None, max_pixels: int | None = None) -> "Codec":
        """A codec for a model directory (``lic_jax.artifact``) or a loaded ``Artifact``."""
        from ..artifact import Artifact, load_artifact

        art = path_or_artifact if isinstance(path_or_artifact, Artifact) else load_artifact(path_or_artifact, verify)
        if lmbda is None and isinstance(art.metadata.get("default_lmbda"), (int, float)):
            lmbda = art.metadata["default_lmbda"]  # a variable-rate artifact's own default (the bundled model's)
        if cls is Codec and _is_progressive(art.spec.build()):
            from .progressive import ProgressiveCodec

            return ProgressiveCodec.from_artifact(art, coder=coder, lmbda=lmbda, max_pixels=max_pixels)
        return cls(art.spec.build(), art.spec, art.variables, coder=coder, tables=art.tables,
                   fingerprint=art.fingerprint, lmbda=lmbda, max_pixels=max_pixels)

    # ---------------------------------------------------------------------------------------
    @property
    def lmbda_range(self) -> tuple[float, float] | None:
        """The λ interval a variable-rate model was trained on (None for fixed-rate models)."""
        return tuple(self.model.lmbda_range) if self.variable_rate else None

    @property
    def decoders(self) -> tuple:
        """The model's decoders (synthesis methods); the first is the default."""
        return tuple(self.record.decoders)

    @property
    def fingerprint8(self) -> bytes:
        return bytes.fromhex(self.fingerprint)[:8]

    @property
    def downsampling(self) -> int:
        return int(self.model.downsampling)

    @property
    def model_id(self) -> int:
        return int(self.record.model_id)

    def _name(self) -> str:
        return self.spec.name if self.spec is not None else self.record.name

    def _lam(self, lmbda):
        """The float32 λ the transforms see (variable-rate models), or None (fixed-rate)."""
        if not self.variable_rate:
            if lmbda is not None:
                raise ValueError(f"{self._name()} is a fixed-rate model: its λ was fixed by training "
                                 f"(use a variable-rate mae-* model for a per-image λ)")
            return None
        lam = self.lmbda if lmbda is None else _valid_lmbda(lmbda)
        if lam is None:
            lo, hi = self.lmbda_range
            raise ValueError(f"{self._name()} is a variable-rate model: give λ (trained on {lo:.4g} … {hi:.4g}) "
                             f"or a target bpp")
        return lam

    def _decoder_index(self, decoder) -> int:
        if decoder is None:
            return 0
        if decoder not in self.decoders:
            raise ValueError(f"{self._name()} has no decoder {decoder!r}; it has {', '.join(self.decoders)}")
        return self.decoders.index(decoder)

    def _latent_shapes(self, Hp: int, Wp: int):
        """(y shape, z shape or None) of a padded size (``jax.eval_shape``, cached)."""
        key = (Hp, Wp)
        if key not in self._shapes:
            x = jax.ShapeDtypeStruct((1, Hp, Wp, 3), jnp.float32)
            lam = jax.ShapeDtypeStruct((), jnp.float32) if self.variable_rate else None
            y, z = jax.eval_shape(self._fns.encode_transform, self._cpu_vars, x, lam)
            self._shapes[key] = (tuple(y.shape[1:]), None if z is None else tuple(z.shape[1:]))
        return self._shapes[key]

    # ---------------------------------------------------------------------------------------
    # encoding
    # ---------------------------------------------------------------------------------------
    def _analyse(self, img, lam):
        limits.check_image(np.shape(img), self.max_pixels)
        a, channels = pixels.prepare(img)
        y, z = _tiling.analyse(self, pixels.pad(a, self.downsampling), lam)  # untiled unless tiling applies
        y = np.asarray(y[0])
        check_finite(y, "latents")
        return a, channels, y, (None if z is None else np.asarray(z[0]))

    def analyse(self, img, lmbda: float | None = None):
        """(y, z or None): the unquantised latents (H', W', C) float32 of a uint8 image, as coded."""
        return self._analyse(img, self._lam(lmbda))[2:]

    def _code(self, img, backend, lam, stats):
        """Analyse, then let the latent coder quantise and (if ``backend``) code: (image, channels, io, latents)."""
        a, channels, y, z = self._analyse(img, lam)
        io = EncoderIO(backend, stats, (backend or get_backend(self.coder)).overflow_bits)
        shapes = LatentShapes(tuple(y.shape), None if z is None else tuple(z.shape))
        lat = self.latent_coder.run(io, shapes, y, z)
        return a, channels, io, lat

    def encode(self, img, lmbda: float | None = None, decoder: str | None = None) -> Encoded:
        """Compress and return the bytes together with the latents, the ideal bit count and the
        coder statistics. ``lmbda``: the λ of a variable-rate model (default: the codec's);
        ``decoder``: the decoder the file asks for (default: the model's first)."""
        stats = _new_stats()
        backend = get_backend(self.coder)
        lam = self._lam(lmbda)
        dec = self._decoder_index(decoder)
        a, channels, io, lat = self._code(img, backend, lam, stats)
        header = container.Header(
            coder_id=backend.id, model_id=self.model_id,
            quality=int(self.spec.quality or 0) if self.spec is not None else 0,
            fingerprint=self.fingerprint8, height=a.shape[0], width=a.shape[1], channels=channels, bit_depth=8,
            lmbda=float(lam) if lam is not None else (None if self.lmbda is None else float(self.lmbda)),
            decoder=dec,
            environment=(current_environment() if self.record_environment and not self.latent_coder.portable
                         else None),
        )
        streams = limits.pad_streams(self, a.shape[0], a.shape[1], io.streams)  # lower bound: limits.py
        data = container.pack(header, streams)
        header = dataclasses.replace(header, stream_lengths=tuple(len(s) for s in streams))
        return Encoded(data, lat, header, io.bits, stats)

    def compress(self, img, lmbda: float | None = None, decoder: str | None = None) -> bytes:
        """uint8 image (H×W×3 RGB, or H×W / H×W×1 grey) → ``.lic`` bytes (``lmbda``: variable-rate models)."""
        return self.encode(img, lmbda, decoder).data

    def estimate_bits(self, img, lmbda: float | None = None) -> float:
        """Ideal payload bits Σ −log2 p of the quantised symbols under this codec's coding tables
        (escapes: the escape symbol plus the coder's bypass bits). No container, no coder
        termination; the file's payload is within ~0.1 % (+ a few bytes) of this."""
        return float(self._code(img, None, self._lam(lmbda), _new_stats())[2].bits)

    # ---------------------------------------------------------------------------------------
    # decoding
    # ---------------------------------------------------------------------------------------
    def decompress(self, data: bytes, output: str = "uint8", max_pixels: int | None = None,
                   decoder: str | None = None):
        """``.lic`` bytes → image. ``output``: 'uint8' (default; H×W×3, or H×W for grey files),
        'float' (float32 in [0, 1], the model's reconstruction clipped — no rounding) or
        'latents' (a :class:`Latents`, no synthesis). ``decoder``: override the file's decoder."""
        if output not in ("uint8", "float", "latents"):
            raise ValueError(f"output must be 'uint8', 'float' or 'latents', got {output!r}")
        return self.decode(data, output, max_pixels, decoder)[0]

    def decode(self, data: bytes, output: str = "uint8", max_pixels: int | None = None, decoder: str | None = None,
               stats: dict | None = None) -> Decoded:
        """(image or latents, :class:`Latents`, header) with ``.stats``. ``stats``: a dict to fill
        as decoding goes (readable even when a corrupt file raises)."""
        stats = _new_stats() if stats is None else stats
        stats.update(_new_stats())
        header, streams = container.unpack(data)
        self._check_model(header)
        limits.check_decode(self, header, self.max_pixels if max_pixels is None else max_pixels)  # before allocating
        method = self.decoders[self._decoder_index(decoder) if decoder is not None else header.decoder]
        try:
            lat = self._decode_latents(header, streams, backend_by_id(header.coder_id), stats)
        except CorruptFileError as e:
            env = current_environment()
            if header.environment is None or header.environment == env:
                raise
            raise CorruptFileError(f"{e}; this non-portable file was written under {header.environment}, this decoder "
                                   f"runs {env}: decode it there, or write portable files (docs/FORMAT.md §7)") from None
        if output == "latents":
            out = Decoded(lat, lat, header)
        else:
            x_hat = _tiling.synthesise(self, lat.y_hat, self._header_lam(header), method)
            out = Decoded(pixels.finish_image(x_hat, header.height, header.width, header.channels, output), lat, header)
        out.stats = stats
        return out

    def _decode_latents(self, header, streams, backend, stats) -> Latents:
        from ..models.base import pad_amounts

        (t, b), (l, r) = pad_amounts(header.height, header.width, self.downsampling)
        y_shape, z_shape = self._latent_shapes(header.height + t + b, header.width + l + r)
        n_expected = self.latent_coder.num_streams()
        if len(streams) != n_expected:
            raise CorruptFileError(f"corrupt file: {len(streams)} streams, the model codes {n_expected}")
        try:
            return self.latent_coder.run(DecoderIO(backend, streams, stats), LatentShapes(y_shape, z_shape))
        except LicError:
            raise
        except (ValueError, IndexError, OverflowError) as e:
            raise CorruptFileError(f"corrupt bitstream ({type(e).__name__}: {e})") from None

    def _check_model(self, header: container.Header):
        if header.fingerprint != self.fingerprint8:
            raise ModelMismatchError(
                f"the file was encoded with other weights ({header.model_name}"
                f"{' q' + str(header.quality) if header.quality else ''}, fingerprint {header.fingerprint.hex()}); "
                f"this model is {self._name()} with fingerprint {self.fingerprint8.hex()}"
            )
        if header.model_id and header.model_id != self.model_id:
            raise ModelMismatchError(f"the file is for architecture {header.model_name}, this model is {self._name()}")
        if header.decoder >= len(self.decoders):
            raise CorruptFileError(f"corrupt header: decoder {header.decoder}, the model has {len(self.decoders)}")
        self._header_lam(header)

    def _header_lam(self, header: container.Header):
        if not self.variable_rate:
            return None
        if header.lmbda is None or not header.lmbda > 0:
            raise CorruptFileError(f"corrupt file: a {header.model_name} file needs a positive λ in its header, "
                                   f"found {header.lmbda}")
        return np.float32(header.lmbda)

    # ---------------------------------------------------------------------------------------
    def reconstruct(self, y_hat: np.ndarray, height: int, width: int, channels: int = 3, output: str = "uint8",
                    lmbda: float | None = None, decoder: str | None = None):
        """The model's reconstruction from quantised latents (what ``decompress`` returns);
        ``lmbda``: the λ the latents were coded at (variable-rate models)."""
        method = self.decoders[self._decoder_index(decoder)]
        x_hat = _tiling.synthesise(self, y_hat, self._lam(lmbda), method)
        return pixels.finish_image(x_hat, height, width, channels, output)

    @staticmethod
    def info(data: bytes) -> dict[str, Any]:
        """Header fields of a ``.lic`` file (checks length and checksum, decodes nothing)."""
        header, _ = container.unpack(data)
        return info_dict(header, len(data))


def info_dict(header: container.Header, file_size: int) -> dict[str, Any]:
    from .backends import backend_name

    pixels_n = header.height * header.width
    out = {
        "format_version": header.version,
        "model": header.model_name,
        "quality": header.quality or None,
        "fingerprint": header.fingerprint.hex(),
        "lambda": header.lmbda,
        "height": header.height,
        "width": header.width,
        "channels": header.channels,
        "bit_depth": header.bit_depth,
        "coder": backend_name(header.coder_id),
        "stream_lengths": list(header.stream_lengths),
        "file_bytes": file_size,
        "container_bytes": file_size - sum(header.stream_lengths),
        "bpp": 8.0 * file_size / pixels_n,
    }
    if header.progressive:  # format version 2: stream_lengths are the iterations' segments
        out["iterations"] = len(header.stream_lengths)
        out["iteration_offsets"] = list(header.segment_offsets)
        out["context_fingerprint"] = header.context_fingerprint.hex()
        out["container_bytes"] = file_size - sum(header.stream_lengths)
    if header.decoder:
        out["decoder"] = header.decoder
    out["portable"] = _portable(header.model_name)
    if header.environment is not None:
        out["environment"] = header.environment
    return out


def _is_progressive(model) -> bool:
    try:
        return coder_class(model).kind == "progressive"
    except ValueError:
        return False


def _portable(name) -> bool:
    """Whether a model's files decode exactly on every platform (integer entropy path, FORMAT.md §7)."""
    from .latent_coders import coder_class

    try:
        return bool(coder_class(name).portable)
    except ValueError:  # an unknown model id: nothing is known about it
        return False
