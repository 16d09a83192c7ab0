"""Structure-aware fuzzing of ``.lic`` decoding (docs/FORMAT.md §6, "Fuzzing").

A *mutation* takes a valid file, changes what sits behind the header's checks — stream payloads,
the split of the payload into streams, the image sides, λ, the pixel format, the model id or
fingerprint, the coder id — and re-packs it with a valid CRC-32, so that the case passes the
length and checksum checks and exercises the decoder proper. :func:`run_case` decodes one case
and classifies the outcome; a case counts as *reaching the entropy decoder* when a decoder
session was opened on a stream (the ``stats`` of ``Codec.decode``).

Everything is a pure function of its inputs and an explicit ``numpy.random.Generator``.
Used by ``tests/test_fuzz.py``, ``tests/tfc/test_tfc_fuzz.py`` and ``benchmarks/fuzz_long.py``.
"""

from __future__ import annotations

import dataclasses
import struct
import time

import numpy as np

from . import container
from .errors import LicError

__all__ = ["MUTATIONS", "PROGRESSIVE_MUTATIONS", "DOCUMENTED", "mutate", "run_case", "campaign", "CaseResult"]

MUTATIONS = (
    "payload_flip",  # 1-8 bit flips inside one stream
    "payload_bytes",  # 1-16 random byte overwrites inside one stream
    "payload_random",  # a stream replaced by random bytes of about the same length
    "payload_zero",  # a stream replaced by zero bytes (what the decoder also reads past the end)
    "payload_truncate",  # a stream cut short
    "payload_extend",  # random or zero bytes appended to a stream
    "stream_split",  # the boundary between the streams moved (same payload bytes)
    "stream_swap",  # the streams in the other order
    "sides_same_pad",  # other sides with the same padded size (same latent shapes, other crop)
    "sides_other",  # other sides: smaller, larger, huge
    "lmbda",  # λ added, removed or changed (0, negative, NaN, inf, tiny, huge, random)
    "pixel_format",  # grey <-> RGB
    "model_id",  # another architecture id (0 = unlisted, unknown ids)
    "fingerprint",  # other weights
    "coder",  # the other coder decodes this coder's stream
)
# progressive files (format version 2, FORMAT.md §8): the streams above are the iterations' segments
# (re-packed with valid chained CRCs), plus
PROGRESSIVE_MUTATIONS = MUTATIONS + (
    "segment_drop",  # one iteration's segment removed (the next one then decodes against other bits)
    "segment_duplicate",  # one segment repeated
    "context_fingerprint",  # another bit context model
)


def _streams_of(data: bytes):
    h, streams = container.unpack(data)
    return h, [bytearray(s) for s in streams]


def _pick_stream(rng, streams) -> int:
    return int(rng.integers(0, len(streams)))


def _sides_same_pad(rng, h: int, w: int, multiple: int):
    """Random sides whose padded size (next multiple of ``multiple``) equals that of (h, w)."""
    hp, wp = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    return int(rng.integers(hp - multiple + 1, hp + 1)), int(rng.integers(wp - multiple + 1, wp + 1))


def mutate(data: bytes, rng: np.random.Generator, kind: str | None = None, multiple: int = 64,
           other_coder: int | None = None) -> tuple[str, bytes]:
    """(kind, forged file with a valid CRC) from a valid ``.lic`` file.

    ``multiple``: the model's padding multiple (for ``sides_same_pad``); ``other_coder``: the coder
    id ``coder`` switches to (default: the other of 1 and 2).
    """
    kind = kind or MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
    h, streams = _streams_of(data)
    hdr = h
    if kind == "payload_flip":
        s = streams[_pick_stream(rng, streams)]
        for _ in range(int(rng.integers(1, 9))):
            if s:
                p = int(rng.integers(0, 8 * len(s)))
                s[p // 8] ^= 1 << (p % 8)
    elif kind == "payload_bytes":
        s = streams[_pick_stream(rng, streams)]
        for _ in range(int(rng.integers(1, 17))):
            if s:
                s[int(rng.integers(0, len(s)))] = int(rng.integers(0, 256))
    elif kind == "payload_random":
        i = _pick_stream(rng, streams)
        n = max(0, len(streams[i]) + int(rng.integers(-4, 5)))
        streams[i] = bytearray(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    elif kind == "payload_zero":
        i = _pick_stream(rng, streams)
        streams[i] = bytearray(len(streams[i]))
    elif kind == "payload_truncate":
        i = _pick_stream(rng, streams)
        streams[i] = streams[i][: int(rng.integers(0, max(1, len(streams[i]))))]
    elif kind == "payload_extend":
        i = _pick_stream(rng, streams)
        n = int(rng.integers(1, 65))
        streams[i] += bytes(n) if rng.random() < 0.5 else rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif kind == "stream_split":
        if len(streams) > 1:
            joined = b"".join(streams[:2])
            cut = int(rng.integers(0, len(joined) + 1))
            streams[:2] = [bytearray(joined[:cut]), bytearray(joined[cut:])]
        else:  # one stream: split it in two (a stream count the model does not use)
            s = bytes(streams[0])
            cut = int(rng.integers(0, len(s) + 1))
            streams = [bytearray(s[:cut]), bytearray(s[cut:])]
    elif kind == "stream_swap":
        if len(streams) > 1:
            streams[0], streams[1] = streams[1], streams[0]
        else:
            streams = [streams[0], bytearray(streams[0])]
    elif kind == "sides_same_pad":
        H, W = _sides_same_pad(rng, h.height, h.width, multiple)
        hdr = dataclasses.replace(h, height=H, width=W)
    elif kind == "sides_other":
        choice = int(rng.integers(0, 5))
        if choice == 0:  # smaller
            H, W = max(1, h.height // 2), max(1, h.width // 2)
        elif choice == 1:  # larger
            H, W = min(container.MAX_SIDE, 2 * h.height), min(container.MAX_SIDE, 2 * h.width)
        elif choice == 2:  # huge
            H, W = container.MAX_SIDE, container.MAX_SIDE
        elif choice == 3:  # one side only
            H, W = h.height, int(rng.integers(1, container.MAX_SIDE + 1))
        else:  # tiny
            H, W = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        hdr = dataclasses.replace(h, height=H, width=W)
    elif kind == "lmbda":
        vals = [None, 0.0, -0.01, float("nan"), float("inf"), 1e-30, 1e30, float(rng.uniform(1e-4, 0.2))]
        v = vals[int(rng.integers(0, len(vals)))]
        hdr = dataclasses.replace(h, lmbda=v)
    elif kind == "pixel_format":
        hdr = dataclasses.replace(h, channels=1 if h.channels == 3 else 3)
    elif kind == "model_id":
        ids = [v for v in range(0, 12) if v != h.model_id] + [255]
        hdr = dataclasses.replace(h, model_id=int(ids[int(rng.integers(0, len(ids)))]))
    elif kind == "fingerprint":
        fp = bytearray(h.fingerprint)
        fp[int(rng.integers(0, 8))] ^= 1 << int(rng.integers(0, 8))
        hdr = dataclasses.replace(h, fingerprint=bytes(fp))
    elif kind == "segment_drop":
        if len(streams) > 1:
            del streams[_pick_stream(rng, streams)]
    elif kind == "segment_duplicate":
        i = _pick_stream(rng, streams)
        streams.insert(i, bytearray(streams[i]))
    elif kind == "context_fingerprint":
        if not h.progressive:
            raise ValueError("context_fingerprint: only progressive files have one")
        fp = bytearray(h.context_fingerprint)
        fp[int(rng.integers(0, 8))] ^= 1 << int(rng.integers(0, 8))
        hdr = dataclasses.replace(h, context_fingerprint=bytes(fp))
    elif kind == "coder":
        other = other_coder if other_coder is not None else (2 if h.coder_id == 1 else 1)
        hdr = dataclasses.replace(h, coder_id=other)
    else:
        raise ValueError(f"unknown mutation {kind!r}")
    return kind, _pack_raw(hdr, [bytes(s) for s in streams])


def _pack_raw(h: container.Header, streams) -> bytes:
    """container.pack without its field validation for λ (NaN/inf/≤ 0 must reach the reader)."""
    if h.progressive:
        return _pack_progressive_raw(h, streams)
    if h.lmbda is not None and not np.isfinite(h.lmbda):
        body = container.pack(dataclasses.replace(h, lmbda=1.0), streams)[:-4]
        pos = body.index(struct.pack("<f", 1.0), 15)
        body = body[:pos] + struct.pack("<f", h.lmbda) + body[pos + 4:]
        import zlib

        return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    return container.pack(h, streams)


def _pack_progressive_raw(h: container.Header, segments) -> bytes:
    """container.pack_progressive with valid header and segment CRCs, a non-finite λ allowed, and
    at most MAX_ITERATIONS segments kept (more is a packing error, not a forgery)."""
    import zlib

    segments = [bytes(s) for s in segments][: container.MAX_ITERATIONS] or [b""]
    lam = h.lmbda
    data = container.pack_progressive(dataclasses.replace(h, lmbda=1.0) if lam is not None else h, segments)
    hd, hsize = container.read_header(data)
    head = bytearray(data[: hsize - 4])
    if lam is not None:
        pos = head.index(struct.pack("<f", 1.0), 15)
        head[pos:pos + 4] = struct.pack("<f", lam)
    crc = zlib.crc32(bytes(head)) & 0xFFFFFFFF
    out = bytearray(head) + struct.pack("<I", crc)
    for s in segments:
        part = container._varint(len(s)) + s
        crc = zlib.crc32(part, crc) & 0xFFFFFFFF
        out += part + struct.pack("<I", crc)
    return bytes(out)


@dataclasses.dataclass
class CaseResult:
    kind: str
    outcome: str  # 'image' or the LicError subclass name
    reached_decoder: bool
    seconds: float
    message: str = ""
    shape: tuple | None = None  # of the decoded image


# the outcomes a case may have: an image, or one of the documented errors (docs/FORMAT.md §6)
DOCUMENTED = ("image", "CorruptFileError", "LimitError", "ModelMismatchError", "CoderUnavailableError",
              "TruncatedFileError")


def run_case(codec, kind: str, data: bytes, max_pixels: int | None = None) -> CaseResult:
    """Decode one case with ``codec``; a LicError is an expected outcome, anything else propagates
    (a fuzz failure). ``reached_decoder``: an entropy-decoder session was opened on a stream."""
    t = time.perf_counter()
    shape = None
    stats: dict = {}
    try:
        img = codec.decode(data, max_pixels=max_pixels, stats=stats).image
        outcome, msg, shape = "image", f"{img.shape} {img.dtype}", tuple(img.shape)
        if img.dtype != np.uint8:
            raise AssertionError(f"decoded image has dtype {img.dtype}")
    except LicError as e:
        outcome, msg = type(e).__name__, str(e)
    dt = time.perf_counter() - t
    reached = stats.get("coder_s", 0.0) > 0.0 or stats.get("symbols", 0) > 0
    return CaseResult(kind, outcome, reached, dt, msg, shape)


def _padded(h, multiple):
    return (-(-h.height // multiple) * multiple, -(-h.width // multiple) * multiple)


def campaign(files, n_cases: int | None, rng: np.random.Generator, n_reach: int | None = None,
             time_limit: float = 2.0, max_pixels: int | None = None, kinds=MUTATIONS, on_case=None,
             seen: set | None = None) -> dict:
    """Run mutated cases round-robin over ``files`` = [(label, codec, valid file bytes)] until
    ``n_cases`` cases ran or ``n_reach`` of them reached an entropy decoder (whichever is given;
    both: whichever comes first). Checks every case: an image of the header's size (uint8) or a
    documented LicError with a one-line message, in < ``time_limit`` s unless the case is the
    first to run the decoder path or the synthesis at a new padded size for its model (then
    XLA compiles: reported as ``cold``).
    Any other exception propagates. ``seen``: the (label, padded size) pairs already decoded
    (kept across calls when a long run is split into chunks). Returns a JSON-able summary."""
    import collections
    import resource

    outcomes = collections.Counter()
    by_model = collections.Counter()
    # compiled (label, padded size) pairs: 'dec' once the entropy-decoder path (hyper-synthesis,
    # wavefront steps) ran for that size, 'img' once the synthesis did
    seen = set() if seen is None else seen
    n = reached = n_cold = 0
    slowest = {"seconds": 0.0}
    slowest_cold = {"seconds": 0.0}
    failures = []
    t0 = time.perf_counter()
    while (n_cases is None or n < n_cases) and (n_reach is None or reached < n_reach):
        label, codec, data = files[n % len(files)]
        kind, bad = mutate(data, rng, kinds[int(rng.integers(0, len(kinds)))], multiple=codec.downsampling)
        h, _ = container.read_header(bad)
        key = (label, _padded(h, codec.downsampling))
        r = run_case(codec, kind, bad, max_pixels)
        cold = (r.reached_decoder and key + ("dec",) not in seen) or (r.outcome == "image"
                                                                       and key + ("img",) not in seen)
        n += 1
        if r.reached_decoder:
            seen.add(key + ("dec",))
        if r.outcome == "image":
            seen.add(key + ("img",))
            want = (h.height, h.width) + ((3,) if h.channels == 3 else ())
            if r.shape != want:
                failures.append(f"{label} {kind}: image {r.shape}, header says {want}")
        if r.outcome not in DOCUMENTED or "\n" in r.message:
            failures.append(f"{label} {kind}: {r.outcome}: {r.message!r}")
        reached += r.reached_decoder
        by_model[label] += r.reached_decoder
        outcomes[f"{kind}:{r.outcome}"] += 1
        info = {"seconds": round(r.seconds, 4), "model": label, "kind": kind, "outcome": r.outcome,
                "reached_decoder": r.reached_decoder}
        if cold:
            n_cold += 1
            if r.seconds > slowest_cold["seconds"]:
                slowest_cold = info
        else:
            if r.seconds > slowest["seconds"]:
                slowest = info
            if r.seconds >= time_limit:
                failures.append(f"{label} {kind}: {r.seconds:.2f} s (limit {time_limit} s)")
        if on_case is not None:
            on_case(r)
    return {
        "cases": n,
        "reached_decoder": reached,
        "reached_decoder_by_model": dict(by_model),
        "outcomes": dict(sorted(outcomes.items())),
        "slowest_case": slowest,
        "slowest_cold_case": slowest_cold,
        "cold_cases": n_cold,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "failures": failures[:20],
        "n_failures": len(failures),
    }
