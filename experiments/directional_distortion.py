"""The directional-distortion study of seed 000 (Abbas & Kwon), issue 17: do MS-SSIM-trained codecs turn
fine stripes at low rates where their MSE-trained twins blur them?

Protocol (``shared/docs/SYSTEMS.md`` §11 and §13, deviations in docs/DIRECTIONAL.md): every stripe image
(``shared/data/stripes``: Barbara, the two Houses, three periodic textures; grey images replicated to RGB)
is coded by every twin (``experiments/directional_twins.py``: MSE and MS-SSIM twins of bls2017,
bmshj2018-hyperprior, mbt2018, lee2019 at three rates) through **real .lic files**: ``Codec.encode``, then
``Codec.decode`` with a check that the decoded latents equal the encoder's; and by the controls JPEG and
WebP (AVIF where Pillow has it) over their quality sweeps. Each reconstruction gets bpp (file bytes),
PSNR, MS-SSIM and the stripe-orientation fidelity numbers of ``lic_jax.evaluation.sof`` — on the automatic
stripe mask of the original and on the named regions of the paper's figures (``ROIS``). Each codec's
measures are then interpolated linearly over log-bpp at the matched rates ``TARGETS`` (no extrapolation: a
rate outside a codec's range is reported as missing, with the nearest point it reached).

    python experiments/directional_distortion.py                         # ~/lic_runs/twins, all images
    python experiments/directional_distortion.py --pretrained            # + CompressAI's zoo twins (cache/network)
    python experiments/directional_distortion.py --model mse:bmshj2018-hyperprior:q1=DIR ...   # any artifacts

Writes to ``--out`` (default benchmarks/results/directional): ``points.json`` / ``points.csv`` (one row per
image × codec point), ``matched.json`` / ``matched.csv`` (per image × codec × target rate), ``summary.json``
(per architecture and target: the MS-SSIM twin minus the MSE twin, averaged over the images with a
stripe mask, and the number of images where the difference is positive), ``sof_vs_bpp.png`` and
``roi_crops.png`` (original, MSE twin, MS-SSIM twin and JPEG at the rate nearest 0.25 bpp), ``twins.json``
(each twin's training: steps, start point, recipe, final numbers where its record has them); and from
``experiments/directional_report.py`` the answer: ``pairs.{json,csv}`` (each MS-SSIM twin point against its MSE
twin at the same bpp), ``verdict.json`` (the decision rule fixed in that module) and ``table.md``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import re
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "experiments"))
import directional_report as R  # noqa: E402  (the pairing, the decision rule and the markdown table)

TARGETS = (0.15, 0.25, 0.4)  # matched bpp (issue 17)
MEASURES = ("maoe", "flip_rate", "washout_rate", "ohd_mean", "psnr", "ms_ssim")
ROIS = {  # (top, left, bottom, right) — the paper's regions
    "barbara": {"trousers": (300, 170, 400, 245), "tablecloth": (200, 8, 330, 75), "scarf": (180, 200, 260, 320)},
    "house": {"siding": (200, 30, 270, 120)},
    "house_4.1.05": {"bricks": (150, 40, 250, 100)},
}
ARCH_ORDER = ("bls2017", "bmshj2018-hyperprior", "mbt2018", "lee2019")


def load_images(folder: str) -> dict[str, np.ndarray]:
    from PIL import Image

    out = {}
    for f in sorted(glob.glob(os.path.join(folder, "*.png"))):
        with Image.open(f) as im:
            a = np.asarray(im.convert("L").convert("RGB") if im.mode in ("L", "I;16", "I") else im.convert("RGB"))
        out[os.path.splitext(os.path.basename(f))[0]] = np.ascontiguousarray(a, np.uint8)
    if not out:
        raise SystemExit(f"no PNG images in {folder}")
    return out


def twin_artifacts(twins_dir: str) -> list[dict]:
    """Exported twins ``<arch>-q<q>-<metric>/artifact`` under ``twins_dir``."""
    found = []
    for d in sorted(glob.glob(os.path.join(twins_dir, "*", "artifact", "config.json"))):
        name = os.path.basename(os.path.dirname(os.path.dirname(d)))
        m = re.fullmatch(r"(.+)-q(\d+)-(mse|ms-ssim)", name)
        if m:
            found.append({"arch": m.group(1), "quality": int(m.group(2)), "loss": m.group(3),
                          "path": os.path.dirname(d), "source": "lic_jax twin"})
    return found


def parse_model_arg(s: str) -> dict:
    """``LOSS:ARCH:LABEL=DIR`` (LOSS mse | ms-ssim)."""
    m = re.fullmatch(r"(mse|ms-ssim):([^:=]+):([^=]+)=(.+)", s)
    if not m:
        raise SystemExit(f"--model {s!r}: expected LOSS:ARCH:LABEL=DIR with LOSS mse or ms-ssim")
    return {"arch": m.group(2), "quality": m.group(3), "loss": m.group(1), "path": m.group(4), "source": "--model"}


def pretrained_twins() -> list[dict]:
    """CompressAI's published MSE and MS-SSIM weights of bmshj2018-hyperprior and mbt2018, qualities 1–3
    (lic_jax.zoo: from its cache, else downloaded; the zoo's one-line error when offline)."""
    from lic_jax import zoo

    out = []
    for arch in ("bmshj2018-hyperprior", "mbt2018"):
        for loss in ("mse", "ms-ssim"):
            for q in (1, 2, 3):
                art = zoo.load_pretrained_artifact(arch, q, loss)
                out.append({"arch": f"{arch} (CompressAI)", "quality": q, "loss": loss, "artifact": art,
                            "source": "CompressAI zoo"})
    return out


def quality_row(x, y, fields, rois_fields) -> dict:
    from lic_jax.evaluation import sof as S
    from lic_jax.evaluation.image_metrics import ms_ssim_255, psnr

    row = {"psnr": psnr(x, y), "ms_ssim": ms_ssim_255(x, y)}
    s = S.sof(x, y, spectral=False, original=fields)
    row.update({k: s.get(k) for k in ("mask_px", "maoe", "flip_rate", "washout_rate", "ohd_mean")})
    for rname, (rect, rf) in rois_fields.items():
        r = S.sof(x, y, rois=[rect], spectral=False, original=rf)
        row.update({f"{rname}:{k}": r.get(k) for k in ("maoe", "flip_rate", "washout_rate")})
    return row


def run_points(images, models, controls, progress=True) -> list[dict]:
    from lic_jax.artifact import load_artifact
    from lic_jax.evaluation import sof as S
    from lic_jax.evaluation.codecs import DEFAULT_SWEEPS, LearnedCodec, make_classical, pillow_available

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    fields = {n: S.original_fields(x) for n, x in images.items()}
    roi_fields = {n: {r: (rect, S.original_fields(images[n], rois=[rect])) for r, rect in ROIS.get(n, {}).items()}
                  for n in images}
    jobs = []
    for m in models:
        jobs += [("model", m, n) for n in images]
    for c in controls:
        if pillow_available(c):
            # low qualities first: the stripe images need QF < 5 to reach 0.15 bpp
            qs = sorted(set(range(1, 10)) | {q for q in DEFAULT_SWEEPS[c] if q <= 60})
            jobs += [("control", (c, q), n) for q in qs for n in images]
    bar = tqdm(total=len(jobs), unit="code", dynamic_ncols=True) if (tqdm and progress) else None
    rows, codecs, recs = [], {}, {}
    t0 = time.time()
    for kind, what, name in jobs:
        x = images[name]
        if kind == "model":
            key = what.get("path") or id(what)
            if key not in codecs:
                art = what.get("artifact") or load_artifact(what["path"])
                codecs[key] = LearnedCodec(art.model, art.spec, art.variables, check_roundtrip=True, warmup=False)
            out = codecs[key].run(x)
            if out.extra.get("exact_roundtrip") != 1:
                raise SystemExit(f"{what['arch']} {what['loss']} q{what['quality']} on {name}: the decoded latents "
                                 "differ from the encoder's")
            meta = {"codec": f"{what['arch']}:{what['loss']}", "arch": what["arch"], "loss": what["loss"],
                    "point": str(what["quality"]), "source": what["source"], "exact_roundtrip": 1}
        else:
            c, q = what
            out = make_classical(c, q).run(x)
            meta = {"codec": c, "arch": c, "loss": "control", "point": str(q), "source": "Pillow"}
        bpp = out.bits / (x.shape[0] * x.shape[1])
        if name in ROIS and (kind == "model" or meta["codec"] == "jpeg"):  # the ROI figure's crops
            rec = np.asarray(out.rec)
            recs[(name, meta["codec"], bpp)] = {r: rec[t:b, lft:rt] for r, (t, lft, b, rt) in ROIS[name].items()}
        rows.append({"image": name, **meta, "bpp": bpp, **quality_row(x, np.asarray(out.rec), fields[name],
                                                                       roi_fields[name])})
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    print(f"{len(rows)} codings in {time.time() - t0:.0f} s", flush=True)
    return rows, recs


RUN_NAME = re.compile(r"(.+)-q(\d+)-(mse|ms-ssim)")
CONTROLS = "controls"  # the record name of the classical controls


def controls_fingerprint(images: dict[str, np.ndarray], controls: list[str]) -> str:
    """What the controls' rows depend on: the images' names and pixels, the codecs and their quality
    sweeps, and the Pillow build (its libjpeg / libwebp / libavif versions). Equal fingerprints let a
    study reuse the committed controls record instead of re-coding ≈ 300 images (≈ 10 CPU-minutes)."""
    import hashlib

    import PIL
    from PIL import features

    from lic_jax.evaluation.codecs import DEFAULT_SWEEPS

    def lib(c):
        try:
            return features.version({"jpeg": "jpg"}.get(c, c))
        except ValueError:
            return None

    h = hashlib.sha256(json.dumps({"controls": controls, "pillow": PIL.__version__, "libs": [lib(c) for c in controls],
                                   "sweeps": [list(DEFAULT_SWEEPS.get(c, ())) for c in controls]}).encode())
    for n in sorted(images):
        h.update(n.encode())
        h.update(np.ascontiguousarray(images[n]).tobytes())
    return h.hexdigest()


def record_paths(records: str, run: str) -> tuple[str, str]:
    return os.path.join(records, f"{run}.json"), os.path.join(records, f"{run}.npz")


def training_summary(metadata: dict) -> dict:
    """The part of an exported artifact's training metadata a record keeps: steps, recipe, start point,
    data, the final training and validation numbers, wall time and library versions."""
    t = (metadata or {}).get("training") or {}
    cfg = t.get("config") or {}
    data, optim = cfg.get("data") or {}, cfg.get("optim") or {}
    keep = {"steps": t.get("steps"), "exported_step": t.get("exported_step"), "date": t.get("date"),
            "wall_time_s": t.get("wall_time_s"), "global_batch": t.get("global_batch"), "metric": t.get("metric"),
            "lmbda": t.get("lmbda"), "init_from": cfg.get("init_from"), "model_hparams": cfg.get("model_hparams"),
            "recipe": {k: v for k, v in (("lr", optim.get("lr")), ("schedule", optim.get("schedule")),
                                         ("decay_start", optim.get("decay_start")),
                                         ("final_lr_factor", optim.get("final_lr_factor")), ("crop", data.get("crop")),
                                         ("scale", data.get("scale")), ("train", data.get("train")),
                                         ("val", data.get("val"))) if v is not None},
            "final_train": t.get("final_train"), "final_val": t.get("final_val"), "versions": t.get("versions")}
    return {k: v for k, v in keep.items() if v not in (None, {}, "")}


def write_record(records: str, run: str, fingerprint: str, rows: list[dict], recs: dict, training: dict | None = None):
    """One twin's study result, kept so that the study survives the loss of the twin's weights (a run
    directory outside the repository): its rows (every stripe image), its ROI crops and, where known, its
    training record (``training_summary``)."""
    os.makedirs(records, exist_ok=True)
    jpath, npath = record_paths(records, run)
    crops = {f"{n}|{c}|{bpp!r}|{r}": a for (n, c, bpp), d in recs.items() for r, a in d.items()}
    np.savez_compressed(npath + ".tmp.npz", **crops)
    os.replace(npath + ".tmp.npz", npath)
    with open(jpath + ".tmp", "w") as f:
        json.dump({"run": run, "fingerprint": fingerprint, **({"training": training} if training else {}),
                   "rows": rows}, f, indent=1)
    os.replace(jpath + ".tmp", jpath)


def read_records(records: str) -> dict[str, dict]:
    """run name → {"fingerprint", "rows", "recs"} for every record in ``records``."""
    out = {}
    for jpath in sorted(glob.glob(os.path.join(records, "*.json"))):
        with open(jpath) as f:
            rec = json.load(f)
        recs = {}
        with np.load(jpath[:-5] + ".npz") as z:
            for k in z.files:
                n, c, bpp, r = k.split("|")
                recs.setdefault((n, c, float(bpp)), {})[r] = z[k]
        out[rec["run"]] = {"fingerprint": rec["fingerprint"], "rows": rec["rows"], "recs": recs,
                           **({"training": rec["training"]} if rec.get("training") else {})}
    return out


def record_twin(run: str, artifact: str, records: str, images_dir: str | None = None):
    """Code every stripe image with one exported twin and write its record (``directional_twins.py``
    calls this after each run)."""
    from lic_jax.artifact import load_artifact
    from lic_jax.utils.paths import shared_data

    m = RUN_NAME.fullmatch(run)
    if not m:
        raise SystemExit(f"{run}: not a twin run name (ARCH-qQ-LOSS)")
    images = load_images(images_dir or shared_data("stripes"))
    art = load_artifact(artifact)
    model = {"arch": m.group(1), "quality": int(m.group(2)), "loss": m.group(3), "artifact": art,
             "path": artifact, "source": "lic_jax twin"}
    rows, recs = run_points(images, [model], [], progress=False)
    training = training_summary(art.metadata)
    write_record(records, run, art.fingerprint, rows, recs, training)
    print(f"[study] record {run}: {len(rows)} codings -> {records}", flush=True)
    return {"fingerprint": art.fingerprint, "rows": rows, "recs": recs, **({"training": training} if training else {})}


def interp_logbpp(points: list[tuple[float, float]], target: float):
    """Linear interpolation of a measure over log(bpp); None outside the measured range (the pairing's
    ``curve_at`` with no extension)."""
    return R.curve_at(points, target, max_ratio=1.0)[0]


def matched(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["image"], r["codec"]) for r in rows})
    measure_keys = [k for k in rows[0] if k in MEASURES or ":" in k] if rows else []
    for image, codec in keys:
        rs = [r for r in rows if r["image"] == image and r["codec"] == codec]
        bpps = [r["bpp"] for r in rs]
        for t in TARGETS:
            rec = {"image": image, "codec": codec, "arch": rs[0]["arch"], "loss": rs[0]["loss"], "target_bpp": t,
                   "bpp_range": [min(bpps), max(bpps)]}
            for k in measure_keys:
                rec[k] = interp_logbpp([(r["bpp"], r.get(k)) for r in rs], t)
            if rec["psnr"] is None:
                near = min(rs, key=lambda r: abs(math.log(r["bpp"] / t)))
                rec["nearest"] = {"bpp": near["bpp"], **{k: near.get(k) for k in measure_keys}}
            out.append(rec)
    return out


def summarise(m: list[dict]) -> dict:
    """Per architecture and target: MS-SSIM twin − MSE twin, mean over images (with a value for both) and
    the count of images where the difference is > 0."""
    summ = {}
    archs = sorted({r["arch"] for r in m if r["loss"] in ("mse", "ms-ssim")})
    for arch in archs:
        for t in TARGETS:
            a = {r["image"]: r for r in m if r["arch"] == arch and r["loss"] == "mse" and r["target_bpp"] == t}
            b = {r["image"]: r for r in m if r["arch"] == arch and r["loss"] == "ms-ssim" and r["target_bpp"] == t}
            d = {}
            for k in ("maoe", "flip_rate", "washout_rate", "ohd_mean", "psnr", "ms_ssim"):
                diffs = [b[i][k] - a[i][k] for i in sorted(set(a) & set(b))
                         if a[i].get(k) is not None and b[i].get(k) is not None]
                d[k] = {"mean_diff": float(np.mean(diffs)) if diffs else None, "n_images": len(diffs),
                        "n_positive": int(sum(x > 0 for x in diffs))}
            summ[f"{arch}@{t}"] = d
    return summ


def write_table(rows: list[dict], path: str):
    keys = sorted({k for r in rows for k in r if not isinstance(r[k], (dict, list))},
                  key=lambda k: (k not in ("image", "codec", "arch", "loss", "point", "target_bpp", "bpp"), k))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def plot(rows: list[dict], images, out: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in images if any(r["image"] == n and r.get("mask_px") for r in rows)]
    ms = ("flip_rate", "maoe", "washout_rate")
    fig, axes = plt.subplots(len(names), len(ms), figsize=(4.2 * len(ms), 3.0 * max(1, len(names))), squeeze=False)
    codecs = sorted({r["codec"] for r in rows})
    # one colour per architecture (its twins: MSE dashed, MS-SSIM solid), the controls dotted in greys
    archs = sorted({c.split(":")[0] for c in codecs if ":" in c},
                   key=lambda a: (ARCH_ORDER.index(a) if a in ARCH_ORDER else len(ARCH_ORDER), a))
    tab = plt.get_cmap("tab10")
    greys = {"jpeg": "0.0", "webp": "0.45", "avif": "0.7"}

    def colour(c):
        return tab(archs.index(c.split(":")[0]) % 10) if ":" in c else greys.get(c, "0.3")

    for i, n in enumerate(names):
        for j, k in enumerate(ms):
            ax = axes[i][j]
            for c in codecs:
                rs = sorted((r for r in rows if r["image"] == n and r["codec"] == c and r.get(k) is not None),
                            key=lambda r: r["bpp"])
                if rs:
                    style = "--" if c.endswith(":mse") else (":" if "ms-ssim" not in c else "-")
                    ax.plot([r["bpp"] for r in rs], [r[k] for r in rs], style, color=colour(c),
                            marker="." if ":" in c else "x", ms=4, label=c, lw=1)
            ax.set_xscale("log")
            ax.set_xlim(0.05, 1.0)
            ax.set_title(f"{n}: {k}", fontsize=9)
            ax.set_xlabel("bpp")
            for t in TARGETS:
                ax.axvline(t, color="0.85", lw=0.8, zorder=0)
    fig.tight_layout(rect=(0, 0.04 if names else 0, 1, 1))
    if names:  # one legend under the grid, off the data
        h, lab = axes[0][0].get_legend_handles_labels()
        fig.legend(h, lab, loc="lower center", ncol=min(6, len(lab)), fontsize=7, frameon=False)
    fig.savefig(out, dpi=90)
    plt.close(fig)


ROI_TARGET = 0.25  # bpp of the ROI figure's panels


def nearest_to(target: float, keys):
    """The (image, codec, bpp) key whose bpp is nearest ``target`` on a log scale (the first of ties)."""
    return min(keys, key=lambda k: abs(math.log(k[2] / target)))


def roi_figure(rows, recs, images, out: str, target: float = ROI_TARGET):
    """Crops of the ROIs: original, then per architecture the MSE twin, the MS-SSIM twin, and JPEG, each at the
    point nearest ``target`` bpp (the bpp in the panel title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for n, rois in ROIS.items():
        if n not in images:
            continue
        for rname, (t, lft, b, r) in rois.items():
            cols = [("original", images[n][t:b, lft:r])]
            learned = sorted({k[1] for k in recs if k[0] == n and k[1] != "jpeg"},
                             key=lambda c: (ARCH_ORDER.index(c.split(":")[0]) if c.split(":")[0] in ARCH_ORDER
                                            else len(ARCH_ORDER), c.split(":")[0], c.endswith("ms-ssim")))
            for codec in learned + ["jpeg"]:
                cand = [key for key in recs if key[0] == n and key[1] == codec]
                if not cand:
                    continue
                key = nearest_to(target, cand)
                cols.append((f"{codec}\n{key[2]:.3f} bpp", recs[key][rname]))
            panels.append((f"{n} {rname}", cols))
    if not panels:
        return
    ncol = max(len(c) for _, c in panels)
    fig, axes = plt.subplots(len(panels), ncol, figsize=(1.9 * ncol, 2.1 * len(panels)), squeeze=False)
    for i, (title, cols) in enumerate(panels):
        for j in range(ncol):
            ax = axes[i][j]
            ax.set_axis_off()
            if j < len(cols):
                ax.imshow(cols[j][1], interpolation="nearest")
                ax.set_title((title + "\n" if j == 0 else "") + cols[j][0], fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def twin_budgets(recorded: dict) -> dict:
    """run → its training: the record's own (``training_summary``, records written since 2026-12-03 14:30 UTC)
    or else the budget ``directional_twins.plan()`` gave it (steps, start point, batch, crop, lr)."""
    import directional_twins as T

    plan = {r["name"]: r for r in T.plan()}
    out = {}
    for run, r in sorted(recorded.items()):
        if r.get("training"):
            out[run] = {"source": "the artifact's training metadata", **r["training"]}
        elif run in plan:
            p = plan[run]
            init = p["init"] if not p["init"].startswith("/") else f"the MSE twin {run.replace('-ms-ssim', '-mse')}"
            out[run] = {"source": "directional_twins.plan() (the record predates training metadata)",
                        "steps": p["steps"], "init": init, "global_batch": T.BATCH, "crop": T.CROP, "lr": T.LR,
                        "model_hparams": T.HPARAMS[p["arch"]]}
    return out


def main(argv=None):
    from lic_jax.utils.paths import shared_data

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--twins", default=os.path.join(os.path.expanduser(os.environ.get("LIC_RUNS", "~/lic_runs")),
                                                    "twins"))
    ap.add_argument("--model", action="append", default=[], help="LOSS:ARCH:LABEL=DIR (repeatable)")
    ap.add_argument("--pretrained", action="store_true",
                    help="also CompressAI's MSE and MS-SSIM zoo weights of bmshj2018-hyperprior and mbt2018 (q1-3)")
    ap.add_argument("--images", default=shared_data("stripes"))
    ap.add_argument("--only-images", default="", help="comma-separated image stems (default: all)")
    ap.add_argument("--controls", default="jpeg,webp,avif")
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "directional"))
    ap.add_argument("--records", default=os.path.join(REPO, "benchmarks", "results", "directional", "runs"),
                    help="per-twin records (rows + ROI crops), read and written; the twins directory's records/ "
                         "is read too")
    ap.add_argument("--record", default="", metavar="RUN=ARTIFACT",
                    help="only write the record of one exported twin into --records, then stop")
    a = ap.parse_args(argv)
    images = load_images(a.images)
    if a.only_images:
        keep = set(a.only_images.split(","))
        images = {k: v for k, v in images.items() if k in keep}
    if a.record:
        run, _, art = a.record.partition("=")
        record_twin(run, art, a.records, a.images)
        return
    # every twin's record (the committed ones, then the twins directory's), then the exported twins
    # that have none or an outdated one (their record is written now)
    recorded = {}
    for d in (a.records, os.path.join(a.twins, "records")):
        recorded.update(read_records(d) if os.path.isdir(d) else {})
    twins = twin_artifacts(a.twins)
    for t in twins:
        run = os.path.basename(os.path.dirname(t["path"]))
        with open(os.path.join(t["path"], "config.json")) as f:
            fp = json.load(f)["fingerprint"]
        if recorded.get(run, {}).get("fingerprint") != fp:
            recorded[run] = record_twin(run, t["path"], a.records, a.images)
    models = [parse_model_arg(s) for s in a.model]
    if a.pretrained:
        models += pretrained_twins()
    if not models and not recorded:
        raise SystemExit(f"no twins found in {a.twins} or {a.records} (train them: experiments/directional_twins.py "
                         "train) and no --model / --pretrained")
    controls = [c for c in a.controls.split(",") if c]
    ctrl = recorded.pop(CONTROLS, None)
    ctrl_fp = controls_fingerprint(images, controls) if controls else None
    reuse = ctrl is not None and ctrl["fingerprint"] == ctrl_fp
    print(f"{len(recorded)} recorded twins + {len(models)} models × {len(images)} images + controls {a.controls}"
          f"{' (their record)' if reuse else ''}", flush=True)
    os.makedirs(a.out, exist_ok=True)
    rows, recs = run_points(images, models, [])
    if controls and reuse:
        rows += ctrl["rows"]
        recs.update(ctrl["recs"])
    elif controls:
        c_rows, c_recs = run_points(images, [], controls)
        # the ROI figure shows JPEG at the point nearest ROI_TARGET bpp: keep that point's crops only
        # (all 15 JPEG points' crops made the record 0.9 MB)
        keep = [nearest_to(ROI_TARGET, [k for k in c_recs if k[0] == n]) for n in {k[0] for k in c_recs}]
        c_recs = {k: c_recs[k] for k in keep}
        if not a.only_images:  # a subset's controls would replace the whole set's record
            write_record(a.records, CONTROLS, ctrl_fp, c_rows, c_recs)
        rows += c_rows
        recs.update(c_recs)
    for run, r in sorted(recorded.items()):
        rows += [row for row in r["rows"] if row["image"] in images]
        recs.update({k: v for k, v in r["recs"].items() if k[0] in images})
    with open(os.path.join(a.out, "twins.json"), "w") as f:
        json.dump(twin_budgets(recorded), f, indent=1)
    m = matched(rows)
    summ = summarise(m)
    for name, obj in (("points.json", rows), ("matched.json", m), ("summary.json", summ)):
        with open(os.path.join(a.out, name), "w") as f:
            json.dump(obj, f, indent=1)
    write_table(rows, os.path.join(a.out, "points.csv"))
    write_table(m, os.path.join(a.out, "matched.csv"))
    pairs = R.own_rate_pairs(rows)
    archs = tuple(x for x in ARCH_ORDER if any(p["arch"] == x for p in pairs)) + \
        tuple(sorted({p["arch"] for p in pairs} - set(ARCH_ORDER)))
    v = R.verdict(pairs, archs)
    with open(os.path.join(a.out, "pairs.json"), "w") as f:
        json.dump(pairs, f, indent=1)
    R.write_pairs_csv(pairs, os.path.join(a.out, "pairs.csv"))
    with open(os.path.join(a.out, "verdict.json"), "w") as f:
        json.dump(v, f, indent=1)
    striped = [n for n in images if any(r["image"] == n and r.get("flip_rate") is not None for r in rows)]
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write("## The answer (experiments/directional_report.py: pairs at the MS-SSIM twins' own rates)\n\n")
        f.write(R.verdict_markdown(v) + "\n")
        for n in striped:
            f.write(f"\n## {n}: matched bpp, automatic stripe mask\n\n")
            f.write(R.table_markdown(m, n, ARCH_ORDER, TARGETS) + "\n")
    plot(rows, images, os.path.join(a.out, "sof_vs_bpp.png"))
    roi_figure(rows, recs, images, os.path.join(a.out, "roi_crops.png"))
    print(R.verdict_markdown(v))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
