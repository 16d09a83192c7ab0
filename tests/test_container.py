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
        data[:3] + b"\x02" + data[4:]: UnsupportedVersionError,
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
