"""eval.py end to end: parity with CompressAI's eval_model, multi-point runs, plots, tables, data sets."""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct

import numpy as np
import pytest

from conftest import REPO, load_rgb, require
from lic_jax.evaluation.cli import main

ARCH = "bmshj2018-hyperprior"


def _has_real_codec() -> bool:
    try:
        from lic_jax.coding import Codec  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def parity_setup(kodak_dir, tmp_path_factory):
    """A randomly initialised CompressAI hyperprior (quality 1) saved with torch.save, and a small image
    set: two Kodak images plus a 200×300 crop (not a multiple of 64: exercises the pad/crop rule)."""
    require("compressai")
    import torch
    from compressai.zoo import bmshj2018_hyperprior

    d = tmp_path_factory.mktemp("parity")
    torch.manual_seed(0)
    net = bmshj2018_hyperprior(quality=1, pretrained=False)
    ckpt = d / "hp-q1.pth.tar"
    torch.save(net.state_dict(), ckpt)
    imgs, full = d / "images", d / "full"
    imgs.mkdir()
    full.mkdir()
    for n in ("kodim01.png", "kodim07.png"):
        shutil.copyfile(kodak_dir / n, imgs / n)
        shutil.copyfile(kodak_dir / n, full / n)
    from PIL import Image

    Image.fromarray(load_rgb(kodak_dir / "kodim23.png")[100:300, 200:500]).save(imgs / "kodim23_crop.png")
    return ckpt, imgs, full


def _compressai_eval(ckpt, imgs, entropy_estimation):
    require("compressai")
    from compressai.utils.eval_model.__main__ import collect_images, eval_model, load_checkpoint

    model = load_checkpoint(ARCH, False, str(ckpt))
    files = collect_images(str(imgs))
    return dict(eval_model(model, "", str(imgs), files, entropy_estimation=entropy_estimation, half=False,
                           architecture=ARCH, per_image=False))


def _check_parity(ours, ref, bpp_rel):
    print(f"ours psnr {ours['psnr-rgb']:.6f} ms-ssim {ours['ms-ssim-rgb']:.8f} bpp {ours['bpp']:.6f} | "
          f"CompressAI psnr {ref['psnr-rgb']:.6f} ms-ssim {ref['ms-ssim-rgb']:.8f} bpp {ref['bpp']:.6f}")
    assert abs(ours["psnr-rgb"] - ref["psnr-rgb"]) <= 0.01
    assert abs(ours["ms-ssim-rgb"] - ref["ms-ssim-rgb"]) <= 1e-5
    assert ours["bpp"] == pytest.approx(ref["bpp"], rel=bpp_rel)


def test_compressai_checkpoint_parity_real_bitstreams(parity_setup, tmp_path):
    if not _has_real_codec():
        pytest.skip("lic_jax.coding.Codec not available in this checkout")
    ckpt, imgs, _ = parity_setup
    out = tmp_path / "hp.json"
    rc = main(["--model", ARCH, "--compressai-checkpoint", str(ckpt), "--quality", "1", "--dataset", str(imgs),
               "--out", str(out), "--metrics", "psnr-rgb,ms-ssim-rgb", "--no-progress", "--no-warmup"])
    assert rc == 0
    d = json.loads(out.read_text())
    ours = {k: d["results"][k][0] for k in ("psnr-rgb", "ms-ssim-rgb", "bpp")}
    ref = _compressai_eval(ckpt, imgs, entropy_estimation=False)
    # same metrics on the same 8-bit reconstructions; rates from different coders (and a file header)
    _check_parity(ours, ref, bpp_rel=0.02)
    assert d["meta"]["source"] == "bitstream" and d["results"]["quality"] == [1]
    with open(tmp_path / "hp.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["kodim01.png", "kodim07.png", "kodim23_crop.png"]
    if "bpp-payload" in d["results"]:  # the codec reports its payload (entropy-coded streams, no container)
        assert all(0 < int(r["payload_bytes"]) < int(r["bytes"]) for r in rows)
        print(f"payload bpp {d['results']['bpp-payload'][0]:.6f} (CompressAI counts its strings: {ref['bpp']:.6f}), "
              f"estimate {d['results']['bpp-estimate'][0]:.6f}")


def test_compressai_checkpoint_parity_entropy_estimation(parity_setup):
    from lic_jax.convert import from_compressai
    from lic_jax.evaluation.codecs import LearnedCodec
    from lic_jax.evaluation.datasets import resolve_dataset
    from lic_jax.evaluation.runner import Point, evaluate

    # CompressAI's entropy-estimation path does not pad (it fails on the 200×300 crop): full images only
    ckpt, _, imgs = parity_setup
    model, spec, variables = from_compressai(str(ckpt), ARCH, 1)
    curve, _ = evaluate([Point("q1", 1, lambda: LearnedCodec(model, spec, variables, entropy_estimation=True,
                                                             warmup=False))],
                        resolve_dataset(str(imgs)), metrics=["psnr-rgb", "ms-ssim-rgb"], progress=False)
    ours = {"bpp": curve.bpp[0], **{k: curve.metrics[k][0] for k in ("psnr-rgb", "ms-ssim-rgb")}}
    ref = _compressai_eval(ckpt, imgs, entropy_estimation=True)
    # same likelihoods (float32, different libraries): the estimated rates agree closely
    _check_parity(ours, ref, bpp_rel=1e-3)

    # --float-recon: metrics on the unrounded reconstruction (how CompressAI's published JSONs were made),
    # against CompressAI's forward x̂ measured directly with its own formulas
    import torch
    from compressai.utils.eval_model.__main__ import load_checkpoint, psnr, read_image
    from pytorch_msssim import ms_ssim

    curve, _ = evaluate([Point("q1", 1, lambda: LearnedCodec(model, spec, variables, entropy_estimation=True,
                                                             float_recon=True, warmup=False))],
                        resolve_dataset(str(imgs)), metrics=["psnr-rgb", "ms-ssim-rgb"], progress=False)
    net = load_checkpoint(ARCH, False, str(ckpt))
    p_ref, m_ref = [], []
    with torch.no_grad():
        for f in sorted(imgs.iterdir()):
            x = read_image(f).unsqueeze(0)
            xh = net(x)["x_hat"].clamp(0, 1)
            p_ref.append(psnr(x * 255, xh * 255).item())
            m_ref.append(ms_ssim(x * 255, xh * 255, data_range=255).item())
    print(f"float recon: ours psnr {curve.metrics['psnr-rgb'][0]:.6f} ms-ssim {curve.metrics['ms-ssim-rgb'][0]:.8f}"
          f" | torch psnr {np.mean(p_ref):.6f} ms-ssim {np.mean(m_ref):.8f}")
    assert abs(curve.metrics["psnr-rgb"][0] - np.mean(p_ref)) <= 0.01
    assert abs(curve.metrics["ms-ssim-rgb"][0] - np.mean(m_ref)) <= 1e-5


def test_random_init_multi_quality_run(kodak_dir, tmp_path):
    """Several qualities in one call → one entry per quality, in quality order; per-image CSV."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    from PIL import Image

    for n in ("kodim05.png", "kodim19.png"):
        Image.fromarray(load_rgb(kodak_dir / n)[:192, :256]).save(imgs / n.replace(".png", "_c.png"))
    out = tmp_path / "r.json"
    rc = main(["--model", "bmshj2018-factorized", "--random-init", "--quality", "2", "1", "--dataset", str(imgs),
               "--entropy-estimation", "--out", str(out), "--no-progress", "--name", "fact-random"])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["name"] == "fact-random" and d["description"].startswith("lic_jax, entropy estimation")
    res = d["results"]
    assert res["quality"] == [1, 2]
    for k in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time", "psnr-y", "ms-ssim-db-rgb",
              "psnr-hvs", "psnr-hvs-m"):
        assert len(res[k]) == 2 and all(np.isfinite(res[k])), k
    with open(tmp_path / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["point"] for r in rows} == {"q1", "q2"}
    assert np.mean([float(r["bpp"]) for r in rows if r["point"] == "q2"]) == pytest.approx(res["bpp"][1])


def test_lic_checkpoints_by_template(kodak_dir, tmp_path):
    """--checkpoint with a '{q}' template over lic_jax model directories (lic_jax.artifact)."""
    import jax

    from lic_jax.artifact import save_artifact
    from lic_jax.models import get_model
    from PIL import Image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(load_rgb(kodak_dir / "kodim05.png")[:192, :256]).save(imgs / "a.png")
    for q in (1, 2):
        model, spec = get_model("bmshj2018-factorized", q)
        v = model.init(jax.random.key(q), np.zeros((1, 64, 64, 3), np.float32))
        save_artifact(tmp_path / f"fact-q{q}", spec, {"params": v["params"]})
    out = tmp_path / "ck.json"
    rc = main(["--checkpoint", str(tmp_path / "fact-q{q}"), "--quality", "2", "1", "--dataset", str(imgs),
               "--entropy-estimation", "--out", str(out), "--no-progress", "--metrics", "psnr-rgb"])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["name"] == "bmshj2018-factorized" and d["results"]["quality"] == [1, 2]
    assert [p["checkpoint"].rsplit("/", 1)[1] for p in d["meta"]["point_info"]] == ["fact-q1", "fact-q2"]
    assert d["results"]["bpp"][0] != d["results"]["bpp"][1]  # different weights
    with pytest.raises(SystemExit):  # a model-name mismatch is refused
        main(["--model", "mbt2018", "--checkpoint", str(tmp_path / "fact-q1"), "--dataset", str(imgs),
              "--entropy-estimation", "--out", str(out), "--no-progress"])


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_plot_and_table(anchors_dir, tmp_path, capsys):
    hp = str(anchors_dir / "compressai_kodak" / "compressai-bmshj2018-hyperprior_mse_cuda.json")
    mbt = str(anchors_dir / "compressai_kodak" / "compressai-mbt2018_mse_cuda.json")
    png = tmp_path / "rd.png"
    assert main(["plot", hp, mbt, "--anchor", "jpeg", "--anchor", "bpg444", "--anchor", "tfc-jpeg420",
                 "--out", str(png), "--title", "Kodak"]) == 0
    w, h = _png_size(png)
    assert (w, h) == (1488, 576) and os.path.getsize(png) > 30_000
    keep = os.environ.get("LIC_JAX_KEEP_PLOT")
    if keep:
        shutil.copyfile(png, keep)
    md = tmp_path / "summary.md"
    assert main(["table", hp, mbt, "tfc:toderici-2017-cvpr", "--out", str(md)]) == 0
    text = md.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("| curve | points | bpp range | BD-rate PSNR vs JPEG |")
    row = next(ln for ln in lines if ln.startswith("| bmshj2018-hyperprior"))
    # PERF_ANCHORS.md §1.1: CompressAI hyperprior vs JPEG −55.0 / −55.2, vs BPG 4:4:4 +3.9 / +3.9
    assert "-55.0 % (-55.2)" in row and "+3.9 % (+3.9)" in row
    tod = next(ln for ln in lines if ln.startswith("| Toderici"))
    assert "1.8116" in tod


def test_plot_legend_tells_same_named_curves_apart(anchors_dir):
    """CompressAI names its MSE and MS-SSIM results of a model alike: the legend adds what their files'
    names differ by, and leaves unique names alone (written out here, not derived by the code under test)."""
    from lic_jax.evaluation.anchors import load_anchor
    from lic_jax.evaluation.plots import legend_labels
    from lic_jax.evaluation.results import RDCurve

    root = anchors_dir
    curves = [load_anchor(n, root) for n in ("compressai-bmshj2018-hyperprior_mse_cpu",
                                             "compressai-bmshj2018-hyperprior_ms-ssim_cpu", "jpeg")]
    assert [c.name for c in curves][:2] == ["bmshj2018-hyperprior"] * 2
    assert legend_labels(curves) == ["bmshj2018-hyperprior (mse)", "bmshj2018-hyperprior (ms-ssim)", curves[2].name]
    # no file names: descriptions, else ordinals; a tag must never come out empty
    c = [RDCurve("m", [0.1], {}, description=d) for d in ("x_a", "x_b")]
    assert legend_labels(c) == ["m (a)", "m (b)"]
    c = [RDCurve("m", [0.1], {}, description="same") for _ in range(2)]
    assert legend_labels(c) == ["m (#1)", "m (#2)"]
    c = [RDCurve("m", [0.1], {}, description=d) for d in ("_x", "y_x")]
    assert legend_labels(c) == ["m (_x)", "m (y_x)"]


def test_datasets(kodak_dir, tmp_path, monkeypatch):
    from lic_jax.evaluation import datasets as D

    ds = D.resolve_dataset(str(kodak_dir))
    assert ds.names[:3] == ["kodim01.png", "kodim02.png", "kodim03.png"] and len(ds) == 24
    a = ds.loaders[0]()
    assert a.dtype == np.uint8 and a.shape == (512, 768, 3)
    # `kodak` resolves through --data-dir / $LIC_JAX_KODAK_DIR
    sub = tmp_path / "k"
    sub.mkdir()
    shutil.copyfile(kodak_dir / "kodim02.png", sub / "kodim02.png")
    (sub / "notes.txt").write_text("not an image")
    assert D.resolve_dataset("kodak", data_dir=sub).names == ["kodim02.png"]
    monkeypatch.setenv("LIC_JAX_KODAK_DIR", str(sub))
    assert D.resolve_dataset("kodak").names == ["kodim02.png"]
    # nothing found → an error that says how to get Kodak
    monkeypatch.setenv("LIC_JAX_KODAK_DIR", str(tmp_path / "missing"))
    monkeypatch.delenv("LIC_JAX_DATA_DIR", raising=False)
    monkeypatch.setattr(D, "_repo_shared", lambda: tmp_path / "nowhere")
    with pytest.raises(D.DatasetNotFound, match="kodim01.png … kodim24.png"):
        D.resolve_dataset("kodak")
    # CLIC: a local directory, else tfds (not prepared here) → instructions
    monkeypatch.delenv("LIC_JAX_CLIC_DIR", raising=False)
    with pytest.raises(D.DatasetNotFound, match="CLIC 2020"):
        D.resolve_dataset("clic", tfds_data_dir=str(tmp_path / "tfds"))
    monkeypatch.setenv("LIC_JAX_CLIC_DIR", str(sub))
    assert D.resolve_dataset("clic:test").name == "clic:test"
    with pytest.raises(D.DatasetNotFound):
        D.resolve_dataset(str(tmp_path / "no-such-dir"))


def test_tfds_dataset_without_tensorflow(tmp_path):
    """A tfds builder prepared in array_record format is read through tfds.data_source (no TF needed)."""
    tfds = require("tensorflow_datasets")
    from PIL import Image

    from lic_jax.evaluation.datasets import resolve_dataset

    for i in range(3):
        Image.fromarray(np.full((20 + i, 30, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")

    class LicJaxTestImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image()}))

        def _split_generators(self, dl_manager):
            return {"test": self._generate_examples()}

        def _generate_examples(self):
            for i in range(3):
                yield str(i), {"image": str(tmp_path / f"{i}.png")}

    LicJaxTestImages(data_dir=str(tmp_path / "data"), file_format="array_record").download_and_prepare()
    ds = resolve_dataset("tfds:lic_jax_test_images:test", tfds_data_dir=str(tmp_path / "data"))
    imgs = [a for _, a in ds]
    assert len(ds) == 3 and sorted(a.shape[0] for a in imgs) == [20, 21, 22]
    assert all(a.dtype == np.uint8 and a.shape[1:] == (30, 3) for a in imgs)


def test_shared_paths_follow_LIC_JAX_SHARED(monkeypatch, tmp_path):
    """Every default data location (train/val config, Kodak lookup, anchors, configs/default_model.py)
    follows $LIC_JAX_SHARED instead of a hard-coded ../shared."""
    import importlib.util

    from lic_jax.evaluation.anchors import anchors_dir
    from lic_jax.evaluation.datasets import default_kodak_dir
    from lic_jax.train.config import get_default_config

    (tmp_path / "data" / "kodak").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "kodak" / "kodim01.png")
    for k in ("LIC_JAX_KODAK_DIR", "LIC_JAX_DATA_DIR", "LIC_JAX_ANCHORS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("LIC_JAX_SHARED", str(tmp_path))
    c = get_default_config()
    assert (c.data.train, c.data.val) == (str(tmp_path / "data" / "train"), str(tmp_path / "data" / "val"))
    assert default_kodak_dir() == tmp_path / "data" / "kodak"
    assert anchors_dir() == tmp_path / "anchors"
    spec = importlib.util.spec_from_file_location("cfg_default_model", REPO / "configs" / "default_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.get_config().data.train == str(tmp_path / "data" / "train")
