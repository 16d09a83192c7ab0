"""train.py / lic_jax.train: configs, schedule, optimiser groups, a short real run, export, bf16."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import DATA
from lic_jax.train import trainer
from lic_jax.train.config import get_default_config
from lic_jax.train.metrics_writer import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_DIR = str(DATA / "train")  # $LIC_JAX_SHARED/data (tests/conftest.py)
VAL_DIR = str(DATA / "val")
MODEL_CONFIGS = {"bmshj2018_factorized": "bmshj2018-factorized", "bmshj2018_hyperprior": "bmshj2018-hyperprior",
                 "mbt2018_mean": "mbt2018-mean", "mbt2018": "mbt2018", "bls2017": "bls2017", "lee2019": "lee2019"}


def _load_config(name, arg=None):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, REPO)
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(REPO)
    return mod.get_config(arg) if arg is not None else mod.get_config()


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_model_configs(name):
    c = _load_config(name)
    assert c.model == MODEL_CONFIGS[name] and c.quality == 3 and c.metric == "mse"
    assert trainer.resolve_lambda(c) == pytest.approx(0.0067)
    model, spec = trainer.build_model(c)
    assert spec.name == MODEL_CONFIGS[name] and spec.quality == 3
    c5 = _load_config(name, "5,ms-ssim")
    assert c5.quality == 5 and c5.metric == "ms-ssim" and trainer.resolve_lambda(c5) == pytest.approx(31.73)
    c.lmbda = 0.02
    assert trainer.resolve_lambda(c) == 0.02
    c.dtype = "bfloat16"
    m16, spec16 = trainer.build_model(c)
    assert m16.dtype == jnp.bfloat16 and "dtype" not in spec16.hparams  # exported spec stays float32


def test_model_config_integer_hyperparameters():
    """configs/model.py:NAME,Q,N=64,M=96: quality 3's λ with other widths (experiments/recipe_sweep.py)."""
    c = _load_config("model", "bmshj2018-hyperprior,3,N=64,M=96")
    _, spec = trainer.build_model(c)
    assert spec.hparams == {"N": 64, "M": 96} and trainer.resolve_lambda(c) == pytest.approx(0.0067)
    with pytest.raises(ValueError, match="NAME=INTEGER"):
        _load_config("model", "bmshj2018-hyperprior,3,N=sixty")


def test_bundled_vr_stage2_recipe():
    """configs/bundled_vr.py:stage2 — the long run's second stage (the sweep's lr 5e-4, a reachable decay)."""
    s1, s2 = _load_config("bundled_vr", ""), _load_config("bundled_vr", "stage2,sample")
    assert (s1.optim.lr, s1.num_steps) == (2e-4, 300_000)
    assert (s2.optim.lr, s2.num_steps, s2.optim.schedule) == (5e-4, 24_000, "constant_then_cosine")
    assert s2.variable_rate.mode == "sample" and s2.model == s1.model == "mae-hyperprior"
    assert s2.optim.warmup_steps == 200 and s1.optim.warmup_steps == 0
    n = _load_config("bundled_vr", "narrow")  # the sweep's best recipe: N 64 / M 96 at lr 5e-4
    _, spec = trainer.build_model(n)
    assert (spec.hparams["N"], spec.hparams["M"], n.optim.lr, n.num_steps) == (64, 96, 5e-4, 30_000)
    assert n.optim.warmup_steps == 200 and s2.model_hparams.M == 192
    f = _load_config("bundled_vr", "finetune")  # warm-started weights keep stage 1's lr (5e-4 knocked them back)
    assert (f.optim.lr, f.num_steps, f.optim.warmup_steps, f.model_hparams.M) == (s1.optim.lr, 12_000, 200, 192)


def test_smoke_and_default_model_configs():
    s = _load_config("smoke")
    assert s.data.crop == 64 and s.num_steps <= 50
    d = _load_config("default_model")
    assert d.model == "bmshj2018-hyperprior" and trainer.resolve_lambda(d) == pytest.approx(0.013)
    assert _load_config("default").to_dict() == get_default_config().to_dict()


def test_schedules():
    o = get_default_config().optim
    s = trainer.make_schedule(o, 1000)  # constant_then_step: ×0.1 for the last 10 %
    assert float(s(0)) == pytest.approx(1e-4) and float(s(899)) == pytest.approx(1e-4)
    assert float(s(900)) == pytest.approx(1e-5) and float(s(999)) == pytest.approx(1e-5)
    o.schedule, o.decay_start, o.final_lr_factor = "constant_then_cosine", 0.5, 0.05
    s = trainer.make_schedule(o, 1000)
    assert float(s(500)) == pytest.approx(1e-4)
    assert float(s(750)) == pytest.approx(1e-4 * (0.05 + 0.95 * 0.5), rel=1e-4)
    assert float(s(1000)) == pytest.approx(5e-6, rel=1e-4)
    o.schedule = "constant_then_linear"
    assert float(trainer.make_schedule(o, 1000)(750)) == pytest.approx(1e-4 * 0.525, rel=1e-4)
    o.schedule, o.warmup_steps = "constant", 10
    s = trainer.make_schedule(o, 1000)
    assert float(s(0)) == pytest.approx(1e-5) and float(s(50)) == pytest.approx(1e-4)
    o.schedule = "bogus"
    with pytest.raises(ValueError):
        trainer.make_schedule(o, 10)


def _adam_first_moments(opt_state) -> dict:
    """{group label: Adam's first moment μ} found in the multi_transform state. After one update
    μ = (1 − b1)·g, where g is exactly the gradient that reached Adam (after clipping)."""
    found = {}
    leaves, _ = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
    for path, leaf in leaves:
        if isinstance(leaf, optax.ScaleByAdamState):
            group = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)][0]
            found[group] = leaf.mu
    return found


def test_optimizer_groups_aux_adam_only_on_quantiles():
    c = get_default_config()
    assert c.optim.clip_norm == 1.0 and c.optim.b1 == 0.9
    tx, _ = trainer.make_optimizer(c, 100)
    params = {"g_a": {"kernel": jnp.ones((3, 3))},
              "entropy_bottleneck": {"matrix_0": jnp.ones((2, 3, 1)), "quantiles": jnp.zeros((2, 1, 3))}}
    labels = trainer.param_labels(params)
    assert labels["entropy_bottleneck"]["quantiles"] == "aux" and labels["g_a"]["kernel"] == "main"
    rng = np.random.default_rng(0)
    g_kernel, g_matrix = rng.normal(0, 40, (3, 3)), rng.normal(0, 40, (2, 3, 1))
    grads = {"g_a": {"kernel": jnp.asarray(g_kernel, jnp.float32)},
             "entropy_bottleneck": {"matrix_0": jnp.asarray(g_matrix, jnp.float32),
                                    "quantiles": jnp.full((2, 1, 3), 500.0)}}
    state = tx.init(params)
    upd, state = tx.update(grads, state, params)
    # Clipping, checked on the gradient Adam received (its first moment after one step, μ = 0.1·g):
    # the main group's global norm (≈ 150, over the main group only, quantiles excluded) is scaled to 1.
    # Adam's own first update is −lr·sign(g) at any scale, so the update alone cannot show clipping.
    norm = np.sqrt(np.sum(g_kernel**2) + np.sum(g_matrix**2))
    assert norm > 10
    mu = _adam_first_moments(state)
    np.testing.assert_allclose(mu["main"]["g_a"]["kernel"], 0.1 * g_kernel / norm, rtol=1e-5)
    np.testing.assert_allclose(mu["main"]["entropy_bottleneck"]["matrix_0"], 0.1 * g_matrix / norm, rtol=1e-5)
    # quantiles: their own Adam at 1e-3, unclipped
    np.testing.assert_allclose(mu["aux"]["entropy_bottleneck"]["quantiles"], 50.0, rtol=1e-6)
    np.testing.assert_allclose(upd["g_a"]["kernel"], -1e-4 * np.sign(g_kernel), rtol=1e-4)
    np.testing.assert_allclose(upd["entropy_bottleneck"]["quantiles"], -1e-3, rtol=1e-4)
    # a gradient already inside the norm passes unchanged
    small = jax.tree_util.tree_map(lambda g: g / (2 * norm), grads)
    _, st = tx.update(small, tx.init(params), params)
    np.testing.assert_allclose(_adam_first_moments(st)["main"]["g_a"]["kernel"], 0.1 * g_kernel / (2 * norm), rtol=1e-5)
    # clip_norm = 0 turns clipping off: Adam then receives the raw gradient
    c.optim.clip_norm = 0.0
    tx0, _ = trainer.make_optimizer(c, 100)
    _, st0 = tx0.update(grads, tx0.init(params), params)
    np.testing.assert_allclose(_adam_first_moments(st0)["main"]["g_a"]["kernel"], 0.1 * g_kernel, rtol=1e-5)
    c.optim.clip_norm, c.optim.aux_loss = 1.0, False
    tx, _ = trainer.make_optimizer(c, 100)
    upd, _ = tx.update(grads, tx.init(params), params)
    assert float(jnp.abs(upd["entropy_bottleneck"]["quantiles"]).max()) == 0.0
    assert isinstance(optax.global_norm(upd), jax.Array)


# -- runs in subprocesses (fresh jax, shared persistent compilation cache) ----------------------


def _train(workdir, env, *extra, timeout=600):
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--config", os.path.join(REPO, "configs", "smoke.py"),
           "--workdir", str(workdir), f"--config.data.train={TRAIN_DIR}", f"--config.data.val={VAL_DIR}", *extra]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


SHORT_RUN = ("--config.num_steps=150", "--config.optim.lr=2e-3", "--config.eval_every=75", "--config.eval_at_start=True",
             "--config.checkpoint_every=75", "--config.log_every=25", "--config.data.val_crop=256",
             "--config.data.val_limit=8", "--config.tb_images=2")


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, env):
    wd = tmp_path_factory.mktemp("short_run")
    r = _train(wd, env, *SHORT_RUN)
    assert r.returncode == 0, r.stderr[-4000:]
    return wd, r


def test_short_run_lowers_validation_rd_loss(short_run):
    wd, _ = short_run
    val = read_metrics(os.path.join(wd, "metrics.jsonl"), "val")
    assert [v["step"] for v in val] == [0, 75, 150]
    first, last = val[0]["loss"], val[-1]["loss"]
    print(f"validation RD loss: step 0 {first:.4g} → step 75 {val[1]['loss']:.4g} → step 150 {last:.4g}; "
          f"bpp {val[-1]['bpp']:.3f} PSNR {val[-1]['psnr']:.2f} dB MS-SSIM {val[-1]['ms_ssim']:.4f}")
    assert last < 0.5 * first, (first, last)
    assert val[-1]["psnr"] > val[0]["psnr"] + 3.0


def test_short_run_logs_checkpoints_and_export(short_run):
    wd, r = short_run
    train = read_metrics(os.path.join(wd, "metrics.jsonl"), "train")
    assert [t["step"] for t in train] == [25, 50, 75, 100, 125, 150]
    for k in ("loss", "bpp", "mse", "psnr", "lr", "aux_loss", "grad_norm", "images_per_s", "steps_per_s",
              "input_wait_frac", "cpu_s_per_step"):
        assert k in train[-1], k
    assert all(0.0 <= t["input_wait_frac"] <= 1.0 and t["cpu_s_per_step"] > 0 for t in train)
    assert "ms_ssim" in read_metrics(os.path.join(wd, "metrics.jsonl"), "val")[-1]
    events = [f for f in os.listdir(wd / "tensorboard") if f.startswith("events")]
    assert events and os.path.getsize(wd / "tensorboard" / events[0]) > 10_000  # scalars + reconstructions
    assert sorted(os.listdir(wd / "checkpoints")) == ["150", "75"]
    assert len(os.listdir(wd / "best")) == 1
    cfg = json.load(open(wd / "config.json"))
    assert cfg["num_steps"] == 150

    from lic_jax.artifact import load_artifact
    from lic_jax.entropy_models import fit_quantiles

    art = load_artifact(str(wd / "artifact"))
    assert art.spec.name == "bmshj2018-hyperprior" and art.spec.hparams == {"N": 16, "M": 24}
    tr = art.metadata["training"]
    assert tr["lmbda"] == 0.013 and tr["steps"] == 150 and tr["exported_from"] == "best"
    eb = art.variables["params"]["entropy_bottleneck"]
    # the exported quantiles are the exact fit of the trained density
    np.testing.assert_allclose(np.asarray(fit_quantiles({k: jnp.asarray(v) for k, v in eb.items()})),
                               eb["quantiles"], rtol=1e-5, atol=1e-4)
    q = np.asarray(eb["quantiles"])
    assert np.all(q[..., 0] < q[..., 1]) and np.all(q[..., 1] < q[..., 2])
    assert "artifact:" in r.stdout


@pytest.mark.skipif(importlib.util.find_spec("grain") is None, reason="needs grain (the [data] extra)")
def test_grain_loader_trains_the_same_steps(short_run, tmp_path, env):
    """data.loader='grain' with a worker process: the first 25 steps of the short run, stopped there
    (stop_at keeps the lr schedule), give the threaded loader's training metrics bit for bit."""
    wd, _ = short_run
    r = _train(tmp_path, env, *SHORT_RUN, "--config.stop_at=25", "--config.data.loader=grain",
               "--config.data.grain_processes=1")
    assert r.returncode == 0, r.stderr[-4000:]
    mine = read_metrics(str(tmp_path / "metrics.jsonl"), "train")
    ref = read_metrics(os.path.join(wd, "metrics.jsonl"), "train")
    assert [t["step"] for t in mine] == [25]
    for k in ("loss", "bpp", "mse", "grad_norm", "aux_loss"):
        assert mine[0][k] == ref[0][k], (k, mine[0][k], ref[0][k])


def test_bf16_compute_with_float32_params(tmp_path, env):
    r = _train(tmp_path / "bf16", env, "--config.dtype=bfloat16", "--config.num_steps=3", "--config.log_every=1",
               "--config.eval_every=0", "--config.data.val_limit=8", "--config.checkpoint_every=0",
               "--config.keep_best=False", "--config.export.at_end=True", "--config.export.which=last")
    assert r.returncode == 0, r.stderr[-4000:]
    train = read_metrics(str(tmp_path / "bf16" / "metrics.jsonl"), "train")
    assert len(train) == 3 and all(np.isfinite(t["loss"]) for t in train)
    from lic_jax.artifact import load_artifact

    art = load_artifact(str(tmp_path / "bf16" / "artifact"))
    assert all(np.asarray(a).dtype == np.float32 for a in jax.tree_util.tree_leaves(art.variables))
    assert "dtype" not in art.spec.hparams


def test_quantisation_aware_fine_tuning_from_an_artifact(short_run, tmp_path, env):
    """Issue 13: ``init_from`` + ``integer_entropy`` fine-tunes the short run's model as its portable
    twin; the exported artifact is portable and codes with the integer path."""
    wd, _ = short_run
    r = _train(tmp_path, env, "--config.num_steps=10", "--config.eval_every=10", "--config.eval_at_start=True",
               "--config.checkpoint_every=10", "--config.data.val_crop=256", "--config.data.val_limit=8",
               f"--config.init_from={wd / 'artifact'}", "--config.integer_entropy=True", "--config.integer_calib=4")
    assert r.returncode == 0, r.stderr[-4000:]
    val = read_metrics(os.path.join(tmp_path, "metrics.jsonl"), "val")
    base = read_metrics(os.path.join(wd, "metrics.jsonl"), "val")
    # step 0 is the loaded model under the fake-quant hyper-synthesis: close to where the float run
    # ended (measured: ratio 0.9992), far from a fresh initialisation (the float run's step 0 is > 2× higher)
    ratio = val[0]["loss"] / min(b["loss"] for b in base)
    print(f"QAT step 0 / float run's best validation RD loss: {ratio:.4f}")
    assert abs(ratio - 1) < 0.01, (val[0], base)

    from lic_jax.artifact import load_artifact
    from lic_jax.coding import Codec

    art = load_artifact(str(tmp_path / "artifact"))
    assert art.spec.name == "bmshj2018-hyperprior-int" and len(art.spec.hparams["int_shifts"]) == 3
    codec = Codec.from_artifact(art)
    assert codec.latent_coder.portable
    img = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    assert codec.decompress(codec.compress(img)).shape == img.shape
