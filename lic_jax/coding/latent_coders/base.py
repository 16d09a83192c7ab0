"""The latent-coder interface and the one traversal both directions share.

A latent coder owns one entropy structure: its coding tables, its stream layout and its
coding order. It writes that order **once**, in :meth:`LatentCoder.run`, against a
:class:`SymbolIO`:

* :class:`EncoderIO` turns the true latents into symbols ``round(value − centre)``, adds their
  ideal bits, and feeds them to the entropy coder (or only counts bits: ``estimate_bits``);
* :class:`DecoderIO` reads the same symbols back from the streams.

Both see exactly the same tables, table indexes, centres and order, because they run the same
code: the encoder and the decoder of a structure cannot drift apart (issue 11).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..backends import MAX_ABS_VALUE
from ..tables import CdfTable

__all__ = ["Latents", "LatentShapes", "SymbolIO", "EncoderIO", "DecoderIO", "LatentCoder", "symbols",
           "check_finite", "channel_major", "channel_index", "from_channel_major"]


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


@dataclasses.dataclass(frozen=True)
class LatentShapes:
    """Shapes (H', W', C) of the analysis outputs for one padded image size (z: None if none)."""

    y: tuple
    z: tuple | None = None


def check_finite(a: np.ndarray, what: str):
    if not np.all(np.isfinite(a)):
        raise ValueError(f"the model produced non-finite {what} (NaN/inf weights?); cannot code")


def symbols(x: np.ndarray, center) -> np.ndarray:
    """round(x − center) as int64 (float32 arithmetic, half to even like jnp.round)."""
    d = x - center if center is not None else x
    d = np.asarray(d, np.float32)
    check_finite(d, "latents")
    if d.size and float(np.max(np.abs(d))) >= MAX_ABS_VALUE:
        raise ValueError("a latent exceeds ±2**30 and cannot be coded")
    return np.rint(d).astype(np.int64)


def channel_major(a: np.ndarray) -> np.ndarray:
    """(H, W, C) → flat, channel-major (all positions of channel 0 first)."""
    return np.ascontiguousarray(np.moveaxis(a, -1, 0)).ravel()


def channel_index(shape) -> np.ndarray:
    H, W, C = shape
    return np.repeat(np.arange(C, dtype=np.int32), H * W)


def from_channel_major(flat: np.ndarray, shape) -> np.ndarray:
    H, W, C = shape
    return np.ascontiguousarray(np.moveaxis(np.asarray(flat, np.int32).reshape(C, H, W), 0, -1))


class SymbolIO:
    """One direction of coding. ``open(table)`` starts a stream; ``code(indexes, values, center)``
    returns the int32 symbols (same shape as ``indexes``); ``close()`` ends the stream.
    ``encoding``: True on the encoder side (the coder must then pass ``values``)."""

    encoding: bool

    def __init__(self, stats: dict):
        self.stats = stats

    def _timed(self, f, *args):
        t = time.perf_counter()
        out = f(*args)
        self.stats["coder_s"] += time.perf_counter() - t
        return out


class EncoderIO(SymbolIO):
    """Quantise, count ideal bits and (if ``backend``) entropy-code; ``streams`` collects the bytes."""

    encoding = True

    def __init__(self, backend, stats: dict, overflow_bits=None):
        super().__init__(stats)
        self.backend, self.ovf = backend, overflow_bits
        self.bits = 0.0
        self.streams: list[bytes] = []
        self._table = self._session = None

    def open(self, table: CdfTable):
        self._table = table
        self._session = self._timed(self.backend.encoder, table) if self.backend is not None else None

    def code(self, indexes, values, center=None) -> np.ndarray:
        q = symbols(values, center)
        self.bits += self._table.ideal_bits(q, indexes, self.ovf)
        if self._session is not None:
            self._timed(self._session.encode, q.ravel(), np.asarray(indexes).ravel())
            self.stats["symbols"] += int(q.size)
        return q.astype(np.int32)

    def add_stream(self, data: bytes, bits: float):
        """An opaque stream (external coders): its bytes and their share of the bits."""
        self.bits += bits
        if self.backend is not None:
            self.streams.append(bytes(data))

    def close(self):
        if self._session is not None:
            self.streams.append(self._timed(self._session.finish))
        self._table = self._session = None


class DecoderIO(SymbolIO):
    """Read symbols back from ``streams`` with ``backend`` (the coder named in the header)."""

    encoding = False

    def __init__(self, backend, streams, stats: dict):
        super().__init__(stats)
        self.backend, self._streams = backend, list(streams)
        self._next = 0
        self._session = None

    def next_stream(self) -> bytes:
        s = self._streams[self._next]
        self._next += 1
        return s

    def open(self, table: CdfTable):
        self._session = self._timed(self.backend.decoder, table, self.next_stream())

    def code(self, indexes, values=None, center=None) -> np.ndarray:
        indexes = np.asarray(indexes)
        q = self._timed(self._session.decode, indexes.ravel())
        self.stats["symbols"] += int(indexes.size)
        return np.asarray(q, np.int32).reshape(indexes.shape)

    def close(self):
        self._timed(self._session.finish)
        self._session = None


class LatentCoder:
    """Base class. Subclasses set ``kind``, ``hyper`` (the model has a hyper-analysis whose z
    is coded first) and implement :meth:`build_tables`, :meth:`run`, :meth:`stream_bounds`.
    ``portable``: every coding distribution comes from integer arithmetic, so a file decodes
    exactly on any platform (docs/FORMAT.md §7)."""

    kind = "?"
    hyper = False
    portable = False

    def __init__(self, model, cpu_vars, tables: dict):
        self.model, self.cpu_vars, self.tables = model, cpu_vars, tables

    @classmethod
    def build_tables(cls, model, params) -> dict[str, CdfTable]:
        """All coding tables: a pure, deterministic function of the parameters (tables.py)."""
        raise NotImplementedError

    def num_streams(self) -> int:
        return len(self.tables)

    def run(self, io: SymbolIO, shapes: LatentShapes, y=None, z=None) -> Latents:
        """Code (``io.encoding``: ``y``, ``z`` given) or decode the latents, in the one order."""
        raise NotImplementedError

    def stream_bounds(self, shapes: LatentShapes) -> list:
        """``limits.StreamBound`` per stream, in stream order (checked before decoding)."""
        raise NotImplementedError
