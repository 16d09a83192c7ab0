"""experiments/akutsu_crops.py's rate matching and crop window (issue 20), against brute force and
hand-made masks. ~3 s."""

import importlib.util
import os

import numpy as np
import pytest

from lic_jax.evaluation.codecs import PillowCodec
from lic_jax.utils.colour import ycbcr_to_rgb

_PATH = os.path.join(os.path.dirname(__file__), "..", "experiments", "akutsu_crops.py")
spec = importlib.util.spec_from_file_location("akutsu_crops", _PATH)
ac = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ac)


def _image(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    x = np.stack([np.sin(xx / 5 + c) * np.cos(yy / 7 - c) for c in range(3)], -1) * 90 + 128
    return np.clip(x + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("target", [0.4, 0.6, 1.5, 3.0])  # q1 = 0.61 bpp, q95 = 5.55
def test_jpeg_matching_equals_brute_force(target):
    """The bisection's choice equals an exhaustive search over qualities 1-95 with the same rule
    (closest bpp among files ≤ 1.1·target, else the smallest file)."""
    img = _image()
    h, w = img.shape[:2]
    bpp = {q: 8.0 * PillowCodec("jpeg", q).run(img).nbytes / (h * w) for q in range(1, 96)}
    ok = [q for q in bpp if bpp[q] <= 1.1 * target]
    want = min(ok, key=lambda q: (abs(bpp[q] - target), q)) if ok else min(bpp, key=bpp.get)
    q, out = ac.classical_at("jpeg", img, target)
    assert abs(bpp[q] - target) == abs(bpp[want] - target), (q, want, bpp[q], bpp[want])
    assert 8.0 * out.nbytes / (h * w) == bpp[q]


def test_crop_box_centres_the_largest_region():
    m = np.zeros((300, 400), bool)
    m[10:20, 10:20] = True  # small region
    m[200:260, 300:360] = True  # the largest: centre (229.5, 329.5)
    assert ac.crop_box(m, 100) == (180, 280, 100, 100)
    assert ac.crop_box(m, 200) == (100, 200, 200, 200)  # clamped into the image (bottom and right edges)
    assert ac.crop_box(np.zeros((50, 60), bool), 100) == (0, 0, 50, 60)  # empty mask, window larger than image
    assert ac.largest_region(m) == (3600, (229.5, 329.5)) and ac.largest_region(np.zeros((4, 4), bool)) == (0, None)


def test_trend_resumed_run_and_bad_log(tmp_path):
    """experiments/akutsu_trend.py: a resumed run logs steps after its checkpoint again; the later
    line wins, rows come out sorted by (split, step), and a broken log is a one-line error."""
    import csv
    import json

    spec_t = importlib.util.spec_from_file_location("akutsu_trend", os.path.join(os.path.dirname(_PATH),
                                                                                 "akutsu_trend.py"))
    at = importlib.util.module_from_spec(spec_t)
    spec_t.loader.exec_module(at)
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": 50, "split": "train", "bpp": 0.2, "ms_ssim_main": 0.5},
             {"step": 100, "split": "train", "bpp": 0.3, "ms_ssim_main": 0.6},
             {"step": 100, "split": "val", "bpp": 0.25, "ms_ssim_main_mask": 0.4, "ms_ssim_fused_mask": 0.45},
             {"step": 100, "split": "train", "bpp": 0.35, "ms_ssim_main": 0.65},  # after a resume from step 50
             {"step": 150, "split": "train", "bpp": 0.4, "ms_ssim_main": 0.7, "gan_on": 1.0, "d_acc_real": 0.6,
              "d_acc_fake": 0.4}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert at.main([str(run), "--out", str(tmp_path / "t")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert [(r["split"], r["step"], r["bpp"]) for r in rows] == [
        ("train", "50", "0.2"), ("train", "100", "0.35"), ("train", "150", "0.4"), ("val", "100", "0.25")]
    assert (tmp_path / "t.png").stat().st_size > 10_000
    assert at.smooth([1.0, 3.0, 5.0], 2) == [1.0, 2.0, 4.0]
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train"}\nnot json\n')
    with pytest.raises(SystemExit, match=r"metrics.jsonl:2 is not a metrics record"):
        at.main([str(run), "--out", str(tmp_path / "u")])


def test_colour_check_measures():
    """experiments/akutsu_colour_check.py: its centred Y′CbCr against Pillow's JFIF conversion (an
    independent implementation, uint8-rounded: ≤ 1 level apart; lic_jax.utils.colour's own check is
    tests/test_restore.py::test_ycbcr_matches_pillow), and its chroma statistics and oracles on
    decodes whose answer is known: the image itself, and a grey decode with a constant tint."""
    _p = os.path.join(os.path.dirname(__file__), "..", "experiments", "akutsu_colour_check.py")
    sp = importlib.util.spec_from_file_location("akutsu_colour_check", _p)
    cc = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(cc)
    from PIL import Image

    u8 = _image(64, 80)
    img = u8 / 255.0
    ref = np.asarray(Image.fromarray(u8).convert("YCbCr"), np.float64)
    ours = cc.to_ycc(img) * 255.0 + np.array([0.0, 128.0, 128.0])
    assert np.abs(ours - ref).max() <= 1.0
    # JFIF's inverse has six-decimal coefficients: the round trip is within 5.8e-7 (measured), 2e-6 here
    assert np.allclose(cc.to_rgb(cc.to_ycc(img)), img, rtol=0, atol=2e-6)
    s = cc.chroma_stats(img, img)
    assert s["cb_corr"] == pytest.approx(1.0) and s["cr_corr"] == pytest.approx(1.0)
    assert s["chroma_std_ratio"] == pytest.approx(1.0)
    assert s["bias_cb"] == 0.0 and s["bias_cr"] == 0.0
    grey = np.repeat(img.mean(-1, keepdims=True), 3, -1) + np.array([0.04, 0.0, -0.04])  # luma-only plus a tint
    s = cc.chroma_stats(img, np.clip(grey, 0, 1))
    assert abs(s["cb_corr"]) < 0.2 and abs(s["cr_corr"]) < 0.2 and s["chroma_std_ratio"] < 0.05, s
    # the colour cast against PIL's JFIF YCbCr means of the 8-bit images: measured 1.3e-4 (Cb), 4.5e-4 (Cr)
    tint = np.asarray(Image.fromarray(np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8)).convert("YCbCr"), np.float64)
    bias = (tint.mean((0, 1)) - ref.mean((0, 1)))[1:] / 255.0
    assert abs(s["bias_cb"] - bias[0]) < 1.4e-3 and abs(s["bias_cr"] - bias[1]) < 1.4e-3, (s, bias)
    # a decode whose chroma is a known affine map of the image's (a turn of the hue and a desaturation), in
    # float Y′CbCr without clipping, so the least-squares map is exact but for the JFIF inverse's six-decimal
    # coefficients (measured 5.8e-7, 2e-6 here)
    ycc = cc.to_ycc(img)
    amap = np.array([[0.8, 0.15], [-0.1, 0.7]])
    turned = np.concatenate([ycc[..., :1], ycc[..., 1:] @ amap.T + np.array([0.01, -0.02])], -1)
    s = cc.chroma_stats(img, ycbcr_to_rgb(turned, offset=0.0))
    got = np.array([[s["map_cb_cb"], s["map_cb_cr"]], [s["map_cr_cb"], s["map_cr_cr"]]])
    np.testing.assert_allclose(got, amap, rtol=0, atol=2e-6)
    # the gains along (Cb − Cr)/√2 and (Cb + Cr)/√2: ½(a + d − b − c) and ½(a + d + b + c) of the map
    assert s["gain_blue_orange"] == pytest.approx(0.5 * (0.8 + 0.7 - 0.15 + 0.1), abs=2e-6)
    assert s["gain_green_magenta"] == pytest.approx(0.5 * (0.8 + 0.7 + 0.15 - 0.1), abs=2e-6)
    assert s["bias_cb"] == pytest.approx(0.01 + ((amap - np.eye(2)) @ ycc[..., 1:].reshape(-1, 2).mean(0))[0], abs=2e-6)
    o = cc.oracles(img, img)
    assert np.abs(o["true_chroma"] - img).max() < 2e-6  # the image's own luma and chroma (JFIF inverse, as above)
    flat = cc.to_ycc(o["flat_chroma"])  # the image's luma, constant chroma
    assert np.abs(flat[..., 0] - cc.to_ycc(img)[..., 0]).max() < 0.05 and flat[..., 1:].std(axis=(0, 1)).max() < 0.01
    # the latent probe: block means against a direct reshape-and-mean, and R² on known answers
    bm = cc.block_means(img)
    assert bm.shape == (4, 5, 3)
    np.testing.assert_allclose(bm[1, 2], cc.to_ycc(img[16:32, 32:48]).mean(axis=(0, 1)), rtol=0, atol=1e-12)
    half = img.reshape(32, 2, 40, 2, 3).mean(axis=(1, 3))  # features at stride 2: the image's 2 × 2 means
    np.testing.assert_allclose(cc.pool_to_blocks(half, 2, 4, 5).reshape(4, 5, 3),
                               img.reshape(4, 16, 5, 16, 3).mean(axis=(1, 3)), rtol=0, atol=1e-12)
    t = bm.reshape(-1, 3)
    rng = np.random.default_rng(0)
    mix = t @ rng.normal(size=(3, 8)) + 0.5  # an affine image of the targets: R² 1
    assert np.allclose(cc.linear_r2(mix, t), 1.0, atol=1e-9)
    noise = rng.normal(size=(4000, 4))  # unrelated features: R² ≈ 4/4000
    assert max(abs(r) for r in cc.linear_r2(noise, rng.normal(size=(4000, 3)))) < 0.01
