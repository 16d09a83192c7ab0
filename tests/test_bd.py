"""BD-rate / BD-PSNR and AUC: synthetic curves with known answers, the anchor files, error cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lic_jax.evaluation import bd
from lic_jax.evaluation.anchors import load_anchor
from lic_jax.evaluation.bd import BDError, NonMonotoneCurveError, NoOverlapError, auc, bd_quality, bd_rate
from lic_jax.evaluation.results import load_curve

METHODS = ("pchip", "cubic")


# ------------------------------------------------------------------ synthetic curves, known answers


@pytest.mark.parametrize("method", METHODS)
def test_rate_scaled_curve_gives_exact_bd_rate(method):
    # Any curve shape: the test curve needs k times the anchor's rate at every quality point, so
    # log10 R_B(Q) = log10 R_A(Q) + log10 k exactly and BD-rate = (k − 1)·100 % for both interpolants.
    q = np.array([26.0, 28.3, 31.1, 33.0, 35.7, 38.2, 40.9])
    ra = 0.05 * np.exp(0.21 * q + 0.002 * (q - 30.0) ** 2)
    for k in (0.6, 0.8, 1.0, 1.37):
        assert bd_rate(ra, q, k * ra, q, method) == pytest.approx((k - 1.0) * 100.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_linear_log_rate_curve_bd_psnr_exact(method):
    # Q = 30 + 10·log10(R): a rate factor k is a quality shift of −10·log10(k) dB at equal rate.
    r = np.array([0.12, 0.2, 0.35, 0.6, 1.0, 1.7])
    q = 30.0 + 10.0 * np.log10(r)
    k = 0.8
    assert bd_quality(r, q, k * r, q, method) == pytest.approx(-10.0 * np.log10(k), abs=1e-9)
    # and the test curve sampled at *other* rates: Q_B(R) = 30 + 10·log10(R/k) (linear: both fits exact)
    rb = np.array([0.1, 0.16, 0.3, 0.55, 0.9, 1.4, 2.2])
    qb = 30.0 + 10.0 * np.log10(rb / k)
    assert bd_rate(r, q, rb, qb, method) == pytest.approx(-20.0, abs=1e-9)
    assert bd_quality(r, q, rb, qb, method) == pytest.approx(10.0 * np.log10(1.25), abs=1e-9)


def test_cubic_is_exact_for_a_cubic_and_pchip_close():
    # log10 R = p(Q), a monotone cubic; test = p(Q) − 0.1 sampled at different qualities and over a
    # partly overlapping range. Exact answer: 10^(−0.1) − 1 = −20.567 %.
    p = np.poly1d([0.0004, -0.03, 0.9, -9.2])  # increasing on [24, 44]
    qa = np.linspace(26.0, 40.0, 6)
    qb = np.array([29.0, 31.5, 33.2, 36.0, 39.5, 43.0])
    exact = (10.0 ** -0.1 - 1.0) * 100.0
    got_c = bd_rate(10 ** p(qa), qa, 10 ** (p(qb) - 0.1), qb, "cubic", cubic_window="all")
    assert got_c == pytest.approx(exact, abs=1e-9)
    got_p = bd_rate(10 ** p(qa), qa, 10 ** (p(qb) - 0.1), qb, "pchip")
    assert got_p == pytest.approx(exact, abs=0.3)


def test_interval_restriction_and_order_independence():
    r = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    q = 28.0 + 8.0 * np.log10(r / 0.1)
    perm = np.array([3, 0, 4, 1, 2])
    assert bd_rate(r[perm], q[perm], 0.7 * r[perm], q[perm]) == pytest.approx(-30.0, abs=1e-9)
    assert bd_rate(r, q, 0.7 * r, q, interval=(30.0, 33.0)) == pytest.approx(-30.0, abs=1e-9)


# ------------------------------------------------------------------ error cases


def test_no_overlap_is_a_clear_error():
    r = np.array([0.1, 0.2, 0.4, 0.8])
    with pytest.raises(NoOverlapError, match="do not overlap"):
        bd_rate(r, [25, 27, 29, 31], r, [33, 35, 37, 39])
    with pytest.raises(NoOverlapError, match="log-rate"):
        bd_quality(r, [25, 27, 29, 31], 10 * r, [25, 27, 29, 31])


def test_non_monotone_curve_is_a_clear_error():
    r = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    with pytest.raises(NonMonotoneCurveError, match="not strictly increasing"):
        bd_rate(r, [25, 27, 26.5, 31, 33], r, [25, 27, 29, 31, 33])
    with pytest.raises(NonMonotoneCurveError, match="at least 4"):
        bd_rate(r[:3], [25, 27, 29], r, [25, 27, 29, 31, 33])
    with pytest.raises(BDError, match="positive"):
        bd_rate([0.0, 0.2, 0.4, 0.8], [25, 27, 29, 31], r, [25, 27, 29, 31, 33])
    with pytest.raises(ValueError, match="method"):
        bd_rate(r, [25, 27, 29, 31, 33], r, [25, 27, 29, 31, 33], "linear")


# ------------------------------------------------------------------ anchors: an independent computation


def _fritsch_carlson_slopes(x, y):
    """PCHIP derivatives (Fritsch & Carlson 1980 with the Brodlie weights, SciPy's documented rule)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros_like(y)
    for k in range(1, len(x) - 1):
        if delta[k - 1] * delta[k] <= 0:
            d[k] = 0.0
        else:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])

    def end(h0, h1, m0, m1):
        dd = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(dd) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(dd) > abs(3 * m0):
            return 3 * m0
        return dd

    d[0] = end(h[0], h[1], delta[0], delta[1])
    d[-1] = end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _hermite_mean(x, y, lo, hi, n=200001):
    """Mean of the cubic Hermite interpolant over [lo, hi] by dense Simpson quadrature."""
    d = _fritsch_carlson_slopes(x, y)
    t = np.linspace(lo, hi, n)
    k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    f = h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1]
    w = np.ones(n)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return float(np.sum(w * f) * (t[1] - t[0]) / 3.0) / (hi - lo)


def _independent_bd_rate_pchip(path_a, path_b):
    ra = json.load(open(path_a))["results"]
    rb = json.load(open(path_b))["results"]
    qa, la = np.asarray(ra["psnr-rgb"]), np.log10(ra["bpp"])
    qb, lb = np.asarray(rb["psnr-rgb"]), np.log10(rb["bpp"])
    ia, ib = np.argsort(qa), np.argsort(qb)
    qa, la, qb, lb = qa[ia], la[ia], qb[ib], lb[ib]
    lo, hi = max(qa[0], qb[0]), min(qa[-1], qb[-1])
    diff = _hermite_mean(qb, lb, lo, hi) - _hermite_mean(qa, la, lo, hi)
    return (10**diff - 1) * 100


def test_hyperprior_vs_jpeg_anchor_matches_independent_computation(anchors_dir):
    a = anchors_dir / "compressai_kodak" / "jpeg.json"
    b = anchors_dir / "compressai_kodak" / "compressai-bmshj2018-hyperprior_mse_cuda.json"
    ca, cb = load_curve(a), load_curve(b)
    got = bd_rate(ca.bpp, ca.values("psnr"), cb.bpp, cb.values("psnr"), "pchip")
    ref = _independent_bd_rate_pchip(a, b)
    # to 0.1 % of the value (|Δ| < 0.055 percentage points); measured agreement ~1e-9
    assert got == pytest.approx(ref, rel=1e-3)
    assert abs(got - ref) < 1e-6
    # PERF_ANCHORS.md §1.1 (a) publishes −55.0 (pchip) / −55.2 (cubic), rounded to 0.1
    assert round(got, 1) == -55.0
    cub = bd_rate(ca.bpp, ca.values("psnr"), cb.bpp, cb.values("psnr"), "cubic")
    assert round(cub, 1) == -55.2
    # BD-PSNR vs BPG 4:4:4 (PERF_ANCHORS: CompressAI hyperprior −0.18 dB, pchip)
    bpg = load_anchor("bpg444", anchors_dir)
    assert bd_quality(bpg.bpp, bpg.values("psnr"), cb.bpp, cb.values("psnr")) == pytest.approx(-0.18, abs=0.005)


@pytest.mark.parametrize("name,vs_jpeg,vs_bpg", [
    # PERF_ANCHORS.md §1.1 (a), pchip / cubic, rounded to 0.1
    ("paper-mbt2018", (-62.1, -62.4), (-9.4, -9.6)),
    ("compressai-mbt2018-mean_mse_cuda", (-58.0, -58.1), (-3.3, -3.2)),
    ("webp", (-36.2, -36.4), (44.2, 44.0)),
])
def test_published_anchor_bd_rates(anchors_dir, name, vs_jpeg, vs_bpg):
    c = load_anchor(name, anchors_dir)
    for anchor, expect in (("jpeg", vs_jpeg), ("bpg444", vs_bpg)):
        a = load_anchor(anchor, anchors_dir)
        for m, e in zip(METHODS, expect):
            assert round(bd_rate(a.bpp, a.values("psnr"), c.bpp, c.values("psnr"), m), 1) == e


def test_ms_ssim_db_variant(anchors_dir):
    jpeg = load_anchor("jpeg", anchors_dir)
    hp = load_anchor("compressai-bmshj2018-hyperprior_mse_cuda", anchors_dir)
    qa, qb = jpeg.values("ms-ssim-db"), hp.values("ms-ssim-db")
    assert np.allclose(qa, -10 * np.log10(1 - np.asarray(jpeg.metrics["ms-ssim-rgb"])))
    v = bd_rate(jpeg.bpp, qa, hp.bpp, qb)
    # an MSE-trained model gains less over JPEG in MS-SSIM than in PSNR, but still a lot
    assert -55.0 < v < -30.0
    assert bd.ms_ssim_to_db(0.99) == pytest.approx(20.0)


# ------------------------------------------------------------------ AUC (seed 003)


def test_auc_synthetic():
    r = np.array([0.1, 0.5, 1.0, 3.0])
    q = 2.0 * r  # straight line: area over [0.125, 2] = r² |
    assert auc(r, q) == pytest.approx(2.0**2 - 0.125**2)
    with pytest.raises(BDError, match="covers"):
        auc(r[1:], q[1:])
    assert auc(r[1:], q[1:], extrapolate="clamp") == pytest.approx(
        1.0 * (0.5 - 0.125) + (1.0**2 - 0.5**2) + (2.0**2 - 1.0**2))
    assert auc(r[1:], q[1:], extrapolate="linear") == pytest.approx(2.0**2 - 0.125**2)


def test_auc_reproduces_seed_003_jpeg420(anchors_dir):
    # SYSTEMS.md §12.5: TFC's JPEG 4:2:0 MS-SSIM curve over [0.125, 2] bpp → 1.7947, within 0.01 of
    # seed 003's table value 1.7998 (the curve starts at 0.1697 bpp: held constant below, np.interp-style).
    jpeg = load_anchor("tfc-jpeg420", anchors_dir)
    b, v = jpeg.points("ms-ssim")
    got = auc(b, v, 0.125, 2.0, extrapolate="clamp")
    assert got == pytest.approx(1.7947, abs=5e-5)
    assert abs(got - 1.7998) < 0.01
    tod = load_anchor("tfc:toderici-2017-cvpr", anchors_dir)  # 0.125 … 2.0 exactly: no extrapolation
    got = auc(*tod.points("ms-ssim"), 0.125, 2.0)
    assert got == pytest.approx(1.8116, abs=5e-5)
    assert abs(got - 1.8098) < 0.01  # seed 003 best (GRU one-shot)


# ------------------------------------------------------------------ file formats and the CLI


def test_tfc_txt_parsing(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text('# Aggregate rate-distortion data for "Foo" on kodak.\n# The second column contains '
                 "MS-SSIM/sRGB/R'G'B' values.\n\n0.1, 0.8\n0.2, 0.9\n")
    c = load_curve(p)
    assert c.name == "Foo" and c.bpp == [0.1, 0.2] and c.metrics["ms-ssim-rgb"] == [0.8, 0.9]
    assert c.values("ms-ssim-db") == pytest.approx([-10 * np.log10(0.2), 10.0])


def test_cli_bd_and_auc(anchors_dir, capsys):
    from lic_jax.evaluation.cli import main

    hp = str(anchors_dir / "compressai_kodak" / "compressai-bmshj2018-hyperprior_mse_cuda.json")
    assert main(["bd", "jpeg", hp]) == 0
    out = capsys.readouterr().out
    assert "BD-rate pchip -54.99 %" in out and "BD-rate cubic -55.19 %" in out
    assert main(["bd", "jpeg", hp, "--metric", "ms-ssim-db", "--method", "pchip", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["metric"] == "ms-ssim-db-rgb" and rec["bd_rate_pchip"] < -30
    # disjoint quality ranges → reported error, exit status 1
    assert main(["bd", "tfc:toderici-2017-cvpr", "vtm", "--metric", "psnr-hvs"]) == 1
    assert "error" in capsys.readouterr().out
    assert main(["auc", "tfc-jpeg420", "--extrapolate", "clamp"]) == 0
    assert "= 1.7947" in capsys.readouterr().out
