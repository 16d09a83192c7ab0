"""Portable files (issue 13): the integer entropy path decodes exactly in another environment.

* ``test_pinned_scale_table`` / ``test_thresholds_reproduce_scale_indexes``: the integer σ → index
  rule equals the float rule (``scale_indexes``, the independent reference) on every integer σ the
  network can emit (exhaustive over [−2**12, 2**24)).
* ``test_portable_model_close_to_float``: the bundled default (``mae-hyperprior-int``, at its
  smallest and largest λ) and the first default (``bmshj2018-hyperprior-int`` q4, still shipped for
  its files) are portable, each integer network is the one recorded at export (digests pinned
  here: a change of the quantisation rule would make old files unreadable), and on a Kodak crop
  its indexes differ from the float path's on few positions (the first default never by more than
  one step; the bundled default by more at ≤ 0.03 % of them), at about the same bytes.
* ``test_cross_environment_round_trips[all24]`` (extended): all 24 Kodak images with
  ``mae-hyperprior-int`` (the bundled default; image i at its ((i mod 6) + 1)-th λ),
  ``bmshj2018-hyperprior-int`` (the first default), ``mbt2018-int`` (integer context model and
  entropy-parameter network; real width, random weights made non-trivial) and ``mbt2018-mean-int``
  (same weights treatment; its integer h_s is the one mbt2018-int also runs); ``[ci]`` codes all 24
  with the default, 4 with the first default, 8 with mbt2018-int and 4 with mbt2018-mean-int. Each image is
  encoded in ``.venv`` (jax 0.10) and decoded in ``.venv-tfc`` (jax 0.4.30, numpy 1.26), and the
  reverse: every file decodes to exactly the encoder's y and z symbols.
* ``test_xla_flags_and_threads``: decoding under ``--xla_cpu_enable_fast_math=true`` with a
  1-thread pool gives the same symbols.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, load_rgb, require_data

ROOT = Path(__file__).resolve().parents[1]
CHILD = str(ROOT / "tests" / "cross_env_child.py")
TFC_PYTHON = ROOT / ".venv-tfc" / "bin" / "python"
# the integer networks of the bundled default (scripts/make_default_model.py) and of the first default
# (scripts/make_portable.py), each calibrated on 64 crops of shared/data/train
DEFAULT_INT_DIGEST = "c5f28ba8484d9b5e"
FIRST_DEFAULT = ROOT / "lic_jax" / "assets" / "models" / "bmshj2018-hyperprior-q4"
FIRST_DEFAULT_INT_DIGEST = "de3bdfc967b418c3"


def kodak_dir() -> Path:
    return require_data(DATA / "kodak")


def test_pinned_scale_table():
    from lic_jax.entropy_models.gaussian import scale_table
    from lic_jax.models.portable import PINNED_SCALE_TABLE

    np.testing.assert_array_equal(PINNED_SCALE_TABLE.view(np.uint32), scale_table().view(np.uint32))


def test_thresholds_reproduce_scale_indexes():
    from lic_jax.entropy_models.gaussian import scale_indexes
    from lic_jax.models.portable import OUT_SHIFT, sigma_thresholds

    n = np.arange(-(2**12), 2**24, dtype=np.int64)
    sigma = np.ldexp(n.astype(np.float64), -OUT_SHIFT).astype(np.float32)  # exact: |n| < 2**24
    ref = scale_indexes(sigma)
    got = np.searchsorted(sigma_thresholds(), n, side="right")  # = #{i: n >= T_i}, the network's rule
    np.testing.assert_array_equal(got, ref)


# measured on the kodim05 crop below (2026-12-04): first default 2.29 % of positions differ (PTQ 8-bit
# weights, 10-bit activations), never by > 1, 12253 vs 12249 bytes (+0.03 %). The bundled default (finetune
# step 12000, int_shifts [6, 6, 7]) 4.07 % / 2.90 % at λ 0.0018 / 0.0483 (2.9-4.1 % over its six λ); steps > 1
# at 0 / 7 of 73,728 positions (≤ 0.009 % over the six λ), at most 1 / 3 steps; bytes −0.33 % / −0.07 % (the
# integer files are the smaller). Step 8000 ([6, 7, 7]): 1 / 36 positions > 1 step, at most 2 / 4 (5 on the
# whole kodim05); step 4000's never differed by > 1. Bounds: the share of positions ≥ 2 steps off at 3× the
# largest measurement (0.03 %), the largest step 6.
@pytest.mark.parametrize("which,lmbda", [("default", 0.0018), ("default", 0.0483), ("first", None)])
def test_portable_model_close_to_float(which, lmbda):
    from lic_jax.artifact import load_artifact
    from lic_jax.coding import Codec
    from lic_jax.default_model import default_model_path
    from lic_jax.models.portable import float_spec

    art = load_artifact(default_model_path() if which == "default" else FIRST_DEFAULT)
    assert art.spec.name == ("mae-hyperprior-int" if which == "default" else "bmshj2018-hyperprior-int")
    codec = Codec.from_artifact(art)
    digest = codec.latent_coder.integer.digest()
    pinned = DEFAULT_INT_DIGEST if which == "default" else FIRST_DEFAULT_INT_DIGEST
    assert digest == art.metadata["portable"]["integer_network_sha256"] and digest.startswith(pinned)
    fspec = float_spec(art.spec)
    fcodec = Codec(fspec.build(), fspec, art.variables, fingerprint=art.fingerprint)
    img = load_rgb(kodak_dir() / "kodim05.png")[:256, :384]
    e, f = codec.encode(img, lmbda), fcodec.encode(img, lmbda)
    assert Codec.info(e.data)["portable"] and not Codec.info(f.data)["portable"]
    idx_i, idx_f = e.latents.y_indexes.astype(int), f.latents.y_indexes.astype(int)
    diff = np.abs(idx_i - idx_f)
    mism = float(np.mean(diff > 0))
    if which == "default":
        assert mism < 0.07 and float(np.mean(diff > 1)) < 0.0003 and diff.max() <= 6, (mism, np.mean(diff > 1), diff.max())
    else:
        assert mism < 0.07 and diff.max() <= 1, mism
    assert abs(len(e.data) / len(f.data) - 1) < 0.01
    np.testing.assert_array_equal(e.latents.y_symbols, f.latents.y_symbols)  # μ = 0: round(y) either way


def _portable_random(name: str, out_dir: Path):
    """The portable twin of ``name`` at quality-3 width, random weights made non-trivial, calibrated on
    training crops."""
    import jax
    import jax.numpy as jnp

    from lic_jax.artifact import save_artifact
    from lic_jax.models import get_model
    from lic_jax.models.portable import portable_spec
    from test_determinism import nontrivial_params

    model, spec = get_model(name, 3)
    v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3), jnp.float32))
    params = jax.tree_util.tree_map(np.asarray, dict(v["params"]))
    x = load_rgb(kodak_dir() / "kodim23.png")[128:256, 256:384][None].astype(np.float32) / 255.0
    variables = {"params": nontrivial_params(model, params, x)}
    crops = [load_rgb(p).astype(np.float32) / 255.0 for p in sorted((DATA / "train").glob("*.png"))[:8]]
    save_artifact(str(out_dir), portable_spec(spec, variables, crops), variables)
    return str(out_dir)


def _child(python, mode, jobs, tmp: Path, env=None):
    """Run one child process for several (model, out dir, paths) jobs; returns its JSON."""
    jf = tmp / f"jobs-{mode}-{abs(hash(str(python))) % 10**6}.json"
    jf.write_text(json.dumps([{"model": m, "out": str(o), "paths": [str(p) for p in ps]} for m, o, ps in jobs]))
    r = subprocess.run([str(python), CHILD, mode, str(jf)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _compare(enc_dir: Path, dec_dir: Path, results, jax_version):
    bad = {k: v for k, v in results.items() if v != "ok"}
    assert not bad, f"{len(bad)} files not decoded under jax {jax_version}: {bad}"
    for k in results:
        a, b = np.load(enc_dir / f"{k}.enc.npz"), np.load(dec_dir / f"{k}.dec.npz")
        np.testing.assert_array_equal(a["y"], b["y"], err_msg=k)
        np.testing.assert_array_equal(a["z"], b["z"], err_msg=k)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from lic_jax.default_model import default_model_path

    return {"mae-hyperprior-int": default_model_path(), "bmshj2018-hyperprior-int": str(FIRST_DEFAULT),
            "mbt2018-mean-int": _portable_random("mbt2018-mean", tmp_path_factory.mktemp("m") / "mbt2018-mean-int"),
            "mbt2018-int": _portable_random("mbt2018", tmp_path_factory.mktemp("a") / "mbt2018-int")}


# images per model: CI codes all 24 with the bundled default, 4 with the first default, 8 with mbt2018-int and 4
# with mbt2018-mean-int;
# the 'extended' form is issue 13's whole acceptance, all 24 with every model (scripts/test.sh --extended).
# The saving is small: the children's compilation dominates (24/24/8 took 317 s serially, 24/8/4 334 s
# beside a second xdist worker, 2026-12-02).
CROSS_ENV_CI = {"mae-hyperprior-int": 24, "bmshj2018-hyperprior-int": 4, "mbt2018-int": 8, "mbt2018-mean-int": 4}
CROSS_ENV_FULL = dict.fromkeys(CROSS_ENV_CI, 24)


@pytest.mark.parametrize("counts", [pytest.param(CROSS_ENV_CI, id="ci"),
                                    pytest.param(CROSS_ENV_FULL, id="all24", marks=pytest.mark.extended)])
def test_cross_environment_round_trips(models, tmp_path, counts):
    if not TFC_PYTHON.exists():
        pytest.skip(f"{TFC_PYTHON} does not exist (the second environment is not installed)")
    images = sorted(kodak_dir().glob("kodim*.png"))
    assert len(images) == 24
    # evenly spaced subsets, with portraits among them (kodim04/10/19 in the 8, kodim19 in the 4)
    per_model = {n: images[:: 24 // counts[n]][: counts[n]] for n in models}
    envs = {"venv": Path(sys.executable), "tfc": TFC_PYTHON}
    dirs = {(e, n): tmp_path / e / n for e in envs for n in models}
    for d in dirs.values():
        d.mkdir(parents=True)
    versions = {}
    for e, py in envs.items():  # encode the Kodak images with every model in each environment
        versions[e] = _child(py, "encode", [(models[n], dirs[e, n], per_model[n]) for n in models], tmp_path)["jax"]
    assert versions["tfc"].startswith("0.4.") and not versions["venv"].startswith("0.4."), versions  # two jax versions
    for w, r in (("venv", "tfc"), ("tfc", "venv")):  # decode the other environment's files
        dec = {n: tmp_path / f"{w}-read-by-{r}" / n for n in models}
        for d in dec.values():
            d.mkdir(parents=True)
        res = _child(envs[r], "decode", [(models[n], dec[n], sorted(dirs[w, n].glob("*.lic"))) for n in models],
                     tmp_path)
        for n, results in zip(models, res["results"]):
            assert len(results) == len(per_model[n])
            _compare(dirs[w, n], dec[n], results, res["jax"])


def test_xla_flags_and_threads(models, tmp_path):
    images = sorted(kodak_dir().glob("kodim*.png"))[:6]
    names = ("mbt2018-mean-int", "mbt2018-int")
    enc = {n: tmp_path / "enc" / n for n in names}
    dec = {n: tmp_path / "dec" / n for n in names}
    for d in (*enc.values(), *dec.values()):
        d.mkdir(parents=True)
    _child(sys.executable, "encode", [(models[n], enc[n], images) for n in names], tmp_path)
    env = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true", "NPROC": "1"}
    res = _child(sys.executable, "decode", [(models[n], dec[n], sorted(enc[n].glob("*.lic"))) for n in names],
                 tmp_path, env=env)
    for n, results in zip(names, res["results"]):
        assert len(results) == 6
        _compare(enc[n], dec[n], results, res["jax"])


def test_non_portable_files_record_their_environment(tmp_path):
    """A float model's file carries where it was written (header flags bit 6); when its stream is
    rejected under another environment the error names that environment. Portable files carry none."""
    import dataclasses

    import jax

    from lic_jax.coding import Codec, CorruptFileError, container
    from lic_jax.coding.environment import current_environment
    from lic_jax.models import get_model
    from lic_jax.models.portable import portable_spec

    model, spec = get_model("bmshj2018-hyperprior", N=8, M=12)
    v = {"params": model.init(jax.random.PRNGKey(0), np.zeros((1, 64, 64, 3), np.float32))["params"]}
    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    data = Codec(model, spec, v).compress(img)
    h, streams = container.unpack(data)
    env = current_environment()
    assert h.environment == env and env.startswith(f"jax {jax.__version__} ")
    assert Codec.info(data)["environment"] == env
    pspec = portable_spec(spec, v, [img / np.float32(255)])
    ph, _ = container.unpack(Codec(pspec.build(), pspec, v).compress(img))
    assert ph.environment is None

    # a damaged z stream (all 0xFF: measured, constriction rejects it; XOR-ed or zeroed bytes decode to
    # garbage silently): under a forged "other" environment the message names it, under this one it is
    # the plain error
    bad = [b"\xff" * len(streams[0]), streams[1]]
    codec = Codec(model, spec, v)
    with pytest.raises(CorruptFileError) as plain:
        codec.decompress(container.pack(h, bad))
    assert "rejected" in str(plain.value) and "written under" not in str(plain.value)
    other = dataclasses.replace(h, environment="jax 0.12.0 aarch64 asimd")
    with pytest.raises(CorruptFileError) as named:
        codec.decompress(container.pack(other, bad))
    msg = str(named.value)
    assert "written under jax 0.12.0 aarch64 asimd" in msg and env in msg and "\n" not in msg

    # the field is validated: empty, too long, non-printable → CorruptFileError, never a crash
    body = container.pack(h, streams)
    off = body.index(env.encode())
    for forged in (body[:off - 1] + b"\x00" + body[off:], body[:off] + b"\x07" + body[off + 1:]):
        import struct
        import zlib

        forged = forged[:-4] + struct.pack("<I", zlib.crc32(forged[:-4]) & 0xFFFFFFFF)
        with pytest.raises((CorruptFileError, container.TruncatedFileError)):
            container.unpack(forged)


def test_variable_rate_calibration_covers_every_lambda():
    """``mae-hyperprior-int``'s activation scales hold at every trained λ: each shift equals the smallest
    of the shifts calibrated for the fixed-rate twins at each λ (``fixed_rate``: the modulation folded
    into the weights, calibrated as ``bmshj2018-hyperprior-int``: an independent code path)."""
    import jax
    import jax.numpy as jnp

    from lic_jax.models import get_model
    from lic_jax.models.mae import fixed_rate
    from lic_jax.models.portable import portable_spec
    from lic_jax.models.registry import ModelSpec
    from test_determinism import nontrivial_params

    model, spec = get_model("mae-hyperprior", N=16, M=24, lmbdas="0.0018,0.0067,0.0483", lmbda_input="log")
    v = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 64, 64, 3), jnp.float32), jnp.float32(0.0067))
    x = load_rgb(kodak_dir() / "kodim23.png")[128:256, 256:384][None].astype(np.float32) / 255.0
    params = jax.tree_util.tree_map(np.asarray, dict(v["params"]))
    # make the λ matter to the hyper-latent: the last analysis modulation is 4**t with t = 0, ½, 1 for the
    # three λ (log input: hidden Dense(1→50) = t, out Dense(50→M) = log 4 / 50 per unit, then exp)
    params["mod_3"] = {"hidden": {"kernel": np.ones((1, 50), np.float32), "bias": np.zeros(50, np.float32)},
                       "out": {"kernel": np.full((50, 24), np.log(4.0) / 50, np.float32),
                                   "bias": np.zeros(24, np.float32)}}
    params = nontrivial_params(model, params, x, lam=0.0067)
    variables = {"params": params}
    crops = [load_rgb(p).astype(np.float32) / 255.0 for p in sorted((DATA / "train").glob("*.png"))[:4]]
    got = portable_spec(spec, variables, crops).hparams["int_shifts"]
    per_lambda = []
    for lam in model.lmbdas:
        name, hp, fv = fixed_rate(model, variables, lam)
        per_lambda.append(portable_spec(ModelSpec(name, None, hp), fv, crops).hparams["int_shifts"])
    assert len({tuple(s) for s in per_lambda}) > 1, per_lambda  # the λ do change the scales
    assert list(got) == [min(s[i] for s in per_lambda) for i in range(len(got))], (got, per_lambda)
