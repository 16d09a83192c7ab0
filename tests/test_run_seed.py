"""scripts/run_seed.py: a long run's compact seed (float16 kernels) restores to a loadable float32
artifact whose weights equal the source's within float16 rounding, and whose other leaves are
bit-exact. Compared against the source artifact's own arrays, not against the seed code path."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from _helpers import random_variables
from lic_jax.artifact import load_artifact, save_artifact
from lic_jax.models import get_model

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import run_seed  # noqa: E402


def test_seed_round_trip(tmp_path):
    model, spec = get_model("bmshj2018-hyperprior", 1, N=8, M=12)
    variables = random_variables(model)
    params = dict(variables["params"])
    # leaves float16 cannot hold: beyond its range (65504), and all in its subnormals (step 6e-8,
    # > 1e-3 of this leaf's scale)
    params["probe"] = {"w": np.array([1e5, 3e-7, -2.5e-6], np.float32),
                       "tiny": np.array([1.1e-5, 3.33e-6, -7.7e-6], np.float32)}
    src = tmp_path / "src"
    save_artifact(src, spec, {"params": params}, tables=False)
    run_seed.save(str(src), str(tmp_path / "seed"), note="unit test")
    run_seed.restore(str(tmp_path / "seed"), str(tmp_path / "out"))

    a = run_seed._flatten(load_artifact(src, verify=False).variables["params"])
    b = run_seed._flatten(load_artifact(tmp_path / "out").variables["params"])
    assert set(a) == set(b)
    meta = json.loads((tmp_path / "seed" / "seed.json").read_text())
    kinds = {k: r["dtype"] for k, r in meta["leaves"].items()}
    assert kinds["g_a_0/kernel"] == "float16" and kinds["probe/w"] == kinds["probe/tiny"] == "float32"
    for k in a:
        assert b[k].dtype == np.float32 and b[k].shape == a[k].shape, k
        if kinds[k] == "float32":
            np.testing.assert_array_equal(b[k], a[k], err_msg=k)
        else:
            # float16 rounds to half a step, 2^-11 ≈ 4.9e-4 relative to the largest magnitude at most
            scale = np.abs(a[k]).max()
            assert np.abs(b[k] - a[k]).max() <= 4.9e-4 * scale, k
            assert not np.array_equal(b[k], a[k]) or a[k].size < 8, k  # really stored as float16
    # the seed is about half the float32 size (plus the zip's few hundred bytes per leaf)
    f32 = sum(v.nbytes for v in a.values())
    assert os.path.getsize(tmp_path / "seed" / "seed.npz") < 0.52 * f32 + 300 * len(a)


def test_seed_rejects_a_mismatched_record(tmp_path):
    model, spec = get_model("bmshj2018-hyperprior", 1, N=8, M=12)
    save_artifact(tmp_path / "src", spec, random_variables(model), tables=False)
    run_seed.save(str(tmp_path / "src"), str(tmp_path / "seed"))
    p = tmp_path / "seed" / "seed.json"
    meta = json.loads(p.read_text())
    meta["leaves"].pop(next(iter(meta["leaves"])))
    p.write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="different parameters"):
        run_seed.restore(str(tmp_path / "seed"), str(tmp_path / "out"))
