#!/usr/bin/env python
"""One modulated model for every rate vs separately trained single-rate models (seed 001's Table I, in spirit).

    nice -n 10 python experiments/mae_vs_single.py --out runs/mae-vs-single        # train + evaluate (resumable)
    python experiments/mae_vs_single.py --out runs/mae-vs-single --stage eval       # re-evaluate trained models
    python experiments/mae_vs_single.py --out runs/mae-vs-single --stage eval --limit 4 --rate-control \
        --eval-out /tmp/mae-eval                                                   # quick look, elsewhere

What it does (docs/MAE.md records a run):

1. **(a)** trains ONE modulated autoencoder (``mae-bls2017`` or ``mae-hyperprior``) over a λ set
   (default seed 001's {64, 256, 1024, 4096}/255² on CompressAI's scale, loss
   Σ_λ (bpp_λ + λ·255²·MSE_λ), every λ on every batch), and **(b)** one unmodulated model of the
   same backbone and width (``bls2017`` / ``bmshj2018-hyperprior`` of the registry) per λ, all
   through ``lic_jax.train.trainer.train_and_evaluate`` (the code path of ``train.py``).
2. **Same total training budget**, counted in *image-passes*: one forward + backward pass of one
   crop at one λ (the unit of compute; the modulation MLPs add < 0.1 % FLOPs). Each single-rate
   model gets ``--steps`` steps of ``--batch`` crops (S·B passes, K models: K·S·B). The modulated
   model gets K·S steps of ``--batch``/K crops, each crop replicated at all K λ (B passes per step):
   K·S·B passes, the same number of optimizer steps in total, the same schedule shape and lr.
3. Evaluates everything on Kodak through **real bitstreams** (``.lic`` files, file bytes →
   bpp; decoded 8-bit images → PSNR / MS-SSIM; exact round trip of the latents checked for every
   image and λ): the single models at their λ, the modulated model at the K trained λ and on a
   denser log-spaced λ grid (continuous λ).
4. Writes ``OUT/results.json`` (all numbers), CompressAI-format curves ``OUT/mae.json``,
   ``OUT/mae-dense.json``, ``OUT/single.json``, the RD plot ``OUT/rd.png``, BD-rate of the modulated
   model against the single models (PCHIP and cubic; ``lic_jax.evaluation.bd``), parameter
   counts and storage (bytes of ``params.msgpack``) of one modulated model vs the set.
5. ``--rate-control``: for every Kodak image, :func:`lic_jax.coding.encode_at_bpp` on the modulated
   model at target rates (default: the single models' mean bpp; ``--targets 0.25,0.5,1``): hit rate
   (file within ``--rtol`` of the target), relative errors, encodes per image → ``results.json``.

The eval stage reads ``OUT/mae/artifact`` and ``OUT/single-<k>/artifact`` (whatever is there: the
singles' λ come from their artifact metadata, else from ``--lmbdas``) and writes to ``--eval-out``
(default ``OUT``). It exits non-zero if any decoded latent differs from the encoder's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

BACKBONES = {"bls2017": ("mae-bls2017", "bls2017"), "hyperprior": ("mae-hyperprior", "bmshj2018-hyperprior")}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO, "runs", "mae-vs-single"))
    p.add_argument("--stage", choices=["all", "train", "eval"], default="all")
    p.add_argument("--backbone", choices=sorted(BACKBONES), default="bls2017")
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=96, help="latent channels (hyperprior backbone only)")
    p.add_argument("--lmbdas", default="seed001", help="preset (seed001, compressai) or comma-separated λ (CompressAI scale)")
    p.add_argument("--activation", choices=["exp", "sigmoid"], default="exp")
    p.add_argument("--lmbda-weights", default="equal",
                   help="w_λ of the modulated model's loss: 'equal' (the paper), 'inverse' (∝ λ_min/λ: every λ's RD "
                        "loss on the same scale), 'sqrt-inverse' (∝ (λ_min/λ)^½) or comma-separated numbers in "
                        "increasing-λ order")
    p.add_argument("--lmbda-input", choices=["log", "linear"], default="log",
                   help="modulation input: log-range (default) or the paper's λ/λ_max (docs/MAE.md)")
    p.add_argument("--steps", type=int, default=1500, help="steps of each single-rate model (the modulated one: K×)")
    p.add_argument("--batch", type=int, default=8, help="crops per step of a single-rate model (image-passes per step)")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    shared = os.environ.get("LIC_JAX_SHARED", os.path.join(REPO, "..", "shared"))
    p.add_argument("--train-data", default=os.path.join(shared, "data", "train"))
    p.add_argument("--val-data", default=os.path.join(shared, "data", "val"))
    p.add_argument("--kodak", default=None, help="Kodak directory (default: lic_jax's lookup, shared/data/kodak)")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N Kodak images only (0: all 24)")
    p.add_argument("--dense", type=int, default=8, help="λ values of the modulated model's dense curve (log-spaced)")
    p.add_argument("--eval-out", default=None, help="where the eval stage writes (default: --out)")
    p.add_argument("--metrics", default="psnr-rgb,ms-ssim-rgb", help="evaluation metrics (lic_jax.evaluation)")
    p.add_argument("--coder", default=None, help="entropy coder (lic_jax.coding backends; default constriction)")
    p.add_argument("--rate-control", action="store_true", help="also check encode_at_bpp on the modulated model")
    p.add_argument("--targets", default=None,
                   help="rate-control target bpp, comma-separated (default: the single models' mean bpp)")
    p.add_argument("--rtol", type=float, default=0.03, help="rate-control tolerance (relative)")
    p.add_argument("--no-warmup", action="store_true", help="do not code the first image of each shape untimed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def base_config(args, model: str):
    from lic_jax.train.config import get_default_config

    c = get_default_config()
    c.model = model
    c.quality = 0
    c.model_hparams.N = args.N
    if args.backbone == "hyperprior":
        c.model_hparams.M = args.M
    c.data.train = os.path.abspath(args.train_data)
    c.data.val = os.path.abspath(args.val_data)
    c.data.crop = args.crop
    c.data.val_crop = 256
    c.data.val_limit = 8
    c.data.cache = True
    c.val_batch_size = 8
    c.seed = args.seed
    c.optim.lr = args.lr
    c.optim.schedule = "constant_then_cosine"
    c.optim.decay_start = 0.5
    c.optim.final_lr_factor = 0.05
    c.log_every = 50
    c.eval_every = 0  # validate at the end only
    c.checkpoint_every = 500
    c.keep_checkpoints = 1
    c.keep_best = False
    c.tb_images = 0
    c.progress_bar = False
    c.export.which = "last"
    return c


def lmbda_weights(spec: str, lmbdas) -> str:
    """The ``variable_rate.weights`` string for ``--lmbda-weights``."""
    if spec == "equal":
        return ""
    if spec == "inverse":
        return ",".join(repr(min(lmbdas) / v) for v in lmbdas)
    if spec == "sqrt-inverse":
        return ",".join(repr((min(lmbdas) / v) ** 0.5) for v in lmbdas)
    return spec


def run_configs(args):
    """[(name, workdir, config)]: the modulated model first, then one single-rate model per λ."""
    from lic_jax.models import resolve_lmbdas

    lmbdas = resolve_lmbdas(args.lmbdas)
    K = len(lmbdas)
    if args.batch % K:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the number of λ ({K})")
    mae_name, single_name = BACKBONES[args.backbone]
    runs = []
    c = base_config(args, mae_name)
    c.model_hparams.activation = args.activation
    c.model_hparams.lmbda_input = args.lmbda_input
    c.variable_rate.lmbdas = ",".join(repr(v) for v in lmbdas)
    c.variable_rate.mode = "all"
    c.variable_rate.weights = lmbda_weights(args.lmbda_weights, lmbdas)
    c.batch_size = args.batch // K  # images per step; each at all K λ → args.batch image-passes
    c.num_steps = K * args.steps
    runs.append(("mae", os.path.join(args.out, "mae"), c))
    for k, lam in enumerate(lmbdas):
        c = base_config(args, single_name)
        c.lmbda = lam
        c.batch_size = args.batch
        c.num_steps = args.steps
        runs.append((f"single-{k}", os.path.join(args.out, f"single-{k}"), c))
    return lmbdas, runs


def train_all(args):
    from lic_jax.train.trainer import train_and_evaluate

    lmbdas, runs = run_configs(args)
    times = {}
    for name, wd, c in runs:
        art = os.path.join(wd, "artifact", "config.json")
        if os.path.exists(art):
            print(f"[{name}] already trained ({art})", flush=True)
            continue
        print(f"[{name}] training {c.model} for {c.num_steps} steps × batch {c.batch_size} → {wd}", flush=True)
        t0 = time.time()
        train_and_evaluate(c, wd)
        times[name] = time.time() - t0
        print(f"[{name}] done in {times[name] / 60:.1f} min", flush=True)
    return lmbdas, runs


def train_wall_time(wd: str) -> float | None:
    """Training wall time of a run (from its exported metadata; None if not recorded)."""
    try:
        with open(os.path.join(wd, "artifact", "config.json")) as f:
            v = json.load(f).get("metadata", {}).get("training", {}).get("wall_time_s")
    except (OSError, ValueError):
        return None
    return None if v is None else float(v)


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
def discover_runs(out: str) -> tuple[str, list[str]]:
    """(modulated run dir, [single-rate run dirs by index]) of the trained runs under ``out``."""
    import glob
    import re

    mae = os.path.join(out, "mae")
    singles = [d for d in glob.glob(os.path.join(out, "single-*")) if re.fullmatch(r"single-\d+", os.path.basename(d))]
    singles.sort(key=lambda d: int(d.rsplit("-", 1)[1]))
    missing = [os.path.join(d, "artifact") for d in [mae, *singles]
               if not os.path.exists(os.path.join(d, "artifact", "config.json"))]
    if missing or not singles:
        raise SystemExit(f"eval: no exported artifact in {', '.join(missing) or os.path.join(out, 'single-*')} "
                         "(train first: --stage train)")
    return mae, singles


def model_info(wd: str, art) -> dict:
    """Parameter counts, storage and training time of one run's artifact."""
    import numpy as np
    import jax

    params = art.variables["params"]
    n = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(params))
    n_mod = sum(int(np.size(x)) for k, v in params.items() if k.startswith(("mod_", "demod_"))
                for x in jax.tree_util.tree_leaves(v))
    adir = os.path.join(wd, "artifact")
    tr = art.metadata.get("training", {})
    return {"artifact": os.path.abspath(adir), "model": art.spec.name, "hparams": _jsonable(art.spec.hparams),
            "fingerprint": art.fingerprint, "params": n, "modulation_params": n_mod,
            "params_msgpack_bytes": os.path.getsize(os.path.join(adir, "params.msgpack")),
            "tables_npz_bytes": (os.path.getsize(os.path.join(adir, "tables.npz"))
                                 if os.path.exists(os.path.join(adir, "tables.npz")) else None),
            "train_wall_time_s": train_wall_time(wd), "train_steps": tr.get("steps"),
            "train_lmbda": tr.get("lmbda"), "train_lmbdas": tr.get("lmbdas")}


def _jsonable(x):
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _f32(v) -> float:
    import numpy as np

    return float(np.float32(v))


def subset_curve(curve, idx, name: str):
    """The RD curve of some of ``curve``'s points (by index), renamed."""
    from lic_jax.evaluation.results import RDCurve

    meta = dict(curve.meta)
    for k in ("points", "point_info"):
        if isinstance(meta.get(k), list):
            meta[k] = [meta[k][i] for i in idx]
    return RDCurve(name, [curve.bpp[i] for i in idx], {k: [v[i] for i in idx] for k, v in curve.metrics.items()},
                   curve.description, None, meta)


def curve_points(curve) -> list[dict]:
    """Per-point means of a curve as records (label, λ, bpp, metrics, times)."""
    out = []
    labels = curve.meta.get("points", [None] * len(curve.bpp))
    for i, b in enumerate(curve.bpp):
        r = {"label": labels[i], "bpp": b}
        r.update({k: v[i] for k, v in curve.metrics.items()})
        out.append(_jsonable(r))
    return out


def bd_table(anchor, tests: dict, metrics=("psnr-rgb", "ms-ssim-db-rgb")) -> dict:
    """BD-rate / BD-quality (PCHIP and cubic) of each test curve against the anchor; errors recorded."""
    from lic_jax.evaluation.bd import BDError, bd_quality, bd_rate

    out = {}
    for tname, test in tests.items():
        rec = {}
        for m in metrics:
            r = {}
            if not (anchor.has(m) and test.has(m)):
                rec[m] = {"error": f"no {m} values"}
                continue
            ra, qa = anchor.points(m)
            rb, qb = test.points(m)
            # each one separately: BD-rate needs overlapping qualities, BD-quality overlapping rates
            for kind, fn in (("rate", bd_rate), ("quality", bd_quality)):
                for method in ("pchip", "cubic"):
                    try:
                        r[f"bd_{kind}_{method}"] = fn(ra, qa, rb, qb, method)
                    except BDError as e:
                        r[f"bd_{kind}_error"] = str(e)
            rec[m] = r
        out[f"{tname} vs {anchor.name}"] = rec
    return out


def plot_results(single, mae, dense, path: str, title: str):
    """PSNR and MS-SSIM (dB) vs bpp: the single-rate models, the modulated one at its trained λ, its dense curve."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    from lic_jax.evaluation.plots import AXIS_LABELS

    keys = [k for k in ("psnr-rgb", "ms-ssim-db-rgb") if single.has(k)]
    fig, axes = plt.subplots(1, len(keys), figsize=(6.2 * len(keys), 4.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for c, style, kw in ((dense, "-", dict(color="C1", lw=1.6, alpha=0.8, marker=".", ms=5)),
                             (single, "-o", dict(color="C0", lw=2.0, ms=6)),
                             (mae, "s", dict(color="C1", ms=8, mfc="none", mew=2))):
            b, v = c.points(key)
            o = np.argsort(b)
            ax.plot(b[o], v[o], style, label=c.name, **kw)
        ax.set_xlabel("bits per pixel (real .lic files)")
        ax.set_ylabel(AXIS_LABELS.get(key, key))
        ax.grid(True, alpha=0.35)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rate_control_check(codec, dataset, targets, rtol: float, progress: bool) -> dict:
    """encode_at_bpp on every image × target: hit rate, relative errors, encodes."""
    import numpy as np

    from lic_jax.coding import encode_at_bpp

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset) * len(targets), desc="rate control", unit="file", file=sys.stderr,
                   dynamic_ncols=True)
    recs = []
    try:
        for name, img in zip(dataset.names, (ld() for ld in dataset.loaders)):
            for t in targets:
                t0 = time.perf_counter()
                r = encode_at_bpp(codec, img, t, rtol=rtol)
                h, w = img.shape[:2]
                assert r.bpp == 8.0 * len(r.encoded.data) / (h * w)
                # in_range: the target lies between the rates at the λ range's two ends (the first two files coded)
                ends = [b for _, b in r.trials[:2]]
                in_range = ends[0] <= t <= (ends[1] if len(ends) > 1 else ends[0])
                recs.append({"image": name, "target_bpp": float(t), "lmbda": r.lmbda, "bpp": r.bpp,
                             "rel_error": r.rel_error, "hit": bool(r.hit), "in_range": bool(in_range),
                             "encodes": r.encodes, "note": r.note, "time_s": time.perf_counter() - t0})
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    def summary(rs):
        err = np.abs([r["rel_error"] for r in rs])
        inr = [r for r in rs if r["in_range"]]
        return {"n": len(rs), "hit_rate": float(np.mean([r["hit"] for r in rs])), "in_range": len(inr),
                "hit_rate_in_range": float(np.mean([r["hit"] for r in inr])) if inr else None,
                "mean_abs_rel_error": float(err.mean()), "median_abs_rel_error": float(np.median(err)),
                "max_abs_rel_error": float(err.max()), "mean_encodes": float(np.mean([r["encodes"] for r in rs])),
                "max_encodes": int(max(r["encodes"] for r in rs))}

    per_image_encodes = [sum(r["encodes"] for r in recs if r["image"] == n) for n in dataset.names]
    return {"targets": [float(t) for t in targets], "rtol": rtol, "lmbda_range": list(codec.lmbda_range),
            "overall": {**summary(recs), "encodes_per_image_mean": float(np.mean(per_image_encodes)),
                        "encodes_per_image_max": int(max(per_image_encodes))},
            "per_target": [{"target_bpp": float(t), **summary([r for r in recs if r["target_bpp"] == float(t)])}
                           for t in targets],
            "per_file": recs}


def eval_all(args) -> dict:
    import datetime

    import numpy as np

    from lic_jax.artifact import load_artifact
    from lic_jax.coding import Codec
    from lic_jax.evaluation.points import lmbda_label
    from lic_jax.evaluation.codecs import LearnedCodec
    from lic_jax.evaluation.datasets import resolve_dataset
    from lic_jax.evaluation.results import save_json
    from lic_jax.evaluation.runner import Point, evaluate
    from lic_jax.models import resolve_lmbdas

    out_dir = args.eval_out or args.out
    os.makedirs(out_dir, exist_ok=True)
    mae_dir, single_dirs = discover_runs(args.out)
    ds = resolve_dataset("kodak", data_dir=args.kodak).limit(args.limit or None)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    progress = not args.no_progress
    common = dict(coder=args.coder, warmup=not args.no_warmup, check_roundtrip=True)
    print(f"[eval] {len(ds)} Kodak images ({ds.source}); modulated {mae_dir}, {len(single_dirs)} single-rate runs",
          flush=True)

    # ---- single-rate models, each at its λ
    try:
        cfg_lmbdas = resolve_lmbdas(args.lmbdas)
    except ValueError:
        cfg_lmbdas = None
    models, points = {}, []
    for k, wd in enumerate(single_dirs):
        art = load_artifact(os.path.join(wd, "artifact"))
        info = model_info(wd, art)
        lam = info["train_lmbda"]
        if lam is None and cfg_lmbdas is not None and len(cfg_lmbdas) == len(single_dirs):
            lam = cfg_lmbdas[k]
        if lam is None:
            raise SystemExit(f"eval: {wd}: no λ in the artifact metadata and --lmbdas does not match the runs")
        info["lmbda"] = float(lam)
        name = os.path.basename(wd)
        models[name] = info
        points.append(Point(name, None, lambda a=art: LearnedCodec(
            a.model, a.spec, a.variables, codec=Codec.from_artifact(a, coder=args.coder), **common),
            {"artifact": info["artifact"], "fingerprint": art.fingerprint}, lmbda=float(lam)))
    points.sort(key=lambda p: p.lmbda)
    single_curve, single_rows = evaluate(points, ds, metrics=metrics, progress=progress,
                                         name=f"single-rate {art.spec.name} ×{len(points)}")

    # ---- the modulated model: the K trained λ and the dense log-spaced grid (one evaluation of their union)
    art = load_artifact(os.path.join(mae_dir, "artifact"))
    minfo = model_info(mae_dir, art)
    models["mae"] = minfo
    codec = Codec.from_artifact(art, coder=args.coder)
    lo, hi = codec.lmbda_range
    trained = sorted({_f32(v) for v in art.model.lmbdas})
    dense = sorted({_f32(v) for v in np.geomspace(lo, hi, args.dense)}) if args.dense > 0 else []
    union = sorted(set(trained) | set(dense))
    warm: set = set()
    mpoints = [Point(lmbda_label(lam), None, lambda lam=lam: LearnedCodec(
        art.model, art.spec, art.variables, lmbda=lam, codec=codec, warm=warm, **common),
        {"artifact": minfo["artifact"], "fingerprint": art.fingerprint, "trained": lam in trained}, lmbda=lam)
        for lam in union]
    union_curve, mae_rows = evaluate(mpoints, ds, metrics=metrics, progress=progress, name="mae")
    mae_curve = subset_curve(union_curve, [union.index(v) for v in trained],
                             f"modulated {art.spec.name} (trained λ)")
    dense_curve = subset_curve(union_curve, [union.index(v) for v in dense], f"modulated {art.spec.name} (dense λ)")
    for c in (single_curve, mae_curve, dense_curve):
        c.meta.update({"source": "bitstream", "bpp": "8 * file bytes / (H*W) of the unpadded image",
                       "reconstruction": "8-bit (rounded, decoded)"})
    save_json(single_curve, os.path.join(out_dir, "single.json"))
    save_json(mae_curve, os.path.join(out_dir, "mae.json"))
    save_json(dense_curve, os.path.join(out_dir, "mae-dense.json"))

    # ---- checks: exact round trip of the latents, rate = file bytes
    rows = [dict(r, model="single") for r in single_rows] + [dict(r, model="mae") for r in mae_rows]
    for r in rows:
        assert r["bpp"] == 8.0 * r["bytes"] / (r["height"] * r["width"]), r
    roundtrip = {"checked": len(rows), "exact": sum(int(r.get("exact_roundtrip", 0)) for r in rows),
                 "single": {"checked": len(single_rows), "exact": sum(r["exact_roundtrip"] for r in single_rows)},
                 "mae": {"checked": len(mae_rows), "exact": sum(r["exact_roundtrip"] for r in mae_rows)},
                 "mismatches": [{k: r[k] for k in ("model", "point", "image")} for r in rows
                                if not r.get("exact_roundtrip")]}

    # ---- comparison at the trained λ, BD-rates, storage, training time
    mae_pts, single_pts = curve_points(mae_curve), curve_points(single_curve)
    pairs = []
    for sp in single_pts:
        mp = min(mae_pts, key=lambda m: abs(math.log(m["lmbda"] / sp["lmbda"])))
        if abs(math.log(mp["lmbda"] / sp["lmbda"])) > 1e-4:
            continue
        pairs.append({"lmbda": sp["lmbda"], "single": sp["label"],
                      "bpp_single": sp["bpp"], "bpp_mae": mp["bpp"], "bpp_rel": mp["bpp"] / sp["bpp"] - 1.0,
                      **{f"{k}_{w}": p.get(k) for k in ("psnr-rgb", "ms-ssim-rgb") for w, p in
                         (("single", sp), ("mae", mp))},
                      "d_psnr": (mp.get("psnr-rgb") or math.nan) - (sp.get("psnr-rgb") or math.nan)})
    bd = bd_table(single_curve, {"mae": mae_curve, "mae-dense": dense_curve})
    singles = [models[os.path.basename(d)] for d in single_dirs]
    storage = {
        "modulated": {"params": minfo["params"], "modulation_params": minfo["modulation_params"],
                      "params_msgpack_bytes": minfo["params_msgpack_bytes"]},
        "singles": {"count": len(singles), "params": sum(m["params"] for m in singles),
                    "params_msgpack_bytes": sum(m["params_msgpack_bytes"] for m in singles)},
    }
    storage["bytes_ratio_singles_over_modulated"] = (storage["singles"]["params_msgpack_bytes"]
                                                     / storage["modulated"]["params_msgpack_bytes"])
    st = [m["train_wall_time_s"] for m in singles]
    training = {"modulated_s": minfo["train_wall_time_s"],
                "singles_s": st, "singles_total_s": sum(st) if all(t is not None for t in st) else None}

    rc = None
    if args.rate_control:
        targets = ([float(t) for t in args.targets.split(",") if t.strip()] if args.targets
                   else sorted(p["bpp"] for p in single_pts))
        rc = rate_control_check(codec, ds, targets, args.rtol, progress)

    import lic_jax

    results = {
        "experiment": "mae_vs_single",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "lic_jax_version": getattr(lic_jax, "__version__", "?"), "args": _jsonable(vars(args)),
        "dataset": {"name": ds.name, "source": ds.source, "num_images": len(ds), "images": list(ds.names)},
        "rate": "8 * bytes of the complete .lic file / (H*W); metrics on the decoded uint8 image",
        "models": models,
        "lmbdas": {"trained": trained, "dense": dense, "singles": [p.lmbda for p in points]},
        "curves": {"single": single_pts, "mae": mae_pts, "mae-dense": curve_points(dense_curve)},
        "at_trained_lmbda": pairs,
        "bd": bd, "storage": storage, "training_wall_time": training,
        "roundtrip": roundtrip, "rate_control": rc,
        "per_image": [_jsonable(r) for r in rows],
    }
    with open(os.path.join(out_dir, "results.json.tmp"), "w") as f:
        json.dump(_jsonable(results), f, indent=1)
    os.replace(os.path.join(out_dir, "results.json.tmp"), os.path.join(out_dir, "results.json"))
    plot_results(single_curve, mae_curve, dense_curve, os.path.join(out_dir, "rd.png"),
                 f"Kodak ({len(ds)} images): one modulated {art.spec.name} vs {len(singles)} single-rate models")
    print_summary(results)
    names = ("results.json", "mae.json", "mae-dense.json", "single.json", "rd.png")
    print(f"[eval] wrote {', '.join(os.path.join(out_dir, n) for n in names)}", flush=True)
    assert roundtrip["exact"] == roundtrip["checked"], \
        f"decoded latents differ from the encoder's: {roundtrip['mismatches']}"
    return results


def _fmt(v, spec):
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def print_summary(res: dict):
    print(f"\n{'λ':>10s} | {'single bpp':>10s} {'PSNR':>7s} {'MS-SSIM':>8s} | {'MAE bpp':>9s} {'PSNR':>7s} "
          f"{'MS-SSIM':>8s} | {'Δbpp':>7s} {'ΔPSNR':>6s}")
    for p in res["at_trained_lmbda"]:
        print(f"{p['lmbda']:10.5g} | {p['bpp_single']:10.4f} {_fmt(p.get('psnr-rgb_single'), '7.2f')} "
              f"{_fmt(p.get('ms-ssim-rgb_single'), '8.4f')} | {p['bpp_mae']:9.4f} "
              f"{_fmt(p.get('psnr-rgb_mae'), '7.2f')} "
              f"{_fmt(p.get('ms-ssim-rgb_mae'), '8.4f')} | {100 * p['bpp_rel']:+6.1f}% {_fmt(p['d_psnr'], '+6.2f')}")
    print("dense:", ", ".join(f"λ={p['lmbda']:.4g}: {p['bpp']:.3f} bpp {_fmt(p.get('psnr-rgb'), '.2f')} dB"
                              for p in res["curves"]["mae-dense"]))
    for name, rec in res["bd"].items():
        parts = []
        for m, r in rec.items():
            if "error" in r:
                parts.append(f"{m}: n/a ({r['error']})")
                continue
            rate = (f"BD-rate {r['bd_rate_pchip']:+.2f} % (cubic {r['bd_rate_cubic']:+.2f} %)" if "bd_rate_pchip" in r
                    else f"BD-rate n/a ({r.get('bd_rate_error')})")
            unit = "dB" if m.endswith("db-rgb") or m.startswith("psnr") else ""
            qual = (f"BD-quality {r['bd_quality_pchip']:+.3f} {unit} (cubic {r['bd_quality_cubic']:+.3f})"
                    if "bd_quality_pchip" in r else f"BD-quality n/a ({r.get('bd_quality_error')})")
            parts.append(f"{m}: {rate}, {qual}")
        print(f"BD {name}: " + "; ".join(parts))
    s = res["storage"]
    print(f"storage: modulated {s['modulated']['params']:,} params / {s['modulated']['params_msgpack_bytes']:,} B "
          f"(modulation {s['modulated']['modulation_params']:,} params); {s['singles']['count']} singles "
          f"{s['singles']['params']:,} params / {s['singles']['params_msgpack_bytes']:,} B "
          f"(×{s['bytes_ratio_singles_over_modulated']:.2f})")
    t = res["training_wall_time"]
    print(f"training wall time: modulated {_fmt(t['modulated_s'] and t['modulated_s'] / 60, '.1f')} min, singles "
          f"{_fmt(t['singles_total_s'] and t['singles_total_s'] / 60, '.1f')} min in total")
    rt = res["roundtrip"]
    print(f"exact latent round trips: {rt['exact']}/{rt['checked']}")
    rc = res["rate_control"]
    if rc:
        o = rc["overall"]
        print(f"rate control (rtol {rc['rtol']:.0%}): hit {o['hit_rate']:.0%} of {o['n']} "
              f"({_fmt(o['hit_rate_in_range'], '.0%')} of the {o['in_range']} inside the λ range's rates), "
              f"|rel err| mean "
              f"{100 * o['mean_abs_rel_error']:.2f} % max {100 * o['max_abs_rel_error']:.2f} %, "
              f"{o['mean_encodes']:.1f} encodes per file, {o['encodes_per_image_mean']:.1f} per image")
        for p in rc["per_target"]:
            print(f"  target {p['target_bpp']:.4f} bpp: hit {p['hit_rate']:.0%} ({p['in_range']} in range), "
                  f"|rel err| mean "
                  f"{100 * p['mean_abs_rel_error']:.2f} %, {p['mean_encodes']:.1f} encodes")


if __name__ == "__main__":
    a = parse_args()
    if a.stage in ("all", "train"):
        train_all(a)
    if a.stage in ("all", "eval"):
        eval_all(a)
