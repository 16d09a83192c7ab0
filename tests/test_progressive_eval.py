"""Evaluation of progressive codecs (issue 15, increment 3): the AUC of SYSTEMS.md §12.5
(lic_jax.evaluation.auc) and eval.py's per-iteration RD points from real progressive files
(lic_jax.evaluation.progressive).

A tiny random-init model (GRU, additive, width 1/16, 3 iterations, the codec's fixed untrained
bit context model) on two generated 176×192 images (MS-SSIM needs sides > 160 px). Every
"broken once" note records a deliberate break of the code under test and that the test failed.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _helpers import pattern_image
from lic_jax.evaluation.anchors import load_anchor
from lic_jax.evaluation.auc import AUCRangeError, auc, mean_curve, progressive_aucs
from lic_jax.evaluation.datasets import Dataset
from lic_jax.evaluation.image_metrics import ms_ssim_255, psnr

K = 3


# ------------------------------------------------------------------ AUC


def test_auc_against_numpy_trapezoid():
    # broken once: trapezoid weights (y[1:] + y[:-1]) / 2 → y[1:] in bd.auc — failed here.
    rng = np.random.default_rng(0)
    r = np.sort(rng.uniform(0.05, 2.5, 9))
    r[0], r[-1] = 0.1, 2.2
    q = np.sort(rng.uniform(0.7, 0.99, 9))
    grid = np.concatenate([[0.125], r[(r > 0.125) & (r < 2.0)], [2.0]])
    trapz = getattr(np, "trapezoid", None) or np.trapz
    ref = trapz(np.interp(grid, r, q), grid)
    assert auc(r, q) == pytest.approx(ref, rel=1e-12)
    # a fine grid converges to the same piecewise-linear integral
    fine = np.linspace(0.125, 2.0, 200001)
    assert auc(r, q) == pytest.approx(float(np.sum(np.diff(fine) * (np.interp(fine, r, q)[1:]
                                                                       + np.interp(fine, r, q)[:-1]) / 2)), abs=1e-8)
    # points given out of order and a repeated rate (averaged) give the same
    perm = rng.permutation(9)
    assert auc(r[perm], q[perm]) == pytest.approx(auc(r, q), rel=1e-12)


def test_auc_refuses_uncovered_range_and_reports_it():
    # broken once: the coverage check in auc.auc removed (fell through to clamping) — failed here.
    r, q = np.array([0.2, 0.5, 1.0, 1.5]), np.array([0.8, 0.9, 0.95, 0.97])
    with pytest.raises(AUCRangeError, match=r"covers \[0.2, 1.5\] bpp, not the AUC interval \[0.125, 2\]"):
        auc(r, q)
    out = progressive_aucs(r, q, anchors={"line": (np.array([0.0, 3.0]), np.array([0.0, 3.0]))})
    assert out["strict"] is None and out["extrapolated"] and out["covered"] == [0.2, 1.5]
    assert out["clamped"] == pytest.approx(0.8 * 0.075 + auc(r, q, 0.2, 1.5) + 0.97 * 0.5)
    assert out["common"]["range"] == [0.2, 1.5]
    assert out["common"]["line"] == pytest.approx((1.5**2 - 0.2**2) / 2)


def test_auc_of_tfc_anchors(anchors_dir):
    # SYSTEMS.md §12.5: TFC's Toderici 2017 curve → 1.8116, JPEG 4:2:0 → 1.7947 (held below 0.1697 bpp).
    tod = load_anchor("tfc:toderici-2017-cvpr", anchors_dir)
    assert auc(*tod.points("ms-ssim")) == pytest.approx(1.8116, abs=1e-3)
    jpeg = load_anchor("tfc:jpeg420", anchors_dir)
    with pytest.raises(AUCRangeError):
        auc(*jpeg.points("ms-ssim"))
    assert auc(*jpeg.points("ms-ssim"), extrapolate="clamp") == pytest.approx(1.7947, abs=1e-3)


def test_mean_curve_averages_at_fixed_iteration():
    # broken once: mean_curve grouped by "image" instead of "iteration" — failed here.
    rows = [{"iteration": k, "image": n, "bpp": b * k, "ms-ssim-rgb": m + 0.01 * k}
            for n, b, m in (("a", 0.1, 0.8), ("b", 0.2, 0.9)) for k in (1, 2, 3)]
    r, q = mean_curve(rows)
    assert r == pytest.approx([0.15, 0.30, 0.45]) and q == pytest.approx([0.86, 0.87, 0.88])
    with pytest.raises(ValueError, match="other images"):
        mean_curve(rows[:-1] + [dict(rows[-1], image="c")])


# ------------------------------------------------------------------ per-iteration points from real files


_image = pattern_image  # tests/_helpers.py


@pytest.fixture(scope="module")
def prog():
    from lic_jax.coding import Codec
    from lic_jax.evaluation.progressive import evaluate_progressive
    from lic_jax.models import get_model

    model, spec = get_model("toderici2017", cell="gru", mode="additive", width=1 / 16, iterations=K)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    rng = np.random.default_rng(0)
    variables = jax.tree_util.tree_map(
        lambda s: rng.normal(0.0, 1.0 / np.sqrt(max(1, int(np.prod(s.shape[:-1])))), s.shape).astype(np.float32),
        shapes)
    codec = Codec(model, spec, variables)
    imgs = [_image(176, 192, 1), _image(176, 184, 2)]  # 184: padded to 192, cropped back
    ds = Dataset("gen", ["a.png", "b.png"], [(lambda a=a: a) for a in imgs])
    curve, rows = evaluate_progressive(codec, ds, metrics=("psnr-rgb", "ms-ssim-rgb"), progress=False)
    return dict(codec=codec, imgs=imgs, curve=curve, rows=rows, spec=spec, variables=variables)


def test_progressive_points_are_real_prefixes(prog):
    # broken once: decode_prefixes reported offsets[t + 1] (the next prefix's size) — evaluate_progressive's
    # own offset check raised in the fixture (both tests using it errored);
    # broken once: the per-iteration carry not updated (carry dropped) — reconstructions differed, failed here.
    codec, rows = prog["codec"], prog["rows"]
    assert len(rows) == 2 * K
    for n, img in zip(("a.png", "b.png"), prog["imgs"]):
        enc = codec.encode(img, iterations=K)
        H, W = img.shape[:2]
        mine = sorted((r for r in rows if r["image"] == n), key=lambda r: r["iteration"])
        assert [r["iteration"] for r in mine] == list(range(1, K + 1))
        for r in mine:
            k = r["iteration"]
            assert r["bytes"] == len(enc.prefix(k)) and r["bpp"] == pytest.approx(8 * len(enc.prefix(k)) / (H * W))
            rec = codec.decompress(enc.prefix(k))  # the prefix alone, independently decoded
            assert r["psnr-rgb"] == pytest.approx(psnr(img, rec), abs=1e-12)
            assert r["ms-ssim-rgb"] == pytest.approx(ms_ssim_255(img, rec), abs=1e-12)
            assert r["raw-bpp"] == pytest.approx(k * 32 * (-(-H // 16)) * (-(-W // 16)) / (H * W))
        assert [r["bytes"] for r in mine] == sorted({r["bytes"] for r in mine})  # strictly growing


def test_progressive_curve_is_mean_at_fixed_iteration(prog):
    curve, rows = prog["curve"], prog["rows"]
    r, q = mean_curve(rows, "bpp", "ms-ssim-rgb")
    assert curve.bpp == pytest.approx(list(r)) and curve.metrics["ms-ssim-rgb"] == pytest.approx(list(q))
    assert curve.metrics["quality"] == list(range(1, K + 1))
    assert curve.meta["iterations"] == K and curve.meta["num_images"] == 2


def test_cli_runs_a_progressive_checkpoint(prog, tmp_path, capsys):
    # broken once: _progressive_artifact returned None (progressive models went to the λ path) — failed here.
    from lic_jax.artifact import save_artifact
    from lic_jax.evaluation.cli import main

    d = tmp_path / "m"
    save_artifact(str(d), prog["spec"], prog["variables"])
    data = tmp_path / "imgs"
    data.mkdir()
    from PIL import Image

    Image.fromarray(prog["imgs"][0]).save(data / "a.png")
    out = tmp_path / "r.json"
    assert main(["run", "--checkpoint", str(d), "--dataset", str(data), "--out", str(out), "--iterations", "2",
                 "--metrics", "psnr-rgb", "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["results"]["quality"] == [1, 2] and len(res["results"]["raw-bpp"]) == 2
    with pytest.raises(SystemExit):
        main(["run", "--checkpoint", str(d), "--dataset", str(data), "--out", str(out), "--quality", "3"])


def test_auc_report_table(tmp_path, anchors_dir):
    # broken once: the common-range column integrated over [0.125, 2] instead of the covered range — failed here.
    from lic_jax.evaluation.auc_report import build_report

    k = np.arange(1, 17)
    m = {"name": "m", "results": {"bpp": list(0.045 * k), "raw-bpp": list(0.125 * k),
                                  "ms-ssim-rgb": list(0.8 + 0.01 * k), "psnr-hvs": list(20 + 0.5 * k)},
         "meta": {"num_images": 2}}
    (tmp_path / "m.json").write_text(json.dumps(m))
    rep, md = build_report([str(tmp_path / "m.json")], None, anchors_dir, str(tmp_path))
    rows = {r["curve"]: r for r in rep["rows"]}
    assert rep["common_range"] == pytest.approx([0.125, 0.72])
    real, raw = rows["m — real file bytes"], rows["m — raw bits (0.125 bpp / iteration)"]
    assert real["ms-ssim-rgb"]["extrapolated"] and not raw["ms-ssim-rgb"]["extrapolated"]
    assert raw["ms-ssim-rgb"]["auc"] == pytest.approx(auc(0.125 * k, 0.8 + 0.01 * k))
    assert real["ms-ssim-rgb@common"] == pytest.approx(auc(0.045 * k, 0.8 + 0.01 * k, 0.125, 0.72))
    assert rows["Toderici 2017 (TFC published curve)"]["ms-ssim-rgb"]["auc"] == pytest.approx(1.8116, abs=1e-3)
    assert "1.8098" in md and (tmp_path / "rd_msssim.png").stat().st_size > 10000


def test_jpeg_baseline_is_420():
    # broken once: the explicit subsampling=2 removed from PillowCodec — failed here.
    import io

    from PIL import Image, JpegImagePlugin

    from lic_jax.evaluation.codecs import PillowCodec

    c = PillowCodec("jpeg", 50)
    assert c.save_kwargs["subsampling"] == 2
    buf = io.BytesIO()
    Image.fromarray(_image(32, 32, 0)).save(buf, format="JPEG", **c.save_kwargs)
    assert JpegImagePlugin.get_sampling(Image.open(buf)) == 2  # 2 = 4:2:0


def test_merge_parts_equals_one_run(prog, tmp_path):
    # broken once: merge_results kept only the first CSV's rows — failed here.
    from lic_jax.evaluation.progressive import merge_results
    from lic_jax.evaluation.results import write_csv

    rows = prog["rows"]
    for n in ("a.png", "b.png"):
        write_csv([r for r in rows if r["image"] == n], tmp_path / f"{n}.csv")
    curve, merged = merge_results([str(tmp_path / "a.png.csv"), str(tmp_path / "b.png.csv")], "m")
    assert curve.bpp == pytest.approx(prog["curve"].bpp)
    assert curve.metrics["ms-ssim-rgb"] == pytest.approx(prog["curve"].metrics["ms-ssim-rgb"])
    with pytest.raises(ValueError, match="twice"):
        merge_results([str(tmp_path / "a.png.csv")] * 2, "m")
