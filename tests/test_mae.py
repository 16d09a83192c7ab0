"""Modulated autoencoders (seed 001, issue 6): registry, λ handling, variable-rate training
(every λ per batch / one λ per step, weights, per-λ validation, export with the λ set)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import DATA
from lic_jax.models import (LAMBDA_PRESETS, ModelSpec, get_model, is_variable_rate, model_names, resolve_lmbdas,
                            total_bits, variable_rate_model_names)
from lic_jax.train import parallel, trainer
from lic_jax.train.config import get_default_config
from lic_jax.train.metrics_writer import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_DIR = str(DATA / "train")  # $LIC_JAX_SHARED/data (tests/conftest.py)
VAL_DIR = str(DATA / "val")
SEED001 = tuple(v / 255.0**2 for v in (64.0, 256.0, 1024.0, 4096.0))


def _load_config(name, arg=None):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg) if arg is not None else mod.get_config()


# ----------------------------------------------------------------------------------------------
# registry and λ sets
# ----------------------------------------------------------------------------------------------
def test_registry_and_lambda_sets():
    assert variable_rate_model_names() == ["mae-bls2017", "mae-hyperprior", "mae-hyperprior-int"]
    assert not set(variable_rate_model_names()) & set(model_names())  # model_names(): the quality-indexed family
    assert LAMBDA_PRESETS["seed001"] == pytest.approx(SEED001)
    assert len(LAMBDA_PRESETS["compressai"]) == 8
    assert resolve_lmbdas("seed001") == pytest.approx(SEED001)
    assert resolve_lmbdas("0.01, 0.001") == (0.001, 0.01)  # sorted
    assert resolve_lmbdas([0.5, 0.1]) == (0.1, 0.5)
    for bad in ("", "x,y", [0.1, 0.1], [0.1, -1.0], [float("inf")]):
        with pytest.raises(ValueError):
            resolve_lmbdas(bad)
    m, spec = get_model("mae-hyperprior", N=8, M=12, lmbdas="seed001")
    assert is_variable_rate(m) and is_variable_rate(spec) and is_variable_rate("mae-bls2017")
    assert not is_variable_rate("bls2017") and not is_variable_rate(get_model("bls2017", N=8)[0])
    assert spec.hparams == {"N": 8, "M": 12, "lmbdas": pytest.approx(SEED001), "activation": "exp", "lmbda_input": "linear"}
    assert m.lmbda_max == pytest.approx(4096 / 255.0**2) and m.lmbda_range[0] == pytest.approx(64 / 255.0**2)
    # the spec always records the λ set (default: the class's) and survives a JSON round trip
    _, s2 = get_model("mae-bls2017", N=8)
    assert s2.hparams["lmbdas"] == SEED001 and s2.hparams["activation"] == "exp"
    back = ModelSpec.from_dict(json.loads(json.dumps(s2.to_dict())))
    assert back.build().lmbdas == s2.build().lmbdas and isinstance(back.build().lmbdas, tuple)
    with pytest.raises(ValueError, match="no quality"):
        get_model("mae-bls2017", 3)
    with pytest.raises(ValueError, match="activation"):
        get_model("mae-bls2017", N=8, activation="tanh")


@pytest.mark.parametrize("name,hp,activation", [("mae-bls2017", {"N": 8}, "sigmoid"),
                                                ("mae-hyperprior", {"N": 8, "M": 12}, "exp")])
def test_per_image_lambda_equals_scalar_lambda(name, hp, activation):
    """A (B,) λ array applies λ_i to image i: equal to B separate calls with scalar λ."""
    model, _ = get_model(name, activation=activation, lmbdas="seed001", **hp)
    x = jax.random.uniform(jax.random.key(0), (3, 64, 64, 3))
    v = model.init({"params": jax.random.key(1), "noise": jax.random.key(2)}, x[:1], 0.01, train=True)
    # perturb the modulation nets' output layers so that λ matters at initialisation
    leaves, tdef = jax.tree_util.tree_flatten_with_path(v)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    v = jax.tree_util.tree_unflatten(tdef, [
        a + 0.5 * jax.random.normal(k, a.shape) if "mod" in jax.tree_util.keystr(p) and "out" in jax.tree_util.keystr(p)
        else a for (p, a), k in zip(leaves, keys)])
    lam = jnp.array([0.001, 0.01, 0.06])
    out = model.apply(v, x, lam)
    for i in range(3):
        oi = model.apply(v, x[i : i + 1], float(lam[i]))
        for key in ("x_hat", "y"):
            scale = float(jnp.max(jnp.abs(oi[key])))
            np.testing.assert_allclose(out[key][i : i + 1], oi[key], rtol=1e-4, atol=1e-5 * scale)
    d = float(jnp.max(jnp.abs(out["y"][0] - out["y"][2]))) / float(jnp.max(jnp.abs(out["y"][0])))
    assert d > 1e-3  # λ changes the latents


# ----------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------
def test_configs():
    c = _load_config("mae_bls2017")
    assert c.model == "mae-bls2017" and c.quality == 0 and c.variable_rate.mode == "all"
    model, spec = trainer.build_model(c)
    assert spec.hparams["N"] == 192 and spec.hparams["lmbdas"] == pytest.approx(SEED001)
    assert spec.hparams["lmbda_input"] == "log" and model.lmbda_input == "log"
    lam = np.asarray(model.lmbda_norm(jnp.asarray(SEED001), 4))
    np.testing.assert_allclose(lam, [0, 1 / 3, 2 / 3, 1], atol=1e-6)  # log-range: equal room per λ
    lin = _load_config("mae_bls2017", "linear")
    m_lin, s_lin = trainer.build_model(lin)
    assert s_lin.hparams["lmbda_input"] == "linear"
    np.testing.assert_allclose(np.asarray(m_lin.lmbda_norm(jnp.asarray(SEED001), 4)), [1 / 64, 1 / 16, 1 / 4, 1],
                               rtol=1e-6)  # the paper's λ/λ_max
    vr = trainer.resolve_variable_rate(c, spec)
    assert vr.lmbdas == pytest.approx(SEED001) and vr.weights == (1.0,) * 4 and vr.mode == "all"
    h = _load_config("mae_hyperprior", "seed001,sample,sigmoid")
    _, hs = trainer.build_model(h)
    assert hs.name == "mae-hyperprior" and hs.hparams["activation"] == "sigmoid"
    assert hs.hparams["lmbdas"] == pytest.approx(SEED001) and h.variable_rate.mode == "sample"
    h8 = _load_config("mae_hyperprior")
    assert trainer.resolve_variable_rate(h8).lmbdas == LAMBDA_PRESETS["compressai"]
    h8.variable_rate.weights = "1,1,1,1,1,1,1,2"
    assert trainer.resolve_variable_rate(h8).probs[-1] == pytest.approx(2 / 9)
    for bad in ("1,2", "a,b,c,d,e,f,g,h", "0,0,0,0,0,0,0,0", "-1,1,1,1,1,1,1,1"):
        h8.variable_rate.weights = bad
        with pytest.raises(ValueError):
            trainer.resolve_variable_rate(h8)
    with pytest.raises(ValueError):
        _load_config("mae_hyperprior", "bogus")
    c.quality = 3
    with pytest.raises(ValueError, match="quality"):
        trainer.build_model(c)
    c.quality, c.model_hparams.lmbdas = 0, "compressai"
    with pytest.raises(ValueError, match="disagree"):
        trainer.build_model(c)
    with pytest.raises(ValueError, match="variable-rate"):
        trainer.resolve_lambda(c)
    assert trainer.resolve_variable_rate(get_default_config()) is None  # fixed-rate models: unchanged path


# ----------------------------------------------------------------------------------------------
# the variable-rate train step
# ----------------------------------------------------------------------------------------------
def _tiny(mode, weights="", quant="ste"):
    c = get_default_config()
    c.model, c.quality = "mae-hyperprior", 0
    c.model_hparams.N, c.model_hparams.M = 8, 12
    c.variable_rate.lmbdas, c.variable_rate.mode, c.variable_rate.weights = "seed001", mode, weights
    c.quant = quant
    c.optim.lr = 1e-3
    model, spec = trainer.build_model(c)
    vr = trainer.resolve_variable_rate(c, spec)
    mesh = parallel.make_mesh()
    tx, sched = trainer.make_optimizer(c, 100)
    state = trainer.create_train_state(model, tx, jax.random.key(0), mesh)
    step = trainer.make_vr_train_step(model, c, vr, tx, sched, mesh, jax.random.key(1), jax.random.key(2))
    return c, model, vr, state, step


def test_all_mode_loss_is_weighted_sum_over_lambdas():
    """'all': loss = Σ_λ w_λ (bpp_λ + λ·255²·MSE_λ) with each λ's terms from its own forward pass
    (quant='ste' is deterministic, so separate passes must give the same numbers)."""
    c, model, vr, state, step = _tiny("all", weights="1,2,0.5,1")
    params = jax.device_get(state["params"])
    batch = np.asarray(jax.random.randint(jax.random.key(3), (2, 64, 64, 3), 0, 256), np.uint8)
    x = batch.astype(np.float32) / 255.0
    expected, per = 0.0, {}
    for lam, w in zip(vr.lmbdas, vr.weights):
        out = model.apply({"params": params}, x, lam, train=True, quant="ste")
        bpp = float(jnp.mean(total_bits(out["likelihoods"]))) / (64 * 64)
        mse = float(jnp.mean(jnp.square(out["x_hat"] - x)))
        per[lam] = bpp + lam * 255.0**2 * mse
        expected += w * per[lam]
    _, m = step(state, batch)
    assert float(m["loss"]) == pytest.approx(expected, rel=1e-4)
    for k, lam in enumerate(vr.lmbdas):
        assert float(m[f"loss{vr.tag(k)}"]) == pytest.approx(per[lam], rel=1e-4)
    assert bool(m["finite"])


# χ² goodness of fit of the λ draws over the λ with non-zero weight (weights 1:0:2:3 → p = 1/6, 0, 1/3, 1/2;
# df = 2): false-failure rate α = 1e-6 for a correct sampler (over the choice of PRNG key; the keys here are
# fixed, so the outcome is deterministic). With n = 500 draws, a sampler that ignores the weights among the
# allowed λ (uniform 1/3 each) has noncentrality n·Σ(q−p)²/p = 111.1 and passes with probability < 1e-6
# (scipy.stats.ncx2.cdf(27.63, 2, 111.1) = 4.4e-8); one that ignores them altogether draws the zero-weight λ.
CHI2_CRIT_DF2_1E6 = 27.631021115928547  # scipy.stats.chi2.isf(1e-6, 2)
N_DRAWS = 500


def _chi2(counts, probs):
    counts, probs = np.asarray(counts, float), np.asarray(probs, float)
    expected = counts.sum() * probs
    return float(np.sum((counts - expected) ** 2 / expected))


def test_sample_mode_draws_lambda_by_weight_and_per_step():
    """'sample': λ_k drawn with probability w_k/Σw (χ² test on 500 train steps, a zero weight never
    drawn), as a pure function of the step (a fresh state repeats the sequence: exact resume)."""
    c, model, vr, state, step = _tiny("sample", weights="1,0,2,3", quant="noise")
    probs = np.array([1 / 6, 0.0, 1 / 3, 1 / 2])
    assert vr.probs == pytest.approx(probs)
    fresh = jax.tree_util.tree_map(jnp.array, state)  # a copy: the step donates its input state
    batch = np.asarray(jax.random.randint(jax.random.key(3), (1, 16, 16, 3), 0, 256), np.uint8)
    lm32 = [np.float32(v) for v in vr.lmbdas]
    drawn = []
    for _ in range(N_DRAWS):
        state, m = step(state, batch)
        drawn.append(lm32.index(np.float32(m["lmbda"])))  # ValueError if a λ outside the set were drawn
    counts = np.bincount(drawn, minlength=4)
    stat = _chi2(counts[[0, 2, 3]], probs[[0, 2, 3]])
    print(f"λ draws {counts.tolist()} for weights 1:0:2:3, χ² = {stat:.2f} (reject above {CHI2_CRIT_DF2_1E6:.2f})")
    assert counts[1] == 0, counts
    assert stat <= CHI2_CRIT_DF2_1E6, (counts, stat)
    # power check of the same statistic: draws of the same size that ignore the weights are rejected
    uniform = np.bincount(np.random.default_rng(0).integers(0, 3, N_DRAWS), minlength=3)
    assert _chi2(uniform, probs[[0, 2, 3]]) > CHI2_CRIT_DF2_1E6
    # the draw is a pure function of the step: the same λ sequence from a fresh state
    again = []
    for _ in range(24):
        fresh, m = step(fresh, batch)
        again.append(lm32.index(np.float32(m["lmbda"])))
    assert again == drawn[:24]


# ----------------------------------------------------------------------------------------------
# a short run through train.py: per-λ validation, export with the λ set, --mode=export
# ----------------------------------------------------------------------------------------------


def _train(workdir, env, *extra, config="mae_bls2017.py:seed001"):
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--config", os.path.join(REPO, "configs", config),
           "--workdir", str(workdir), f"--config.data.train={TRAIN_DIR}", f"--config.data.val={VAL_DIR}",
           "--config.model_hparams.N=8", "--config.data.crop=64", "--config.data.val_crop=64",
           "--config.data.val_limit=4", "--config.data.cache=True", "--config.batch_size=2", "--config.optim.lr=2e-3",
           "--config.optim.schedule=constant", "--config.log_every=10", "--config.progress_bar=False",
           "--config.tb_images=1", *extra]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_train_py_variable_rate_run_validates_per_lambda_and_exports_the_set(tmp_path, env):
    wd = tmp_path / "mae"
    r = _train(wd, env, "--config.num_steps=40", "--config.eval_every=20", "--config.eval_at_start=True",
               "--config.checkpoint_every=20", "--config.variable_rate.weights=1,1,1,2")
    assert r.returncode == 0, r.stderr[-4000:]
    tags = [f"@{v:.4g}" for v in SEED001]
    train = read_metrics(str(wd / "metrics.jsonl"), "train")
    assert [t["step"] for t in train] == [10, 20, 30, 40]
    for t in tags:
        for k in ("loss", "bpp", "psnr"):
            assert k + t in train[-1]
    assert train[-1]["passes_per_s"] == pytest.approx(4 * train[-1]["images_per_s"])
    val = read_metrics(str(wd / "metrics.jsonl"), "val")
    assert [v["step"] for v in val] == [0, 20, 40]
    last = val[-1]
    assert last["loss"] == pytest.approx(sum(w * last["loss" + t] for w, t in zip((1, 1, 1, 2), tags)), rel=1e-5)
    assert last["bpp"] == pytest.approx(np.mean([last["bpp" + t] for t in tags]), rel=1e-5)
    assert last["loss"] < 0.5 * val[0]["loss"]
    print("val after 40 steps: " + ", ".join(f"λ{t}: {last['bpp' + t]:.3f} bpp {last['psnr' + t]:.2f} dB" for t in tags))

    from lic_jax.artifact import load_artifact

    art = load_artifact(str(wd / "artifact"))
    assert art.spec.name == "mae-bls2017" and art.spec.quality is None
    assert art.spec.hparams["lmbdas"] == pytest.approx(SEED001) and art.spec.hparams["activation"] == "exp"
    tr = art.metadata["training"]
    assert tr["lmbda"] is None and tr["lmbdas"] == pytest.approx(SEED001)
    assert tr["variable_rate"] == {"lmbdas": pytest.approx(SEED001), "weights": [1, 1, 1, 2], "mode": "all"}
    assert art.model.lmbdas == pytest.approx(SEED001)

    # --mode=export rewrites the artifact from the checkpoints with the same λ set
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--config",
           os.path.join(REPO, "configs", "mae_bls2017.py:seed001"), "--workdir", str(wd), "--mode=export",
           "--export_dir", str(tmp_path / "exported"), "--config.model_hparams.N=8",
           "--config.variable_rate.weights=1,1,1,2"]
    r2 = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr[-4000:]
    art2 = load_artifact(str(tmp_path / "exported"))
    assert art2.fingerprint == art.fingerprint and art2.metadata["training"]["lmbdas"] == pytest.approx(SEED001)


@pytest.mark.parametrize("name,hp", [("mae-bls2017", {"N": 8}), ("mae-hyperprior", {"N": 8, "M": 12})])
def test_fixed_rate_matches_the_modulated_model(name, hp):
    """lic_jax.models.mae.fixed_rate folds m_k(λ) / d_k(λ) into the convolutions: the fixed-rate model
    (bls2017 / bmshj2018-hyperprior, built from the registry) must give the modulated model's latents,
    likelihoods and reconstruction at that λ, in eval mode. Modulation nets perturbed so that λ matters
    (scales 0.22–5.0). Measured max |Δ| relative to each output's largest value: here ≤ 6.9e-7 (y) and
    ≤ 1.8e-7 (x_hat), on the bundled mae-bls2017 at λ 0.0018 / 0.0067 1.26e-6 (y); the likelihoods were
    equal. Tolerance 4e-6. Broken once: each demodulation vector's first value applied to every output
    channel instead of its values to the input channels (x_hat off by 0.025 where 5.6e-7 was allowed)."""
    from lic_jax.models.mae import fixed_rate

    model, _ = get_model(name, activation="exp", lmbdas="seed001", **hp)
    x = jax.random.uniform(jax.random.key(0), (1, 64, 64, 3))
    v = model.init({"params": jax.random.key(1), "noise": jax.random.key(2)}, x, 0.01, train=True)
    leaves, tdef = jax.tree_util.tree_flatten_with_path(v)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    v = jax.tree_util.tree_unflatten(tdef, [
        a + 0.5 * jax.random.normal(k, a.shape) if "mod" in jax.tree_util.keystr(p) and "out" in jax.tree_util.keystr(p)
        else a for (p, a), k in zip(leaves, keys)])
    for lam in (SEED001[0], 0.01):
        fname, fhp, fv = fixed_rate(model, v, lam)
        fixed, _ = get_model(fname, **fhp)
        a = jax.jit(lambda v, x, lam: model.apply(v, x, lam))(v, x, lam)
        b = jax.jit(fixed.apply)(fv, x)
        for key in ("y", "x_hat"):
            scale = float(jnp.max(jnp.abs(a[key])))
            assert float(jnp.max(jnp.abs(a[key] - b[key]))) <= 4e-6 * scale, (name, lam, key)
        for k in a["likelihoods"]:
            np.testing.assert_allclose(b["likelihoods"][k], a["likelihoods"][k], rtol=2e-5, atol=1e-7)
    with pytest.raises(TypeError, match="modulated"):
        fixed_rate(fixed, fv, 0.01)
