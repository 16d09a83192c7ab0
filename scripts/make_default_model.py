"""Turn the long run's export into the bundled default model (issue 18).

    .venv/bin/python scripts/make_default_model.py RUN_EXPORT [--out lic_jax/assets/models/default]
        [--quality 3] [--cpu-hours H] [--calib ../shared/data/train] [--n 64]

RUN_EXPORT is a float ``mae-hyperprior`` model directory (``scripts/long_run.sh export``). The
default model is its portable twin ``mae-hyperprior-int`` (integer h_s calibrated on ``--n``
training crops over every trained λ, ``lic_jax.models.portable.calibrate_shifts``), so its files
decode exactly on every platform, with three more metadata records:

* ``default_lmbda``: the λ ``lic compress`` uses without ``--quality`` / ``--lmbda`` /
  ``--target-bpp`` (the ``--quality``-th smallest trained λ; quality 3 = CompressAI's λ 0.0067);
* ``data``: exactly which training data the model saw: per training folder its image count and the
  SHA-256 of the sorted list of (file name, size) pairs, and the folders it never saw;
* ``compute``: the CPU-hours of the whole lineage (``--cpu-hours``, from ``docs/TRAINING.md``'s ledger).

The weights are the export's, unchanged (same fingerprint): files written with the float export
decode with the default model too.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lic_jax.artifact import load_artifact, save_artifact  # noqa: E402
from lic_jax.models.portable import float_spec  # noqa: E402
from lic_jax.train.input_pipeline import list_images  # noqa: E402
from make_portable import calibrated_twin  # noqa: E402  (this script's folder is on sys.path)

def folder_manifest(folder: str) -> dict:
    """Image count and SHA-256 of the sorted (relative name, size) list of the images the training input
    pipeline reads from one folder (``lic_jax.train.input_pipeline.list_images``)."""
    files = sorted(os.path.relpath(p, folder) for p in list_images(folder))
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f}\t{os.path.getsize(os.path.join(folder, f))}\n".encode())
    return {"images": len(files), "names_sizes_sha256": h.hexdigest()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", help="the float mae-hyperprior model directory of the long run")
    ap.add_argument("--out", default=os.path.join(ROOT, "lic_jax", "assets", "models", "default"))
    ap.add_argument("--quality", type=int, default=3, help="the default quality (the Q-th smallest trained λ)")
    ap.add_argument("--cpu-hours", type=float, default=None, help="CPU-hours of the whole training lineage")
    ap.add_argument("--calib", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "train"))
    ap.add_argument("--n", type=int, default=64, help="calibration crops")
    args = ap.parse_args(argv)
    art = load_artifact(args.export)
    if float_spec(art.spec).name != "mae-hyperprior":
        sys.exit(f"make_default_model: {args.export} holds {art.spec.name}, not a mae-hyperprior model")
    lmbdas = sorted(float(v) for v in art.spec.build().lmbdas)
    if not 1 <= args.quality <= len(lmbdas):
        sys.exit(f"make_default_model: --quality must be 1 … {len(lmbdas)}")
    spec, net, meta = calibrated_twin(art, args.calib, args.n, "make_default_model")
    meta["default_lmbda"] = lmbdas[args.quality - 1]
    train = (meta.get("training", {}).get("config", {}).get("data", {}).get("train") or "")
    meta["data"] = {
        "train": {os.path.basename(d.rstrip("/")): folder_manifest(d) for d in train.split(",") if d and os.path.isdir(d)},
        "augmentation": "random downscale by [0.5, 0.75], random 128x128 crop, horizontal flip",
        "never_seen": ["kodak", "stripes", "classic", "val (validation only)", "clic"],
    }
    if args.cpu_hours is not None:
        meta["compute"] = {"cpu_hours_lineage": args.cpu_hours, "ledger": "docs/TRAINING.md"}
    fp = save_artifact(args.out, spec, art.variables, metadata=meta, tables=art.tables)
    print(f"{args.out}: {spec.name} int_shifts={spec.hparams['int_shifts']} default λ {meta['default_lmbda']:g} "
          f"fingerprint {fp[:16]} (same weights: {fp == art.fingerprint}) integer network {net.digest()[:16]}")


if __name__ == "__main__":
    main()
