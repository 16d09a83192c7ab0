"""Do a model's files decode to the encoder's exact latents in another Python environment? (issue 13)

    .venv/bin/python experiments/cross_env_latents.py --models DIR[,DIR…] \
        [--envs .venv,.venv-tfc,.venv-py312] [--limit 24] [--out benchmarks/results/X.json]

Each environment encodes every Kodak image with every model (``tests/cross_env_child.py``: one
process per environment, the encoder's y and z symbols saved next to each file); every other
environment then decodes those files. Per model and direction: how many files decode to exactly the
encoder's symbols, how many are rejected by the entropy decoder (the one-line error), and how many
decode *silently wrong* (no error, other symbols: the worst case, garbage without a warning).
Unlike ``cross_env_decode.py`` (the ``lic`` command, images), this compares latents, so it also
catches silent corruption. A float model is expected to fail somewhere; a portable one nowhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "cross_env_child.py"


def _child(python: Path, mode: str, jobs, tmp: Path):
    jf = tmp / f"jobs-{mode}-{python.parent.parent.name}-{time.time_ns()}.json"
    jf.write_text(json.dumps([{"model": m, "out": str(o), "paths": [str(p) for p in ps]} for m, o, ps in jobs]))
    r = subprocess.run([str(python), str(CHILD), mode, str(jf)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{python} {mode} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    shared = Path(os.environ.get("LIC_JAX_SHARED", ROOT.parent / "shared"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated lic_jax model directories")
    ap.add_argument("--envs", default=".venv,.venv-tfc")
    ap.add_argument("--images", default=str(shared / "data" / "kodak"))
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--out", default="out/cross_env_latents.json")
    a = ap.parse_args(argv)
    t0 = time.time()
    models = [m for m in a.models.split(",") if m]
    envs = {e: ROOT / e / "bin" / "python" for e in a.envs.split(",")}
    images = sorted(Path(a.images).glob("*.png"))[: a.limit]
    tmp = Path(tempfile.mkdtemp())
    enc = {(e, m): tmp / e.strip("./") / f"m{i}" for e in envs for i, m in enumerate(models)}
    for d in enc.values():
        d.mkdir(parents=True)
    versions = {}
    for e, py in envs.items():
        print(f"encoding {len(images)} images × {len(models)} models in {e}", flush=True)
        versions[e] = _child(py, "encode", [(m, enc[e, m], images) for m in models], tmp)["jax"]
    res = {"what": __doc__.split("\n\n")[0], "models": {}, "jax": versions, "images": len(images)}
    for m in models:
        from lic_jax.artifact import load_artifact

        res["models"][m] = {"name": load_artifact(m).spec.name, "directions": {}}
    for w in envs:
        for r, py in envs.items():
            if w == r:
                continue
            dec = {m: tmp / f"{w.strip('./')}-read-by-{r.strip('./')}" / f"m{i}" for i, m in enumerate(models)}
            for d in dec.values():
                d.mkdir(parents=True)
            out = _child(py, "decode", [(m, dec[m], sorted(enc[w, m].glob("*.lic"))) for m in models], tmp)
            for m, results in zip(models, out["results"]):
                exact, wrong, rejected = [], [], {}
                for stem, status in results.items():
                    if status != "ok":
                        rejected[stem] = status
                        continue
                    x, y = np.load(enc[w, m] / f"{stem}.enc.npz"), np.load(dec[m] / f"{stem}.dec.npz")
                    same = np.array_equal(x["y"], y["y"]) and np.array_equal(x["z"], y["z"])
                    (exact if same else wrong).append(stem)
                row = {"exact": len(exact), "silently_wrong": sorted(wrong), "rejected": rejected, "of": len(results)}
                res["models"][m]["directions"][f"{w} (jax {versions[w]}) -> {r} (jax {versions[r]})"] = row
                print(f"{res['models'][m]['name']}: {w} -> {r}: {len(exact)}/{len(results)} exact, "
                      f"{len(wrong)} silently wrong {sorted(wrong)}, {len(rejected)} rejected {sorted(rejected)}",
                      flush=True)
    res["command"] = "python experiments/cross_env_latents.py " + " ".join(argv or sys.argv[1:])
    res["wall_s"] = time.time() - t0
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
