"""AUC of one Toderici run against its training steps (issue 15: "the trend of AUC against training
steps" when the CPU budget falls short of the paper's).

Input: ``eval.py run --checkpoint ARTIFACT`` results (progressive JSONs) of the same run exported at
several steps, on the same images, given as ``STEP=FILE``. The AUC is SYSTEMS.md §12.5's over
[0.125, 2] bpp on the *raw* bit rate (0.125 bpp per iteration: the coded rate depends on a separately
fitted bit context model, the raw one only on the network), MS-SSIM (RGB) and PSNR-HVS.
``--jpeg`` adds JPEG 4:2:0's AUC on the same images (per-image rows of its CSV, clamped outside
the range it covers) as the horizontal line to beat.

    python experiments/toderici_auc_trend.py 0=benchmarks/results/toderici/lstm0_kodak_1-8.json \\
        300=benchmarks/results/toderici/lstm_kodak_part1.json \\
        600=benchmarks/results/toderici/lstm600_kodak_1-8.json \\
        --jpeg benchmarks/results/toderici/jpeg420_kodak.csv --out benchmarks/results/toderici/auc_trend \\
        --title "LSTM one-shot w1/8 (modes run)"
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lic_jax.evaluation.auc import auc  # noqa: E402


def _images(res_path):
    """The image names of a progressive result (its CSV beside the JSON)."""
    rows = list(csv.DictReader(open(os.path.splitext(res_path)[0] + ".csv")))
    return sorted({r["image"] for r in rows})


def jpeg_auc(csv_path, images):
    rows = [r for r in csv.DictReader(open(csv_path)) if r["image"] in images]
    qs = sorted({int(r["quality"]) for r in rows})
    mean = lambda k, q: float(np.mean([float(r[k]) for r in rows if int(r["quality"]) == q]))  # noqa: E731
    bpp = [mean("bpp", q) for q in qs]
    return {"ms-ssim": auc(bpp, [mean("ms-ssim-rgb", q) for q in qs], extrapolate="clamp"),
            "psnr-hvs": auc(bpp, [mean("psnr-hvs", q) for q in qs], extrapolate="clamp"),
            "covered_bpp": [min(bpp), max(bpp)]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("points", nargs="+", metavar="STEP=FILE")
    p.add_argument("--jpeg", help="per-image CSV of eval.py run --codec jpeg on a superset of the images")
    p.add_argument("--out", required=True, help="output stem: .json, .csv, .png")
    p.add_argument("--title", default="toderici2017, one run", help="the run, for the plot's title")
    a = p.parse_args(argv)
    rows, images = [], None
    for spec in a.points:
        step, path = spec.split("=", 1)
        d = json.load(open(path))
        r = d["results"]
        imgs = _images(path)
        if images is not None and imgs != images:
            sys.exit(f"{path}: other images than the first result ({len(imgs)} vs {len(images)})")
        images = imgs
        raw = r["raw-bpp"]
        rows.append({"step": int(step), "file": path, "images": len(imgs), "name": d.get("name"),
                     "ms-ssim_auc_raw": auc(raw, r["ms-ssim-rgb"]), "psnr-hvs_auc_raw": auc(raw, r["psnr-hvs"]),
                     "ms-ssim@k": {k: r["ms-ssim-rgb"][k - 1] for k in (1, 4, 8, 16) if k <= len(raw)},
                     "psnr-rgb@k": {k: r["psnr-rgb"][k - 1] for k in (1, 4, 8, 16) if k <= len(raw)}})
    rows.sort(key=lambda x: x["step"])
    out = {"auc": "SYSTEMS.md §12.5 over [0.125, 2] bpp on the raw rate (0.125 bpp per iteration)",
           "images": images, "runs": rows}
    if a.jpeg:
        out["jpeg420"] = jpeg_auc(a.jpeg, set(images))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    json.dump(out, open(a.out + ".json", "w"), indent=1)
    with open(a.out + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "images", "ms-ssim_auc_raw", "psnr-hvs_auc_raw"])
        for r in rows:
            w.writerow([r["step"], r["images"], f"{r['ms-ssim_auc_raw']:.4f}", f"{r['psnr-hvs_auc_raw']:.2f}"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, (key, label) in enumerate((("ms-ssim", "MS-SSIM AUC"), ("psnr-hvs", "PSNR-HVS AUC"))):
        ax[i].plot([r["step"] for r in rows], [r[f"{key}_auc_raw"] for r in rows], "o-", label="model (raw bits)")
        if a.jpeg:
            ax[i].axhline(out["jpeg420"][key], color="k", ls="--", label="JPEG 4:2:0, same images")
        ax[i].set_xlabel("training step")
        ax[i].set_ylabel(label + " [0.125, 2] bpp")
        ax[i].grid(alpha=0.3)
        ax[i].legend(fontsize=8)
    fig.suptitle(f"{a.title} — {len(images)} Kodak images", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=110)
    for r in rows:
        print(f"step {r['step']}: MS-SSIM AUC {r['ms-ssim_auc_raw']:.4f}, PSNR-HVS AUC {r['psnr-hvs_auc_raw']:.2f}")
    if a.jpeg:
        print(f"JPEG 4:2:0 on the same images: {out['jpeg420']['ms-ssim']:.4f}, {out['jpeg420']['psnr-hvs']:.2f}")
    print(f"wrote {a.out}.json/.csv/.png")


if __name__ == "__main__":
    main()
