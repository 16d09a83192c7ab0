"""Fuzzing the decoder with damaged files: truncations, bit flips and header edits.

Every case must end in a documented exception (a ``LicError`` subclass, docs/FORMAT.md §6)
with a one-line message within 2 s; through the ``lic`` command: exit status 1, one line on
stderr, no output (or temporary) file left. ``LIC_FUZZ_CASES`` sets the number of in-process
cases (default 2400; e.g. 100000 for a long run).
"""

from __future__ import annotations

import collections
import os
import struct
import time
import zlib

import numpy as np
import pytest

import test_coding_support as S

from lic_jax.coding import LicError
from lic_jax.coding import container

N_CASES = int(os.environ.get("LIC_FUZZ_CASES", "2400"))
MODELS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018", "lee2019")
TIME_LIMIT = 2.0


def _refix(data: bytes) -> bytes:
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _tfc_installed() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("tensorflow_compression") is not None
    except Exception:
        return False


def _valid_files():
    out = []
    for i, name in enumerate(MODELS):
        codec = S.codec_for(name)
        img = S.kodak_image(13 + i)[: 24 + 8 * i, : 40 + 4 * i]
        out.append((codec, codec.compress(img)))
        if i == 0:
            out.append((codec, codec.compress(S.kodak_image(13)[:30, :30, 0])))  # grey
    return out


def _header_fields(data: bytes) -> dict:
    """Byte positions of the header fields of a valid file."""
    h, size = container.read_header(data)
    pos = 15
    n_h = len(container._varint(h.height))
    n_w = len(container._varint(h.width))
    pixfmt = pos + n_h + n_w
    lam = 4 if h.lmbda is not None else 0
    nstreams = pixfmt + 1 + lam
    return {"magic": range(0, 3), "version": [3], "flags": [4], "model": [5], "fingerprint": range(7, 15),
            "pixfmt": [pixfmt], "nstreams": [nstreams], "lengths": range(nstreams + 1, size), "size": size}


def _cases(files, n, rng):
    """Yield (kind, damaged bytes)."""
    tfc = _tfc_installed()
    kinds = ["truncate", "flip", "header_byte", "forged_field", "append"]
    for k in range(n):
        fi = k % len(files)
        codec, data = files[fi]
        kind = kinds[k % len(kinds)]
        b = bytearray(data)
        f = _header_fields(data)
        if kind == "truncate":
            cut = int(rng.integers(0, len(data)))
            yield kind, fi, bytes(b[:cut])
        elif kind == "flip":  # 1-3 bit flips anywhere (CRC-32 detects them all at these sizes)
            for _ in range(int(rng.integers(1, 4))):
                p = int(rng.integers(0, len(b) * 8))
                b[p // 8] ^= 1 << (p % 8)
            if bytes(b) == data:
                b[0] ^= 1
            yield kind, fi, bytes(b)
        elif kind == "header_byte":  # a header byte replaced, checksum not updated
            p = int(rng.integers(0, f["size"]))
            b[p] = (b[p] + int(rng.integers(1, 256))) % 256
            yield kind, fi, bytes(b)
        elif kind == "append":
            extra = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
            yield kind, fi, bytes(b) + extra if rng.random() < 0.5 else _refix(bytes(b[:-4]) + extra + b"\0\0\0\0")
        else:  # a validated field changed and the checksum recomputed (a deliberate forgery)
            field = ["magic", "version", "flags", "model", "fingerprint", "pixfmt", "nstreams", "lengths"][
                int(rng.integers(0, 8))]
            p = int(rng.choice(list(f[field])))
            if field == "flags":
                choices = [v for v in range(256) if (v & 0xF0) or (v & 0x07) not in (1, 2)]
                if not tfc:
                    choices.append((b[p] & ~0x07) | 2)  # the TFC coder, not installed here
                b[p] = int(rng.choice(choices))
            elif field == "model":
                b[p] = int(rng.choice([v for v in range(1, 256) if v != data[p]]))
            elif field == "pixfmt":
                b[p] = int(rng.choice([v for v in range(256) if (v & 0x0F) not in (1, 3) or (v >> 4) != 7]))
            elif field == "nstreams":
                b[p] = int(rng.choice([v for v in range(256) if v != data[p]]))
            else:
                b[p] = (b[p] + int(rng.integers(1, 256))) % 256
            yield f"forged_{field}", fi, _refix(bytes(b))


def test_fuzz_decoder_in_process():
    files = _valid_files()
    rng = np.random.default_rng(int(os.environ.get("LIC_FUZZ_SEED", "0")))
    outcomes = collections.Counter()
    worst = 0.0
    n = 0
    # every truncation of one file, then random cases
    codec0, data0 = files[1]
    cases = [("truncate_all", 1, data0[:k]) for k in range(len(data0))]
    for kind, fi, bad in cases + list(_cases(files, max(0, N_CASES - len(cases)), rng)):
        codec = files[fi][0]
        t = time.perf_counter()
        with pytest.raises(LicError) as ei:
            codec.decompress(bad)
        dt = time.perf_counter() - t
        worst = max(worst, dt)
        assert dt < TIME_LIMIT, (kind, dt)
        msg = str(ei.value)
        assert msg and "\n" not in msg, (kind, msg)
        outcomes[(kind.split("_")[0], type(ei.value).__name__)] += 1
        n += 1
    assert n >= 2000
    print(f"\n{n} fuzz cases, slowest {worst * 1e3:.1f} ms: " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))


def test_forged_payloads_never_crash():
    """Random payload bytes behind a valid header and checksum (a forgery the CRC cannot catch):
    decoding ends in a documented exception or returns an image — never another exception,
    never a hang."""
    rng = np.random.default_rng(1)
    for codec, data in _valid_files():
        h, streams = container.unpack(data)
        for _ in range(12):
            fake = [rng.integers(0, 256, max(1, len(s) + int(rng.integers(-3, 4))), dtype=np.uint8).tobytes()
                    for s in streams]
            bad = container.pack(h, fake)
            t = time.perf_counter()
            try:
                out = codec.decompress(bad)
                assert out.dtype == np.uint8
            except LicError as e:
                assert "\n" not in str(e)
            assert time.perf_counter() - t < TIME_LIMIT


def test_fuzz_through_the_cli(tmp_path, capsys):
    from lic_jax.cli import main

    d = tmp_path / "m"
    S.make_artifact(d, "bmshj2018-hyperprior")
    from lic_jax.coding import Codec

    codec = Codec.from_artifact(d)
    data = codec.compress(S.kodak_image(22)[:40, :48])
    rng = np.random.default_rng(2)
    files = [(codec, data)]
    cases = list(_cases(files, 40, rng)) + [("truncate", 0, data[:k]) for k in (0, 1, 3, 5, 20, len(data) - 1)]
    for i, (kind, _, bad) in enumerate(cases):
        src = tmp_path / f"c{i}.lic"
        src.write_bytes(bad)
        out = tmp_path / f"c{i}.png"
        t = time.perf_counter()
        rc = main(["decompress", str(src), str(out), "--checkpoint", str(d)])
        assert time.perf_counter() - t < TIME_LIMIT
        err = capsys.readouterr().err
        assert rc == 1 and err.count("\n") == 1 and err.startswith("lic: error:"), (kind, err)
        assert not out.exists()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
