"""The README's main job: compress bundled sample images with the shipped model and check the files.

1. writes sample images from scikit-image's ``skimage.data`` (astronaut, coffee, chelsea — shipped
   inside that registry package) to OUT/originals/;
2. ``lic compress OUT/originals OUT/lic`` with the shipped default model (a separate process; the
   variable-rate ``mae-hyperprior-int`` at its default quality 3), then ``lic compress --quality Q``
   for the other qualities 1–6 (one λ each: CompressAI's λ of quality Q);
3. ``lic decompress`` of each folder (another fresh process: nothing from the encoder);
4. checks the decoded PNGs equal the in-process model reconstruction bit for bit, measures bpp
   (8 × file bytes / pixels), PSNR and MS-SSIM, and compares with JPEG (Pillow, 4:2:0) at the same
   bpp (interpolated over a JPEG quality sweep of each image), saying where the model loses;
5. rate control: ``lic compress --target-bpp B`` with the same model (λ chosen per image so that
   the file is B bpp ± 3 %) and ``lic decompress`` in fresh processes; checks the rates and the
   exact round trip;
6. writes OUT/results.json, OUT/results.csv and OUT/rd.png, and prints a table.

    python scripts/demo.py --out out/demo
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

SAMPLES = ("astronaut", "coffee", "chelsea")
TARGET_BPP = 0.45  # rate-control demo: inside the default model's reachable rates on these images
QUALITIES = (1, 2, 3, 4, 5, 6)
DEFAULT_QUALITY = 3  # what `lic compress` uses without a rate option (the artifact's default_lmbda)


def _lic(*args):
    cmd = [sys.executable, "-m", "lic_jax.cli", *args]
    print("$ lic " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def _jpeg_curve(img: np.ndarray):
    from lic_jax.evaluation.image_metrics import psnr

    pts = []
    for q in (1, 2, 3, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        pts.append((8.0 * buf.tell() / (img.shape[0] * img.shape[1]), psnr(img, rec)))
    return sorted(pts)


def _checked_file(codec, img, lic_dir, dec_dir, name, what):
    """One image's file from ``lic compress`` and its PNG from ``lic decompress`` (separate processes):
    (bytes, λ from the header, decoded pixels, bpp); exits unless the PNG equals the in-process
    reconstruction at that λ bit for bit."""
    from lic_jax.coding import Codec

    with open(os.path.join(lic_dir, f"{name}.lic"), "rb") as f:
        data = f.read()
    lam = Codec.info(data)["lambda"]
    decoded = np.asarray(Image.open(os.path.join(dec_dir, f"{name}.png")).convert("RGB"))
    if not np.array_equal(decoded, codec.decompress(codec.compress(img, lam))):
        raise SystemExit(f"demo: {name} {what}: decoded image differs from the model reconstruction")
    return data, lam, decoded, 8.0 * len(data) / (img.shape[0] * img.shape[1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/demo")
    args = ap.parse_args(argv)

    import skimage.data

    from lic_jax.coding import Codec
    from lic_jax.default_model import default_model_path
    from lic_jax.evaluation.image_metrics import ms_ssim_255, psnr

    orig_dir, lic_dir, dec_dir = (os.path.join(args.out, d) for d in ("originals", "lic", "decoded"))
    os.makedirs(orig_dir, exist_ok=True)
    images = {}
    for name in SAMPLES:
        img = np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])
        images[name] = img
        Image.fromarray(img).save(os.path.join(orig_dir, f"{name}.png"))

    codec = Codec.from_artifact(default_model_path())
    curves = {name: _jpeg_curve(img) for name, img in images.items()}
    rows = []
    for q in QUALITIES:
        qdir, qdec = (lic_dir, dec_dir) if q == DEFAULT_QUALITY else (f"{lic_dir}-q{q}", f"{dec_dir}-q{q}")
        _lic("compress", orig_dir, qdir, "-q", *([] if q == DEFAULT_QUALITY else ["--quality", str(q)]))
        _lic("decompress", qdir, qdec, "-q")
        for name, img in images.items():
            data, lam, decoded, bpp = _checked_file(codec, img, qdir, qdec, name, f"quality {q}")
            jb, jp = zip(*curves[name])
            jpeg_psnr = float(np.interp(bpp, jb, jp)) if jb[0] <= bpp <= jb[-1] else float("nan")
            p = psnr(img, decoded)
            if jb[0] <= bpp <= jb[-1]:
                verdict = "ahead" if p > jpeg_psnr else "behind"
            elif bpp < jb[0]:  # below JPEG's lowest rate (quality 1): ahead only if it also beats that point
                verdict = "ahead (JPEG cannot go this low)" if p > jp[0] else "not comparable"
            else:
                verdict = "not comparable"
            rows.append({"image": name, "quality": q, "lambda": lam, "height": img.shape[0], "width": img.shape[1],
                         "bytes": len(data), "bpp": bpp, "psnr": p, "ms_ssim": ms_ssim_255(img, decoded),
                         "jpeg_psnr_at_same_bpp": jpeg_psnr, "jpeg_lowest_bpp_psnr": [jb[0], jp[0]],
                         "vs_jpeg": verdict, "round_trip_exact": True})

    print(f"\nmodel: {codec.spec.name} (fingerprint {codec.fingerprint[:16]}), shipped default; "
          f"`lic compress` without options = quality {DEFAULT_QUALITY}")
    print(f"{'image':<10} {'q':>2} {'bytes':>7} {'bpp':>6} {'PSNR':>7} {'MS-SSIM':>8} {'JPEG PSNR@bpp':>14} {'gain':>7}")
    for r in rows:
        gain = r["psnr"] - r["jpeg_psnr_at_same_bpp"]
        extra = ""
        if r["vs_jpeg"] not in ("ahead", "behind"):  # outside JPEG's range of rates: say so, not NaN
            lb, lp = r["jpeg_lowest_bpp_psnr"]
            extra = f"  {r['vs_jpeg']}: JPEG's lowest rate is {lb:.3f} bpp at {lp:.2f} dB"
        print(f"{r['image']:<10} {r['quality']:>2} {r['bytes']:>7} {r['bpp']:>6.3f} {r['psnr']:>7.2f} "
              f"{r['ms_ssim']:>8.4f} {r['jpeg_psnr_at_same_bpp']:>14.2f} {gain:>+6.2f}{extra}")
    wins = [r for r in rows if r["vs_jpeg"].startswith("ahead")]
    loses = [f"{r['image']} q{r['quality']} ({r['bpp']:.2f} bpp, {r['psnr'] - r['jpeg_psnr_at_same_bpp']:+.2f} dB)"
             for r in rows if r["vs_jpeg"] == "behind"]
    other = [f"{r['image']} q{r['quality']}" for r in rows if r["vs_jpeg"] == "not comparable"]
    print(f"better PSNR than JPEG at the same bpp (or fewer bytes than JPEG's lowest rate and a better PSNR): "
          f"{len(wins)} of {len(rows)}" + (f"; behind JPEG: {', '.join(loses)}" if loses else "")
          + (f"; outside JPEG's rates: {', '.join(other)}" if other else ""))
    print("decoded files equal the in-process reconstruction bit for bit: yes")

    vr_rows = variable_rate(images, args.out, codec)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"model": codec.spec.to_dict(), "fingerprint": codec.fingerprint, "images": rows,
                   "jpeg_curves": curves, "target_bpp": {"images": vr_rows}}, f, indent=2)
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for i, name in enumerate(images):
            jb, jp = zip(*curves[name])
            ax.plot(jb, jp, "--", color=f"C{i}", label=f"JPEG {name}")
            mine = sorted((r["bpp"], r["psnr"]) for r in rows if r["image"] == name)
            ax.plot(*zip(*mine), "o-", color=f"C{i}", ms=5, label=f"lic_jax q1-6 {name}")
        ax.set_xlabel("bpp (real file bytes)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_xlim(0, 2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "rd.png"), dpi=120)
    except ImportError:
        pass
    print(f"results: {args.out}/results.json, results.csv, rd.png")


def variable_rate(images, out_dir, codec, target=TARGET_BPP):
    """lic compress --target-bpp with the shipped default model, decompress in another process, check."""
    from lic_jax.evaluation.image_metrics import psnr

    orig_dir = os.path.join(out_dir, "originals")
    vr_dir, vr_dec = os.path.join(out_dir, "lic-target"), os.path.join(out_dir, "decoded-target")
    _lic("compress", orig_dir, vr_dir, "--target-bpp", str(target), "-q")
    _lic("decompress", vr_dir, vr_dec, "-q")
    rows = []
    for name, img in images.items():
        data, lam, decoded, bpp = _checked_file(codec, img, vr_dir, vr_dec, name, "--target-bpp")
        rows.append({"image": name, "target_bpp": target, "bpp": bpp, "lambda": lam, "psnr": psnr(img, decoded),
                     "within_3_percent": abs(bpp / target - 1) <= 0.03, "round_trip_exact": True})
    print(f"\nrate control: the same model, λ per image for {target} bpp")
    for r in rows:
        print(f"{r['image']:<10} λ={r['lambda']:.5f} {r['bpp']:.3f} bpp ({100 * (r['bpp'] / target - 1):+.1f} %) "
              f"PSNR {r['psnr']:.2f} dB, round trip exact")
    return rows


if __name__ == "__main__":
    main()
