"""Fit the binary context model of progressive files (lic_jax.entropy_models.binary) to a
toderici2017 model's codes, write it into the model directory (``bitcoder.npz``, what
``Codec.from_artifact`` loads), and measure the saving against raw bits on real files.

    .venv/bin/python experiments/toderici_bitcoder_train.py --checkpoint runs/tod/artifact \
        --steps 300 --eval-images 4 --out benchmarks/results/toderici_bitcoder/run.json [--save]
    .venv/bin/python experiments/toderici_bitcoder_train.py --random-init cell=gru,mode=additive,width=0.25

Steps: (1) eval-mode codes of ``--count`` random ``--crop``² crops of the images in
``--train-dir`` (default $LIC_JAX_SHARED/data/train, any image folder), ``--iterations``
iterations (default the model's); (2) Adam (lr ``--lr``) on the mean binary cross-entropy for
``--steps`` steps (explicit keys from ``--seed``); (3) real progressive files of the first
``--eval-images`` images of ``--eval-dir`` (default $LIC_JAX_SHARED/data/kodak): per iteration the
segment bytes as bpp (raw: 32 bits per 16×16 block = 0.125 bpp of the padded image), the
cross-entropy estimate, encode / decode seconds, and a decode check (every iteration's bits
decoded exactly). Nothing is copied out of the data folders.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lic_jax.coding import Codec  # noqa: E402
from lic_jax.coding.image_io import read_image  # noqa: E402
from lic_jax.entropy_models import binary as BN  # noqa: E402

EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")


def _images(folder, n=None, min_side=64):
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTS))
    out = []
    for f in names:
        a = read_image(os.path.join(folder, f), drop_alpha=True)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if min(a.shape[:2]) >= min_side:
            out.append((f, a))
        if n is not None and len(out) >= n:
            break
    return out


def _model(args):
    from lic_jax.artifact import load_artifact
    from lic_jax.models import get_model

    if args.checkpoint:
        art = load_artifact(args.checkpoint)
        return art.spec.build(), art.spec, art.variables
    hp = {}
    for kv in (args.random_init or "").split(","):
        if kv:
            k, v = kv.split("=")
            hp[k] = float(v) if k == "width" else (int(v) if k == "iterations" else v)
    model, spec = get_model("toderici2017", **hp)
    from lic_jax.models import toderici2017 as T

    shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))
    rng = np.random.default_rng(args.seed)  # LeCun-normal weights (model.init compiles for minutes on 2 cores)
    variables = jax.tree_util.tree_map(
        lambda s: rng.normal(0, 1 / np.sqrt(max(1, int(np.prod(s.shape[:-1])))), s.shape).astype(np.float32), shapes)
    del T
    return model, spec, variables


def main(argv=None):
    shared = os.environ.get("LIC_JAX_SHARED", "/work/shared")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="toderici2017 model directory (artifact)")
    g.add_argument("--random-init", metavar="HP", help="untrained model: cell=…,mode=…,width=…,iterations=…")
    ap.add_argument("--train-dir", default=os.path.join(shared, "data", "train"))
    ap.add_argument("--eval-dir", default=os.path.join(shared, "data", "kodak"))
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--count", type=int, default=48, help="training crops")
    ap.add_argument("--train-images", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=None, help="crops per step (default: all)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-images", type=int, default=2)
    ap.add_argument("--save", action="store_true", help="write bitcoder.npz into --checkpoint")
    ap.add_argument("--out", help="JSON results")
    args = ap.parse_args(argv)

    model, spec, variables = _model(args)
    K = args.iterations or int((spec.hparams or {}).get("iterations") or 16)
    key = jax.random.key(args.seed)
    k_bits, k_fit = jax.random.split(key)
    t = time.time()
    train = [a.astype(np.float32) / 255.0 for _, a in _images(args.train_dir, args.train_images, args.crop)]
    bits = BN.collect_bits(model, variables, train, K, k_bits, crop=args.crop, count=args.count)
    print(f"codes of {args.count} crops {args.crop}² × {K} iterations: {time.time() - t:.1f} s; "
          f"fraction of +1 bits {float(np.mean(bits > 0)):.3f}", flush=True)
    t = time.time()
    cm, cp, hist = BN.fit(bits, k_fit, steps=args.steps, lr=args.lr, hidden=args.hidden, batch=args.batch,
                          log_every=max(1, args.steps // 10))
    fit_s = time.time() - t
    per_it = np.asarray(jax.numpy.mean(BN.bce_bits(BN.logits_grid(cm, cp, bits), bits), axis=(1, 2, 3, 4)))
    print("train bits per bit per iteration:", np.round(per_it, 3).tolist(), flush=True)
    if args.save and args.checkpoint:
        np.savez(os.path.join(args.checkpoint, "bitcoder.npz"), **BN.params_to_arrays(cp))
        print(f"wrote {os.path.join(args.checkpoint, 'bitcoder.npz')}")

    codec = Codec(model, spec, variables, context=(cm, cp))
    rows = []
    for name, img in _images(args.eval_dir, args.eval_images):
        H, W = img.shape[:2]
        Hp, Wp = -(-H // 16) * 16, -(-W // 16) * 16
        codec.encode(img[:64, :64], iterations=1)  # compile the row / unroll programs outside the timing
        t = time.time()
        enc = codec.encode(img, iterations=K)
        enc_s = time.time() - t
        t = time.time()
        dec = codec.decode(enc.data, output="float")
        dec_s = time.time() - t
        exact = bool(np.array_equal(dec[1], enc.bits))
        seg_bpp = [8.0 * n / (H * W) for n in enc.header.stream_lengths]
        raw_bpp = 32.0 * (Hp // 16) * (Wp // 16) / (H * W)
        rows.append({"image": name, "height": H, "width": W, "exact": exact, "encode_s": round(enc_s, 2),
                     "decode_s": round(dec_s, 2), "coder_decode_s": round(dec.stats["coder_s"], 2),
                     "raw_bpp_per_iteration": raw_bpp, "segment_bpp": [round(b, 5) for b in seg_bpp],
                     "ideal_bpp": [round(b / (H * W), 5) for b in enc.segment_bits],
                     "file_bytes": len(enc.data), "offsets": list(enc.offsets)})
        print(f"{name} {W}x{H}: exact {exact}, encode {enc_s:.1f} s, decode {dec_s:.1f} s; bpp per iteration "
              f"{np.round(seg_bpp, 4).tolist()} (raw {raw_bpp:.4f}); saving "
              f"{100 * (1 - np.mean(seg_bpp) / raw_bpp):.1f} %", flush=True)
    mean_seg = np.mean([r["segment_bpp"] for r in rows], axis=0) if rows else []
    raw = float(np.mean([r["raw_bpp_per_iteration"] for r in rows])) if rows else 0.125
    summary = {
        "model": {"name": spec.name, "hparams": spec.hparams, "checkpoint": args.checkpoint,
                  "random_init": args.random_init},
        "context_model": {"steps": args.steps, "lr": args.lr, "batch": args.batch, "hidden": args.hidden,
                          "crops": args.count,
                          "crop": args.crop, "fit_s": round(fit_s, 1), "loss_first": hist[0], "loss_last": hist[-1],
                          "train_bits_per_bit_per_iteration": [round(float(v), 4) for v in per_it]},
        "iterations": K,
        "mean_segment_bpp": [round(float(v), 5) for v in mean_seg],
        "raw_bpp": raw,
        "saving_per_iteration": [round(1 - float(v) / raw, 4) for v in mean_seg],
        "images": rows,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps({k: summary[k] for k in ("mean_segment_bpp", "raw_bpp", "saving_per_iteration")}))


if __name__ == "__main__":
    main()
