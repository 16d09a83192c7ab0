"""``Codec``: images ⇄ ``.lic`` bytes for every lic_jax model.

    from lic_jax.coding import Codec
    codec = Codec.from_artifact("path/to/model_dir")            # or Codec(model, spec, variables)
    data = codec.compress(img)                                 # uint8 H×W×3 (or H×W grey)
    img2 = codec.decompress(data)                              # uint8, same shape as img
    x = codec.decompress(data, output="float")                 # float32 in [0, 1]
    bits = codec.estimate_bits(img)                            # Σ −log2 p under the coding tables

Pipeline (docs/FORMAT.md §4):

* image → float in [0, 1] → zero-padded (centred) to the model's ``downsampling`` multiple →
  ``analysis`` (and ``hyper_analysis``) on the default JAX device;
* z (or y of factorized models) → integer symbols ``round(z − median)`` (host, float32);
* **fixed CPU path**: ẑ → ``hyper_synthesis`` (→ ``ctx_features``) → σ, μ → table indexes,
  jitted on the CPU device with a sub-pixel model clone, identical in encoder and decoder;
* y → symbols ``round(y − μ)``, coded with the Gaussian scale tables;
* autoregressive models: wavefronts ``s·h + w = t`` (``wavefront.py``); one jitted CPU step per
  wavefront writes the previous wavefront's ŷ = symbol + μ and evaluates ``gaussian_params_at``
  for the current one; the encoder runs the very same step function (so σ, μ are bit-identical)
  and one coder call per wavefront codes all its positions × channels.

The entropy coder only ever sees integers (symbols and table indexes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from jax import lax

from ..entropy_models.gaussian import scale_indexes
from ..models.registry import is_variable_rate
from ..models.base import crop_image, pad_amounts
from . import container, limits
from . import tiling as _tiling
from .backends import MAX_ABS_VALUE, Backend, backend_by_id, get_backend
from .errors import CorruptFileError, LicError, ModelMismatchError, UnsupportedImageError
from .tables import CdfTable, build_tables, model_kind, tables_from_arrays, verify_tables, z_model
from .wavefront import wavefront_positions, wavefront_slope

__all__ = ["Codec", "Latents", "to_uint8"]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float in [0, 1] → uint8 (clip, ×255, round half to even)."""
    return np.round(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)


def _cpu():
    return jax.devices("cpu")[0]


def _model_key(model) -> str:
    fields = [(f.name, getattr(model, f.name)) for f in dataclasses.fields(model) if f.name not in ("parent", "name")]
    return f"{type(model).__module__}.{type(model).__qualname__}{fields!r}"


def _cpu_model(model):
    """The model used on the fixed CPU path: sub-pixel transposed convolutions whatever the backend."""
    if any(f.name == "conv_transpose_impl" for f in dataclasses.fields(model)):
        return model.clone(conv_transpose_impl="subpixel")
    return model


class _Compiled:
    """Jitted functions of one architecture (shared by every Codec of that architecture)."""

    def __init__(self, model):
        m = model
        cm = _cpu_model(model)
        self.kind = model_kind(model)
        vr = is_variable_rate(model)
        # λ (variable-rate models: a traced float32 scalar, one compilation for every λ; else None)
        lam_args = (lambda lam: (lam,)) if vr else (lambda lam: ())

        def encode_transform(v, x, lam=None):
            y = m.apply(v, x, *lam_args(lam), method="analysis")
            if self.kind == "factorized":
                return y, None
            return y, m.apply(v, y, method="hyper_analysis")

        self.encode_transform = jax.jit(encode_transform)
        self.synthesis = jax.jit(lambda v, y, lam=None: m.apply(v, y, *lam_args(lam), method="synthesis"))

        def hyper_params(v, z_hat):
            p = cm.apply(v, z_hat, method="hyper_synthesis")
            idx = scale_indexes(p["scales"])
            mu = p.get("means")
            return idx, (jnp.zeros_like(p["scales"]) if mu is None else mu)

        def hyper_features(v, z_hat):
            hyper = cm.apply(v, z_hat, method="hyper_synthesis")["hyper"]
            return cm.apply(v, hyper, method="ctx_features")

        self.hyper_params = jax.jit(hyper_params)
        self.hyper_features = jax.jit(hyper_features)
        if self.kind == "autoregressive":
            k = int(model.ctx_kernel)
            ah, aw = (int(a) for a in model.ctx_anchor)
            self.ctx = (k, (ah, aw))

            def ar_step(v, state, feats, pos, t, sym, mu):
                """Write ŷ = sym + μ of wavefront t − 1, then (σ → index, μ) of wavefront t."""
                H, W = feats.shape[0], feats.shape[1]
                M = state.shape[-1]
                prev = pos[t - 1]
                y_prev = sym.astype(jnp.float32) + mu
                state = state.at[prev[:, 0] + ah, prev[:, 1] + aw].set(y_prev, mode="drop")
                cur = pos[t]
                hh, ww = cur[:, 0], cur[:, 1]
                patches = jax.vmap(lambda h, w: lax.dynamic_slice(state, (h, w, 0), (k, k, M)))(hh, ww)
                f = feats[jnp.clip(hh, 0, H - 1), jnp.clip(ww, 0, W - 1)]
                sigma, mu_new = cm.apply(v, f, patches, method="gaussian_params_at")
                return state, scale_indexes(sigma), mu_new

            self.ar_step = jax.jit(ar_step, donate_argnums=(1,))


_COMPILED: dict[str, _Compiled] = {}


def _compiled_for(model) -> _Compiled:
    key = _model_key(model)
    c = _COMPILED.get(key)
    if c is None:
        c = _COMPILED[key] = _Compiled(model)
    return c


class _TimedSession:
    """Wraps a backend encoder/decoder session and accumulates its time and symbol count."""

    def __init__(self, session, stats):
        self.s, self.stats = session, stats

    def encode(self, values, indexes):
        t = time.perf_counter()
        self.s.encode(values, indexes)
        self.stats["coder_s"] += time.perf_counter() - t
        self.stats["symbols"] += int(np.size(values))

    def decode(self, indexes):
        t = time.perf_counter()
        out = self.s.decode(indexes)
        self.stats["coder_s"] += time.perf_counter() - t
        self.stats["symbols"] += int(np.size(indexes))
        return out

    def finish(self):
        t = time.perf_counter()
        out = self.s.finish()
        self.stats["coder_s"] += time.perf_counter() - t
        return out


@dataclasses.dataclass
class Latents:
    """Quantised latents of one image (what the encoder coded / the decoder recovered).

    ``y_symbols`` / ``z_symbols``: integer symbols (H', W', C) int32; ``y_hat`` / ``z_hat``: the
    float latents fed to the synthesis / hyper-synthesis; ``y_indexes``: Gaussian table indexes.
    """

    y_symbols: np.ndarray
    y_hat: np.ndarray
    z_symbols: np.ndarray | None = None
    z_hat: np.ndarray | None = None
    y_indexes: np.ndarray | None = None


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

    @property
    def payload_bytes(self) -> int:
        return sum(self.header.stream_lengths)


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


def _check_finite(a: np.ndarray, what: str):
    if not np.all(np.isfinite(a)):
        raise ValueError(f"the model produced non-finite {what} (NaN/inf weights?); cannot code")


def _symbols(x: np.ndarray, center) -> np.ndarray:
    """round(x − center) as int64 (float32 arithmetic, half to even like jnp.round)."""
    d = x - center if center is not None else x
    d = np.asarray(d, np.float32)
    _check_finite(d, "latents")
    if d.size and float(np.max(np.abs(d))) >= MAX_ABS_VALUE:
        raise ValueError("a latent exceeds ±2**30 and cannot be coded")
    return np.rint(d).astype(np.int64)


class Codec:
    """Compress / decompress images with one model and its exact weights.

    Args:
      model: the Flax module (e.g. from ``lic_jax.models.get_model``).
      spec: its :class:`~lic_jax.models.ModelSpec` (name and quality go into the header).
      variables: ``{'params': …}``.
      coder: ``'constriction'`` (default) or ``'tfc'`` for compression; decompression always
        uses the coder recorded in the file.
      tables: stored coding tables (``{'z': CdfTable, 'y': CdfTable}`` or the ``tables.npz``
        arrays); verified against a rebuild from ``variables``.
      fingerprint: hex SHA-256 of the weights (computed if omitted).
      lmbda: variable-rate models (``mae-*``): the default λ of ``compress`` / ``encode`` (each
        call may pass its own; :mod:`lic_jax.coding.rate_control` picks one for a target bpp).
        Fixed-rate models: an optional, informational λ for the header.
      tiling: large images (docs/LARGE_IMAGES.md): None / 'auto' (tiled transforms above
        2 097 152 padded pixels), 'on', 'off', a tile size in pixels, or a
        :class:`~lic_jax.coding.tiling.Tiling`; also the attribute ``codec.tiling``. The latents
        and the file do not depend on it.

    Variable-rate models code every λ with the same tables (their entropy models do not depend
    on λ); the λ used — rounded to float32, as the header stores it — goes into the header, and
    the decoder reads it from there: the analysis and synthesis both see exactly that float32.
    """

    def __init__(self, model, spec, variables, coder: str | None = None, tables=None, fingerprint: str | None = None,
                 lmbda: float | None = None, max_pixels: int | None = None, tiling=None):
        self.model = model
        self.spec = spec
        self.kind = model_kind(model)
        self.coder = coder or "constriction"
        get_backend(self.coder)  # fail early if unavailable
        np_vars = _np_params(variables)
        self.fingerprint = fingerprint or weights_fingerprint(np_vars)
        if tables is None:
            self.tables = build_tables(model, np_vars)
        else:
            if not all(isinstance(t, CdfTable) for t in tables.values()):
                tables = tables_from_arrays(tables)
            self.tables = verify_tables(model, np_vars, tables)
        self.variable_rate = is_variable_rate(model)
        self.lmbda = None if lmbda is None else _valid_lmbda(lmbda)
        self._fns = _compiled_for(model)
        self._cpu_vars = jax.device_put(np_vars, _cpu())
        dev = jax.devices()[0]
        self._dev = dev
        self._dev_vars = self._cpu_vars if dev == _cpu() else jax.device_put(np_vars, dev)
        params = np_vars["params"]
        self._z_kind = None if self.kind == "factorized" else z_model(model)
        eb = params.get("entropy_bottleneck")
        self._medians = None if eb is None else np.asarray(eb["quantiles"], np.float32)[:, 0, 1].copy()
        self._shapes: dict = {}
        self._ar_cache: dict = {}
        self.tiling = _tiling.as_tiling(tiling)  # large images: tiled transforms (tiling.py); settable
        self._tiled = None  # tiling.TiledTransforms, built when first needed
        self.stats = {"coder_s": 0.0, "symbols": 0}  # entropy-coder time / symbols of the last call
        self.max_pixels = limits.DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)  # limits.py

    # ---------------------------------------------------------------------------------------
    @classmethod
    def from_artifact(cls, path_or_artifact, coder: str | None = None, verify: bool = True,
                      lmbda: float | None = None, max_pixels: int | None = None) -> "Codec":
        """A codec for a model directory (``lic_jax.artifact``) or a loaded ``Artifact``."""
        from ..artifact import Artifact, load_artifact

        art = path_or_artifact if isinstance(path_or_artifact, Artifact) else load_artifact(path_or_artifact, verify)
        return cls(art.spec.build(), art.spec, art.variables, coder=coder, tables=art.tables,
                   fingerprint=art.fingerprint, lmbda=lmbda, max_pixels=max_pixels)

    @property
    def lmbda_range(self) -> tuple[float, float] | None:
        """The λ interval a variable-rate model was trained on (None for fixed-rate models)."""
        return tuple(self.model.lmbda_range) if self.variable_rate else None

    def _lam(self, lmbda):
        """The float32 λ the transforms see (variable-rate models), or None (fixed-rate)."""
        if not self.variable_rate:
            if lmbda is not None:
                raise ValueError(f"{self.spec.name if self.spec else 'this model'} is a fixed-rate model: "
                                 f"its λ was fixed by training (use a variable-rate mae-* model for a per-image λ)")
            return None
        lam = self.lmbda if lmbda is None else _valid_lmbda(lmbda)
        if lam is None:
            lo, hi = self.lmbda_range
            raise ValueError(f"{self.spec.name if self.spec else 'this model'} is a variable-rate model: give λ "
                             f"(trained on {lo:.4g} … {hi:.4g}) or a target bpp")
        return lam

    @property
    def fingerprint8(self) -> bytes:
        return bytes.fromhex(self.fingerprint)[:8]

    @property
    def downsampling(self) -> int:
        return int(self.model.downsampling)

    @property
    def model_id(self) -> int:
        return container.MODEL_IDS.get(self.spec.name, 0) if self.spec is not None else 0

    def _latent_shapes(self, Hp: int, Wp: int):
        key = (Hp, Wp)
        if key not in self._shapes:
            x = jax.ShapeDtypeStruct((1, Hp, Wp, 3), jnp.float32)
            lam = jax.ShapeDtypeStruct((), jnp.float32) if self.variable_rate else None
            y, z = jax.eval_shape(self._fns.encode_transform, self._cpu_vars, x, lam)
            self._shapes[key] = (tuple(y.shape[1:]), None if z is None else tuple(z.shape[1:]))
        return self._shapes[key]

    # ---------------------------------------------------------------------------------------
    # image handling
    # ---------------------------------------------------------------------------------------
    @staticmethod
    def _prepare(img) -> tuple[np.ndarray, int]:
        a = np.asarray(img)
        if a.dtype != np.uint8:
            raise UnsupportedImageError(f"expected a uint8 image, got dtype {a.dtype} (convert to 8 bits first)")
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim == 2:
            channels = 1
            a = np.repeat(a[:, :, None], 3, axis=2)
        elif a.ndim == 3 and a.shape[2] == 3:
            channels = 3
        elif a.ndim == 3 and a.shape[2] == 4:
            raise UnsupportedImageError("image has an alpha channel; drop it first (lic compress --drop-alpha)")
        else:
            raise UnsupportedImageError(f"expected an H×W×3 or H×W image, got shape {a.shape}")
        H, W = a.shape[:2]
        if not (1 <= H <= container.MAX_SIDE and 1 <= W <= container.MAX_SIDE):
            raise UnsupportedImageError(f"image sides must be 1 … {container.MAX_SIDE}, got {H}×{W}")
        return a, channels

    def _pad(self, a: np.ndarray) -> np.ndarray:
        x = a.astype(np.float32) / np.float32(255.0)
        (t, b), (l, r) = pad_amounts(a.shape[0], a.shape[1], self.downsampling)
        return np.pad(x, ((t, b), (l, r), (0, 0)))[None]

    def _finish_image(self, x_hat: np.ndarray, H: int, W: int, channels: int, output: str):
        x = np.nan_to_num(np.asarray(crop_image(x_hat, H, W))[0], nan=0.0)  # (only forged streams give NaN)
        x = np.clip(x, 0.0, 1.0).astype(np.float32)
        if channels == 1:
            x = np.mean(x, axis=-1, dtype=np.float32)
        return x if output == "float" else to_uint8(x)

    # ---------------------------------------------------------------------------------------
    # the fixed CPU path
    # ---------------------------------------------------------------------------------------
    def _z_symbols_to_hat(self, q: np.ndarray) -> np.ndarray:
        q = q.astype(np.float32)
        return q + self._medians if self._z_kind == "factorized" else q

    def _z_center(self):
        return self._medians if self._z_kind == "factorized" else None

    def _hyper_cpu(self, z_hat: np.ndarray):
        with jax.default_device(_cpu()):
            zh = jax.device_put(z_hat[None], _cpu())
            if self.kind == "autoregressive":
                return self._fns.hyper_features(self._cpu_vars, zh)[0]
            idx, mu = self._fns.hyper_params(self._cpu_vars, zh)
            return np.asarray(idx[0]), np.asarray(mu[0])

    def _ar_plan(self, H: int, W: int):
        key = (H, W)
        if key not in self._ar_cache:
            k, anchor = self._fns.ctx
            slope = wavefront_slope(k, anchor)
            pos, counts = wavefront_positions(H, W, slope)
            self._ar_cache[key] = (jax.device_put(pos, _cpu()), pos, counts, slope)
        return self._ar_cache[key]

    def _ar_run(self, feats, y_shape, on_wavefront):
        """Run the wavefront schedule. ``on_wavefront(t, n, idx (n, M), mu (n, M) device→host)``
        returns the int symbols (n, M) of wavefront t. Returns (ŷ (H, W, M) float32, symbols, indexes)."""
        H, W, M = y_shape
        k, (ah, aw) = self._fns.ctx
        pos_dev, pos, counts, _ = self._ar_plan(H, W)
        K = pos.shape[1]
        cpu = _cpu()
        state = jax.device_put(np.zeros((H + k - 1, W + k - 1, M), np.float32), cpu)
        sym = np.zeros((K, M), np.int32)
        mu = jax.device_put(np.zeros((K, M), np.float32), cpu)
        step = self._fns.ar_step
        v = self._cpu_vars
        with jax.default_device(cpu):
            return self._ar_loop(step, v, state, feats, pos_dev, pos, counts, sym, mu, on_wavefront, K, M, H, W, ah, aw)

    def _ar_loop(self, step, v, state, feats, pos_dev, pos, counts, sym, mu, on_wavefront, K, M, H, W, ah, aw):
        sym_all = np.zeros((H, W, M), np.int32)
        idx_all = np.zeros((H, W, M), np.int32)
        for t in range(len(counts)):
            state, idx, mu = step(v, state, feats, pos_dev, np.int32(t), sym, mu)
            n = int(counts[t])
            idx_h = np.asarray(idx)[:n]
            q = on_wavefront(t, n, idx_h, mu)
            hs, ws = pos[t, :n, 0], pos[t, :n, 1]
            sym_all[hs, ws] = q
            idx_all[hs, ws] = idx_h
            sym = np.zeros((K, M), np.int32)
            sym[:n] = q
        state, _, _ = step(v, state, feats, pos_dev, np.int32(len(counts)), sym, mu)
        y_hat = np.asarray(state[ah : ah + H, aw : aw + W])
        return y_hat, sym_all, idx_all

    # ---------------------------------------------------------------------------------------
    # encoding
    # ---------------------------------------------------------------------------------------
    def _analyse(self, img, lam=None):
        limits.check_image(np.shape(img), self.max_pixels)
        a, channels = self._prepare(img)
        y, z = _tiling.analyse(self, self._pad(a), lam)  # untiled unless self.tiling applies (tiling.py)
        y = np.asarray(y[0])
        _check_finite(y, "latents")
        z = None if z is None else np.asarray(z[0])
        return a, channels, y, z

    def _code(self, img, backend: Backend | None, lam=None):
        """Quantise and (if ``backend``) entropy-code. Returns (streams, latents, ideal bits, shape info)."""
        a, channels, y, z = self._analyse(img, lam)
        streams, bits = [], 0.0
        ovf = (backend or get_backend(self.coder)).overflow_bits

        def code(table: CdfTable, values, indexes, enc=None):
            nonlocal bits
            bits += table.ideal_bits(values, indexes, ovf)
            if enc is not None:
                enc.encode(values, indexes)

        if self.kind == "factorized":
            q = _symbols(y, self._medians)
            t = self.tables["y"]
            enc = self._timed(backend.encoder, t) if backend else None
            code(t, _channel_major(q), _channel_index(q.shape), enc)
            if enc:
                streams.append(enc.finish())
            lat = Latents(q.astype(np.int32), (q.astype(np.float32) + self._medians))
            return a, channels, streams, lat, bits

        # z
        qz = _symbols(z, self._z_center())
        tz = self.tables["z"]
        enc = self._timed(backend.encoder, tz) if backend else None
        code(tz, _channel_major(qz), _channel_index(qz.shape), enc)
        if enc:
            streams.append(enc.finish())
        z_hat = self._z_symbols_to_hat(qz)
        ty = self.tables["y"]
        enc = self._timed(backend.encoder, ty) if backend else None
        if self.kind == "hyperprior":
            idx, mu = self._hyper_cpu(z_hat)
            q = _symbols(y, mu)  # μ = 0 for scale-only hyperpriors: round(y − 0) = round(y)
            code(ty, q.ravel(), idx.ravel(), enc)
            y_hat = q.astype(np.float32) + mu
        else:
            feats = self._hyper_cpu(z_hat)

            def on_wavefront(t, n, idx_h, mu_dev):
                if n == 0:
                    return np.zeros((0, y.shape[2]), np.int32)
                hs, ws = pos[t, :n, 0], pos[t, :n, 1]
                qq = _symbols(y[hs, ws], np.asarray(mu_dev)[:n])
                code(ty, qq.ravel(), idx_h.ravel(), enc)
                return qq.astype(np.int32)

            _, pos, _, _ = self._ar_plan(*y.shape[:2])
            y_hat, q, idx = self._ar_run(feats, y.shape, on_wavefront)
        if enc:
            streams.append(enc.finish())
        lat = Latents(q.astype(np.int32), np.asarray(y_hat, np.float32), qz.astype(np.int32), z_hat,
                      np.asarray(idx, np.int32))
        return a, channels, streams, lat, bits

    def _timed(self, factory, *args):
        t = time.perf_counter()
        session = _TimedSession(factory(*args), self.stats)
        self.stats["coder_s"] += time.perf_counter() - t
        return session

    def encode(self, img, lmbda: float | None = None) -> Encoded:
        """Compress and return the bytes together with the latents and the ideal bit count.
        ``lmbda``: the λ of a variable-rate model (default: the codec's)."""
        self.stats = {"coder_s": 0.0, "symbols": 0}
        backend = get_backend(self.coder)
        lam = self._lam(lmbda)
        a, channels, streams, lat, bits = self._code(img, backend, lam)
        header = container.Header(
            coder_id=backend.id,
            model_id=self.model_id,
            quality=int(self.spec.quality or 0) if self.spec is not None else 0,
            fingerprint=self.fingerprint8,
            height=a.shape[0],
            width=a.shape[1],
            channels=channels,
            bit_depth=8,
            lmbda=float(lam) if lam is not None else (None if self.lmbda is None else float(self.lmbda)),
        )
        streams = limits.pad_streams(self, a.shape[0], a.shape[1], streams)  # lower bound: limits.py
        data = container.pack(header, streams)
        header = dataclasses.replace(header, stream_lengths=tuple(len(s) for s in streams))
        return Encoded(data, lat, header, bits)

    def compress(self, img, lmbda: float | None = None) -> bytes:
        """uint8 image (H×W×3 RGB, or H×W / H×W×1 grey) → ``.lic`` bytes (``lmbda``: variable-rate models)."""
        return self.encode(img, lmbda).data

    def estimate_bits(self, img, lmbda: float | None = None) -> float:
        """Ideal payload bits Σ −log2 p of the quantised symbols under this codec's coding tables
        (escapes: the escape symbol plus the coder's bypass bits). No container, no coder
        termination; the file's payload is within ~0.1 % (+ a few bytes) of this."""
        return float(self._code(img, None, self._lam(lmbda))[4])

    # ---------------------------------------------------------------------------------------
    # decoding
    # ---------------------------------------------------------------------------------------
    def decompress(self, data: bytes, output: str = "uint8", max_pixels: int | None = None):
        """``.lic`` bytes → image. ``output``: 'uint8' (default; H×W×3, or H×W for grey files),
        'float' (float32 in [0, 1], the model's reconstruction clipped — no rounding) or
        'latents' (a :class:`Latents`, no synthesis)."""
        if output not in ("uint8", "float", "latents"):
            raise ValueError(f"output must be 'uint8', 'float' or 'latents', got {output!r}")
        return self.decode(data, output, max_pixels)[0]

    def decode(self, data: bytes, output: str = "uint8", max_pixels: int | None = None):
        """(image or None, :class:`Latents`, header): ``decompress`` with the decoded latents."""
        self.stats = {"coder_s": 0.0, "symbols": 0}
        header, streams = container.unpack(data)
        self._check_model(header)
        limits.check_decode(self, header, self.max_pixels if max_pixels is None else max_pixels)  # before allocating
        backend = backend_by_id(header.coder_id)
        lat = self._decode_latents(header, streams, backend)
        if output == "latents":
            return lat, lat, header
        x_hat = self._synthesis(lat.y_hat, self._header_lam(header))
        return self._finish_image(x_hat, header.height, header.width, header.channels, output), lat, header

    def _check_model(self, header: container.Header):
        if header.fingerprint != self.fingerprint8:
            raise ModelMismatchError(
                f"the file was encoded with other weights ({header.model_name}"
                f"{' q' + str(header.quality) if header.quality else ''}, fingerprint {header.fingerprint.hex()}); "
                f"this model is {self.spec.name if self.spec else '?'} with fingerprint {self.fingerprint8.hex()}"
            )
        if header.model_id and self.model_id and header.model_id != self.model_id:
            raise ModelMismatchError(f"the file is for architecture {header.model_name}, this model is {self.spec.name}")
        self._header_lam(header)

    def _header_lam(self, header: container.Header):
        if not self.variable_rate:
            return None
        if header.lmbda is None or not header.lmbda > 0:
            raise CorruptFileError(f"corrupt file: a {header.model_name} file needs a positive λ in its header, "
                                   f"found {header.lmbda}")
        return np.float32(header.lmbda)

    def _synthesis(self, y_hat: np.ndarray, lam):
        return _tiling.synthesise(self, y_hat, lam)  # untiled unless self.tiling applies (tiling.py)

    def _decode_latents(self, header, streams, backend: Backend) -> Latents:
        H, W = header.height, header.width
        (t, b), (l, r) = pad_amounts(H, W, self.downsampling)
        y_shape, z_shape = self._latent_shapes(H + t + b, W + l + r)
        n_expected = 1 if self.kind == "factorized" else 2
        if len(streams) != n_expected:
            raise CorruptFileError(f"corrupt file: {len(streams)} streams, the model codes {n_expected}")
        try:
            if self.kind == "factorized":
                dec = self._timed(backend.decoder, self.tables["y"], streams[0])
                q = _from_channel_major(dec.decode(_channel_index(y_shape)), y_shape)
                dec.finish()
                return Latents(q, q.astype(np.float32) + self._medians)
            dec = self._timed(backend.decoder, self.tables["z"], streams[0])
            qz = _from_channel_major(dec.decode(_channel_index(z_shape)), z_shape)
            dec.finish()
            z_hat = self._z_symbols_to_hat(qz)
            dec = self._timed(backend.decoder, self.tables["y"], streams[1])
            if self.kind == "hyperprior":
                idx, mu = self._hyper_cpu(z_hat)
                q = dec.decode(idx.ravel()).reshape(y_shape)
                y_hat = q.astype(np.float32) + mu
            else:
                feats = self._hyper_cpu(z_hat)

                def on_wavefront(t, n, idx_h, mu_dev):
                    return dec.decode(idx_h.ravel()).reshape(n, y_shape[2])

                y_hat, q, idx = self._ar_run(feats, y_shape, on_wavefront)
            dec.finish()
        except LicError:
            raise
        except (ValueError, IndexError, OverflowError) as e:
            raise CorruptFileError(f"corrupt bitstream ({type(e).__name__}: {e})") from None
        return Latents(q.astype(np.int32), np.asarray(y_hat, np.float32), qz, z_hat, np.asarray(idx, np.int32))

    # ---------------------------------------------------------------------------------------
    def reconstruct(self, y_hat: np.ndarray, height: int, width: int, channels: int = 3, output: str = "uint8",
                    lmbda: float | None = None):
        """The model's reconstruction from quantised latents (what ``decompress`` returns);
        ``lmbda``: the λ the latents were coded at (variable-rate models)."""
        x_hat = self._synthesis(y_hat, self._lam(lmbda))
        return self._finish_image(x_hat, height, width, channels, output)

    @staticmethod
    def info(data: bytes) -> dict[str, Any]:
        """Header fields of a ``.lic`` file (checks length and checksum, decodes nothing)."""
        header, _ = container.unpack(data)
        return info_dict(header, len(data))


def info_dict(header: container.Header, file_size: int) -> dict[str, Any]:
    from .backends import backend_name

    pixels = header.height * header.width
    return {
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
        "bpp": 8.0 * file_size / pixels,
    }


def _channel_major(q: np.ndarray) -> np.ndarray:
    """(H, W, C) → flat, channel-major (all positions of channel 0 first)."""
    return np.ascontiguousarray(np.moveaxis(q, -1, 0)).ravel()


def _channel_index(shape) -> np.ndarray:
    H, W, C = shape
    return np.repeat(np.arange(C, dtype=np.int32), H * W)


def _from_channel_major(flat: np.ndarray, shape) -> np.ndarray:
    H, W, C = shape
    return np.ascontiguousarray(np.moveaxis(np.asarray(flat, np.int32).reshape(C, H, W), 0, -1))
