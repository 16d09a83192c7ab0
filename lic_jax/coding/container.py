"""The ``.lic`` container (format version 1): header, streams, CRC-32. Spec: docs/FORMAT.md.

Layout (all integers little-endian; ``varint`` = unsigned LEB128, minimal length)::

    magic        3 bytes  b"LIC"
    version      u8       1
    flags        u8       bits 0-2 coder id (1 constriction, 2 tfc), bit 3 λ present,
                          bits 4-5 decoder (index into the model's decoders; 0 = default),
                          bit 6 environment present, bit 7 zero
    model id     u8       architecture (the registry's ModelRecord.model_id; 0 = none, read only)
    quality      u8       0 = none / custom hyper-parameters
    fingerprint  8 bytes  first 8 bytes of the SHA-256 of the exact weights (params.msgpack)
    height       varint   1 … 65535 (unpadded image)
    width        varint   1 … 65535
    pixel format u8       low nibble channels (1 = grey, 3 = RGB), high nibble bit depth − 1
    λ            f32      only if flags bit 3 (variable-rate models)
    environment  u8 n + n bytes  only if flags bit 6: printable ASCII (1 … 64), where a non-portable
                          file was written (jax / jaxlib version, CPU family; FORMAT.md §7)
    n_streams    u8       1 … 8
    lengths      n × varint  byte length of each stream
    streams      the streams, concatenated
    crc32        u32      CRC-32 (zlib / PNG polynomial) of every preceding byte

Overhead for a Kodak image with a hyperprior model: 30 bytes (≤ 40 with the λ field).
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

from ..models import registry as _registry
from .errors import CorruptFileError, NotALicFileError, TruncatedFileError, UnsupportedVersionError

__all__ = ["MAGIC", "FORMAT_VERSION", "MODEL_IDS", "MODEL_NAMES", "Header", "pack", "unpack", "read_header",
           "MAX_SIDE", "MAX_STREAMS", "MAX_HEADER_SIZE", "check_declared_size", "PROGRESSIVE_VERSION",
           "MAX_ITERATIONS", "pack_progressive", "unpack_progressive", "progressive_bits", "max_segment_bytes"]

MAGIC = b"LIC"
FORMAT_VERSION = 1
PROGRESSIVE_VERSION = 2  # progressive files (docs/FORMAT.md §8): per-iteration segments
PROGRESSIVE_BLOCK, PROGRESSIVE_BITS = 16, 32  # one position per 16×16 block, 32 bits per position and iteration
MAX_ITERATIONS = 64
# worst-case bits per coded bit: the context model's probabilities are ≥ 2⁻¹⁶ (range-coder rounding: +1)
SEGMENT_BITS_PER_BIT = 17
SEGMENT_SLACK_BYTES = 64
MAX_SIDE = 65535
MAX_STREAMS = 8
MAX_ENVIRONMENT = 64
# magic 3, version, flags, model, quality, fingerprint 8, sides 2 × 3, pixel format, λ 4, environment 1 + 64,
# count, 8 × 5 lengths
MAX_HEADER_SIZE = 3 + 4 + 8 + 6 + 1 + 4 + 1 + MAX_ENVIRONMENT + 1 + MAX_STREAMS * 5
# architecture ids: one per registered model (lic_jax.models.registry.ModelRecord.model_id)
MODEL_IDS = _registry.MODEL_IDS  # live read-only views: a model added by registry.register() is seen here
MODEL_NAMES = _registry.MODEL_NAMES
CODER_IDS = (1, 2)
_LAMBDA_FLAG = 0x08
_DECODER_SHIFT, MAX_DECODER = 4, 3  # flags bits 4-5: the decoder the file asks for
_ENV_FLAG = 0x40
_RESERVED_FLAGS = 0x80


@dataclasses.dataclass(frozen=True)
class Header:
    coder_id: int
    model_id: int
    quality: int
    fingerprint: bytes  # 8 bytes
    height: int
    width: int
    channels: int
    bit_depth: int = 8
    lmbda: float | None = None
    stream_lengths: tuple = ()
    version: int = FORMAT_VERSION
    decoder: int = 0  # index into the model record's decoders (0: its default synthesis)
    environment: str | None = None  # where a non-portable file was written (FORMAT.md §7)
    context_fingerprint: bytes | None = None  # progressive files (version 2): the bit context model's

    @property
    def progressive(self) -> bool:
        return self.version == PROGRESSIVE_VERSION

    @property
    def model_name(self) -> str:
        name = _registry.name_for_id(self.model_id)
        return name if name is not None else ("unlisted" if self.model_id == 0 else f"unknown({self.model_id})")

    @property
    def header_size(self) -> int:
        return len(_pack_header(self))

    @property
    def file_size(self) -> int:
        if self.progressive:
            return self.header_size + sum(len(_varint(n)) + n + 4 for n in self.stream_lengths)
        return self.header_size + sum(self.stream_lengths) + 4

    @property
    def segment_offsets(self) -> tuple:
        """Progressive files: the byte offset where each iteration's segment ends (a valid cut)."""
        out, p = [], self.header_size
        for n in self.stream_lengths:
            p += len(_varint(n)) + n + 4
            out.append(p)
        return tuple(out)


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise TruncatedFileError(f"file is truncated: it ends inside the header ({what})")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str, max_bytes: int = 5) -> int:
        value, shift = 0, 0
        for i in range(max_bytes):
            b = self.u8(what)
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise CorruptFileError(f"corrupt header: non-minimal varint in {what}")
                return value
        raise CorruptFileError(f"corrupt header: {what} field too long")


def _pack_prefix(h: Header, version: int) -> bytes:
    """The fields both versions share: magic … environment."""
    if h.coder_id not in CODER_IDS:
        raise ValueError(f"invalid coder id {h.coder_id}")
    if not (0 <= h.model_id <= 255 and 0 <= h.quality <= 255):
        raise ValueError("model id and quality must fit a byte")
    if len(h.fingerprint) != 8:
        raise ValueError("fingerprint must be 8 bytes")
    if not (1 <= h.height <= MAX_SIDE and 1 <= h.width <= MAX_SIDE):
        raise ValueError(f"image sides must be 1 … {MAX_SIDE}, got {h.height}×{h.width}")
    if h.channels not in (1, 3) or not 1 <= h.bit_depth <= 16:
        raise ValueError("channels must be 1 or 3, bit depth 1 … 16")
    if not 0 <= h.decoder <= MAX_DECODER:
        raise ValueError(f"decoder index must be 0 … {MAX_DECODER}")
    env = None if h.environment is None else _check_environment(h.environment.encode("ascii", "replace"), ValueError)
    flags = (h.coder_id | (_LAMBDA_FLAG if h.lmbda is not None else 0) | (h.decoder << _DECODER_SHIFT)
             | (_ENV_FLAG if env is not None else 0))
    out = bytearray(MAGIC)
    out += bytes([version, flags, h.model_id, h.quality])
    out += h.fingerprint
    out += _varint(h.height) + _varint(h.width)
    out.append((h.channels & 0x0F) | ((h.bit_depth - 1) << 4))
    if h.lmbda is not None:
        out += struct.pack("<f", float(h.lmbda))
    if env is not None:
        out.append(len(env))
        out += env
    return bytes(out)


def _pack_header(h: Header) -> bytes:
    if h.version == PROGRESSIVE_VERSION:
        if h.context_fingerprint is None or len(h.context_fingerprint) != 8:
            raise ValueError("a progressive header needs an 8-byte context-model fingerprint")
        body = _pack_prefix(h, PROGRESSIVE_VERSION) + bytes(h.context_fingerprint)
        return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    if not 1 <= len(h.stream_lengths) <= MAX_STREAMS:
        raise ValueError(f"1 … {MAX_STREAMS} streams")
    out = bytearray(_pack_prefix(h, FORMAT_VERSION))
    out.append(len(h.stream_lengths))
    for n in h.stream_lengths:
        out += _varint(int(n))
    return bytes(out)


def pack(header: Header, streams) -> bytes:
    """Header (stream lengths taken from ``streams``) + streams + CRC-32."""
    streams = [bytes(s) for s in streams]
    header = dataclasses.replace(header, stream_lengths=tuple(len(s) for s in streams))
    body = _pack_header(header) + b"".join(streams)
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def read_header(data: bytes) -> tuple[Header, int]:
    """Parse and validate the header only (no length / checksum checks): (header, header size)."""
    data = bytes(data)
    if len(data) == 0:
        raise TruncatedFileError("file is empty")
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data):
            raise TruncatedFileError("file is truncated: it ends inside the magic bytes")
        raise NotALicFileError("not a .lic file (bad magic bytes)")
    if data[: len(MAGIC)] != MAGIC:
        raise NotALicFileError("not a .lic file (bad magic bytes)")
    r = _Reader(data)
    r.pos = len(MAGIC)
    version = r.u8("version")
    if version not in (FORMAT_VERSION, PROGRESSIVE_VERSION):
        raise UnsupportedVersionError(
            f"unsupported .lic format version {version} (this lic_jax reads versions {FORMAT_VERSION} and "
            f"{PROGRESSIVE_VERSION})"
        )
    flags = r.u8("flags")
    model_id = r.u8("model id")
    quality = r.u8("quality")
    fp = r.take(8, "fingerprint")
    height = r.varint("height", 3)
    width = r.varint("width", 3)
    pixfmt = r.u8("pixel format")
    lmbda = struct.unpack("<f", r.take(4, "lambda"))[0] if flags & _LAMBDA_FLAG else None
    env = None
    if flags & _ENV_FLAG:
        env = _check_environment(r.take(r.u8("environment length"), "environment"), CorruptFileError).decode("ascii")
    ctx_fp = None
    if version == PROGRESSIVE_VERSION:
        ctx_fp = r.take(8, "context fingerprint")
        end = r.pos
        crc = struct.unpack("<I", r.take(4, "header CRC-32"))[0]
        if zlib.crc32(data[:end]) & 0xFFFFFFFF != crc:
            raise CorruptFileError("corrupt file: header CRC-32 checksum mismatch")
        lengths = ()
    else:
        n_streams = r.u8("stream count")
        if not 1 <= n_streams <= MAX_STREAMS:
            raise CorruptFileError(f"corrupt header: {n_streams} streams")
        lengths = tuple(r.varint("stream length") for _ in range(n_streams))
    header = Header(
        coder_id=flags & 0x07,
        model_id=model_id,
        quality=quality,
        fingerprint=fp,
        height=height,
        width=width,
        channels=pixfmt & 0x0F,
        bit_depth=(pixfmt >> 4) + 1,
        lmbda=lmbda,
        stream_lengths=lengths,
        version=version,
        decoder=(flags >> _DECODER_SHIFT) & MAX_DECODER,
        environment=env,
        context_fingerprint=ctx_fp,
    )
    return header, r.pos


def _check_environment(b: bytes, error) -> bytes:
    if not 1 <= len(b) <= MAX_ENVIRONMENT or not all(32 <= c < 127 for c in b):
        raise error(f"corrupt header: the environment field must be 1 … {MAX_ENVIRONMENT} printable ASCII bytes")
    return b


def _validate(h: Header):
    if h.coder_id not in CODER_IDS:
        raise CorruptFileError(f"corrupt header: unknown coder id {h.coder_id}")
    if not (1 <= h.height <= MAX_SIDE and 1 <= h.width <= MAX_SIDE):
        raise CorruptFileError(f"corrupt header: image size {h.height}×{h.width}")
    if h.channels not in (1, 3):
        raise CorruptFileError(f"corrupt header: {h.channels} channels")
    if h.bit_depth != 8:
        raise CorruptFileError(f"corrupt header: unsupported bit depth {h.bit_depth}")
    if h.lmbda is not None and not (h.lmbda == h.lmbda and abs(h.lmbda) != float("inf")):
        raise CorruptFileError("corrupt header: λ is not finite")
    if h.decoder:
        name = _registry.name_for_id(h.model_id)
        n = len(_registry.record(name).decoders) if name is not None else 1
        if h.decoder >= n:
            raise CorruptFileError(f"corrupt header: decoder {h.decoder}, the model has {n}")


def check_declared_size(header: Header, header_size: int, file_size: int):
    """The file size the header declares (header + streams + CRC) against the actual one."""
    expected = header_size + sum(header.stream_lengths) + 4
    if file_size < expected:
        raise TruncatedFileError(f"file is truncated or corrupt: the header declares {expected} bytes, the file has {file_size}")
    if file_size > expected:
        raise CorruptFileError(f"corrupt file: {file_size - expected} unexpected bytes after the declared end")


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """Parse a whole file: checks magic, version, length, CRC-32 and every header field.

    Raises NotALicFileError, UnsupportedVersionError, TruncatedFileError or CorruptFileError.
    """
    data = bytes(data)
    header, pos = read_header(data)
    if header.progressive:
        return unpack_progressive(data, header, pos)
    flags = data[4]
    check_declared_size(header, pos, len(data))
    body, crc = data[:-4], struct.unpack("<I", data[-4:])[0]
    if zlib.crc32(body) & 0xFFFFFFFF != crc:
        raise CorruptFileError("corrupt file: CRC-32 checksum mismatch")
    if flags & _RESERVED_FLAGS:
        raise CorruptFileError("corrupt header: reserved flag bits set")
    _validate(header)
    streams, p = [], pos
    for n in header.stream_lengths:
        streams.append(data[p : p + n])
        p += n
    return header, streams


# ------------------------------------------------------------------------------------------------
# progressive files (version 2, docs/FORMAT.md §8)
# ------------------------------------------------------------------------------------------------
def progressive_bits(height: int, width: int) -> int:
    """Coded bits per iteration of an image (padded up to multiples of 16)."""
    b = PROGRESSIVE_BLOCK
    return -(-int(height) // b) * -(-int(width) // b) * PROGRESSIVE_BITS


def max_segment_bytes(height: int, width: int) -> int:
    """Longest plausible segment payload: SEGMENT_BITS_PER_BIT per coded bit + slack."""
    return progressive_bits(height, width) * SEGMENT_BITS_PER_BIT // 8 + SEGMENT_SLACK_BYTES


def pack_progressive(header: Header, segments) -> bytes:
    """Version-2 file: header (with its CRC-32) + one segment per iteration, each
    ``varint length | payload | CRC-32`` where the CRC chains from the previous segment's
    (the header's for iteration 1), so every prefix that ends at a segment is verifiable."""
    segments = [bytes(s) for s in segments]
    if not 1 <= len(segments) <= MAX_ITERATIONS:
        raise ValueError(f"1 … {MAX_ITERATIONS} iterations")
    header = dataclasses.replace(header, version=PROGRESSIVE_VERSION, stream_lengths=())
    out = bytearray(_pack_header(header))
    crc = struct.unpack("<I", out[-4:])[0]
    for s in segments:
        part = _varint(len(s)) + s
        crc = zlib.crc32(part, crc) & 0xFFFFFFFF
        out += part + struct.pack("<I", crc)
    return bytes(out)


def unpack_progressive(data: bytes, header: Header | None = None, pos: int | None = None,
                       iterations: int | None = None) -> tuple[Header, list[bytes]]:
    """(header with ``stream_lengths`` = segment lengths, segments) of a version-2 file or of any
    prefix of it that ends at an iteration boundary; ``iterations``: stop after that many.

    Checks: header CRC, each segment's length bound (before reading it), its chained CRC-32, at
    most MAX_ITERATIONS segments. A file that ends inside a segment is a TruncatedFileError that
    names the valid cut offsets; a file with no complete segment is one too."""
    from .errors import LimitError

    data = bytes(data)
    if header is None:
        header, pos = read_header(data)
    if not header.progressive:
        raise CorruptFileError("not a progressive .lic file (format version 1)")
    if data[4] & _RESERVED_FLAGS:
        raise CorruptFileError("corrupt header: reserved flag bits set")
    _validate(header)
    bound = max_segment_bytes(header.height, header.width)
    crc = struct.unpack("<I", data[pos - 4:pos])[0]
    segments, ends, p = [], [], pos
    while p < len(data) and (iterations is None or len(segments) < iterations):
        t = len(segments) + 1
        if t > MAX_ITERATIONS:
            raise LimitError(f"implausible file: more than {MAX_ITERATIONS} iterations")
        r = _Reader(data)
        r.pos = p
        try:
            n = r.varint(f"iteration {t}'s segment length")
        except TruncatedFileError:
            n = None
        if n is not None and n > bound:
            raise LimitError(f"implausible file: iteration {t}'s segment declares {n} bytes, more than {bound} "
                             f"that {progressive_bits(header.height, header.width)} bits can take")
        if n is None or r.pos + n + 4 > len(data):
            cuts = ", ".join(str(e) for e in ([pos] + ends)[-4:])
            raise TruncatedFileError(
                f"progressive file is cut inside iteration {t} (it ends at byte {len(data)}); a progressive file "
                f"can be cut only at iteration boundaries (the last valid ends: bytes {cuts})"
            )
        end = r.pos + n
        crc = zlib.crc32(data[p:end], crc) & 0xFFFFFFFF
        if struct.unpack("<I", data[end:end + 4])[0] != crc:
            raise CorruptFileError(f"corrupt file: CRC-32 checksum mismatch in iteration {t}'s segment")
        segments.append(data[r.pos:end])
        p = end + 4
        ends.append(p)
    if not segments:
        raise TruncatedFileError("progressive file holds no complete iteration (it ends after the header)")
    header = dataclasses.replace(header, stream_lengths=tuple(len(s) for s in segments))
    return header, segments
