"""Entropy-coder backends behind one interface.

A backend codes integer *values* with integer *table indexes* into the rows of a
:class:`~lic_jax.coding.tables.CdfTable`; it never sees a float. Semantics shared by both:

* value ``v`` with row ``i`` is coded as symbol ``u = v − offset_i`` if ``0 ≤ u < L_i``, else as
  the row's escape symbol ``L_i`` followed by the escaped magnitude ``g`` (``g = −u`` below the
  support, ``g = u − L_i + 1`` above, so g ≥ 1) and its sign, in bypass (uniform) code;
* one ``decode(indexes)`` call must mirror one ``encode(values, indexes)`` call with the same
  index vector (calls form the stream's framing; the autoregressive coder makes one call per
  wavefront);
* values must satisfy ``|v| < 2**30`` (checked: :class:`ValueError`, never a silent clip).

Backends (id stored in the ``.lic`` header):

=====  ================  ==============================================================
 id     name              implementation
=====  ================  ==============================================================
 1      ``constriction``  constriction 0.5 queue ``RangeEncoder`` (32-bit words, 24-bit
                          model precision: constriction re-quantises our 16-bit frequencies
                          deterministically, ±0.1 % of the rate).
                          Per call: symbols grouped by row (stable order), one
                          ``Categorical`` per row; then the escapes of the call: 5-bit
                          length, mantissa in ≤ 16-bit chunks, 1 sign bit (Uniform).
 2      ``tfc``           tensorflow-compression range coder ops (``entropy_encode_index``
                          with a negative-precision lookup: TFC's own escape, Elias-gamma
                          magnitude + sign bit). Needs ``pip install lic_jax[tfc]``.
=====  ================  ==============================================================
"""

from __future__ import annotations

import functools
import importlib
import os

import numpy as np

from .errors import CoderUnavailableError, CorruptFileError
from .tables import CdfTable, escape_magnitudes

__all__ = ["Backend", "get_backend", "backend_by_id", "available_backends", "BACKENDS", "MAX_ABS_VALUE"]

MAX_ABS_VALUE = 1 << 30


def _check_values(values: np.ndarray):
    if values.size and int(np.max(np.abs(values.astype(np.int64)))) >= MAX_ABS_VALUE:
        raise ValueError(f"a quantised latent exceeds ±2**30 and cannot be coded (max |v| = {np.max(np.abs(values))})")


class Backend:
    """Interface. ``encoder(table)`` / ``decoder(table, data)`` return stateful sessions."""

    id: int = 0
    name: str = ""
    extra: str | None = None

    def encoder(self, table: CdfTable):
        raise NotImplementedError

    def decoder(self, table: CdfTable, data: bytes):
        raise NotImplementedError

    @staticmethod
    def overflow_bits(g: np.ndarray) -> np.ndarray:
        """Bypass bits this backend spends on escaped magnitudes g ≥ 1 (incl. the sign bit)."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------------
# constriction
# ------------------------------------------------------------------------------------------
_CHUNK = 16  # mantissa chunk width (constriction's Uniform needs size < 2**24)


def _import_constriction():
    try:
        return importlib.import_module("constriction")
    except Exception as e:  # pragma: no cover - constriction is a base dependency
        raise CoderUnavailableError(
            f"the 'constriction' entropy coder is not installed ({e}); run `pip install constriction>=0.5,<0.6`"
        ) from None


def _bit_length(g: np.ndarray) -> np.ndarray:
    g = np.asarray(g, np.int64)
    n = np.zeros(g.shape, np.int64)
    x = g.copy()
    while np.any(x > 0):
        n += x > 0
        x >>= 1
    return n


def _mantissa_chunks(nbits: np.ndarray) -> list[np.ndarray]:
    """Per escape, chunk widths (high to low) of its n−1 mantissa bits: a list over chunk
    position of arrays of widths (0 = no chunk)."""
    m = np.asarray(nbits, np.int64) - 1
    out = []
    while np.any(m > 0):
        w = np.where(m > 0, (m - 1) % _CHUNK + 1, 0)
        out.append(w)
        m = m - w
    return out


class _ConstrictionModels:
    """constriction Categorical models for the rows of one table (built lazily, cached)."""

    def __init__(self, table: CdfTable):
        self.table = table
        self.models: dict[int, object] = {}
        self.C = _import_constriction()

    def get(self, i: int):
        m = self.models.get(i)
        if m is None:
            f = self.table.frequencies(i).astype(np.float64) / float(1 << self.table.precision)
            m = self.C.stream.model.Categorical(f, perfect=False)
            self.models[i] = m
        return m


def _models_for(table: CdfTable) -> _ConstrictionModels:
    m = table._cache.get("constriction")
    if m is None:
        m = table._cache["constriction"] = _ConstrictionModels(table)
    return m


def _groups(indexes: np.ndarray):
    """Stable grouping by row: (order, [(row, start, stop), ...])."""
    order = np.argsort(indexes, kind="stable")
    srt = indexes[order]
    if srt.size == 0:
        return order, []
    starts = np.flatnonzero(np.r_[True, srt[1:] != srt[:-1]])
    stops = np.r_[starts[1:], srt.size]
    return order, [(int(srt[s]), int(s), int(e)) for s, e in zip(starts, stops)]


class _ConstrictionEncoder:
    def __init__(self, table: CdfTable):
        C = _import_constriction()
        self.C = C
        self.table = table
        self.models = _models_for(table)
        self.enc = C.stream.queue.RangeEncoder()
        self.uniform = C.stream.model.Uniform()

    def encode(self, values, indexes):
        values = np.asarray(values, np.int64).ravel()
        indexes = np.asarray(indexes, np.int64).ravel()
        if values.shape != indexes.shape:
            raise ValueError("values and indexes must have the same size")
        _check_values(values)
        t = self.table
        u = values - t.offset[indexes]
        L = t.num_regular[indexes].astype(np.int64)
        esc = (u < 0) | (u >= L)
        sym = np.where(esc, L, u).astype(np.int32)
        order, groups = _groups(indexes)
        for row, s, e in groups:
            self.enc.encode(np.ascontiguousarray(sym[order[s:e]]), self.models.get(row))
        if esc.any():
            self._encode_escapes(escape_magnitudes(u[esc], L[esc]), u[esc] < 0)

    def _encode_escapes(self, g, negative):
        n = _bit_length(g)
        enc, uni = self.enc, self.uniform
        enc.encode((n - 1).astype(np.int32), uni, np.full(n.size, 32, np.int32))
        rest = n - 1
        for w in _mantissa_chunks(n):
            sel = w > 0
            rest = rest - w
            chunk = (g[sel] >> rest[sel]) & ((1 << w[sel]) - 1)
            enc.encode(chunk.astype(np.int32), uni, (1 << w[sel]).astype(np.int32))
        enc.encode(negative.astype(np.int32), uni, np.full(n.size, 2, np.int32))

    def finish(self) -> bytes:
        words = np.asarray(self.enc.get_compressed(), np.uint32)
        data = words.astype("<u4").tobytes()
        return data.rstrip(b"\0")  # the decoder pads with zero words (constriction reads zeros past the end)


class _ConstrictionDecoder:
    def __init__(self, table: CdfTable, data: bytes):
        C = _import_constriction()
        self.table = table
        self.models = _models_for(table)
        pad = (-len(data)) % 4
        words = np.frombuffer(bytes(data) + b"\0" * pad, "<u4").astype(np.uint32)
        self.dec = C.stream.queue.RangeDecoder(words)
        self.uniform = C.stream.model.Uniform()

    def decode(self, indexes) -> np.ndarray:
        indexes = np.asarray(indexes, np.int64).ravel()
        t = self.table
        try:
            sym = np.empty(indexes.size, np.int64)
            order, groups = _groups(indexes)
            for row, s, e in groups:
                sym[order[s:e]] = self.dec.decode(self.models.get(row), e - s)
            L = t.num_regular[indexes].astype(np.int64)
            esc = sym == L
            if esc.any():
                sym[esc] = self._decode_escapes(L[esc])
        except (AssertionError, ValueError, RuntimeError, OverflowError) as e:
            raise CorruptFileError(f"bitstream rejected by the constriction decoder ({type(e).__name__})") from None
        out = sym + t.offset[indexes]
        if out.size and int(np.max(np.abs(out))) >= MAX_ABS_VALUE:
            raise CorruptFileError("decoded value out of range (corrupt bitstream)")
        return out.astype(np.int32)

    def _decode_escapes(self, L):
        dec, uni = self.dec, self.uniform
        k = L.size
        n = dec.decode(uni, np.full(k, 32, np.int32)).astype(np.int64) + 1
        g = np.ones(k, np.int64)
        for w in _mantissa_chunks(n):
            sel = w > 0
            chunk = dec.decode(uni, (1 << w[sel]).astype(np.int32)).astype(np.int64)
            g[sel] = (g[sel] << w[sel]) | chunk
        neg = dec.decode(uni, np.full(k, 2, np.int32)).astype(bool)
        return np.where(neg, -g, g + L - 1)

    def finish(self):
        return None


class ConstrictionBackend(Backend):
    id = 1
    name = "constriction"
    extra = None

    def __init__(self):
        _import_constriction()

    def encoder(self, table):
        return _ConstrictionEncoder(table)

    def decoder(self, table, data):
        return _ConstrictionDecoder(table, data)

    @staticmethod
    def overflow_bits(g):
        n = _bit_length(g)
        return 5 + (n - 1) + 1


# ------------------------------------------------------------------------------------------
# tensorflow-compression
# ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _tfc_ops():
    """(tf, ops): the range-coder ops of tensorflow-compression (``tfc.ops``), or of the
    ops-only package tensorflow-compression-ops. (Loading the shared library ourselves would
    leave TFC's own ``gen_ops`` empty if the user imports tensorflow_compression later, so the
    official module is imported.)"""
    msg = "the 'tfc' entropy coder needs tensorflow-compression: pip install lic_jax[tfc]"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    errors = []
    for module in ("tensorflow_compression", "tensorflow_compression_ops"):
        try:
            mod = importlib.import_module(module)
            ops = getattr(mod, "ops", mod)
            ops.create_range_encoder  # noqa: B018 - presence check
            import tensorflow as tf

            try:
                tf.config.set_visible_devices([], "GPU")
            except Exception:
                pass
            return tf, ops
        except Exception as e:  # ImportError, or a broken binary
            errors.append(f"{module}: {type(e).__name__}")
    raise CoderUnavailableError(f"{msg} ({'; '.join(errors)})")


def _tfc_lookup(table: CdfTable):
    tf, _ = _tfc_ops()
    t = table._cache.get("tfc_tensor")
    if t is None:
        t = table._cache["tfc_tensor"] = tf.constant(table.tfc_lookup(), tf.int32)
    return t


class _TfcEncoder:
    def __init__(self, table: CdfTable):
        self.tf, self.ops = _tfc_ops()
        self.table = table
        self.handle = self.ops.create_range_encoder([], _tfc_lookup(table))

    def encode(self, values, indexes):
        values = np.asarray(values, np.int64).ravel()
        indexes = np.asarray(indexes, np.int64).ravel()
        if values.shape != indexes.shape:
            raise ValueError("values and indexes must have the same size")
        if values.size == 0:
            return
        _check_values(values)
        u = (values - self.table.offset[indexes]).astype(np.int32)
        tf = self.tf
        self.handle = self.ops.entropy_encode_index(
            self.handle, tf.constant(indexes.astype(np.int32)), tf.constant(u)
        )

    def finish(self) -> bytes:
        return bytes(self.ops.entropy_encode_finalize(self.handle).numpy())


class _TfcDecoder:
    def __init__(self, table: CdfTable, data: bytes):
        self.tf, self.ops = _tfc_ops()
        self.table = table
        self.handle = self.ops.create_range_decoder(self.tf.constant(bytes(data)), _tfc_lookup(table))

    def decode(self, indexes) -> np.ndarray:
        indexes = np.asarray(indexes, np.int64).ravel()
        if indexes.size == 0:
            return np.zeros(0, np.int32)
        tf = self.tf
        try:
            self.handle, v = self.ops.entropy_decode_index(
                self.handle, tf.constant(indexes.astype(np.int32)), tf.constant([indexes.size], tf.int32), tf.int32
            )
            v = v.numpy().astype(np.int64)
        except Exception as e:
            raise CorruptFileError(f"bitstream rejected by the tfc decoder ({type(e).__name__})") from None
        out = v + self.table.offset[indexes]
        if np.any(np.abs(out) >= MAX_ABS_VALUE):
            raise CorruptFileError("decoded value out of range (corrupt bitstream)")
        return out.astype(np.int32)

    def finish(self):
        try:
            ok = bool(self.ops.entropy_decode_finalize(self.handle).numpy())
        except Exception:
            ok = False
        if not ok:
            raise CorruptFileError("the tfc range decoder did not end cleanly (corrupt bitstream)")


class TfcBackend(Backend):
    id = 2
    name = "tfc"
    extra = "tfc"

    def __init__(self):
        _tfc_ops()

    def encoder(self, table):
        return _TfcEncoder(table)

    def decoder(self, table, data):
        return _TfcDecoder(table, data)

    @staticmethod
    def overflow_bits(g):
        n = _bit_length(g)
        return 2 * (n - 1) + 1 + 1


# ------------------------------------------------------------------------------------------
BACKENDS = {"constriction": ConstrictionBackend, "tfc": TfcBackend}
_IDS = {cls.id: name for name, cls in BACKENDS.items()}
_INSTANCES: dict[str, Backend] = {}


def get_backend(name: str | None = None) -> Backend:
    """Backend by name (default ``'constriction'``); raises :class:`CoderUnavailableError`."""
    name = name or "constriction"
    if name not in BACKENDS:
        raise ValueError(f"unknown coder {name!r}; available: {', '.join(BACKENDS)}")
    b = _INSTANCES.get(name)
    if b is None:
        b = _INSTANCES[name] = BACKENDS[name]()
    return b


def backend_by_id(coder_id: int) -> Backend:
    if coder_id not in _IDS:
        raise CorruptFileError(f"unknown coder id {coder_id} in header")
    return get_backend(_IDS[coder_id])


def backend_name(coder_id: int) -> str:
    return _IDS.get(coder_id, f"unknown({coder_id})")


def available_backends() -> list[str]:
    out = []
    for name in BACKENDS:
        try:
            get_backend(name)
            out.append(name)
        except CoderUnavailableError:
            pass
    return out
