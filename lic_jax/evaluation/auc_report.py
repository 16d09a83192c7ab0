"""The Toderici-2017 AUC table and RD plot (issue 15, increment 3): ``eval.py auc-report``.

    python eval.py auc-report --model benchmarks/results/toderici/lstm_kodak.json \
        [--model gru.json] --jpeg benchmarks/results/toderici/jpeg420_kodak.json \
        --out-dir benchmarks/results/toderici

Rows: every measured progressive model (``eval.py run --checkpoint TODERICI_DIR`` results: per
iteration count k, real-file ``bpp`` and ``raw-bpp``), JPEG 4:2:0 measured by ``eval.py`` on the
same images, the TFC published curves (Toderici 2017, JPEG 4:2:0) and seed 003's table. Per
curve: the MS-SSIM (RGB) and PSNR-HVS AUC over [0.125, 2] bpp (lic_jax.evaluation.auc) — strict
when the curve covers the range, else the clamped value marked † with the covered range — and
the AUC over the range the model's real-bpp curve covers, for every curve that covers it (the
like-for-like comparison when the model stops short of 2 bpp). Writes ``auc.json``, ``auc.md``
and ``rd_msssim.png``.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from .auc import AUC_RANGE, AUCRangeError, auc

__all__ = ["SEED_003", "build_report", "main"]

# Seed 003 (Toderici et al. 2017, Table 2 as quoted in /work/shared/seeds/003*.txt): Kodak, AUC over
# the paper's range; (MS-SSIM AUC, PSNR-HVS AUC).
SEED_003 = [
    ("GRU (One Shot)", 1.8098, 53.15),
    ("LSTM (Residual Scaling)", 1.8091, 52.36),
    ("LSTM (One Shot)", 1.8062, 52.57),
    ("LSTM (Additive Reconstruction)", 1.8041, 52.22),
    ("Residual GRU (One Shot)", 1.8030, 52.73),
    ("Residual GRU (Residual Scaling)", 1.7983, 51.25),
    ("Associative LSTM (One Shot)", 1.7980, 52.33),
    ("GRU (Residual Scaling)", 1.7948, 51.37),
    ("Baseline", 1.7225, 48.36),
    ("JPEG YCbCr 4:4:4", 1.7748, 51.28),
    ("JPEG YCbCr 4:2:0", 1.7998, 52.61),
]


def _reading(rate, q, lo, hi):
    rate, q = np.asarray(rate, float), np.asarray(q, float)
    ok = np.isfinite(rate) & np.isfinite(q)
    rate, q = rate[ok], q[ok]
    try:
        return {"auc": auc(rate, q, lo, hi), "extrapolated": False, "covered": [float(rate.min()), float(rate.max())]}
    except AUCRangeError:
        return {"auc": auc(rate, q, lo, hi, extrapolate="clamp"), "extrapolated": True,
                "covered": [float(rate.min()), float(rate.max())]}


def _cell(r, digits):
    if r is None:
        return "—"
    s = f"{r['auc']:.{digits}f}"
    return s + "†" if r["extrapolated"] else s


def _csv_rows(json_path):
    import csv

    p = os.path.splitext(json_path)[0] + ".csv"
    if not os.path.exists(p):
        return None
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def _jpeg_on_images(jpeg_path, images):
    """The JPEG curve re-aggregated (mean per quality setting) over ``images`` only, from the
    per-image CSV next to the JSON; None when that CSV is missing or lacks an image."""
    rows = _csv_rows(jpeg_path)
    if rows is None:
        return None
    sel = [r for r in rows if r["image"] in images]
    by_q: dict = {}
    for r in sel:
        by_q.setdefault(float(r["quality"]), []).append(r)
    if not by_q or any(len(v) != len(images) for v in by_q.values()):
        return None
    qs = sorted(by_q)

    def mean(k):
        return [float(np.mean([float(r[k]) for r in by_q[q]])) for q in qs]

    return {"bpp": mean("bpp"), "ms-ssim-rgb": mean("ms-ssim-rgb"),
            "psnr-hvs": mean("psnr-hvs") if "psnr-hvs" in sel[0] else None}


def build_report(models, jpeg_path=None, anchors_root=None, out_dir=".", lo=AUC_RANGE[0], hi=AUC_RANGE[1]):
    from .anchors import load_anchor

    curves = []  # (label, kind, rate, {metric: values}, extra)
    images = set()
    for p in models:
        rows = _csv_rows(p)
        if rows:
            images |= {r["image"] for r in rows}
        with open(p) as f:
            d = json.load(f)
        res, meta = d["results"], d.get("meta", {})
        n = meta.get("num_images")
        q = {m: res.get(m) for m in ("ms-ssim-rgb", "psnr-hvs")}
        curves.append((f"{d['name']} — real file bytes", "model", res["bpp"], q, {"images": n, "src": p}))
        if "raw-bpp" in res:
            curves.append((f"{d['name']} — raw bits (0.125 bpp / iteration)", "model-raw", res["raw-bpp"], q,
                           {"images": n, "src": p}))
    if jpeg_path:
        with open(jpeg_path) as f:
            d = json.load(f)
        n = d.get("meta", {}).get("num_images")
        curves.append((f"{d['name']} (measured, eval.py)", "jpeg", d["results"]["bpp"],
                       {m: d["results"].get(m) for m in ("ms-ssim-rgb", "psnr-hvs")}, {"images": n, "src": jpeg_path}))
        sub = _jpeg_on_images(jpeg_path, images) if images and n != len(images) else None
        if sub is not None:
            curves.append((f"{d['name']} (measured, eval.py, the models' {len(images)} images)", "jpeg-sub",
                           sub["bpp"], {m: sub[m] for m in ("ms-ssim-rgb", "psnr-hvs")},
                           {"images": len(images), "src": jpeg_path}))
    for name, label in (("tfc:toderici-2017-cvpr", "Toderici 2017 (TFC published curve)"),
                        ("tfc:jpeg420", "JPEG 4:2:0 (TFC published curve)")):
        c = load_anchor(name, anchors_root)
        curves.append((label, "anchor", list(c.bpp), {"ms-ssim-rgb": list(c.values("ms-ssim")), "psnr-hvs": None},
                       {"src": c.source}))

    model_real = [c for c in curves if c[1] == "model"]
    common = None
    if model_real:
        common = [max(lo, max(min(c[2]) for c in model_real)), min(hi, min(max(c[2]) for c in model_real))]
    rows = []
    for label, kind, rate, q, extra in curves:
        row = {"curve": label, "kind": kind, **{k: v for k, v in extra.items() if v is not None}}
        for m in ("ms-ssim-rgb", "psnr-hvs"):
            if q.get(m) is None:
                row[m] = None
                continue
            row[m] = _reading(rate, q[m], lo, hi)
            if common and common[1] > common[0]:
                r = np.asarray(rate, float)
                if r.min() <= common[0] + 1e-12 and r.max() >= common[1] - 1e-12:
                    row[m + "@common"] = auc(rate, q[m], common[0], common[1])
                else:
                    row[m + "@common"] = _reading(rate, q[m], common[0], common[1])["auc"]
                    row[m + "@common_extrapolated"] = True
        rows.append(row)
    report = {"range": [lo, hi], "common_range": common, "rows": rows,
              "seed_003": [{"model": n, "ms-ssim-rgb": a, "psnr-hvs": b} for n, a, b in SEED_003],
              "notes": ["AUC = trapezoid integral of the dataset-average quality vs bpp, linear interpolation "
                        "(SYSTEMS.md §12.5); per-image curves averaged at fixed iteration count (models) / quality "
                        "setting (JPEG) before integrating",
                        "† = the curve does not cover the range: value with the first / last quality held "
                        "constant (np.interp clamping) over the uncovered part; 'covered' gives the measured range",
                        "common range = the bpp range the measured models' real-file curves cover (within "
                        "[0.125, 2]); every curve integrated over it (like for like)",
                        "PSNR-HVS: lic_jax.evaluation.hvs on Y' (BT.601); TFC publishes no PSNR-HVS curves"]}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "auc.json"), "w") as f:
        json.dump(report, f, indent=1)
    md = _markdown(report)
    with open(os.path.join(out_dir, "auc.md"), "w") as f:
        f.write(md)
    _plot(curves, os.path.join(out_dir, "rd_msssim.png"), common)
    return report, md


def _markdown(rep):
    lo, hi = rep["range"]
    cr = rep["common_range"]
    cname = f"[{cr[0]:.3f}, {cr[1]:.3f}]" if cr else "—"
    out = [f"## Toderici 2017 AUC on Kodak (MS-SSIM RGB, PSNR-HVS; [{lo:g}, {hi:g}] bpp)", "",
           f"| curve | images | covered bpp | MS-SSIM AUC [{lo:g}, {hi:g}] | PSNR-HVS AUC [{lo:g}, {hi:g}] | "
           f"MS-SSIM AUC over {cname} | PSNR-HVS AUC over {cname} |",
           "|---|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        cov = r["ms-ssim-rgb"]["covered"] if r.get("ms-ssim-rgb") else None
        c1 = r.get("ms-ssim-rgb@common")
        c2 = r.get("psnr-hvs@common")
        e1 = "†" if r.get("ms-ssim-rgb@common_extrapolated") else ""
        e2 = "†" if r.get("psnr-hvs@common_extrapolated") else ""
        out.append(f"| {r['curve']} | {r.get('images', '—')} | "
                   f"{'—' if cov is None else f'{cov[0]:.3f} – {cov[1]:.3f}'} | {_cell(r.get('ms-ssim-rgb'), 4)} | "
                   f"{_cell(r.get('psnr-hvs'), 2)} | {'—' if c1 is None else f'{c1:.4f}{e1}'} | "
                   f"{'—' if c2 is None else f'{c2:.2f}{e2}'} |")
    out += ["", "Seed 003 (Toderici et al. 2017, Kodak, as quoted in the seed text):", "",
            "| model | MS-SSIM AUC | PSNR-HVS AUC |", "|---|---|---|"]
    out += [f"| {s['model']} | {s['ms-ssim-rgb']:.4f} | {s['psnr-hvs']:.2f} |" for s in rep["seed_003"]]
    out += [""] + [f"- {n}" for n in rep["notes"]] + [""]
    return "\n".join(out)


def _plot(curves, path, common):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 5.6))
    lows = [0.5]
    styles = {"model": dict(marker="o", ms=3.5, lw=1.6), "model-raw": dict(marker=".", ls=":", lw=1.2),
              "jpeg-sub": dict(marker="^", ms=3, lw=1.0),
              "jpeg": dict(marker="s", ms=3, lw=1.2), "anchor": dict(ls="--", lw=1.4)}
    for label, kind, rate, q, _ in curves:
        if q.get("ms-ssim-rgb") is None:
            continue
        r, v = np.asarray(rate, float), np.asarray(q["ms-ssim-rgb"], float)
        o = np.argsort(r)
        ax.plot(r[o], v[o], label=label, **styles[kind])
        inside = v[(r <= 2.2) & np.isfinite(v)]
        if inside.size:
            lows.append(float(inside.min()))
    ax.axvspan(0.125, 2.0, color="0.93", zorder=0, label="AUC range [0.125, 2]")
    if common:
        ax.axvline(common[1], color="0.6", lw=0.8, ls="-.")
    ax.set_xlim(0, 2.2)
    ax.set_ylim(max(0.0, np.floor(min(lows) * 20) / 20 - 0.05), 1.0)
    ax.set_xlabel("bpp")
    ax.set_ylabel("MS-SSIM (RGB)")
    ax.set_title("Kodak: toderici2017 (lic_jax) vs TFC published Toderici 2017 and JPEG 4:2:0")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(prog="eval.py auc-report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], help="progressive eval.py result JSON (repeatable)")
    ap.add_argument("--jpeg", help="eval.py --codec jpeg result JSON on the same images")
    ap.add_argument("--anchors", help="anchors folder (default: $LIC_JAX_SHARED/anchors)")
    ap.add_argument("--range", nargs=2, type=float, default=list(AUC_RANGE), metavar=("LO", "HI"))
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    _, md = build_report(args.model, args.jpeg, args.anchors, args.out_dir, *args.range)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
