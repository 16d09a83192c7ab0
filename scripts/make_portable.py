"""Give a float hyperprior / mbt2018 artifact an integer entropy path: its portable twin (issue 13).

    .venv/bin/python scripts/make_portable.py MODEL_DIR [--out OUT_DIR] [--calib ../shared/data/train] [--n 64]

Calibrates the integer hyper-synthesis's activation scales on ``--n`` training crops
(``lic_jax.models.portable.calibrate_shifts``; never the evaluation images) and writes the
artifact again under the portable model name (``bmshj2018-hyperprior`` → ``bmshj2018-hyperprior-int``,
``mbt2018-mean`` → ``mbt2018-mean-int``, ``mbt2018`` → ``mbt2018-int``) with the shifts in its spec. The weights are unchanged, so
``params.msgpack`` and the fingerprint stay the same, and files written by the float model still
decode with the same directory (``lic`` falls back to the float twin for them). Without ``--out``
the artifact is rewritten in place (atomically).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lic_jax.artifact import load_artifact, save_artifact  # noqa: E402
from lic_jax.coding.image_io import read_image  # noqa: E402
from lic_jax.models.portable import float_spec, portable_spec  # noqa: E402
from lic_jax.models.portable_ar import integer_network  # noqa: E402


def calibrated_twin(art, calib: str, n: int, prog: str):
    """The portable twin of artifact ``art`` calibrated on the first ``n`` PNG crops of ``calib``:
    (spec, integer network, metadata with its ``portable`` record). Exits with a one-line error when
    ``calib`` holds no PNG."""
    paths = sorted(glob.glob(os.path.join(calib, "*.png")))[:n]
    if not paths:
        sys.exit(f"{prog}: no PNG images in {calib}")
    crops = [read_image(p).astype(np.float32) / np.float32(255.0) for p in paths]
    spec = portable_spec(float_spec(art.spec), art.variables, crops)
    net = integer_network(spec.build(), art.variables["params"])
    meta = dict(art.metadata)
    meta["portable"] = {"float_model": float_spec(art.spec).name, "int_shifts": spec.hparams["int_shifts"],
                        "calibration": f"{len(paths)} crops of {os.path.relpath(calib, ROOT)}",
                        "integer_network_sha256": net.digest()}
    return spec, net, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--out", default=None)
    ap.add_argument("--calib", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "train"))
    ap.add_argument("--n", type=int, default=64, help="calibration crops")
    args = ap.parse_args(argv)
    art = load_artifact(args.model_dir)
    spec, net, meta = calibrated_twin(art, args.calib, args.n, "make_portable")
    out = args.out or args.model_dir
    fp = save_artifact(out, spec, art.variables, metadata=meta, tables=art.tables)
    print(f"{out}: {spec.name} int_shifts={spec.hparams['int_shifts']} fingerprint {fp[:16]} "
          f"(unchanged: {fp == art.fingerprint}) integer network {net.digest()[:16]}")


if __name__ == "__main__":
    main()
