"""Seed 002 at equal rate, per image: akutsu2020's main and fused decodes against JPEG, WebP and a
learned MSE codec coded to the same file size, with metrics inside the face / text masks and a
figure of side-by-side crops (issue 20, "Evaluation"; docs/AKUTSU.md).

    python experiments/akutsu_crops.py --model MODEL --dataset kodak --masks ~/lic_runs/kodak_masks \
        --out benchmarks/results/akutsu/crops [--ablation MODEL_B] [--baseline DIR] [--rows 4]

Per image, the akutsu2020 file is written once (real bytes, its rate b); the same file is decoded
with G_m alone (``synthesis_main``) and with G_m + G_s fused by the mask (``synthesis_fused``, eq. 1,
``lic decompress --detail``). The comparisons are coded to the same rate, each image on its own:

* JPEG (Pillow, 4:2:0) and WebP (Pillow): the quality whose file is closest to b, among the
  qualities whose file is not larger than 1.1·b when one exists (a smaller file only helps the
  akutsu model's side of the comparison, so the matching never flatters it by more than 10 %);
* ``--baseline``: a variable-rate lic_jax model (default: the bundled default, an MSE hyperprior)
  through :func:`lic_jax.coding.encode_at_bpp`; below its lowest trained rate it gives its smallest
  file, and the row says so (``rate_hit`` 0);
* ``--ablation``: the paper's ablation (b), G_m alone trained with MS-SSIM, at its own rate.

Metrics (lic_jax.evaluation.image_metrics): PSNR and MS-SSIM of the whole image and inside the
mask (``…@mask``: MSE over the masked pixels; MS-SSIM weighted by the mask, the loss's weighting with
ε = 0). Outputs under ``--out``: ``rows.csv`` (one row per image and method), ``summary.json``
(per method the mean over images, and over the images with a non-empty mask for the ``@mask``
columns), ``summary.md`` (the same as a table) and ``crops.png``: for the ``--rows`` images whose
mask has the largest connected region (or ``--images``), a ``--crop``² window centred on that
region, the original with the mask outlined, then every method with its bpp.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METRICS = ("psnr-rgb", "ms-ssim-rgb", "psnr-rgb@mask", "ms-ssim-rgb@mask")
KEEP = ("bpp",) + METRICS


def _die(msg: str):
    print(f"akutsu_crops.py: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def classical_at(codec: str, img: np.ndarray, target_bpp: float, slack: float = 1.1):
    """(quality, CodecOutput) of the Pillow ``codec`` whose file is closest to ``target_bpp``, among
    those not above ``slack``·target when one is; found by bisection over the integer quality
    (file size grows with quality), then the closest of the neighbours."""
    from lic_jax.evaluation.codecs import PillowCodec

    lo, hi = (1, 95) if codec == "jpeg" else (0, 100)
    h, w = img.shape[:2]
    tried = {}

    def run(q):
        if q not in tried:
            tried[q] = PillowCodec(codec, q).run(img)
        return 8.0 * tried[q].nbytes / (h * w)

    a, b = lo, hi
    while b - a > 1:  # the largest quality with bpp ≤ target, bracketed by [a, b]
        m = (a + b) // 2
        if run(m) <= target_bpp:
            a = m
        else:
            b = m
    cands = [q for q in (a, b) if run(q) <= slack * target_bpp] or [a]
    q = min(cands, key=lambda q: abs(run(q) - target_bpp))
    return q, tried[q]


def largest_region(mask: np.ndarray) -> tuple[int, tuple[float, float] | None]:
    """(pixel count, centre (y, x)) of the largest connected region of ``mask``; (0, None) if empty."""
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if not n:
        return 0, None
    sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
    k = int(np.argmax(sizes))
    return int(sizes[k]), ndimage.center_of_mass(lab == k + 1)


def crop_box(mask: np.ndarray, size: int, centre=None) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a size² window (clamped into the image) centred on ``centre``,
    by default that of the largest connected region of ``mask`` (the image centre if it is empty)."""
    H, W = mask.shape
    if centre is None:
        centre = largest_region(mask)[1]
    cy, cx = centre if centre is not None else (H / 2, W / 2)
    hh, ww = min(size, H), min(size, W)
    top = int(np.clip(round(cy - hh / 2), 0, H - hh))
    left = int(np.clip(round(cx - ww / 2), 0, W - ww))
    return top, left, hh, ww


def summarise(rows: list[dict], methods: list[str]) -> dict:
    out = {}
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        s = {"images": len(rs)}
        for k in KEEP:
            v = np.asarray([r[k] for r in rs if r.get(k) is not None], np.float64)
            v = v[np.isfinite(v)]
            s[k] = float(v.mean()) if v.size else float("nan")
            if k.endswith("@mask"):
                s["images_with_mask"] = int(v.size)
        out[m] = s
    return out


def summary_markdown(summary: dict) -> str:
    lines = ["| method | bpp | PSNR whole / inside (dB) | MS-SSIM whole / inside |", "|---|---|---|---|"]
    for m, s in summary.items():
        lines.append(f"| {m} | {s['bpp']:.3f} | {s['psnr-rgb']:.2f} / {s['psnr-rgb@mask']:.2f} | "
                     f"{s['ms-ssim-rgb']:.4f} / {s['ms-ssim-rgb@mask']:.4f} |")
    return "\n".join(lines) + "\n"


def figure(panels: list[dict], methods: list[str], path: str, size: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = ["original"] + methods
    fig, axes = plt.subplots(len(panels), len(cols), figsize=(2.3 * len(cols), 2.6 * len(panels) + 0.4),
                             squeeze=False)
    for r, p in enumerate(panels):
        t, l, hh, ww = p["box"]
        for c, name in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(p["images"][name][t:t + hh, l:l + ww], interpolation="nearest")
            if name == "original":
                m = p["mask"][t:t + hh, l:l + ww]
                if m.any() and not m.all():
                    ax.contour(m.astype(np.float32), levels=[0.5], colors="yellow", linewidths=0.8)
                ax.set_title(f"{p['image']} (mask)", fontsize=7)
            else:
                ax.set_title(f"{name}\n{p['bpp'][name]:.3f} bpp, {p['psnr'][name]:.1f} dB", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{size}² crops at equal rate (per image): akutsu2020 vs classical and MSE codecs", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an akutsu2020 model directory (train.py export)")
    ap.add_argument("--ablation", help="ablation (b): G_m alone trained with MS-SSIM (an akutsu2020 model directory)")
    ap.add_argument("--baseline", default=None,
                    help="a variable-rate lic_jax model coded to the same rate (default: the bundled default)")
    ap.add_argument("--dataset", required=True, help="kodak, clic[:split] or a directory")
    ap.add_argument("--data-dir")
    ap.add_argument("--masks", required=True, help="<DIR>/<image name>.png per image (python -m lic_jax.train.labels)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--images", nargs="+", help="the figure's images (names without suffix); default: the --rows "
                                                "images with the largest mask regions")
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args(argv)
    if args.rows < 1 or args.crop < 16:
        _die("--rows must be ≥ 1 and --crop ≥ 16")

    from tqdm.auto import tqdm

    from lic_jax.artifact import ArtifactError, load_artifact
    from lic_jax.coding import Codec, encode_at_bpp
    from lic_jax.evaluation.codecs import pillow_available
    from lic_jax.evaluation.datasets import DatasetNotFound, resolve_dataset
    from lic_jax.evaluation.image_metrics import compute_metrics

    try:
        ds = resolve_dataset(args.dataset, args.data_dir).limit(args.limit).with_masks(args.masks)
    except DatasetNotFound as e:
        _die(str(e))
    if args.images and not set(args.images) <= {os.path.splitext(n)[0] for n in ds.names}:
        _die(f"--images: not in the data set: {sorted(set(args.images) - {os.path.splitext(n)[0] for n in ds.names})}")
    codecs = {}
    try:
        art = load_artifact(args.model)
        if art.spec.name != "akutsu2020":
            _die(f"--model {args.model} holds a {art.spec.name} model, not akutsu2020")
        codecs["akutsu"] = Codec.from_artifact(art)
        if args.ablation:
            codecs["ablation"] = Codec.from_artifact(args.ablation)
        from lic_jax.default_model import default_model_path

        base_dir = args.baseline or default_model_path()
        codecs["baseline"] = Codec.from_artifact(base_dir)
    except (ArtifactError, ValueError, OSError) as e:
        _die(str(e))
    if not codecs["baseline"].variable_rate:
        _die(f"--baseline {base_dir}: rate matching needs a variable-rate model (mae-*)")
    classical = [c for c in ("jpeg", "webp") if pillow_available(c)]
    base_name = f"{codecs['baseline'].spec.name} (MSE)"
    methods = classical + [base_name] + (["ablation (b)"] if args.ablation else []) + ["G_m (main)", "G_m+G_s (fused)"]
    os.makedirs(args.out, exist_ok=True)

    rows, keep = [], {}
    for name, load, mask_of in tqdm(list(zip(ds.names, ds.loaders, ds.masks)), unit="img", desc="akutsu_crops"):
        img = load()
        h, w = img.shape[:2]
        mask = mask_of(img.shape)
        stem = os.path.splitext(name)[0]
        data = codecs["akutsu"].compress(img)
        b = 8.0 * len(data) / (h * w)
        recs = {"G_m (main)": (b, codecs["akutsu"].decompress(data, decoder="synthesis_main"), {}),
                "G_m+G_s (fused)": (b, codecs["akutsu"].decompress(data, decoder="synthesis_fused"), {})}
        for c in classical:
            q, out = classical_at(c, img, b)
            recs[c] = (8.0 * out.nbytes / (h * w), out.rec, {"quality": q})
        r = encode_at_bpp(codecs["baseline"], img, b, not_above=False)
        recs[base_name] = (r.bpp, codecs["baseline"].decompress(r.encoded.data),
                           {"lmbda": r.lmbda, "rate_hit": int(r.hit)})
        if args.ablation:
            d2 = codecs["ablation"].compress(img)
            recs["ablation (b)"] = (8.0 * len(d2) / (h * w), codecs["ablation"].decompress(d2), {})
        psnr = {}
        for m in methods:
            bpp, rec, info = recs[m]
            met = compute_metrics(img, np.asarray(rec), METRICS, mask=mask)
            psnr[m] = met["psnr-rgb"]
            rows.append({"image": stem, "method": m, "bpp": bpp, "target_bpp": b,
                         "mask_fraction": float(mask.mean()), **{k: met.get(k) for k in METRICS}, **info})
        if stem in args.images if args.images else True:
            region, centre = largest_region(mask)
            keep[stem] = {"image": stem, "region": region, "mask": mask, "box": crop_box(mask, args.crop, centre),
                          "images": {"original": img, **{m: np.asarray(recs[m][1]) for m in methods}},
                          "bpp": {m: recs[m][0] for m in methods}, "psnr": psnr}
            if not args.images and len(keep) > args.rows:  # keep only the largest regions in memory
                del keep[min(keep, key=lambda k: keep[k]["region"])]

    cols = ["image", "method", "bpp", "target_bpp", "mask_fraction", *METRICS, "quality", "lmbda", "rate_hit"]
    with open(os.path.join(args.out, "rows.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, cols, extrasaction="ignore")
        wr.writeheader()
        wr.writerows(rows)
    summary = summarise(rows, methods)
    meta = {"model": os.path.abspath(args.model), "fingerprint": art.fingerprint, "baseline": os.path.abspath(base_dir),
            "ablation": os.path.abspath(args.ablation) if args.ablation else None, "dataset": args.dataset,
            "masks": os.path.abspath(args.masks), "images": len(ds.names),
            "matching": "per image: classical quality closest to the akutsu file's bpp (not above 1.1x when possible); "
                        "baseline by encode_at_bpp (rtol 3 %)"}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"meta": meta, "summary": summary}, f, indent=1)
    md = summary_markdown(summary)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(md)
    panels = sorted(keep.values(), key=lambda p: (args.images or []).index(p["image"]) if args.images
                    else -p["region"])[:len(args.images) if args.images else args.rows]
    figure(panels, methods, os.path.join(args.out, "crops.png"), args.crop)
    print(md, end="")
    print(f"wrote {args.out}/rows.csv, summary.json, summary.md, crops.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
