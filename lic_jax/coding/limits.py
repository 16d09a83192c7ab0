"""Resource limits, checked from the header before anything proportional to the image is allocated.

Spec: docs/FORMAT.md §6 ("Limits"). Three checks, all pure functions of the header, the stream
lengths and the codec's coding tables (nothing is decoded, no latent array is allocated):

1. **Image size.** ``height · width ≤ max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`), else
   :class:`~lic_jax.coding.errors.LimitError`. The encoder refuses larger inputs the same way.
2. **Shortest plausible stream** (a lower bound). A stream that codes N symbols with rows
   r_1 … r_N of a table needs at least ``B = Σ_i m(r_i)`` bits, where ``m(r) = −log2(max_s p_r(s))``
   is the cost of the row's most probable symbol (``precision − log2`` of its largest integer
   frequency). Where the decoder knows the rows before decoding (per-channel tables: factorized y,
   z of every hyperprior) the sum is exact per channel; for Gaussian y (rows chosen by the
   hyper-decoder) every symbol is charged the cheapest row of the table. Escapes only add bits
   (escape symbol ≥ m, plus bypass bits). One subtlety: constriction streams are stored with
   their trailing zero bytes removed (format §2; the decoder reads zeros past the end), and a
   stream whose last symbols all sit at the bottom of their CDFs (cumulative 0) ends in zero
   words — in the extreme an all-lowest-symbol stream is stored as 0 bytes. The encoder therefore
   pads a constriction stream shorter than ``ceil(B / 8)`` with zero bytes (:func:`pad_streams`;
   it decodes identically, and it is a no-op for every realistic stream). TFC writes every byte
   its range state shifts out and omits at most the ≤ 4 bytes of its final state. Hence **every
   file lic_jax writes satisfies the bound**; the decoder rejects ``8 · len < B − 32`` as a
   :class:`CorruptFileError` (the 32 bits cover TFC's final state, float rounding of B across
   machines, and constriction files written before the padding rule).
3. **Longest plausible stream** (an upper bound): at most :data:`MAX_BITS_PER_SYMBOL` bits per
   symbol plus :data:`STREAM_SLACK_BYTES` (both coders need far less: ≤ 24 + 36 bits per symbol
   for constriction — its smallest probability is 2⁻²⁴, an escape costs ≤ 5 + 30 + 1 bypass
   bits — and ≤ 16 + 62 for TFC, Elias-gamma escapes). Longer streams are a
   :class:`LimitError`; ``lic decompress`` checks it from the header before reading the file.

The bounds need the latent shapes only (:func:`latent_shapes`: arithmetic on two cached
``jax.eval_shape`` results, no tracing per size, no allocation) and one float per table row
(cached on the table).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .errors import CorruptFileError, LimitError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_BITS_PER_SYMBOL",
    "STREAM_SLACK_BYTES",
    "MIN_SLACK_BITS",
    "StreamBound",
    "row_min_bits",
    "check_pixels",
    "check_image",
    "latent_shapes",
    "stream_bounds",
    "stream_bound",
    "check_streams",
    "check_decode",
    "pad_streams",
    "check_progressive_size",
]

# 64 MiP: a 24-MP (6000 × 4000) camera photo and anything up to 8192 × 8192 pass; a forged
# 65535 × 65535 header (4.3 GP) does not. Measurements behind the choice: docs/FORMAT.md §6.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
MAX_BITS_PER_SYMBOL = 128
STREAM_SLACK_BYTES = 64
MIN_SLACK_BITS = 32


@dataclasses.dataclass(frozen=True)
class StreamBound:
    name: str  # 'z' or 'y'
    symbols: int  # number of coded symbols
    min_bits: float  # Σ of the cheapest cost of each symbol's row(s)
    max_bytes: int  # longest plausible stream

    @property
    def min_bytes(self) -> int:
        """Bytes the encoder pads a shorter stream to (ceil(min_bits / 8))."""
        return int(math.ceil(self.min_bits / 8.0 - 1e-9))


def row_min_bits(table) -> np.ndarray:
    """(n,) float64: ``precision − log2(largest frequency)`` of each row (its cheapest symbol)."""
    key = "row_min_bits"
    cache = getattr(table, "_cache", None)
    if cache is not None and key in cache:
        return cache[key]
    f = np.diff(table.cdf.astype(np.int64), axis=1)
    used = np.arange(f.shape[1])[None, :] < (table.cdf_length[:, None] - 1)
    fmax = np.max(np.where(used, f, 0), axis=1).astype(np.float64)
    out = np.maximum(float(table.precision) - np.log2(np.maximum(fmax, 1.0)), 0.0)
    if cache is not None:
        cache[key] = out
    return out


def _mp(n: int) -> str:
    return f"{n / 1e6:.1f} MP"


def check_pixels(height: int, width: int, max_pixels: int | None, what: str = "image"):
    """LimitError if ``height · width`` exceeds ``max_pixels`` (None: the default)."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    n = int(height) * int(width)
    if n > limit:
        raise LimitError(
            f"{what} of {int(width)}x{int(height)} = {_mp(n)} exceeds the limit of {limit} pixels ({_mp(limit)}); "
            f"raise it with max_pixels= (lic --max-pixels N) if this is intended"
        )


def check_image(shape, max_pixels: int | None):
    """Encoder side: LimitError for an input array with more than ``max_pixels`` pixels (H × W of
    an H×W or H×W×C array; other shapes are left to the codec's own checks)."""
    if len(shape) >= 2:
        check_pixels(shape[0], shape[1], max_pixels, "input image")


def latent_shapes(codec, hp: int, wp: int):
    """(y shape, z shape or None) for a padded size, without tracing the model: every lic_jax
    analysis maps a multiple of ``downsampling`` linearly onto its latent grid, so the shapes at
    ``(d, d)`` and ``(2d, 3d)`` (``jax.eval_shape``, once per codec and cached by it) give every
    other size; a model that is not linear that way falls back to ``eval_shape`` at this size."""
    d = codec.downsampling
    (y1, z1), (y2, z2) = codec._latent_shapes(d, d), codec._latent_shapes(2 * d, 3 * d)

    def scale(s1, s2):
        if s1 is None:
            return None
        if s2 != (2 * s1[0], 3 * s1[1], s1[2]):
            return False
        return (hp // d * s1[0], wp // d * s1[1], s1[2])

    y, z = scale(y1, y2), scale(z1, z2)
    if y is False or z is False or hp % d or wp % d:
        return codec._latent_shapes(hp, wp)
    return y, z


def stream_bounds(codec, height: int, width: int) -> list[StreamBound]:
    """The bounds of the streams a file of this size has for ``codec``'s model, in stream order
    (each latent coder states its own: ``LatentCoder.stream_bounds``)."""
    from ..models.base import pad_amounts
    from .latent_coders import LatentShapes

    (t, b), (l, r) = pad_amounts(int(height), int(width), codec.downsampling)
    y_shape, z_shape = latent_shapes(codec, int(height) + t + b, int(width) + l + r)
    return codec.latent_coder.stream_bounds(LatentShapes(y_shape, z_shape))


def stream_bound(name, n, min_bits) -> StreamBound:
    """A stream of ``n`` symbols needing at least ``min_bits``; at most MAX_BITS_PER_SYMBOL each."""
    return StreamBound(name, int(n), float(min_bits), int(n) * MAX_BITS_PER_SYMBOL // 8 + STREAM_SLACK_BYTES)


def check_streams(codec, header, lengths=None) -> list[StreamBound]:
    """Check the stream count and each stream length of ``header`` against the bounds.

    ``lengths`` defaults to ``header.stream_lengths``. Raises CorruptFileError (count, too short)
    or LimitError (too long). Call after :func:`check_pixels`.
    """
    lengths = tuple(header.stream_lengths if lengths is None else lengths)
    bounds = stream_bounds(codec, header.height, header.width)
    if len(lengths) != len(bounds):
        raise CorruptFileError(f"corrupt file: {len(lengths)} streams, the model codes {len(bounds)}")
    for sb, n in zip(bounds, lengths):
        if 8.0 * n < sb.min_bits - MIN_SLACK_BITS:
            raise CorruptFileError(
                f"corrupt file: the {sb.name} stream has {n} bytes, too short to code the {sb.symbols} symbols "
                f"of a {header.width}x{header.height} image (at least {sb.min_bytes} bytes)"
            )
        if n > sb.max_bytes:
            raise LimitError(
                f"implausible file: the {sb.name} stream has {n} bytes, more than {sb.max_bytes} "
                f"that {sb.symbols} symbols can take"
            )
    return bounds


def check_decode(codec, header, max_pixels: int | None = None) -> list[StreamBound]:
    """Every limit of a parsed header, before decoding: pixels, then stream count and lengths."""
    check_pixels(header.height, header.width, max_pixels, "image")
    return check_streams(codec, header)


def pad_streams(codec, height: int, width: int, streams) -> list[bytes]:
    """Encoder side, constriction streams: zero-pad a stream shorter than its lower bound (it
    decodes identically: the decoder reads zeros past the end). TFC streams are returned as they
    are: TFC writes every byte its range state shifts out and leaves off at most the ≤ 4 bytes of
    its final state, which ``MIN_SLACK_BITS`` covers (and its decoder refuses long zero tails)."""
    if getattr(codec, "coder", "constriction") != "constriction":
        return [bytes(s) for s in streams]
    bounds = stream_bounds(codec, height, width)
    out = []
    for s, sb in zip(streams, bounds):
        s = bytes(s)
        if len(s) < sb.min_bytes:
            s = s + b"\0" * (sb.min_bytes - len(s))
        out.append(s)
    return out + [bytes(s) for s in streams[len(bounds):]]


def check_progressive_size(header, header_size: int, file_size: int):
    """Progressive files (format version 2, FORMAT.md §8): LimitError if the file is longer than
    MAX_ITERATIONS segments of the longest plausible size for its image can be, checked from the
    header before the file is read. (Each segment's own length is checked as it is parsed.)"""
    from . import container

    seg = container.max_segment_bytes(header.height, header.width) + 5 + 4  # varint + payload + CRC
    limit = header_size + container.MAX_ITERATIONS * seg
    if file_size > limit:
        raise LimitError(f"implausible file: {file_size} bytes, more than {limit} that {container.MAX_ITERATIONS} "
                         f"iterations of a {header.width}x{header.height} image can take")
