"""Data parallelism: 8 devices == 1 device, and 2 processes × 4 devices == 1 process × 8 devices.

Every run is a subprocess, because the number of (simulated) CPU devices is fixed by
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before jax is imported.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

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


MULTI_SCRIPT = textwrap.dedent("""
    import faulthandler, os, sys, json
    faulthandler.dump_traceback_later(240)  # a hang (e.g. at a barrier) leaves every thread's stack in stderr
    sys.path.insert(0, {repo!r})
    from lic_jax.train import parallel
    pid = None if sys.argv[1] == "none" else int(sys.argv[1])
    if pid is not None:
        parallel.initialize_distributed("127.0.0.1:" + os.environ["LIC_TEST_PORT"], 2, pid, "gloo")
    import jax, numpy as np
    from configs import smoke
    from lic_jax.train import trainer
    cfg = smoke.get_config()
    cfg.model_hparams.N = cfg.model_hparams.M = 8
    cfg.progress_bar = False
    cfg.data.train = {train!r}
    cfg.data.val = {train!r}
    cfg.data.val_limit = 8
    cfg.num_steps = {steps}
    cfg.log_every = 1
    cfg.eval_every = 0
    cfg.checkpoint_every = {steps}
    cfg.export.at_end = True
    cfg.export.which = "last"
    res = trainer.train_and_evaluate(cfg, sys.argv[2])
    if jax.process_index() == 0:
        leaves = jax.tree_util.tree_leaves(res.params)
        np.savez(os.path.join(res.artifact, "..", "final_params.npz"), *leaves)
    print("RESULT" + json.dumps({{"processes": jax.process_count(), "devices": len(jax.devices()),
                                   "local": len(jax.local_devices()), "val": res.val_metrics}}))
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(env, tmp_path):
    steps = 4
    one, two = tmp_path / "one", tmp_path / "two"
    code = MULTI_SCRIPT.format(repo=REPO, train=TRAIN_DIR, steps=steps)
    ref = subprocess.run([sys.executable, "-c", code, "none", str(one)], env=_with_devices(env, 8),
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    out_ref, err_ref = ref.stdout, ref.stderr
    assert ref.returncode == 0, err_ref[-4000:]
    e4 = _with_devices(env, 4)
    e4["LIC_TEST_PORT"] = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i), str(two)], env=e4, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-4000:]
    r_ref = json.loads([l for l in out_ref.splitlines() if l.startswith("RESULT")][-1][6:])
    r_two = [json.loads([l for l in o.splitlines() if l.startswith("RESULT")][-1][6:]) for o, _ in outs]
    assert (r_ref["processes"], r_ref["devices"]) == (1, 8)
    assert all((r["processes"], r["devices"], r["local"]) == (2, 8, 4) for r in r_two)

    a = np.load(one / "final_params.npz")
    b = np.load(two / "final_params.npz")
    diffs = [float(np.max(np.abs(a[k] - b[k]))) for k in a.files]
    print(f"2 processes x 4 devices vs 1 process x 8 devices after {steps} steps: max |Δp| = {max(diffs):.3g}; "
          f"val loss {r_two[0]['val']['loss']:.6g} vs {r_ref['val']['loss']:.6g}")
    for k in a.files:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-7)
    # same loss trajectory, same validation, both checkpoints and artifacts written
    from lic_jax.train.metrics_writer import read_metrics

    la = [r["loss"] for r in read_metrics(str(one / "metrics.jsonl"), "train")]
    lb = [r["loss"] for r in read_metrics(str(two / "metrics.jsonl"), "train")]
    assert len(la) == len(lb) == steps
    np.testing.assert_allclose(lb, la, rtol=1e-5)
    np.testing.assert_allclose(r_two[0]["val"]["loss"], r_ref["val"]["loss"], rtol=1e-5)
    assert r_two[0]["val"] == r_two[1]["val"]
    assert os.listdir(two / "checkpoints") == [str(steps)]
    from lic_jax.artifact import load_artifact

    art = load_artifact(str(two / "artifact"))
    assert art.spec.name == "bmshj2018-hyperprior"
