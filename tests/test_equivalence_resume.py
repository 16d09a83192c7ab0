"""``experiments/compressai_training_equivalence.py`` resumes a (seed, framework) unit exactly.

A tiny run (6 steps of 2 × 64² crops, checkpoints every 2 steps, validation every 3 on 2 images,
Kodak on 1 image) is made twice in separate processes:

* straight through;
* with ``--stop-after 3`` — both units are abandoned right after step 3, as if killed: the last
  checkpoint is step 2, step 3 and its validation point are lost — then rerun, resuming at step 2.

Both must end bit-for-bit equal: lic_jax's whole train state (params, optimizer state, step) and
CompressAI's net, both optimizers and torch's RNG state, the parameter hashes of the done
records, the validation curves (no duplicate, no missing point) and the real-bitstream Kodak
numbers in ``results.json`` / ``curves.csv``. Not restoring torch's RNG state on resume (tried
2026-11-30) makes the CompressAI comparison fail.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import require

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "compressai_training_equivalence.py"
TINY = ["--steps", "6", "--ckpt-every", "2", "--eval-every", "3", "--batch", "2", "--crop", "64",
        "--kodak-limit", "1", "--val-limit", "2", "--seeds", "0", "--keep-ckpt"]


def _run(env, out, *extra, rc=0):
    p = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--out", str(out), *extra], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == rc, (p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    return p.stdout


def _lic_state(path):
    from flax import serialization
    from flax.traverse_util import flatten_dict

    with open(path, "rb") as f:
        ck = pickle.load(f)
    return ck, flatten_dict(serialization.msgpack_restore(ck["state"]), sep="/")


def _torch_flat(obj, prefix=""):
    """Every tensor / number of a nested state (dicts, lists, tuples), keyed by its path."""
    import torch

    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_torch_flat(v, f"{prefix}/{k}"))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_torch_flat(v, f"{prefix}/{i}"))
        return out
    if isinstance(obj, torch.Tensor):
        return {prefix: obj.detach().cpu().numpy()}
    return {prefix: obj}


def _assert_same_flat(a, b, what):
    assert sorted(a) == sorted(b), what
    diff = []
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray):
            same = x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        else:
            same = x == y
        if not same:
            diff.append(k)
    assert not diff, f"{what}: {len(diff)} entries differ, e.g. {diff[:5]}"


def test_stop_and_resume_is_exact(env, tmp_path):
    require("torch")
    require("compressai")
    import torch

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(env, straight)

    log = _run(env, resumed, "--stop-after", "3", rc=3)
    assert "abandoned lic_jax s0 after step 3" in log and "abandoned compressai s0 after step 3" in log
    assert not (resumed / "results.json").exists() and not list(resumed.glob("*.done.json"))
    ck, _ = _lic_state(resumed / "lic_jax-s0.ckpt")
    assert ck["step"] == 2 and ck["curve"] == []  # step 3 and its validation point died with the "kill"
    assert torch.load(resumed / "compressai-s0.ckpt", weights_only=False)["step"] == 2

    log = _run(env, resumed)
    assert "lic_jax s0: resuming at step 2" in log and "compressai s0: resuming at step 2" in log

    # lic_jax: the whole train state, bit for bit
    ck_a, st_a = _lic_state(straight / "lic_jax-s0.ckpt")
    ck_b, st_b = _lic_state(resumed / "lic_jax-s0.ckpt")
    assert ck_a["step"] == ck_b["step"] == 6
    _assert_same_flat(st_a, st_b, "lic_jax train state")
    assert ck_a["state"] == ck_b["state"]

    # CompressAI: net, both optimizers, torch RNG state, bit for bit
    ta = torch.load(straight / "compressai-s0.ckpt", weights_only=False)
    tb = torch.load(resumed / "compressai-s0.ckpt", weights_only=False)
    for key in ("net", "opt", "aux_opt", "torch_rng"):
        _assert_same_flat(_torch_flat(ta[key]), _torch_flat(tb[key]), f"compressai {key}")

    # done records, curves, results: same points, same numbers (only timings and resume notes differ)
    for fw in ("lic_jax", "compressai"):
        a = json.loads((straight / f"{fw}-s0.done.json").read_text())
        b = json.loads((resumed / f"{fw}-s0.done.json").read_text())
        assert a["resumed_at"] == [] and b["resumed_at"] == [2]
        assert [p["step"] for p in b["curve"]] == [3, 6]
        for key in ("curve", "kodak", "params_sha256"):
            assert a[key] == b[key], (fw, key)
    assert (straight / "curves.csv").read_text() == (resumed / "curves.csv").read_text()
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (straight, resumed))
    for r in (ra, rb):
        for run in r["runs"].values():
            run.pop("train_s"), run.pop("resumed_at")
    assert json.dumps(ra, sort_keys=True) == json.dumps(rb, sort_keys=True)  # (NaN seed spreads: compare text)
