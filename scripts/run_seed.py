"""Compact resume seeds: a long CPU run's progress kept in the repository, so that a new machine
restarts from it instead of from scratch (issue 18: "otherwise restarts from the best exported artifact").

The background runs live in ``~/lic_runs``, outside the repository, and are lost when a session
gets a new machine (it happened twice to the bundled-model run: 2.05 and 3.25 CPU-hours). A seed
is the exported artifact's weights at half the size: every parameter leaf whose float16 round
trip is within 1e-3 relative error of its largest magnitude is stored as float16 (the convolution
kernels, > 99 % of the bytes), every other leaf (GDN β/γ, densities, biases that do not pass the
check) as float32, bit-exact. It is a start point, not a checkpoint: the optimiser state and the
step counter are not kept, so a run restarted from a seed is a new run (its record says so).

    python scripts/run_seed.py save ARTIFACT_DIR SEED_DIR [--note TEXT]    # seed.npz + seed.json
    python scripts/run_seed.py restore SEED_DIR ARTIFACT_DIR               # float32 artifact (tables rebuilt)

``scripts/long_run.sh seed`` exports the run and saves its seed to ``experiments/seeds/<name>``;
``scripts/long_run.sh start`` on a machine without the run directory restores it and starts from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

REL_TOL = 1e-3  # float16's relative step is 2^-10 ≈ 9.8e-4 at the top of each binade: half of it is the rounding


def _flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = np.asarray(v)
    return out


def _unflatten(flat):
    tree: dict = {}
    for key, v in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree


def compact(params: dict) -> tuple[dict, dict]:
    """(arrays to store, per-leaf record): float16 where the round trip passes ``REL_TOL``."""
    store, record = {}, {}
    for key, a in _flatten(params).items():
        a = np.asarray(a, np.float32)
        with np.errstate(over="ignore"):
            h = a.astype(np.float16)
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        err = float(np.max(np.abs(h.astype(np.float32) - a))) if a.size else 0.0
        ok = np.all(np.isfinite(h)) and scale > 0 and err <= REL_TOL * scale
        store[key] = h if ok else a
        record[key] = {"dtype": "float16" if ok else "float32", "shape": list(a.shape),
                       "max_abs_err_rel": (err / scale) if ok else 0.0}
    return store, record


def save(artifact_dir: str, seed_dir: str, note: str = "") -> dict:
    from lic_jax.artifact import load_artifact

    art = load_artifact(artifact_dir)
    store, record = compact(art.variables["params"])
    os.makedirs(seed_dir, exist_ok=True)
    tmp = os.path.join(seed_dir, ".seed.npz.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **store)
    os.replace(tmp, os.path.join(seed_dir, "seed.npz"))
    meta = {"format": "lic_jax-seed", "version": 1, "model": art.spec.to_dict(),
            "source_fingerprint": art.fingerprint, "note": note,
            "source_metadata": art.metadata, "leaves": record}
    with open(os.path.join(seed_dir, "seed.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True, default=str)
    size = os.path.getsize(os.path.join(seed_dir, "seed.npz"))
    n16 = sum(r["dtype"] == "float16" for r in record.values())
    print(f"seed {seed_dir}: {size / 1e6:.1f} MB, {n16}/{len(record)} leaves float16 "
          f"(max rel err {max(r['max_abs_err_rel'] for r in record.values()):.2e})")
    return meta


def restore(seed_dir: str, artifact_dir: str) -> str:
    from lic_jax.artifact import save_artifact
    from lic_jax.models import ModelSpec

    with open(os.path.join(seed_dir, "seed.json")) as f:
        meta = json.load(f)
    if meta.get("format") != "lic_jax-seed" or meta.get("version") != 1:
        raise SystemExit(f"{seed_dir}: not a lic_jax seed (format {meta.get('format')!r} v{meta.get('version')!r})")
    with np.load(os.path.join(seed_dir, "seed.npz")) as z:
        flat = {k: z[k].astype(np.float32) for k in z.files}
    if set(flat) != set(meta["leaves"]):
        raise SystemExit(f"{seed_dir}: seed.npz and seed.json list different parameters")
    spec = ModelSpec.from_dict(meta["model"])
    md = {"init": f"restored from the seed {seed_dir} (of {meta['source_fingerprint'][:12]}; "
                  f"float16 kernels, max rel err ≤ {REL_TOL:g}): {meta.get('note', '')}"}
    fp = save_artifact(artifact_dir, spec, {"params": _unflatten(flat)}, metadata=md)
    print(f"restored {artifact_dir} ({fp[:12]}) from {seed_dir}")
    return fp


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("artifact")
    s.add_argument("seed")
    s.add_argument("--note", default="")
    r = sub.add_parser("restore")
    r.add_argument("seed")
    r.add_argument("artifact")
    a = ap.parse_args(argv)
    if a.cmd == "save":
        save(a.artifact, a.seed, a.note)
    else:
        restore(a.seed, a.artifact)


if __name__ == "__main__":
    main()
