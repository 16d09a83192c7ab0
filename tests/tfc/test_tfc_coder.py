"""The 'tfc' entropy coder (tensorflow-compression range coder ops) and cross-coder checks.

Runs in the ``[tfc]`` environment (``.venv-tfc``)::

    nice -n 10 .venv-tfc/bin/python -m pytest -q tests/tfc/test_tfc_coder.py
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require

require("tensorflow_compression")

import test_coding_support as S  # noqa: E402

from lic_jax.coding import Codec, available_backends  # noqa: E402
from lic_jax.coding.backends import MAX_ABS_VALUE, get_backend  # noqa: E402
from lic_jax.coding.tables import gaussian_scale_tables, quantize_pmf  # noqa: E402


def test_both_backends_available():
    assert available_backends() == ["constriction", "tfc"]


def test_tfc_round_trip_with_escapes():
    backend = get_backend("tfc")
    rng = np.random.default_rng(0)
    t = gaussian_scale_tables()
    big = MAX_ABS_VALUE - 1
    for trial in range(30):
        n = int(rng.integers(1, 400))
        idx = rng.integers(0, 64, n)
        v = np.round(rng.normal(0, 1, n) * t.offset[idx] / -6).astype(np.int64)
        if trial % 2:
            lo = t.offset[idx].astype(np.int64)
            hi = lo + t.num_regular[idx] - 1
            ch = np.stack([lo, hi, lo - 1, hi + 1, lo - 1000, hi + 65535, np.full_like(lo, big),
                           np.full_like(lo, -big)], 1)
            v = ch[np.arange(n), np.arange(n) % ch.shape[1]]
        parts = np.split(np.arange(n), np.sort(rng.integers(0, n, 3)))
        enc = backend.encoder(t)
        for p in parts:
            enc.encode(v[p], idx[p])
        data = enc.finish()
        dec = backend.decoder(t, data)
        out = np.concatenate([dec.decode(idx[p]) for p in parts])
        dec.finish()
        np.testing.assert_array_equal(out, v)
        assert len(data) * 8 <= t.ideal_bits(v, idx, backend.overflow_bits) * 1.01 + 64 * 8


def test_quantised_cdfs_are_valid_tfc_lookups():
    """Our 16-bit CDFs are accepted by TFC and behave like TFC's own pmf_to_quantized_cdf."""
    import tensorflow as tf

    from lic_jax.coding.backends import _tfc_ops

    _, ops = _tfc_ops()
    rng = np.random.default_rng(1)
    for _ in range(5):
        pmf = rng.dirichlet(np.ones(40) * 0.3)
        ours = quantize_pmf(pmf)
        theirs = ops.pmf_to_quantized_cdf(tf.constant(pmf, tf.float32), precision=16).numpy()
        assert ours[-1] == theirs[-1] == 65536 and len(ours) == len(theirs)
        q = pmf / pmf.sum()
        h = lambda c: float(-np.sum(q * np.log2(np.diff(c.astype(np.int64)) / 65536.0)))  # noqa: E731
        assert h(ours) <= h(theirs) + 1e-3  # at least as good a code as TFC's own quantiser


@pytest.mark.parametrize("trained", [False, True], ids=["random", "trained"])
@pytest.mark.parametrize("name", S.ALL_MODELS)
def test_round_trip_all_kodak_tfc(name, trained, kodak_dir):
    codec = S.codec_for(name, trained=trained, coder="tfc")
    for i in range(1, 25):
        enc, _ = S.check_round_trip(codec, name, S.kodak_image(i))
        assert Codec.info(enc.data)["coder"] == "tfc"


@pytest.mark.parametrize("name", S.ALL_MODELS)
def test_cross_coder(name):
    """Both coders code the same latents: identical symbols and images, sizes within 1 % (+ a few
    bytes of termination); each file decodes with either Codec (the header picks the coder)."""
    c_con = S.codec_for(name, trained=True, coder="constriction")
    c_tfc = S.codec_for(name, trained=True, coder="tfc")
    for i in (2, 19):
        img = S.kodak_image(i)[:256, :384]
        a, b = c_con.encode(img), c_tfc.encode(img)
        np.testing.assert_array_equal(a.latents.y_symbols, b.latents.y_symbols)
        np.testing.assert_array_equal(a.latents.y_hat, b.latents.y_hat)
        assert abs(len(a.data) - len(b.data)) <= 0.01 * len(a.data) + 16
        assert a.ideal_bits > 0 and b.data[4] & 7 == 2 and a.data[4] & 7 == 1
        for data in (a.data, b.data):
            x1 = c_con.decompress(data)
            x2 = c_tfc.decompress(data)
            np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(c_con.decompress(a.data), c_con.decompress(b.data))


def test_variable_rate_files_with_the_tfc_coder():
    """The shipped variable-rate model (mae-bls2017) through the TFC coder at λ inside, between and
    beyond its trained set: λ in the header, exact round trip, the same latents as constriction,
    and either coder's file decodes with either Codec."""
    import os

    from lic_jax.artifact import load_artifact

    art = load_artifact(os.path.join(S.REPO, "lic_jax", "assets", "models", "mae-bls2017"))
    c_tfc = Codec.from_artifact(art, coder="tfc")
    c_con = Codec.from_artifact(art, coder="constriction")
    img = S.kodak_image(23)[:256, :384]
    lo, hi = c_tfc.lmbda_range
    sizes = []
    for lam in (lo, (lo * hi) ** 0.5, hi, 2 * hi):
        a, b = c_con.encode(img, lam), c_tfc.encode(img, lam)
        assert Codec.info(b.data)["coder"] == "tfc" and b.header.lmbda == float(np.float32(lam))
        np.testing.assert_array_equal(a.latents.y_symbols, b.latents.y_symbols)
        rec, lat, h = c_tfc.decode(b.data)
        np.testing.assert_array_equal(lat.y_symbols, b.latents.y_symbols)
        np.testing.assert_array_equal(rec, c_tfc.reconstruct(b.latents.y_hat, 256, 384, lmbda=lam))
        np.testing.assert_array_equal(c_con.decompress(b.data), rec)
        np.testing.assert_array_equal(c_tfc.decompress(a.data), c_con.decompress(a.data))
        assert 8 * b.payload_bytes <= max(b.ideal_bits * 1.01, b.ideal_bits + 64 * 8)
        sizes.append(len(b.data))
    assert sizes == sorted(sizes) and sizes[0] < sizes[2]  # the rate grows with λ
