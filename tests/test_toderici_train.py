"""Toderici 2017 through train.py (issue 15, increment 2a): exact resume, 8 devices == 1 device, learning.

A tiny GRU one-shot model (width 1/16, 4 iterations, 8 random 32×32 crops per step, constant lr)
trained by ``train.py --config configs/toderici2017.py:…`` in subprocesses (fresh JAX; the
persistent compilation cache of tests/conftest.py's ``env`` is shared between them).

Each property was broken once on purpose and its test failed:

* resume — the binarizer key made to depend on where the process started
  (``noise_key = fold_in(noise_key, start_step)`` in ``loop.py`` after the restore: "the key is
  not restored"): the resumed steps' losses differed from the straight run's from step 21 on
  (0.24677 vs 0.24695 at step 21);
* 8 devices — the binarizer key made to depend on the mesh (``fold_in(noise_key, mesh.size)``
  where ``steps.make_train_step`` builds the iterative loss): losses 3e-4 relative apart at step 1,
  parameters leaf-relative 0.14 apart after 3 steps;
* learning — the learning rate set to 0 (``--config.optim.lr=0``): the validation L1 stayed at
  0.27610 (drop 0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _helpers import same_batch_script, script_result, with_devices
from conftest import DATA
from lic_jax.train.metrics_writer import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_DIR = str(DATA / "train")
VAL_DIR = str(DATA / "val")
ARCH = "cell=gru,mode=one-shot,width=0.0625,iterations=4,schedule=constant"
STEPS = 40  # straight run; the resumed run stops at HALF and continues
HALF = STEPS // 2
RUN = ("--config.batch_size=8", "--config.val_batch_size=4", "--config.optim.lr=3e-3", "--config.log_every=1",
       f"--config.eval_every={HALF}", f"--config.checkpoint_every={HALF}", "--config.data.val_crop=64",
       "--config.data.val_limit=8", "--config.tensorboard=False", "--config.async_checkpoint=False",
       "--config.export.which=last")


def _opt_env(env):
    """XLA:CPU at its default optimisation level: conftest's level 0 halves compile time but runs these
    recurrent convolutions ≈ 30× slower (measured: 0.2 vs 6–7 steps/s for this model)."""
    e = dict(env)
    e["XLA_FLAGS"] = " ".join(f for f in e.get("XLA_FLAGS", "").split() if "optimization_level" not in f)
    return e


def _train(workdir, env, *extra):
    config = f"{os.path.join(REPO, 'configs', 'toderici2017.py')}:{ARCH}"
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--config", config,
           "--workdir", str(workdir), f"--config.data.train={TRAIN_DIR}", f"--config.data.val={VAL_DIR}", *RUN, *extra]
    r = subprocess.run(cmd, env=_opt_env(env), cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


@pytest.fixture(scope="module")
def straight(tmp_path_factory, env):
    wd = tmp_path_factory.mktemp("tod_straight")
    _train(wd, env, f"--config.num_steps={STEPS}", "--config.eval_at_start=True")
    return wd


def test_learning_held_out_l1_falls(straight):
    """Validation (8 held-out 64×64 centre crops, sign binarizer) mean L1 over the 4 iterations
    falls by ≥ 0.045 in 40 steps (measured: 0.2761 → 0.1614 (step 20) → 0.1344, a drop of 0.142;
    the threshold is ≈ 1/3 of it)."""
    val = read_metrics(os.path.join(straight, "metrics.jsonl"), "val")
    assert [v["step"] for v in val] == [0, HALF, STEPS]
    first, last = val[0]["loss"], val[-1]["loss"]
    print(f"held-out mean L1: step 0 {first:.4f} → {HALF} {val[1]['loss']:.4f} → {STEPS} {last:.4f}; "
          f"per iteration {[round(val[-1][f'l1_{k}'], 4) for k in range(1, 5)]}, "
          f"PSNR {[round(val[-1][f'psnr_{k}'], 2) for k in range(1, 5)]}")
    assert first - last >= 0.045, (first, last)
    # the curve: four iterations, and its mean is the selection loss
    assert np.isclose(np.mean([val[-1][f"l1_{k}"] for k in range(1, 5)]), last)
    assert val[-1]["bpp"] == 0.5

    from lic_jax.artifact import load_artifact

    art = load_artifact(str(straight / "artifact"))
    assert art.spec.name == "toderici2017"
    assert art.spec.hparams == {"cell": "gru", "mode": "one-shot", "width": 0.0625, "iterations": 4}
    assert art.tables is None and art.metadata["training"]["objective"] == "iterative-l1"
    assert art.metadata["training"]["lmbda"] is None and art.metadata["training"]["steps"] == STEPS


def test_stopped_and_resumed_run_is_bit_identical(straight, tmp_path, env):
    """Train to step 20, stop; the same command with num_steps=40 resumes from the checkpoint at 20:
    every step's loss, the validation curves and the exported parameters equal the straight run's
    exactly (the binarizer key of step s is fold_in(noise_key, s); the crops are a function of (seed, s))."""
    wd = tmp_path / "resumed"
    _train(wd, env, f"--config.num_steps={HALF}", "--config.eval_at_start=True", "--config.export.at_end=False")
    r = _train(wd, env, f"--config.num_steps={STEPS}", "--config.eval_at_start=True")
    assert f"steps {HALF}→{STEPS}" in r.stderr
    want = {m["step"]: m["loss"] for m in read_metrics(os.path.join(straight, "metrics.jsonl"), "train")}
    got = {m["step"]: m["loss"] for m in read_metrics(os.path.join(wd, "metrics.jsonl"), "train")}
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    diffs = [s for s in want if got[s] != want[s]]
    assert not diffs, [(s, got[s], want[s]) for s in diffs]
    vw = read_metrics(os.path.join(straight, "metrics.jsonl"), "val")
    vg = read_metrics(os.path.join(wd, "metrics.jsonl"), "val")
    strip = lambda v: {k: x for k, x in v.items() if k != "time"}  # noqa: E731
    assert [strip(v) for v in vg] == [strip(v) for v in vw]
    a = open(straight / "artifact" / "params.msgpack", "rb").read()
    b = open(wd / "artifact" / "params.msgpack", "rb").read()
    assert a == b


TODERICI_SETUP = f"""
    from configs import toderici2017
    cfg = toderici2017.get_config({ARCH!r})
    cfg.batch_size = 8
    cfg.optim.lr = 3e-3
"""


def test_8_devices_equal_1_device(env):
    """3 steps on 8 virtual CPU devices (batch sharded 1 crop per device) vs 1 device. The all-reduce
    sums in another order, so equality is to rounding: measured (two runs) loss differences ≤ 1.3e-7
    relative, parameters max |Δp| 1.2e-6 and leaf-relative ‖Δp‖/‖p‖ ≤ 1.7e-7. Tolerances ≈ 3× those:
    losses rtol 5e-7, leaf-relative 5e-7; elementwise tests/test_parallel.py's allclose(1e-5, 1e-6)."""
    steps = 3
    e = with_devices(_opt_env(env), 8)  # XLA:CPU at its default optimisation level (_opt_env)
    code = same_batch_script(TODERICI_SETUP, repo=REPO, train=TRAIN_DIR, steps=steps, lmbda=None)
    r = script_result(subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,
                                     timeout=1800, cwd=REPO))
    print(f"toderici2017 8 vs 1 device after {steps} steps: {json.dumps(r)}")
    assert r["devices"] == 8 and r["batch_shards_8"] == 8 and r["batch_shards_1"] == 1
    np.testing.assert_allclose(r["losses_8"], r["losses_1"], rtol=5e-7)
    assert r["allclose"], r
    assert r["max_leaf_rel"] < 5e-7, r


# -- in-process: registry entry, spec / artifact round trip, config argument, schedule ----------------


def test_registry_entry_spec_and_artifact_round_trip(tmp_path):
    import jax

    from lic_jax.artifact import load_artifact, save_artifact
    from lic_jax.models import get_model, registry
    from lic_jax.models.registry import ModelSpec
    from lic_jax.models.toderici2017 import Toderici2017
    from lic_jax.train.setup import objective

    rec = registry.record("toderici2017")
    assert (rec.cls, rec.model_id, rec.coder, rec.qualities, rec.lambdas, rec.variable_rate) == \
        (Toderici2017, 10, "progressive", None, None, False)
    assert objective("toderici2017") == "iterative-l1" and objective("bmshj2018-hyperprior") == "rd"
    model, spec = get_model("toderici2017", cell="gru", mode="one-shot", width=0.25)
    assert (model.cell, model.mode, model.width, model.iterations) == ("gru", "one-shot", 0.25, 16)
    assert spec.hparams == {"cell": "gru", "mode": "one-shot", "width": 0.25, "iterations": 16}
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert get_model("toderici2017")[1].hparams == {"cell": "lstm", "mode": "additive", "width": 1.0, "iterations": 16}
    for bad in ({"cell": "rnn"}, {"mode": "two-shot"}, {"width": 0.3}, {"iterations": 0}):
        with pytest.raises(ValueError):
            get_model("toderici2017", **bad)
    with pytest.raises(ValueError):
        get_model("toderici2017", quality=3)
    model, spec = get_model("toderici2017", cell="gru", mode="one-shot", width=0.0625, iterations=2)
    v = model.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3), np.float32))
    save_artifact(tmp_path / "a", spec, {"params": v["params"]}, {"note": "t"}, tables=False)
    art = load_artifact(str(tmp_path / "a"))
    assert art.spec == spec and art.tables is None
    for x, y in zip(jax.tree_util.tree_leaves(art.variables["params"]), jax.tree_util.tree_leaves(v["params"])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    a, b = art.model.apply(art.variables, x), model.apply(v, x)
    assert a["x_hat"].shape == (2, 1, 32, 32, 3)
    np.testing.assert_array_equal(np.asarray(a["x_hat"]), np.asarray(b["x_hat"]))


def test_config_argument_and_model_config_shim():
    sys.path.insert(0, REPO)
    try:
        from configs import model as model_cfg
        from configs import toderici2017 as cfg
    finally:
        sys.path.remove(REPO)
    c = cfg.get_config("cell=gru,mode=one-shot,width=0.25")
    assert (c.model, c.quality, c.batch_size, c.data.crop, c.optim.lr) == ("toderici2017", 0, 32, 32, 5e-4)
    assert dict(c.model_hparams) == {"cell": "gru", "mode": "one-shot", "width": 0.25, "iterations": 16}
    assert c.optim.schedule == "multistep" and c.optim.clip_norm == 0.0
    c2 = cfg.get_config("residual-gru,residual-scaling,iterations=8,schedule=cosine")
    assert (c2.model_hparams.cell, c2.model_hparams.mode, c2.model_hparams.iterations) == \
        ("residual-gru", "residual-scaling", 8)
    assert c2.optim.schedule == "constant_then_cosine"
    assert model_cfg.get_config("toderici2017,gru").model_hparams.cell == "gru"
    for bad in ("cell=rnn", "bogus", "depth=3"):
        with pytest.raises(ValueError):
            cfg.get_config(bad)


def test_multistep_schedule_halves_at_the_milestones():
    from lic_jax.train.config import get_default_config
    from lic_jax.train.optim import make_schedule

    o = get_default_config().optim
    o.lr, o.schedule, o.milestones, o.gamma = 5e-4, "multistep", "0.25,0.5", 0.5
    s = make_schedule(o, 100)
    got = [float(s(i)) for i in (0, 24, 25, 49, 50, 99)]
    np.testing.assert_allclose(got, [5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4, 1.25e-4], rtol=1e-6)
    for bad in ("", "0.5,0.25", "1.5"):
        o.milestones = bad
        with pytest.raises(ValueError):
            make_schedule(o, 100)
