"""The .lic container: layout, overhead, every documented error, the artifact's tables."""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib

import numpy as np
import pytest

import test_coding_support as S

from lic_jax.coding import (
    Codec,
    CoderUnavailableError,
    CorruptFileError,
    LicError,
    ModelMismatchError,
    NotALicFileError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from lic_jax.coding import container
from lic_jax.coding.container import Header, pack, read_header, unpack


def _header(**kw):
    base = dict(coder_id=1, model_id=2, quality=3, fingerprint=bytes(range(8)), height=512, width=768, channels=3)
    base.update(kw)
    return Header(**base)


def _refix_crc(data: bytes) -> bytes:
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def test_pack_unpack_round_trip_and_overhead():
    streams = [b"z" * 300, b"y" * 40000]
    for lmbda in (None, 0.0067):
        h = _header(lmbda=lmbda)
        data = pack(h, streams)
        h2, s2 = unpack(data)
        assert s2 == streams
        assert h2 == dataclasses.replace(h, stream_lengths=(300, 40000), lmbda=None if lmbda is None else
                                         struct.unpack("<f", struct.pack("<f", lmbda))[0])
        overhead = len(data) - sum(map(len, streams))
        assert overhead == (30 if lmbda is None else 34) and overhead <= 40
        assert h2.file_size == len(data)
    # the largest header: max sizes, 8 big streams, λ
    h = _header(height=65535, width=65535, lmbda=1.0)
    streams = [b"a" * 2**21] * 2
    data = pack(h, streams)
    assert len(data) - 2**22 <= 40
    assert data[:3] == b"LIC" and data[3] == 1


def test_invalid_headers_are_refused_when_packing():
    for kw in (dict(coder_id=0), dict(height=0), dict(width=70000), dict(channels=2), dict(fingerprint=b"x")):
        with pytest.raises(ValueError):
            pack(_header(**kw), [b"abc"])
    with pytest.raises(ValueError):
        pack(_header(), [])


def test_every_documented_error():
    data = pack(_header(), [b"zz", b"yyyy"])
    cases = {
        b"": TruncatedFileError,
        b"LI": TruncatedFileError,
        b"PNG\x89": NotALicFileError,
        b"\x89PNG\r\n\x1a\n" + data[8:]: NotALicFileError,
        data[:3] + b"\x03" + data[4:]: UnsupportedVersionError,
        data[:3] + b"\x02" + data[4:]: CorruptFileError,  # read as progressive: its header CRC fails
        data[:10]: TruncatedFileError,
        data[:-1]: TruncatedFileError,
        data + b"\0": CorruptFileError,
        data[:-1] + bytes([data[-1] ^ 1]): CorruptFileError,  # CRC
        data[:20] + bytes([data[20] ^ 0x10]) + data[21:]: CorruptFileError,
    }
    for bad, exc in cases.items():
        with pytest.raises(exc) as ei:
            unpack(bad)
        assert "\n" not in str(ei.value) and isinstance(ei.value, LicError)
    # semantically invalid fields with a valid checksum
    hsize = read_header(data)[1]
    forged = {
        4: [0x00, 0x03, 0x07, 0x11, 0x81],  # flags: coder id 0/3/7, reserved bits
        15 + 4: [0x02, 0x00, 0x0F, 0x12, 0x81],  # pixel format: channels 2/0/15, 16-bit
    }
    for pos, values in forged.items():
        for v in values:
            bad = bytearray(data)
            bad[pos] = v
            with pytest.raises((CorruptFileError, TruncatedFileError)):
                unpack(_refix_crc(bytes(bad)))
    # non-minimal varint height (0x80 0x00 ...) and a zero-stream count
    bad = data[:15] + b"\x80\x00" + data[16:]
    with pytest.raises((CorruptFileError, TruncatedFileError)):
        unpack(_refix_crc(bad))
    assert hsize == len(data) - 6 - 4


def test_codec_level_errors():
    codec = S.codec_for("bmshj2018-hyperprior")
    img = S.kodak_image(2)[:64, :96]
    data = codec.compress(img)
    # other weights → ModelMismatchError naming both fingerprints
    other = S.codec_for("bmshj2018-hyperprior", trained=True)
    with pytest.raises(ModelMismatchError, match=codec.fingerprint8.hex()):
        other.decompress(data)
    # another architecture (forged model id, correct fingerprint)
    bad = bytearray(data)
    bad[5] = container.MODEL_IDS["mbt2018"]
    with pytest.raises(ModelMismatchError):
        codec.decompress(_refix_crc(bytes(bad)))
    # a stream count the model does not use
    h, streams = unpack(data)
    with pytest.raises(CorruptFileError, match="streams"):
        codec.decompress(pack(h, streams + [b"extra"]))
    with pytest.raises(CorruptFileError, match="streams"):
        codec.decompress(pack(h, streams[:1]))
    # the file names a coder that is not installed → names the extra (skip where TFC exists)
    bad = bytearray(data)
    bad[4] = (bad[4] & ~0x07) | 2
    forged = _refix_crc(bytes(bad))
    try:
        import tensorflow_compression  # noqa: F401

        has_tfc = True
    except Exception:
        has_tfc = False
    if not has_tfc:
        with pytest.raises(CoderUnavailableError, match=r"pip install lic_jax\[tfc\]"):
            codec.decompress(forged)
        with pytest.raises(CoderUnavailableError, match=r"pip install lic_jax\[tfc\]"):
            S.codec_for("bmshj2018-factorized", coder="tfc")


def test_header_fields_of_a_real_file():
    codec = S.codec_for("mbt2018", trained=True)
    img = S.kodak_image(4)
    enc = codec.encode(img)
    info = Codec.info(enc.data)
    assert info["model"] == "mbt2018" and info["coder"] == "constriction"
    assert (info["height"], info["width"], info["channels"], info["bit_depth"]) == (768, 512, 3, 8)
    assert info["fingerprint"] == codec.fingerprint[:16]
    env = len(info["environment"]) + 1  # a non-portable file records where it was written (issue 13)
    assert info["file_bytes"] == len(enc.data) and info["container_bytes"] - env <= 40
    assert info["bpp"] == 8 * len(enc.data) / (768 * 512)
    assert info["stream_lengths"] == list(enc.header.stream_lengths)
    assert sum(info["stream_lengths"]) + info["container_bytes"] == len(enc.data)


def test_lambda_field_round_trips():
    model, spec = S.model_and_spec("bmshj2018-factorized")
    codec = Codec(model, spec, S.random_variables("bmshj2018-factorized"), lmbda=0.0130)
    img = S.kodak_image(6)[:32, :48]
    data = codec.compress(img)
    assert Codec.info(data)["lambda"] == pytest.approx(0.0130)
    np.testing.assert_array_equal(codec.decompress(data), S.codec_for("bmshj2018-factorized").decompress(data))


def test_artifact_stores_and_verifies_tables(tmp_path):
    from lic_jax.artifact import ArtifactError, load_artifact
    from lic_jax.coding.tables import build_tables, tables_equal, tables_from_arrays

    name = "lee2019"
    fp = S.make_artifact(tmp_path / "m", name, trained=True)
    art = load_artifact(tmp_path / "m")
    assert art.fingerprint == fp
    assert (tmp_path / "m" / "tables.npz").exists()
    model, _ = S.model_and_spec(name)
    assert tables_equal(tables_from_arrays(art.tables), build_tables(model, art.variables))
    codec = Codec.from_artifact(tmp_path / "m")
    assert codec.fingerprint == fp == S.codec_for(name, trained=True).fingerprint
    img = S.kodak_image(8)[:128, :128]
    np.testing.assert_array_equal(codec.decompress(S.codec_for(name, trained=True).compress(img)),
                                  S.codec_for(name, trained=True).decompress(codec.compress(img)))
    # stale tables → refused on load
    with np.load(tmp_path / "m" / "tables.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["z_cdf"] = arrays["z_cdf"].copy()
    arrays["z_cdf"][0, 1] += 1
    np.savez(tmp_path / "m" / "tables.npz", **arrays)
    with pytest.raises(ArtifactError, match="tables"):
        load_artifact(tmp_path / "m")
    # ... and a Codec given stale tables refuses them too
    art = load_artifact(tmp_path / "m", verify=False)
    with pytest.raises(LicError, match="tables"):
        Codec.from_artifact(art)
    (tmp_path / "m" / "tables.npz").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="tables"):
        load_artifact(tmp_path / "m")
    # config.json records the exact weights
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["fingerprint"] == fp


# ------------------------------------------------------------------------------------------------
# progressive files (format version 2, docs/FORMAT.md §8)
# ------------------------------------------------------------------------------------------------
def _pheader(**kw):
    return dataclasses.replace(_header(**kw), version=container.PROGRESSIVE_VERSION, context_fingerprint=b"C" * 8)


def test_progressive_layout_prefixes_and_errors():
    """Version 2: header + header CRC, then per iteration ``varint length | payload | CRC-32``
    chained from the previous CRC. Every prefix at a segment end unpacks to that many segments;
    every other cut is a one-line TruncatedFileError; a flipped bit is a CorruptFileError (the
    header's or that segment's CRC); appended bytes are a truncated extra segment or a CRC error.
    Broken once: the chain restarted at 0 for each segment (crc32(part) only) → a segment swap
    went undetected by ``swapped`` below, failed."""
    segs = [b"abcd" * 3, b"", b"wxyz" * 40, b"1234"]
    h = _pheader()
    data = container.pack_progressive(h, segs)
    hd, got = unpack(data)
    assert hd.progressive and got == segs and hd.stream_lengths == (12, 0, 160, 4)
    offsets = hd.segment_offsets
    assert offsets[-1] == len(data) and hd.file_size == len(data)
    for k, end in enumerate(offsets, 1):
        hk, gk = unpack(data[:end])
        assert gk == segs[:k]
    hsize = read_header(data)[1]
    for n in range(len(data)):
        if n in offsets:
            continue
        with pytest.raises((TruncatedFileError, CorruptFileError) if n < hsize else TruncatedFileError) as e:
            unpack(data[:n])
        assert "\n" not in str(e.value)
    for pos in range(4, len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x04
        with pytest.raises(LicError) as e:
            unpack(bytes(bad))
        assert "\n" not in str(e.value)
    with pytest.raises(LicError):
        unpack(data + b"\x01")
    # two whole segments swapped (each with its own bytes and CRC): the chain catches it
    a0, a1 = offsets[0], offsets[1]
    swapped = data[:hsize] + data[a0:a1] + data[hsize:a0] + data[a1:]
    with pytest.raises(CorruptFileError, match="CRC-32"):
        unpack(swapped)


def test_progressive_limits_and_packing():
    """Segment lengths above the bound of the image's bits are a LimitError before the payload
    is read; pack_progressive refuses 0 or more than MAX_ITERATIONS segments."""
    from lic_jax.coding.errors import LimitError

    h = _pheader(height=16, width=16)  # 1 position: 32 bits per iteration
    bound = container.max_segment_bytes(16, 16)
    assert bound == 32 * container.SEGMENT_BITS_PER_BIT // 8 + container.SEGMENT_SLACK_BYTES
    ok = container.pack_progressive(h, [b"\0" * bound])
    assert len(unpack(ok)[1][0]) == bound
    too_long = container.pack_progressive(h, [b"\0" * (bound + 1)])
    with pytest.raises(LimitError):
        unpack(too_long[: 40])  # refused from the length alone, before the payload
    with pytest.raises(ValueError):
        container.pack_progressive(h, [])
    with pytest.raises(ValueError):
        container.pack_progressive(h, [b""] * (container.MAX_ITERATIONS + 1))
