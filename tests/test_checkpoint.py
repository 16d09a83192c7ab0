"""Checkpoints: keep-N + best, corrupted / half-written detection, kill -9 exact resume, NaN guard."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from conftest import DATA
from lic_jax.train import parallel
from lic_jax.train.checkpoint import CheckpointCorruptWarning, Checkpointer
from lic_jax.train.metrics_writer import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_DIR = str(DATA / "train")  # $LIC_JAX_SHARED/data (tests/conftest.py)


def _state(v, mesh):
    tree = {"step": jnp.int32(v), "params": {"w": jnp.full((4, 5), float(v)), "quantiles": jnp.ones((2, 1, 3)) * v},
            "opt_state": (jnp.ones(3) * v, {"mu": jnp.zeros(2) + v})}
    return jax.device_put(tree, parallel.replicated(mesh))


def _largest_file(d):
    files = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs if f != "lic_manifest.json"]
    return max(files, key=os.path.getsize)


def test_keep_n_best_and_restore(tmp_path):
    mesh = parallel.make_mesh()
    ck = Checkpointer(str(tmp_path), keep=2, async_save=True)
    for s in (1, 2, 3, 4):
        ck.save(s, _state(s, mesh), {"note": s})
    assert ck.save_best(2, _state(2, mesh), 5.0)
    assert not ck.save_best(3, _state(3, mesh), 6.0)  # worse: not kept
    assert ck.save_best(4, _state(4, mesh), 4.0)
    ck.close()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "4"]
    assert sorted(os.listdir(tmp_path / "best")) == ["4"]
    assert all(os.path.exists(tmp_path / "checkpoints" / s / "lic_manifest.json") for s in ("3", "4"))
    ck = Checkpointer(str(tmp_path), keep=2)
    assert ck.best_value == 4.0 and ck.best_step == 4
    step, st, meta = ck.restore(_state(0, mesh))
    assert step == 4 and meta["note"] == 4 and float(st["params"]["w"][0, 0]) == 4.0
    assert isinstance(st["opt_state"], tuple)  # restored against the target: structure kept
    assert ck.restore_best(_state(0, mesh))[0] == 4
    ck.close()


def test_corrupted_and_half_written_checkpoints_are_skipped(tmp_path):
    mesh = parallel.make_mesh()
    d = tmp_path / "checkpoints"
    ck = Checkpointer(str(tmp_path), keep=5, keep_best=False)
    for s in (1, 2, 3, 4):
        ck.save(s, _state(s, mesh))
    ck.close()
    # 4: damaged data (bytes overwritten) -> CRC mismatch against the manifest
    with open(_largest_file(d / "4" / "state"), "r+b") as f:
        f.seek(8)
        f.write(b"\x00\xffGARBAGE\xff\x00")
    # 3: damaged and without a manifest -> orbax itself fails to restore it
    os.remove(d / "3" / "lic_manifest.json")
    for r, _, fs in os.walk(d / "3" / "state"):
        for f in fs:
            if "ocdbt" in r or f.endswith("manifest.ocdbt"):
                os.remove(os.path.join(r, f))
    # 5: half-written (a step directory without its files) and an orbax temporary directory
    os.makedirs(d / "5" / "state")
    os.makedirs(d / "6.orbax-checkpoint-tmp-1795433999" / "state")
    ck = Checkpointer(str(tmp_path), keep=5, keep_best=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step, st, _ = ck.restore(_state(0, mesh))
    msgs = [str(w.message) for w in caught if issubclass(w.category, CheckpointCorruptWarning)]
    assert step == 2 and float(st["params"]["w"][0, 0]) == 2.0
    assert any("/checkpoints/4 is corrupt" in m and "CRC-32" in m for m in msgs), msgs
    assert any("/checkpoints/3 is corrupt" in m and "restore failed" in m for m in msgs), msgs
    assert any("6.orbax-checkpoint-tmp" in m and "half-written" in m for m in msgs), msgs
    assert any("checkpoints/5" in m for m in msgs), msgs
    # damaged directories are moved aside, not deleted; training can save those steps again
    assert sorted(os.listdir(d)) == ["1", "2"]
    assert len(os.listdir(tmp_path / "corrupt_checkpoints")) == 4
    ck.save(3, _state(33, mesh))
    ck.close()
    ck = Checkpointer(str(tmp_path), keep=5, keep_best=False)
    step, st, _ = ck.restore(_state(0, mesh))
    assert step == 3 and float(st["params"]["w"][0, 0]) == 33.0
    ck.close()


def test_async_save_is_not_affected_by_later_donation(tmp_path):
    """The train step donates its input state; an async save must have copied it first."""
    mesh = parallel.make_mesh()
    rep = parallel.replicated(mesh)
    bump = jax.jit(lambda s: jax.tree_util.tree_map(lambda a: a + 1, s), in_shardings=rep, out_shardings=rep,
                   donate_argnums=0)
    st = _state(1, mesh)
    ck = Checkpointer(str(tmp_path), keep=2, keep_best=False, async_save=True)
    ck.save(1, st)
    for _ in range(3):
        st = bump(st)
    ck.close()
    ck = Checkpointer(str(tmp_path), keep=2, keep_best=False)
    _, r, _ = ck.restore(_state(0, mesh))
    assert float(r["params"]["w"][0, 0]) == 1.0 and int(r["step"]) == 1
    ck.close()


# -- whole-run tests through train.py ------------------------------------------------------------


def _cmd(workdir, *extra):
    return [sys.executable, os.path.join(REPO, "train.py"), "--config", os.path.join(REPO, "configs", "smoke.py"),
            "--workdir", str(workdir), f"--config.data.train={TRAIN_DIR}", "--config.data.val=",
            "--config.model_hparams.N=8", "--config.model_hparams.M=8", "--config.log_every=1",
            "--config.eval_every=0", "--config.keep_best=False", "--config.export.at_end=False", *extra]


def _losses(workdir):
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"), "train")}


def test_kill_9_then_restart_reproduces_the_trajectory(tmp_path, env):
    args = ("--config.num_steps=32", "--config.checkpoint_every=8", "--config.debug_step_sleep=0.1")
    ref = tmp_path / "ref"
    r = subprocess.run(_cmd(ref, *args), env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    want = _losses(ref)
    assert sorted(want) == list(range(1, 33))

    run = tmp_path / "run"
    p = subprocess.Popen(_cmd(run, *args), env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    t0 = time.time()
    killed_after = None
    while time.time() - t0 < 240:
        got = _losses(run)
        if got and max(got) >= 21:
            os.kill(p.pid, signal.SIGKILL)
            killed_after = max(got)
            break
        if p.poll() is not None:
            break
        time.sleep(0.02)
    p.wait()
    assert killed_after is not None and p.returncode == -signal.SIGKILL, "run ended before it could be killed"
    assert killed_after < 32
    r = subprocess.run(_cmd(run, *args), env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed_from = int(r.stderr.split("steps ")[1].split("→")[0])
    # the newest *finished* checkpoint (the save at 16 may still have been in flight when killed)
    assert 8 <= resumed_from <= killed_after and resumed_from % 8 == 0, (resumed_from, killed_after)
    got = _losses(run)
    assert sorted(got) == list(range(1, 33))
    diffs = [abs(got[s] - want[s]) for s in range(1, 33)]
    print(f"killed after step {killed_after}, resumed from {resumed_from}; max |Δloss| over 32 steps = {max(diffs)}")
    assert max(diffs) == 0.0, [(s, got[s], want[s]) for s in range(1, 33) if got[s] != want[s]]


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, env):
    wd = tmp_path / "nan"
    r = subprocess.run(_cmd(wd, "--config.num_steps=30", "--config.checkpoint_every=5", "--config.debug_nan_step=12"),
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr[-3000:]
    assert "non-finite training state at step 13" in r.stderr
    assert "last good checkpoint" in r.stderr
    assert sorted(os.listdir(wd / "checkpoints")) == ["10", "5"]
    losses = _losses(wd)
    assert max(losses) == 12 and all(np.isfinite(v) for v in losses.values())
    # the last good checkpoint restores, with finite parameters
    from lic_jax.train import trainer

    sys.path.insert(0, REPO)
    from configs import smoke

    cfg = smoke.get_config()
    cfg.model_hparams.N = cfg.model_hparams.M = 8
    mesh = parallel.make_mesh()
    model, _ = trainer.build_model(cfg)
    tx, _ = trainer.make_optimizer(cfg, 30)
    target = jax.eval_shape(lambda: trainer.create_train_state(model, tx, jax.random.PRNGKey(0), mesh))
    target = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=parallel.replicated(mesh)),
                                    target)
    ck = Checkpointer(str(wd), keep_best=False)
    step, st, _ = ck.restore(target)
    ck.close()
    assert step == 10
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree_util.tree_leaves(st["params"]))
    shutil.rmtree(wd, ignore_errors=True)
