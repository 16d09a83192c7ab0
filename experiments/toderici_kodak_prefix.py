"""Separate-process prefix check of progressive files on Kodak (issue 15, increment 3).

    .venv/bin/python experiments/toderici_kodak_prefix.py --checkpoint ~/lic_runs/toderici/eval-lstm/artifact \
        --images 24 --out benchmarks/results/toderici/kodak_prefix_check.json

Process 1 (this one), per image: ``toderici2017.unroll`` (the model's own K-iteration forward
pass, via ``ProgressiveCodec.unroll_bits``) gives the reference k-iteration reconstructions; the
image is encoded **once** to a real progressive .lic file (written to a temporary folder), and
the SHA-256 of each reference reconstruction (float32 after crop + clip, and uint8) is recorded.
Process 2 (a fresh ``python`` subprocess: new interpreter, new JAX, the model reloaded from the
artifact), per file and for every k = 1 … K: the file **cut after iteration k** is decoded on its
own (``codec.decode(data[:offset_k])``) and its float32 and uint8 images hashed; they must equal
process 1's hashes bit for bit. Then one file is cut in the middle of an iteration's segment
(and one inside the header): decoding must fail with a one-line ``LicError``.

Also reported: the measured bytes of each iteration's segment as bpp against the raw binary code
(32 bits per 16×16 block = 0.125 bpp on Kodak) — the bit context model's saving per iteration.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def _h(a) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def _codec(checkpoint):
    from lic_jax.coding.progressive import ProgressiveCodec

    return ProgressiveCodec.from_artifact(checkpoint)


def parent(args):
    from lic_jax.coding import pixels
    from lic_jax.evaluation.datasets import resolve_dataset

    codec = _codec(args.checkpoint)
    K = codec._iterations(args.iterations)
    ds = resolve_dataset(args.dataset, args.data_dir)
    ds = type(ds)(ds.name, ds.names[args.skip:args.skip + args.images], ds.loaders[args.skip:args.skip + args.images],
                  ds.source)
    work = tempfile.mkdtemp(prefix="tod_prefix_")
    files = []
    t0 = time.time()
    for name, load in zip(ds.names, ds.loaders):
        img = load()
        H, W = img.shape[:2]
        bits, x_hat = codec.unroll_bits(img, K)
        enc = codec.encode(img, iterations=K)
        if not np.array_equal(bits, enc.bits):
            raise SystemExit(f"{name}: the encoder's bits differ from unroll's")
        ref = [{"float": _h(pixels.finish_image(x_hat[k][None], H, W, 3, "float")),
                "uint8": _h(pixels.finish_image(x_hat[k][None], H, W, 3, "uint8"))} for k in range(K)]
        path = os.path.join(work, os.path.splitext(os.path.basename(name))[0] + ".lic")
        with open(path, "wb") as f:
            f.write(enc.data)
        raw = 32.0 * bits.shape[1] * bits.shape[2] / (H * W)
        files.append({"image": name, "file": path, "height": H, "width": W, "bytes": len(enc.data),
                      "offsets": list(enc.offsets), "segment_bytes": list(enc.header.stream_lengths),
                      "segment_bpp": [8.0 * n / (H * W) for n in enc.header.stream_lengths],
                      "ideal_bpp": [b / (H * W) for b in enc.segment_bits], "raw_bpp_per_iteration": raw,
                      "reference": ref})
        print(f"[process 1] {name}: {len(enc.data)} bytes, {8 * len(enc.data) / (H * W):.4f} bpp "
              f"(raw {K * raw:.4f})", flush=True)
    enc_s = time.time() - t0
    manifest = os.path.join(work, "manifest.json")
    with open(manifest, "w") as f:
        json.dump({"checkpoint": args.checkpoint, "iterations": K, "files": files}, f)
    t0 = time.time()
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", manifest],
                           capture_output=True, text=True)
    child_s = time.time() - t0
    sys.stderr.write(child.stderr[-4000:])
    if child.returncode != 0:
        raise SystemExit(f"process 2 failed (rc {child.returncode})")
    res = json.loads(child.stdout.strip().splitlines()[-1])
    ok = all(r["exact"] for r in res["images"]) and res["cut"]["ok"]
    seg = np.mean([f["segment_bpp"] for f in files], axis=0)
    ideal = np.mean([f["ideal_bpp"] for f in files], axis=0)
    raw = float(np.mean([f["raw_bpp_per_iteration"] for f in files]))
    summary = {
        "checkpoint": os.path.abspath(args.checkpoint), "model": codec.spec.hparams,
        "context_fingerprint": codec.latent_coder.context_fingerprint, "iterations": K, "images": len(files),
        "ok": bool(ok), "prefixes_checked": int(sum(r["prefixes"] for r in res["images"])),
        "process1_s": round(enc_s, 1), "process2_s": round(child_s, 1),
        "cut": res["cut"],
        "raw_bpp_per_iteration": raw,
        "mean_segment_bpp": [round(float(v), 5) for v in seg],
        "mean_ideal_bpp": [round(float(v), 5) for v in ideal],
        "saving_per_iteration": [round(1.0 - float(v) / raw, 4) for v in seg],
        "mean_total_bpp": round(float(np.mean([8 * f["bytes"] / (f["height"] * f["width"]) for f in files])), 5),
        "per_image": [{"image": f["image"], "bytes": f["bytes"], "segment_bytes": f["segment_bytes"],
                       "exact": r["exact"], "mismatches": r["mismatches"]} for f, r in zip(files, res["images"])],
    }
    print(f"\nprefix check: {summary['prefixes_checked']} prefixes of {len(files)} images decoded in a fresh "
          f"process, all bit-exact: {all(r['exact'] for r in res['images'])}; mid-iteration cut: "
          f"{res['cut']['message']!r} (one line: {res['cut']['ok']})")
    print(f"{'k':>3s} {'segment bpp':>12s} {'ideal bpp':>10s} {'raw bpp':>8s} {'saving':>8s}")
    for k in range(K):
        print(f"{k + 1:>3d} {seg[k]:>12.5f} {ideal[k]:>10.5f} {raw:>8.4f} {100 * (1 - seg[k] / raw):>7.1f}%")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
        print(f"wrote {args.out}")
    for f in files:
        os.remove(f["file"])
    os.remove(manifest)
    os.rmdir(work)
    return 0 if ok else 1


def child(manifest):
    from lic_jax.coding.errors import LicError

    with open(manifest) as f:
        man = json.load(f)
    codec = _codec(man["checkpoint"])
    out = []
    for f in man["files"]:
        with open(f["file"], "rb") as fh:
            data = fh.read()
        mism = []
        for k, off in enumerate(f["offsets"], start=1):
            img = codec.decode(data[:off], output="float")[0]
            bad = _h(img) != f["reference"][k - 1]["float"]
            if k == 1:  # the uint8 path (pixels.finish_image 'uint8') once per file
                bad = bad or _h(codec.decompress(data[:off])) != f["reference"][0]["uint8"]
            if bad:
                mism.append(k)
        print(f"[process 2] {f['image']}: {len(f['offsets'])} prefixes, mismatches {mism}", file=sys.stderr,
              flush=True)
        out.append({"image": f["image"], "exact": not mism, "mismatches": mism, "prefixes": len(f["offsets"])})
    f = man["files"][0]
    with open(f["file"], "rb") as fh:
        data = fh.read()
    if len(f["offsets"]) < 2:
        raise SystemExit("the mid-iteration cut needs at least 2 iterations")
    k = min(2, len(f["offsets"]) - 1)  # cut in the middle of iteration k + 1's segment
    cut = f["offsets"][k - 1] + max(1, f["segment_bytes"][k] // 2)
    cut_res = {"image": f["image"], "cut_at_byte": cut, "inside_iteration": k + 1}
    try:
        codec.decode(data[:cut])
        cut_res.update(ok=False, message="decoded without error")
    except LicError as e:
        cut_res.update(ok="\n" not in str(e), message=str(e), error=type(e).__name__)
    try:
        codec.decode(data[:10])
        cut_res["header_cut"] = "decoded without error"
        cut_res["ok"] = False
    except LicError as e:
        cut_res["header_cut"] = f"{type(e).__name__}: {e}"
        cut_res["ok"] = cut_res["ok"] and "\n" not in str(e)
    print(json.dumps({"images": out, "cut": cut_res}))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="toderici2017 model directory (with bitcoder.npz)")
    ap.add_argument("--dataset", default="kodak")
    ap.add_argument("--data-dir")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--skip", type=int, default=0, help="start after the first SKIP images of the data set")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--out")
    ap.add_argument("--child", metavar="MANIFEST", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child)
    if not args.checkpoint:
        ap.error("--checkpoint is required")
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
