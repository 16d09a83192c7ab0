"""Encode / decode time per iteration of a progressive (toderici2017) model on Kodak, real files.

    .venv/bin/python benchmarks/progressive_speed.py --checkpoint ~/lic_runs/toderici/eval-lstm/artifact \
        --images 4 --out benchmarks/results/toderici/progressive_speed.json

Per image (after one untimed warm-up encode + decode of the first image, which compiles the
programs): ``encode`` = ``codec.encode`` of all K iterations (the unroll — K encoder + decoder
steps — then range coding of every segment), with the range-coding part (``coder_s``) reported
separately; ``decode`` = segment-by-segment decoding of the same file from its bytes
(:func:`lic_jax.evaluation.progressive.decode_prefixes`), timed per iteration (range decoding of
segment k + one decoder step + crop). Printed as a table (mean over images per iteration) and
written as JSON. CPU only (the codec keeps its weights on the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lic_jax.coding.progressive import ProgressiveCodec  # noqa: E402
from lic_jax.evaluation.datasets import resolve_dataset  # noqa: E402
from lic_jax.evaluation.progressive import decode_prefixes  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="toderici2017 model directory (with bitcoder.npz)")
    ap.add_argument("--dataset", default="kodak")
    ap.add_argument("--data-dir")
    ap.add_argument("--images", type=int, default=4, help="first N images of the data set")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--out", help="JSON results")
    args = ap.parse_args(argv)

    codec = ProgressiveCodec.from_artifact(args.checkpoint)
    K = codec._iterations(args.iterations)
    ds = resolve_dataset(args.dataset, args.data_dir).limit(args.images)
    rows = []
    first = ds.loaders[0]()
    list(decode_prefixes(codec, codec.encode(first, iterations=K).data))  # warm-up (compiles)
    for name, load in zip(ds.names, ds.loaders):
        img = load()
        H, W = img.shape[:2]
        t0 = time.perf_counter()
        enc = codec.encode(img, iterations=K)
        enc_s = time.perf_counter() - t0
        st = {}
        per_it = [sec for _, _, _, sec in decode_prefixes(codec, enc.data, stats=st)]
        rows.append({"image": name, "height": H, "width": W, "encode_s": enc_s,
                     "encode_coder_s": float(enc.stats.get("coder_s", 0.0)), "decode_s": float(sum(per_it)),
                     "decode_coder_s": float(st.get("coder_s", 0.0)), "decode_per_iteration_s": per_it,
                     "bytes": len(enc.data)})
        print(f"{name} {W}x{H}: encode {enc_s:.2f} s (range coding {rows[-1]['encode_coder_s']:.2f} s), decode "
              f"{sum(per_it):.2f} s (range decoding {rows[-1]['decode_coder_s']:.2f} s)", flush=True)
    dec = np.mean([r["decode_per_iteration_s"] for r in rows], axis=0)
    enc_mean = float(np.mean([r["encode_s"] for r in rows]))
    print(f"\n{'k':>3s} {'decode k-th it. (s)':>20s} {'decode prefix k (s)':>20s} {'encode / K (s)':>16s}")
    for k in range(K):
        print(f"{k + 1:>3d} {dec[k]:>20.3f} {float(np.sum(dec[:k + 1])):>20.3f} {enc_mean / K:>16.3f}")
    import jax

    summary = {
        "checkpoint": os.path.abspath(args.checkpoint), "model": codec.spec.hparams, "iterations": K,
        "dataset": ds.name, "images": len(rows),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "backend": "cpu (the codec's weights live on the CPU)"},
        "mean_encode_s": enc_mean, "mean_encode_per_iteration_s": enc_mean / K,
        "mean_encode_coder_s": float(np.mean([r["encode_coder_s"] for r in rows])),
        "mean_decode_s": float(np.mean([r["decode_s"] for r in rows])),
        "mean_decode_coder_s": float(np.mean([r["decode_coder_s"] for r in rows])),
        "mean_decode_per_iteration_s": [float(v) for v in dec],
        "mean_decode_prefix_s": [float(np.sum(dec[:k + 1])) for k in range(K)],
        "note": "shared 2-core machine: other jobs ran at the same time; times are indicative",
        "rows": rows,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
