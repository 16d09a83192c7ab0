"""The ``progressive`` latent coder: the ±1 codes of a recurrent progressive codec (Toderici et
al. 2017; ``lic_jax.models.toderici2017``), one range-coded segment per iteration, each bit
coded with the learned binary context model of :mod:`lic_jax.entropy_models.binary`.

One traversal for both directions (:meth:`ProgressiveCoder._traverse`): for iteration t, rows
i = 0 … h−1 (one jitted context-network call per row: ``binary.row_hidden``), channels
c = 0 … 31 (``binary.RowState``, numpy), the context model gives the integer frequencies of the
row's w bits of channel c, which the encoder
writes and the decoder reads with constriction's queue ``RangeEncoder`` / ``RangeDecoder``
(``Bernoulli`` model, p = k / 2¹⁶). The inputs of every context-model call are built from the bits
coded so far only, by the same code on both sides, so the decoder sees exactly the encoder's
probabilities. A segment is one method byte then either (0) an independent range-coder stream
(32-bit words, little-endian, nothing stripped) or (1) the bits stored raw (``np.packbits`` of
b > 0 in (h, w, 32) order), whichever is shorter — so no iteration ever costs more than
raw bits + 1 byte, whatever the context model. Iteration t needs only the bits of iteration
t−1, so a file cut after any segment decodes (docs/FORMAT.md §10, docs/PROGRESSIVE.md).
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import CorruptFileError
from .base import LatentCoder

__all__ = ["ProgressiveCoder", "CONTEXT_PREFIX", "METHOD_CODED", "METHOD_RAW", "raw_bytes"]

CONTEXT_PREFIX = "bitcoder/"  # the context model's arrays inside an artifact's tables / bitcoder.npz
METHOD_CODED, METHOD_RAW = 0, 1  # a segment's first byte


def raw_bytes(shape) -> int:
    """Bytes of one iteration's bits stored raw (packed, 8 per byte)."""
    return -(-int(np.prod(shape)) // 8)


def _constriction():
    from ..backends import _import_constriction

    return _import_constriction()


class ProgressiveCoder(LatentCoder):
    """Codes one iteration's bits (h, w, 32) ±1 given the previous iteration's (or zeros)."""

    kind = "progressive"
    hyper = False
    portable = False  # float32 context network (the file records where it was written)

    def __init__(self, model, cpu_vars, tables, context=None):
        super().__init__(model, cpu_vars, tables)
        from ...entropy_models import binary

        if context is None:
            arrays = {k[len(CONTEXT_PREFIX):]: v for k, v in (tables or {}).items() if k.startswith(CONTEXT_PREFIX)}
            if arrays:
                params = binary.params_from_arrays(arrays)
                hidden = int(params["params"]["u"].shape[1])
                context = (binary.BinaryContextModel(int(params["params"]["u"].shape[0]), hidden), params)
            else:  # no trained context model: a fixed untrained one (valid, ~1 bit per bit)
                import jax

                context = binary.init_params(jax.random.key(0))
        self.context_model, self.context_params = context
        self.context_fingerprint = binary.params_fingerprint(self.context_params)

    @classmethod
    def build_tables(cls, model, params):
        return {}  # the context model is trained separately (experiments/toderici_bitcoder_train.py)

    def num_streams(self) -> int:
        return 1

    def stream_bounds(self, shapes):
        return []

    # -------------------------------------------------------------------------------------------
    def _traverse(self, t: int, prev: np.ndarray, bit_io) -> np.ndarray:
        """The coding order of iteration t (0-based): ``bit_io(freq (w,), i, c) → ones (w,) bool``
        codes / decodes one row's channel. Returns the iteration's bits (h, w, C) float32 ±1."""
        from ...entropy_models import binary

        h, w, C = prev.shape
        cur_pad = np.zeros((h + binary.ABOVE_ROWS, w + 2 * binary.ABOVE_HALF, C), np.float32)
        ph = binary.PREV_HALF
        prev_pad = np.pad(np.asarray(prev, np.float32), ((ph, ph), (ph, ph), (0, 0)))
        for i in range(h):
            hidden = binary.row_hidden(self.context_model, self.context_params, cur_pad[i:i + binary.ABOVE_ROWS],
                                       prev_pad[i:i + 2 * ph + 1], t)
            st = binary.RowState(self.context_params, hidden)
            same = np.zeros((w, C), np.float32)
            for c in range(C):
                ones = np.asarray(bit_io(st.frequencies(c), i, c), bool)
                same[:, c] = np.where(ones, 1.0, -1.0)
                st.add(c, same[:, c])
            cur_pad[binary.ABOVE_ROWS + i, binary.ABOVE_HALF:binary.ABOVE_HALF + w] = same
        return cur_pad[binary.ABOVE_ROWS:, binary.ABOVE_HALF:binary.ABOVE_HALF + w].copy()

    def encode_iteration(self, t: int, bits: np.ndarray, prev: np.ndarray, stats: dict | None = None):
        """(segment bytes, ideal bits Σ −log2 p) of iteration t's bits (h, w, C) ±1."""
        from ...entropy_models.binary import FREQ_BITS, ideal_bits

        C = _constriction()
        enc = C.stream.queue.RangeEncoder()
        fam = C.stream.model.Bernoulli(perfect=False)
        bits = np.asarray(bits, np.float32)
        acc = [0.0, 0.0]

        def bit_io(k, i, c):
            ones = bits[i, :, c] > 0
            acc[0] += ideal_bits(k, ones)
            t0 = time.perf_counter()
            enc.encode(ones.astype(np.int32), fam, k.astype(np.float64) / float(1 << FREQ_BITS))
            acc[1] += time.perf_counter() - t0
            return ones

        got = self._traverse(t, prev, bit_io)
        assert np.array_equal(got, np.where(bits > 0, 1.0, -1.0))
        data = np.asarray(enc.get_compressed(), np.uint32).astype("<u4").tobytes()
        if stats is not None:
            stats["coder_s"] = stats.get("coder_s", 0.0) + acc[1]
            stats["symbols"] = stats.get("symbols", 0) + int(bits.size)
        raw = raw_bytes(bits.shape)
        if len(data) >= raw:  # the context model does worse than raw bits here: store them raw
            return bytes([METHOD_RAW]) + np.packbits(bits.ravel() > 0).tobytes(), float(8 * raw)
        return bytes([METHOD_CODED]) + data, acc[0]

    def decode_iteration(self, t: int, data: bytes, prev: np.ndarray, stats: dict | None = None) -> np.ndarray:
        """Iteration t's bits (h, w, C) ±1 from its segment; ``prev``: iteration t−1's (or zeros)."""
        from ...entropy_models.binary import FREQ_BITS

        data = bytes(data)
        shape = tuple(prev.shape)
        method, data = (data[0], data[1:]) if data else (None, b"")
        if method == METHOD_RAW:
            if len(data) != raw_bytes(shape):
                raise CorruptFileError(f"corrupt file: iteration {t + 1}'s raw segment has {len(data)} bytes, "
                                       f"{raw_bytes(shape)} expected")
            n = int(np.prod(shape))
            bits = np.where(np.unpackbits(np.frombuffer(data, np.uint8))[:n] > 0, 1.0, -1.0).astype(np.float32)
            if stats is not None:
                stats["symbols"] = stats.get("symbols", 0) + n
            return bits.reshape(shape)
        if method != METHOD_CODED:
            raise CorruptFileError(f"corrupt file: iteration {t + 1}'s segment has method "
                                   f"{'none (empty)' if method is None else method}, expected 0 (coded) or 1 (raw)")
        if len(data) % 4:
            raise CorruptFileError(f"corrupt file: iteration {t + 1}'s segment has {len(data)} bytes, not a whole "
                                   "number of 32-bit words")
        C = _constriction()
        words = np.frombuffer(bytes(data), "<u4").astype(np.uint32)
        dec = C.stream.queue.RangeDecoder(words)
        fam = C.stream.model.Bernoulli(perfect=False)
        acc = [0.0]

        def bit_io(k, i, c):
            t0 = time.perf_counter()
            out = np.asarray(dec.decode(fam, k.astype(np.float64) / float(1 << FREQ_BITS))) > 0
            acc[0] += time.perf_counter() - t0
            return out

        try:
            bits = self._traverse(t, prev, bit_io)
        except (ValueError, RuntimeError, OverflowError, AssertionError) as e:  # constriction: invalid data
            raise CorruptFileError(f"corrupt bitstream in iteration {t + 1} ({type(e).__name__}: {e})") from None
        if stats is not None:
            stats["coder_s"] = stats.get("coder_s", 0.0) + acc[0]
            stats["symbols"] = stats.get("symbols", 0) + int(bits.size)
        return bits
