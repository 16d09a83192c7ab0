"""Data parallelism: 8 devices == 1 device, and 2 processes × 4 devices == 1 process × 8 devices.

Every run is a subprocess, because the number of (simulated) CPU devices is fixed by
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before jax is imported.

The 2-process test runs for every training objective (:data:`MULTI_MODELS`): the smoke
hyperprior ('rd'), toderici2017 ('iterative-l1', issue 15) and akutsu2020 ('gan', issue 20: the
generator's parameters and D's, ``TrainState.extra['disc']``, read from the final checkpoint since
the export holds only the codec). (8 devices == 1 device for the other objectives:
tests/test_toderici_train.py, tests/test_akutsu_train.py.)

Broken once on purpose each (in a copy of the tree) and the test failed:

* toderici2017 — the binarizer key made to depend on the process count
  (``fold_in(noise_key, jax.process_count())`` in ``iterative.make_loss_fn``): exported params
  ‖Δp‖/‖p‖ 0.139 (bound 3e-7), val loss 0.263956 vs 0.26367;
* akutsu2020 — D's loss taken on one process's share of the global batch (D's real / fake logits
  ``[:n // jax.process_count()]`` in ``gan.make_phases``, as a D gradient left un-reduced across
  processes would): D (checkpoint) ‖Δp‖/‖p‖ 2.8e-3 (bound 2.1e-7), generator 1.8e-4 (bound 3e-6).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from _helpers import same_batch_script, script_result, with_devices
from conftest import DATA

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_DIR = str(DATA / "train")  # $LIC_JAX_SHARED/data (tests/conftest.py)
FAST_COMPILE = "--xla_backend_optimization_level=0"


def _with_devices(env, n):
    # (a lower XLA:CPU LLVM optimisation level halves compile time, which dominates these short runs)
    return with_devices(env, n, FAST_COMPILE)


SMOKE_SETUP = """
    from configs import smoke
    cfg = smoke.get_config()
    cfg.model_hparams.N = cfg.model_hparams.M = 8
"""


def test_8_devices_equal_1_device(env):
    steps = 5
    code = same_batch_script(SMOKE_SETUP, repo=REPO, train=TRAIN_DIR, steps=steps, lmbda=0.013)
    r = script_result(subprocess.run([sys.executable, "-c", code], env=_with_devices(env, 8), capture_output=True,
                                     text=True, timeout=600, cwd=REPO))
    print(f"8 vs 1 device after {steps} steps: {json.dumps(r)}")
    assert r["devices"] == 8 and r["batch_shards_8"] == 8 and r["batch_shards_1"] == 1
    assert r["param_devices_8"] == 8  # replicated over every device
    np.testing.assert_allclose(r["losses_8"], r["losses_1"], rtol=1e-5)
    # Elementwise: rtol 1e-5, with an absolute floor of 1e-6 (≈ 10 float32 ulps of an O(0.1) weight) for
    # parameters that sit near zero, where the 8-device all-reduce's different summation order
    # shows up as ~1e-10 absolute (measured: max |Δp| 1.5e-7; max relative 2.6e-5 at a weight of 1.6e-5).
    assert r["allclose"], r
    assert r["max_leaf_rel"] < 1e-5, r


MULTI_SCRIPT = """
    import faulthandler, os, sys, json
    faulthandler.dump_traceback_later(600)  # a hang (e.g. at a barrier) leaves every thread's stack in stderr
    sys.path.insert(0, {repo!r})
    from lic_jax.train import parallel
    pid = None if sys.argv[1] == "none" else int(sys.argv[1])
    if pid is not None:
        parallel.initialize_distributed("127.0.0.1:" + os.environ["LIC_TEST_PORT"], 2, pid, "gloo")
    import jax, numpy as np
    from lic_jax.train import trainer
{setup}
    cfg.progress_bar = False
    cfg.tensorboard = False
    cfg.data.train = {train!r}
    cfg.data.val = {train!r}
    cfg.data.val_limit = 8
    cfg.num_steps = {steps}
    cfg.log_every = 1
    cfg.eval_every = 0
    cfg.eval_at_start = False
    cfg.checkpoint_every = {steps}
    cfg.keep_best = False
    cfg.export.at_end = True
    cfg.export.which = "last"
    res = trainer.train_and_evaluate(cfg, sys.argv[2])
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_leaves(res.params)
        np.savez(os.path.join(res.artifact, "..", "final_params.npz"), *leaves)
    print("RESULT" + json.dumps({{"processes": jax.process_count(), "devices": len(jax.devices()),
                                   "local": len(jax.local_devices()), "val": res.val_metrics}}))
"""


def _multi_script(setup: str, steps: int) -> str:
    setup = textwrap.indent(textwrap.dedent(setup).strip(), "    ")
    return textwrap.dedent(MULTI_SCRIPT.format(setup=setup, repo=REPO, train=TRAIN_DIR, steps=steps))


TODERICI_ARCH = "cell=gru,mode=one-shot,width=0.0625,iterations=4,schedule=constant"  # test_toderici_train's
# per model: the config lines, steps, XLA flags, exported name, and tolerances (rtol, atol, leaf-relative
# ‖Δp‖/‖p‖) of the codec's parameters and of D's (a GAN's extra group, read from the final checkpoint),
# rtol of the losses. The processes' all-reduce (gloo across processes) sums in another order than one
# process's, so equality is to rounding; tolerances ≈ 3× the measured differences.
MULTI_MODELS = {
    # measured: max |Δp| 1.2e-7, ‖Δp‖/‖p‖ ≤ 1.7e-7 (max relative 4e-6 where |p| > 1e-4); losses equal
    "smoke": dict(setup=SMOKE_SETUP, steps=4, flags=FAST_COMPILE, name="bmshj2018-hyperprior",
                  params=(1e-5, 1e-7, 5e-7), loss=1e-5),
    # recurrent progressive codec (issue 15): XLA:CPU at its default optimisation level (level 0 runs
    # these recurrent convolutions ≈ 30× slower; test_toderici_train._opt_env). Measured: codec max
    # |Δp| 4.9e-7, ‖Δp‖/‖p‖ ≤ 9.3e-8 (max relative 1.5e-4 where |p| > 1e-4); losses equal
    "toderici2017": dict(setup=f"""
        from configs import toderici2017
        cfg = toderici2017.get_config({TODERICI_ARCH!r})
        cfg.batch_size = 8
        cfg.val_batch_size = 8
        cfg.optim.lr = 3e-3
        cfg.data.val_crop = 32
        cfg.async_checkpoint = False
    """, steps=3, flags="", name="toderici2017", params=(1e-5, 1.5e-6, 3e-7), loss=1e-5),
    # GAN (issue 20): one D step + one G step per step, D in TrainState.extra['disc']. Measured:
    # generator max |Δp| 2.5e-6, ‖Δp‖/‖p‖ ≤ 8.7e-7 (max relative 4.2e-5 where |p| > 1e-4);
    # D max |Δp| 2.2e-7, ‖Δp‖/‖p‖ 7.0e-8; losses and val loss equal
    "akutsu2020": dict(setup="""
        from configs import akutsu2020
        cfg = akutsu2020.get_config("small,warmup=0")
        cfg.batch_size = 8
        cfg.val_batch_size = 8
        cfg.async_checkpoint = False
    """, steps=3, flags=FAST_COMPILE + " --xla_llvm_disable_expensive_passes=true", name="akutsu2020",
        params=(1e-5, 7.5e-6, 3e-6), disc=(1e-5, 7e-7, 2.1e-7), loss=1e-5),
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checkpoint_state(workdir, step):
    """The train state saved at ``step`` (``checkpoints/<step>/state``) as a host numpy tree, read
    with orbax in this (single-device) process without a target."""
    import orbax.checkpoint as ocp

    path = os.path.join(str(workdir), "checkpoints", str(step), "state")
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # saved over 8 devices: not this topology
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ck:
        tree = ck.restore(path, args=ocp.args.StandardRestore(fallback_sharding=one))
    return jax.tree_util.tree_map(np.asarray, tree)


def _compare(a, b, what, rtol, atol, leaf_rel):
    """max |Δp|, max elementwise relative difference (over |p| > 1e-4) and max leaf-relative
    ‖Δp‖/‖p‖ of two lists of arrays, and whether they are within allclose(rtol, atol) leaf by leaf
    and ‖Δp‖/‖p‖ < leaf_rel (printed; the caller asserts once everything is measured)."""
    assert len(a) == len(b) and len(a) > 0, (what, len(a), len(b))
    d = {"max_abs": max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)),
         "max_rel": max(float(np.max(np.where(np.abs(y) > 1e-4, np.abs(x - y) / np.maximum(np.abs(y), 1e-30), 0)))
                        for x, y in zip(a, b)),
         "max_leaf_rel": max(float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30)) for x, y in zip(a, b))}
    d["ok"] = all(np.allclose(x, y, rtol=rtol, atol=atol) for x, y in zip(a, b)) and d["max_leaf_rel"] < leaf_rel
    print(f"{what}: {json.dumps(d)}")
    return d


# akutsu2020's 2-process check takes ~10 CPU-minutes (19 min wall on the loaded 2-core machine), and
# toderici2017's 143 s (2026-12-02 CI run): both are marked 'extended', outside the 90-minute CI
# (scripts/test.sh --extended runs them). CI keeps the smoke model's 2-process check and
# toderici2017's 8-device check (test_toderici_train.test_8_devices_equal_1_device).
EXTENDED_2P = ("akutsu2020", "toderici2017")


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.extended) if m in EXTENDED_2P else m
                                   for m in MULTI_MODELS])
def test_two_processes_equal_one_process(env, tmp_path, model):
    spec = MULTI_MODELS[model]
    steps = spec["steps"]
    one, two = tmp_path / "one", tmp_path / "two"
    code = _multi_script(spec["setup"], steps)
    flags = spec["flags"]
    e8 = with_devices(env, 8, flags)
    if not flags:  # XLA:CPU's default optimisation level (conftest's env sets level 0)
        e8["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    ref = subprocess.run([sys.executable, "-c", code, "none", str(one)], env=e8,
                         capture_output=True, text=True, cwd=REPO, timeout=1200)
    out_ref, err_ref = ref.stdout, ref.stderr
    assert ref.returncode == 0, err_ref[-4000:]
    e4 = dict(e8, XLA_FLAGS=e8["XLA_FLAGS"].replace("device_count=8", "device_count=4"))
    e4["LIC_TEST_PORT"] = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i), str(two)], env=e4, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO) for i in range(2)]
    outs = [p.communicate(timeout=1200) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-4000:]
    r_ref = json.loads([l for l in out_ref.splitlines() if l.startswith("RESULT")][-1][6:])
    r_two = [json.loads([l for l in o.splitlines() if l.startswith("RESULT")][-1][6:]) for o, _ in outs]
    assert (r_ref["processes"], r_ref["devices"]) == (1, 8)
    assert all((r["processes"], r["devices"], r["local"]) == (2, 8, 4) for r in r_two)

    a = np.load(one / "final_params.npz")
    b = np.load(two / "final_params.npz")
    what = f"{model}: 2 processes x 4 devices vs 1 process x 8 devices after {steps} steps"
    checks = {"params": _compare([b[k] for k in a.files], [a[k] for k in a.files], f"{what}, exported params",
                                 *spec["params"])}
    print(f"val loss {r_two[0]['val']['loss']:.6g} vs {r_ref['val']['loss']:.6g}")
    # the checkpoints: the codec as exported, and every extra group (a GAN's D) compared as well
    ca, cb = _checkpoint_state(one, steps), _checkpoint_state(two, steps)
    assert int(ca["step"]) == int(cb["step"]) == steps
    for x, y in zip(jax.tree_util.tree_leaves(cb["params"]), [b[k] for k in a.files]):
        np.testing.assert_array_equal(x, y)  # the exported params are the checkpoint's
    groups = sorted(ca.get("extra", {}))
    assert groups == (["disc"] if "disc" in spec else []), groups
    for g in groups:
        checks[g] = _compare(jax.tree_util.tree_leaves(cb["extra"][g]["params"]),
                             jax.tree_util.tree_leaves(ca["extra"][g]["params"]),
                             f"{what}, extra group {g!r} (checkpoint)", *spec[g])
    assert all(c["ok"] for c in checks.values()), checks
    # same loss trajectory, same validation, both checkpoints and artifacts written
    from lic_jax.train.metrics_writer import read_metrics

    la = [r["loss"] for r in read_metrics(str(one / "metrics.jsonl"), "train")]
    lb = [r["loss"] for r in read_metrics(str(two / "metrics.jsonl"), "train")]
    assert len(la) == len(lb) == steps
    print(f"train losses {lb} vs {la}")
    np.testing.assert_allclose(lb, la, rtol=spec["loss"])
    np.testing.assert_allclose(r_two[0]["val"]["loss"], r_ref["val"]["loss"], rtol=spec["loss"])
    assert r_two[0]["val"] == r_two[1]["val"]
    assert os.listdir(two / "checkpoints") == [str(steps)]
    from lic_jax.artifact import load_artifact

    art = load_artifact(str(two / "artifact"))
    assert art.spec.name == spec["name"]
