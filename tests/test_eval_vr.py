"""eval.py with variable-rate (mae-*) checkpoints: --lmbda / --lmbda-grid, real bitstreams and entropy estimation."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from conftest import load_rgb
from lic_jax.evaluation.cli import main

LMBDAS = ["0.004", "0.03"]  # + --lmbda-grid 3 over the trained range (seed001: 64/255² … 4096/255²)


@pytest.fixture(scope="module")
def vr_setup(kodak_dir, tmp_path_factory):
    """A tiny randomly initialised mae-bls2017 (N=16) whose rate depends on λ, a fixed-rate artifact, two crops.

    Random weights alone give a rate that hardly depends on λ (a flat entropy model, a modulation ≈ 1);
    the last analysis modulation is made to grow with λ and the entropy bottleneck's density narrowed,
    so a λ that did not reach the transforms would show up as equal rates / disagreeing modes.
    """
    import jax
    from PIL import Image

    from lic_jax.artifact import save_artifact
    from lic_jax.models import get_model

    d = tmp_path_factory.mktemp("eval_vr")
    model, spec = get_model("mae-bls2017", N=16)
    v = model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32), 0.01)
    p = jax.tree_util.tree_map(np.asarray, v["params"])
    p["mod_2"]["hidden"]["kernel"] = np.abs(p["mod_2"]["hidden"]["kernel"])
    p["mod_2"]["out"]["kernel"] = np.full_like(p["mod_2"]["out"]["kernel"], 0.15)  # scale up to e^~6 at λ_max
    eb = p["entropy_bottleneck"]
    s = 0.5 ** 0.25  # density of CompressAI's EntropyBottleneck init with init_scale 0.5 (quantiles stay ±10)
    for i in range(4):
        eb[f"matrix_{i}"] = np.full_like(eb[f"matrix_{i}"], np.log(np.expm1(1 / s / (1 if i == 3 else 3))))
    save_artifact(d / "mae", spec, {"params": p})

    fmodel, fspec = get_model("bmshj2018-factorized", N=16, M=16)
    fv = fmodel.init(jax.random.key(1), np.zeros((1, 64, 64, 3), np.float32))
    save_artifact(d / "fixed", fspec, {"params": fv["params"]})

    imgs = d / "imgs"
    imgs.mkdir()
    for n in ("kodim05.png", "kodim19.png"):
        Image.fromarray(load_rgb(kodak_dir / n)[:192, :256]).save(imgs / n)  # multiples of 64: same padding
    return d, spec


def _run(d, out, *extra):
    return main(["--checkpoint", str(d / "mae"), "--lmbda", *LMBDAS, "--lmbda-grid", "3", "--dataset",
                 str(d / "imgs"), "--out", str(out), "--metrics", "psnr-rgb,ms-ssim-rgb", "--no-progress", *extra])


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_lmbda_points_real_bitstreams_and_entropy_estimation(vr_setup, tmp_path):
    d, spec = vr_setup
    lo, hi = min(spec.hparams["lmbdas"]), max(spec.hparams["lmbdas"])
    want = sorted({float(np.float32(x)) for x in [*map(float, LMBDAS), *np.geomspace(lo, hi, 3)]})
    assert len(want) == 5

    assert _run(d, tmp_path / "real.json") == 0
    real = json.loads((tmp_path / "real.json").read_text())
    res = real["results"]
    assert real["name"] == "mae-bls2017" and real["meta"]["source"] == "bitstream"
    assert res["lmbda"] == want and "quality" not in res  # one RD point per λ, ascending, as float32
    assert len(res["bpp"]) == len(res["psnr-rgb"]) == len(res["ms-ssim-rgb"]) == 5
    assert real["meta"]["points"][0] == "lambda=0.0009842" and "lambda=0.0300" in real["meta"]["points"]
    assert [pi["lmbda"] for pi in real["meta"]["point_info"]] == want
    assert real["meta"]["point_info"][0]["trained_lmbdas"] == pytest.approx(spec.hparams["lmbdas"])
    assert res["bpp"][-1] > 1.5 * res["bpp"][0]  # λ reaches the transforms
    assert all(np.diff(res["bpp"]) >= 0)

    rows = _rows(tmp_path / "real.csv")
    assert len(rows) == 5 * 2
    for r in rows:  # rate = the real file: 8 · bytes / pixels
        assert float(r["bpp"]) == pytest.approx(8 * int(r["bytes"]) / (int(r["height"]) * int(r["width"])), rel=1e-12)
        assert float(r["lmbda"]) in want
    for lam, b in zip(want, res["bpp"]):
        assert np.mean([float(r["bpp"]) for r in rows if float(r["lmbda"]) == lam]) == pytest.approx(b)

    # the bytes are those of the file lic_jax.coding writes for that image and λ (decoder: λ from the header)
    from lic_jax.coding import Codec

    codec = Codec.from_artifact(str(d / "mae"))
    img = load_rgb(d / "imgs" / "kodim19.png")
    data = codec.compress(img, lmbda=want[-1])
    r = next(r for r in rows if r["image"] == "kodim19.png" and float(r["lmbda"]) == want[-1])
    assert len(data) == int(r["bytes"])
    assert codec.decode(data)[2].lmbda == pytest.approx(want[-1], rel=1e-7)

    assert _run(d, tmp_path / "est.json", "--entropy-estimation") == 0
    est = json.loads((tmp_path / "est.json").read_text())
    assert est["meta"]["source"] == "entropy-estimation" and est["results"]["lmbda"] == want
    b_est, b_file, b_pay = (np.asarray(x) for x in (est["results"]["bpp"], res["bpp"], res["bpp-payload"]))
    print("bpp estimate", b_est.round(4), "file", b_file.round(4), "payload", b_pay.round(4))
    np.testing.assert_allclose(b_est, b_pay, rtol=0.02)  # model likelihoods vs the coded streams
    np.testing.assert_allclose(b_est, b_file, rtol=0.07)  # + the container (~30 bytes on a 192×256 crop)
    np.testing.assert_allclose(est["results"]["psnr-rgb"], res["psnr-rgb"], atol=0.05)  # same reconstruction
    assert len(_rows(tmp_path / "est.csv")) == 10


def test_lmbda_errors(vr_setup, tmp_path, capsys):
    d, _ = vr_setup
    common = ["--dataset", str(d / "imgs"), "--out", str(tmp_path / "x.json"), "--no-progress"]
    cases = [
        (["--checkpoint", str(d / "mae")], "is variable-rate (trained on λ 0.0009842 … 0.06299): give --lmbda"),
        (["--checkpoint", str(d / "fixed"), "--lmbda", "0.01"], "holds the fixed-rate model bmshj2018-factorized"),
        (["--checkpoint", str(d / "fixed"), "--lmbda-grid", "4"], "apply to variable-rate models"),
        (["--checkpoint", str(d / "mae"), "--lmbda-grid", "0"], "--lmbda-grid must be >= 1"),
        (["--checkpoint", str(d / "mae"), "--lmbda", "-1"], "positive and finite"),
        (["--model", "bmshj2018-factorized", "--random-init", "--quality", "1", "--lmbda", "0.01"], "fixed-rate"),
        (["--codec", "jpeg", "--lmbda", "0.01"], "not to --codec"),
    ]
    for argv, msg in cases:
        with pytest.raises(SystemExit) as e:
            main(argv + common)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("eval.py: error:") and msg in err and "\n" not in err, (argv, err)
    assert not (tmp_path / "x.json").exists()


def test_mae_vs_single_eval_stage(vr_setup, tmp_path):
    """experiments/mae_vs_single.py --stage eval on tiny random artifacts laid out like its runs."""
    import importlib.util
    import shutil

    import jax

    from conftest import REPO
    from lic_jax.artifact import save_artifact
    from lic_jax.models import get_model

    d, spec = vr_setup
    runs, out = tmp_path / "runs", tmp_path / "eval"
    shutil.copytree(d / "mae", runs / "mae" / "artifact")
    lmbdas = spec.hparams["lmbdas"]
    for k, lam in ((0, lmbdas[0]), (1, lmbdas[3])):  # two single-rate models, at the ends of the λ set
        m, s = get_model("bls2017", N=16)
        v = m.init(jax.random.key(10 + k), np.zeros((1, 64, 64, 3), np.float32))
        save_artifact(runs / f"single-{k}" / "artifact", s, {"params": v["params"]},
                      {"training": {"lmbda": lam, "wall_time_s": 100.0 + k}})

    spec_ = importlib.util.spec_from_file_location("mae_vs_single", REPO / "experiments" / "mae_vs_single.py")
    E = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(E)
    args = E.parse_args(["--out", str(runs), "--eval-out", str(out), "--stage", "eval", "--kodak", str(d / "imgs"),
                         "--limit", "2", "--dense", "3", "--rate-control", "--targets", "0.12,0.3", "--no-progress"])
    res = E.eval_all(args)
    saved = json.loads((out / "results.json").read_text())
    assert saved["roundtrip"] == res["roundtrip"] | {"mismatches": []}
    n_mae = len({float(np.float32(x)) for x in [*lmbdas, *np.geomspace(lmbdas[0], lmbdas[-1], 3)]})  # 4 + 1
    assert res["roundtrip"]["checked"] == res["roundtrip"]["exact"] == 2 * (2 + n_mae)
    for r in saved["per_image"]:
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (r["height"] * r["width"]), rel=1e-12)
    assert saved["dataset"]["images"] == ["kodim05.png", "kodim19.png"]
    for name, n in (("single.json", 2), ("mae.json", 4), ("mae-dense.json", 3)):
        c = json.loads((out / name).read_text())
        assert len(c["results"]["bpp"]) == len(c["results"]["psnr-rgb"]) == len(c["results"]["lmbda"]) == n, name
    assert [p["lmbda"] for p in saved["curves"]["mae"]] == [float(np.float32(x)) for x in lmbdas]
    assert len(saved["at_trained_lmbda"]) == 2  # the singles' λ matched to the modulated model's
    assert set(saved["bd"]) == {"mae vs single-rate bls2017 ×2", "mae-dense vs single-rate bls2017 ×2"}
    bd = saved["bd"]["mae vs single-rate bls2017 ×2"]["psnr-rgb"]  # 2 anchor points: BD undefined, said so
    assert "4 distinct rate points" in bd["bd_rate_error"] and "4 distinct rate points" in bd["bd_quality_error"]
    st = saved["storage"]
    assert st["singles"]["count"] == 2 and st["modulated"]["modulation_params"] > 0
    assert st["modulated"]["params_msgpack_bytes"] == os.path.getsize(runs / "mae" / "artifact" / "params.msgpack")
    assert saved["training_wall_time"]["singles_total_s"] == 201.0
    rc = saved["rate_control"]
    assert rc["targets"] == [0.12, 0.3] and len(rc["per_file"]) == 4 and rc["overall"]["n"] == 4
    for r in rc["per_file"]:
        assert r["hit"] == (abs(r["bpp"] / r["target_bpp"] - 1) <= 0.03) and r["encodes"] >= 1
    assert (out / "rd.png").stat().st_size > 10_000
