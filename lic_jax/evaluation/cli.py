"""``python eval.py`` — evaluate codecs, compute BD-rates / AUCs, draw RD plots and summary tables.

Subcommands (``run`` is the default when the first argument is an option)::

  eval.py [run] --model NAME (--checkpoint DIR… | --compressai-checkpoint FILE… | --random-init)
                [--quality Q…] --dataset kodak|clic[:split]|DIR --out results.json
  eval.py [run] --model NAME --pretrained [mse|ms-ssim] --quality Q… --dataset … --out results.json
  eval.py [run] --checkpoint MAE_DIR (--lmbda L… | --lmbda-grid N) --dataset … --out mae.json
  eval.py [run] --codec jpeg|webp|jpeg2000|avif [--quality Q…] --dataset … --out jpeg.json
  eval.py [run] --checkpoint TODERICI_DIR [--iterations K] --dataset … --out tod.json
                (progressive models: one real .lic per image, every iteration prefix k = 1…K decoded
                from its bytes; one point per k; lic_jax.evaluation.progressive)
  eval.py bd ANCHOR TEST… [--metric psnr|ms-ssim-db|…] [--method pchip|cubic|both]
  eval.py auc CURVE… [--metric ms-ssim|psnr-hvs|psnr-hvs-m] [--range 0.125 2] [--extrapolate clamp]
  eval.py plot CURVE… [--anchor NAME…] --out rd.png
  eval.py table CURVE… [--vs jpeg --vs bpg444] [--out summary.md]
  eval.py anchors
  eval.py auc-report --model TOD.json… --jpeg JPEG.json --out-dir DIR   (Toderici AUC table + RD plot)
  eval.py merge-progressive PART.json… --out ALL.json    (one progressive curve from runs on parts of a set)

CURVE / ANCHOR / TEST: a result file (CompressAI JSON, lic_jax JSON, TFC .txt) or an anchor name
(``eval.py anchors`` lists them). Full guide: docs/EVALUATION.md.
"""

from __future__ import annotations

import argparse
import json

import os
import sys

__all__ = ["main"]

SUBCOMMANDS = ("run", "bd", "auc", "plot", "table", "anchors", "auc-report", "merge-progressive")


def _die(msg: str, code: int = 2):
    print(f"eval.py: error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def load_any(spec: str):
    """A curve from a file path or an anchor name."""
    from .anchors import load_anchor
    from .results import load_curve

    if os.path.isfile(spec):
        return load_curve(spec)
    try:
        return load_anchor(spec)
    except FileNotFoundError as e:
        _die(f"{spec!r} is neither a result file nor an anchor name ({e})")


# ------------------------------------------------------------------------------------------ run


def _run_parser(sub):
    p = sub.add_parser("run", help="evaluate a learned model or a classical codec on a data set",
                       description="Evaluate RD points on a data set; writes CompressAI-format JSON + per-image CSV.")
    src = p.add_argument_group("what to evaluate (one of)")
    src.add_argument("--codec", choices=["jpeg", "webp", "jpeg2000", "avif"], help="a classical codec through Pillow")
    src.add_argument("--model", help="lic_jax model name (bmshj2018-hyperprior, mbt2018, …)")
    src.add_argument("--checkpoint", nargs="+", metavar="DIR",
                     help="lic_jax model directories (lic_jax.artifact); '{q}' in a path is replaced by each --quality")
    src.add_argument("--compressai-checkpoint", nargs="+", metavar="FILE",
                     help="CompressAI state_dict / checkpoint files; '{q}' is replaced by each --quality")
    src.add_argument("--random-init", action="store_true",
                     help="randomly initialised weights (smoke tests only) for each --quality "
                          "(PRNG key: fold_in(key(--seed), quality))")
    src.add_argument("--pretrained", nargs="?", const="mse", choices=["mse", "ms-ssim"], metavar="METRIC",
                     help="CompressAI's pretrained weights of --model for each --quality, trained for METRIC (mse, the "
                          "default, or ms-ssim); downloaded once into the cache (docs/ZOO.md)")
    p.add_argument("--quality", nargs="+", type=float, metavar="Q",
                   help="quality points (classical: the codec's quality, JPEG 2000: compression ratio; default sweep "
                        "per codec)")
    p.add_argument("--lmbda", nargs="+", type=float, metavar="L",
                   help="variable-rate models (mae-*): one RD point per λ (CompressAI's scale, loss = bpp + "
                        "λ·255²·MSE; rounded to float32 as the .lic header stores it)")
    p.add_argument("--lmbda-grid", type=int, metavar="N",
                   help="variable-rate models: N λ log-spaced over the model's trained λ range (with --lmbda: both)")
    p.add_argument("--dataset", required=True, help="kodak, clic[:split], tfds:NAME[:SPLIT] or a directory")
    p.add_argument("--data-dir", help="local directory for --dataset kodak / clic")
    p.add_argument("--tfds-data-dir", help="tensorflow-datasets data_dir (array_record-prepared)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--out", required=True, help="result JSON (CompressAI format)")
    p.add_argument("--csv", help="per-image CSV (default: OUT with .csv suffix)")
    p.add_argument("--name", help="curve name in the JSON (default: model / codec name)")
    p.add_argument("--entropy-estimation", action="store_true",
                   help="rate = model estimate Σ−log2 p (no entropy coding); default: real .lic bytes")
    p.add_argument("--float-recon", action="store_true",
                   help="metrics on the float reconstruction (as CompressAI's published JSONs) instead of 8-bit")
    p.add_argument("--coder", help="entropy coder for real bitstreams (lic_jax.coding backends)")
    p.add_argument("--metrics", default="psnr-rgb,psnr-y,ms-ssim-rgb,psnr-hvs-m",
                   help="comma list of psnr-rgb, psnr-y, ms-ssim-rgb, psnr-hvs-m (default: all), and sof: the "
                        "stripe-orientation fidelity of lic_jax.evaluation.sof (per-image in the CSV and in the "
                        "JSON's meta.sof_per_image, means per point as results.sof-*); 'sof' alone also computes "
                        "psnr-rgb and ms-ssim-rgb")
    p.add_argument("--masks", metavar="DIR",
                   help="a region mask per image, <DIR>/<image name>.png (e.g. face / text masks from python -m "
                        "lic_jax.train.labels): adds psnr-rgb@mask and ms-ssim-rgb@mask, the metrics inside "
                        "each mask (lic_jax.evaluation.image_metrics)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed for --random-init")
    p.add_argument("--iterations", type=int, default=None,
                   help="progressive models (toderici2017): iterations per file (default: the model's); one RD "
                        "point per prefix k = 1 … K")
    p.add_argument("--no-warmup", action="store_true", help="do not run the first image of each shape untimed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _qualities(args):
    if args.quality is None:
        return None
    return [int(q) if float(q).is_integer() else float(q) for q in args.quality]


def _expand(paths, qualities):
    """[(path, quality)]: '{q}' templates × qualities, or plain paths (quality None)."""
    out = []
    for p in paths:
        if "{q}" in p:
            if not qualities:
                _die(f"{p!r} contains '{{q}}' but no --quality was given")
            out += [(p.replace("{q}", str(q)), q) for q in qualities]
        else:
            out.append((p, None))
    if qualities and all("{q}" not in p for p in paths):
        if len(qualities) != len(out):
            _die(f"{len(out)} checkpoint(s) but {len(qualities)} --quality values (give one quality per checkpoint, "
                 "or a '{q}' path template)")
        out = [(p, q) for (p, _), q in zip(out, qualities)]
    return out


def _lmbda_requested(args) -> bool:
    return args.lmbda is not None or args.lmbda_grid is not None


def lmbda_label(lam: float) -> str:
    """Point label of a variable-rate RD point: ``lambda=0.0130`` (4 significant digits below 0.01)."""
    return f"lambda={lam:.4f}" if lam >= 0.01 else f"lambda={lam:#.4g}"


def _lmbda_values(args, lo: float, hi: float, what: str) -> list[float]:
    """The λ of a variable-rate model's points: --lmbda and --lmbda-grid (log-spaced over [lo, hi]),
    rounded to float32 (what the header stores), de-duplicated, ascending."""
    import numpy as np

    if not _lmbda_requested(args):
        _die(f"{what} is variable-rate (trained on λ {lo:.4g} … {hi:.4g}): give --lmbda L… or --lmbda-grid N "
             "(one RD point per λ)")
    vals = list(args.lmbda or [])
    if args.lmbda_grid is not None:
        if args.lmbda_grid < 1:
            _die(f"--lmbda-grid must be >= 1, got {args.lmbda_grid}")
        vals += np.geomspace(lo, hi, args.lmbda_grid).tolist()
    for v in vals:
        if not (np.isfinite(v) and v > 0):
            _die(f"--lmbda values must be positive and finite, got {v!r}")
    vals = sorted({float(np.float32(v)) for v in vals})
    out = [v for v in vals if not (lo * (1 - 1e-6) <= v <= hi * (1 + 1e-6))]
    if out:
        print(f"eval.py: warning: λ {', '.join(f'{v:.4g}' for v in out)} outside the trained range "
              f"{lo:.4g} … {hi:.4g} of {what} (extrapolating)", file=sys.stderr)
    return vals


def _vr_points(args, model, spec, variables, info: dict, label_prefix: str, kw: dict, artifact=None):
    """One point per λ of a variable-rate model; the points share one lic_jax.coding.Codec (built on
    first use) and the set of warmed-up shapes."""
    from .codecs import LearnedCodec
    from .runner import Point

    lo, hi = (float(v) for v in model.lmbda_range)
    where = f"{info['checkpoint']} ({spec.name})" if info.get("checkpoint") else spec.name
    lams = _lmbda_values(args, lo, hi, where)
    share = {"codec": None, "warm": set()}

    def make(lam):
        if not kw["entropy_estimation"] and share["codec"] is None:
            from lic_jax.coding import Codec

            if artifact is not None:
                share["codec"] = Codec.from_artifact(artifact, coder=kw["coder"])
            else:
                share["codec"] = Codec(model, spec, variables, coder=kw["coder"])
        return LearnedCodec(model, spec, variables, lmbda=lam, codec=share["codec"], warm=share["warm"], **kw)

    extra = {"trained_lmbdas": [float(v) for v in model.lmbdas]}
    return [Point(label_prefix + lmbda_label(lam), None, lambda lam=lam: make(lam), {**info, "lmbda": lam, **extra},
                  lmbda=lam) for lam in lams]


def _learned_points(args):
    from lic_jax.models import is_variable_rate

    from .codecs import LearnedCodec
    from .runner import Point

    qualities = _qualities(args)
    kw = dict(entropy_estimation=args.entropy_estimation, float_recon=args.float_recon, coder=args.coder,
              warmup=not args.no_warmup)
    points = []
    if args.checkpoint:
        from lic_jax.artifact import ArtifactError, load_artifact

        pairs = _expand(args.checkpoint, qualities)
        for path, q in pairs:
            if not os.path.isdir(path):
                _die(f"--checkpoint {path}: not a model directory")
            try:
                art = load_artifact(path)
            except ArtifactError as e:
                _die(str(e))
            if args.model and art.spec.name != args.model:
                _die(f"{path} holds a {art.spec.name} model, not {args.model}")
            base = os.path.basename(os.path.normpath(path))
            if is_variable_rate(art.spec):
                if q is not None:
                    _die(f"{path} holds a variable-rate {art.spec.name} model, which has no quality: "
                         "use --lmbda / --lmbda-grid instead of --quality")
                points += _vr_points(args, art.model, art.spec, art.variables,
                                     {"checkpoint": os.path.abspath(path), "fingerprint": art.fingerprint},
                                     f"{base} " if len(pairs) > 1 else "", kw, artifact=art)
                continue
            if _lmbda_requested(args):
                _die(f"--lmbda / --lmbda-grid apply to variable-rate models (mae-*); {path} holds the fixed-rate "
                     f"model {art.spec.name}")
            quality = q if q is not None else art.spec.quality
            points.append(Point(base, quality,
                                lambda a=art: LearnedCodec(a.model, a.spec, a.variables, **kw),
                                {"checkpoint": os.path.abspath(path), "fingerprint": art.fingerprint}))
    elif args.compressai_checkpoint:
        from lic_jax.convert import from_compressai

        if _lmbda_requested(args):
            _die("--lmbda / --lmbda-grid apply to variable-rate lic_jax models (mae-*); CompressAI checkpoints "
                 "are fixed-rate")

        for path, q in _expand(args.compressai_checkpoint, qualities):
            if not os.path.isfile(path):
                _die(f"--compressai-checkpoint {path}: no such file")
            model, spec, variables = from_compressai(path, name=args.model, quality=q)
            points.append(Point(os.path.basename(path), q,
                                lambda m=model, s=spec, v=variables: LearnedCodec(m, s, v, **kw),
                                {"compressai_checkpoint": os.path.abspath(path), "model": spec.name,
                                 "hparams": dict(spec.hparams)}))
    elif args.pretrained:
        from lic_jax import zoo

        if not args.model or not qualities:
            _die("--pretrained needs --model and --quality")
        if _lmbda_requested(args):
            _die("--lmbda / --lmbda-grid apply to variable-rate models (mae-*); CompressAI's pretrained models are "
                 "fixed-rate")
        for q in qualities:
            if not float(q).is_integer():
                _die(f"--pretrained: quality must be an integer 1-8, got {q}")
            try:
                art = zoo.load_pretrained_artifact(args.model, int(q), args.pretrained)
            except zoo.ZooError as e:
                _die(str(e), 1)
            points.append(Point(f"q{int(q)}", int(q), lambda a=art: LearnedCodec(a.model, a.spec, a.variables, **kw),
                                {"pretrained": "compressai", "metric": args.pretrained,
                                 "file": art.metadata.get("file"), "fingerprint": art.fingerprint}))
    elif args.random_init:
        import jax
        import numpy as np

        from lic_jax.models import get_model

        if args.model and is_variable_rate(args.model):
            if qualities:
                _die(f"{args.model} is a variable-rate model, which has no quality: use --lmbda / --lmbda-grid")
            model, spec = get_model(args.model)
            lo = float(model.lmbda_range[0])
            variables = model.init(jax.random.key(args.seed), np.zeros((1, 64, 64, 3), np.float32), lo)
            return _vr_points(args, model, spec, {"params": variables["params"]}, {"random_init_seed": args.seed},
                              "", kw)
        if not args.model or not qualities:
            _die("--random-init needs --model and --quality")
        if _lmbda_requested(args):
            _die(f"--lmbda / --lmbda-grid apply to variable-rate models (mae-*); {args.model} is fixed-rate")

        for q in qualities:
            model, spec = get_model(args.model, int(q))
            key = jax.random.fold_in(jax.random.key(args.seed), int(q))  # different weights per quality
            variables = model.init(key, np.zeros((1, 64, 64, 3), np.float32))
            variables = {"params": variables["params"]}
            points.append(Point(f"q{q}", q, lambda m=model, s=spec, v=variables: LearnedCodec(m, s, v, **kw),
                                {"random_init_seed": args.seed}))
    else:
        _die("give --codec, or --model with --checkpoint / --compressai-checkpoint / --pretrained / --random-init")
    if all(p.quality is not None for p in points):
        points.sort(key=lambda p: p.quality)
    return points


def _classical_points(args):
    from .codecs import DEFAULT_SWEEPS, PillowCodec, pillow_available
    from .runner import Point

    if not pillow_available(args.codec):
        _die(f"this Pillow has no {args.codec} support (PIL.features)")
    qs = _qualities(args) or DEFAULT_SWEEPS[args.codec]
    if args.codec == "jpeg2000":
        qs = sorted(qs, reverse=True)  # compression ratio: high ratio = low rate
    else:
        qs = sorted(qs)
    return [Point(f"q{q}", q, lambda q=q: PillowCodec(args.codec, q)) for q in qs]


def cmd_run(args):
    from .datasets import DatasetNotFound, resolve_dataset
    from .runner import evaluate

    if args.codec and (args.model or args.checkpoint or args.compressai_checkpoint or args.random_init
                       or args.pretrained):
        _die("--codec cannot be combined with --model / checkpoints")
    if args.pretrained and (args.checkpoint or args.compressai_checkpoint or args.random_init):
        _die("--pretrained cannot be combined with --checkpoint / --compressai-checkpoint / --random-init")
    if args.codec and (args.entropy_estimation or args.float_recon):
        _die("--entropy-estimation / --float-recon apply to learned models only")
    if args.codec and _lmbda_requested(args):
        _die("--lmbda / --lmbda-grid apply to variable-rate learned models (mae-*), not to --codec")
    try:
        ds = resolve_dataset(args.dataset, args.data_dir, args.tfds_data_dir).limit(args.limit)
        if args.masks:
            ds = ds.with_masks(args.masks)
    except DatasetNotFound as e:
        _die(str(e), 1)
    prog = _progressive_artifact(args)
    if prog is not None:
        return _run_progressive(args, prog, ds)
    if args.iterations is not None:
        _die("--iterations applies to progressive models (toderici2017) only")
    points = _classical_points(args) if args.codec else _learned_points(args)
    metrics = _metric_list(args)
    want_sof = "sof" in metrics
    if want_sof:
        metrics = [m for m in metrics if m != "sof"] or ["psnr-rgb", "ms-ssim-rgb"]
        points = _with_sof(points)
    try:
        curve, rows = evaluate(points, ds, metrics=metrics, progress=not args.no_progress,
                               name=args.name or (args.model if not args.codec else None))
    except RuntimeError as e:
        _die(str(e), 1)
    import PIL

    import lic_jax

    if args.masks:
        curve.meta["masks"] = {"dir": os.path.abspath(args.masks), "metrics": "psnr-rgb@mask / ms-ssim-rgb@mask: "
                               "mean over the images whose mask is not empty (lic_jax.evaluation.image_metrics)",
                               "images_with_mask": int(sum(1 for r in rows if r.get("mask-fraction", 0) > 0
                                                           and r.get("point") == rows[0].get("point")))}
    curve.meta.update({
        "source": "codec" if args.codec else ("entropy-estimation" if args.entropy_estimation else "bitstream"),
        "bpp": ("model estimate: sum of -log2 likelihoods / (H*W)" if args.entropy_estimation
                else "8 * file bytes / (H*W) of the unpadded image"),
        "reconstruction": "float (clipped, not rounded)" if args.float_recon else "8-bit (rounded)",
        "lic_jax_version": getattr(lic_jax, "__version__", "?"),
        "pillow_version": PIL.__version__,
    })
    if "lmbda" in curve.metrics:
        curve.meta["lmbda"] = ("variable-rate model: the λ of each point (results.lmbda; CompressAI scale, "
                               "loss = bpp + λ·255²·MSE), rounded to float32 as the .lic header stores it")
    if want_sof:
        _add_sof(curve, rows)
    return _write_curve(curve, rows, args)


def cmd_merge_progressive(argv):
    """``eval.py merge-progressive --out ALL.json PART1.json PART2.json …``: one progressive curve from
    runs over parts of a data set (their per-image CSVs; meta from the first part)."""
    import json as _json

    from .progressive import merge_results
    from .results import save_json, write_csv

    ap = argparse.ArgumentParser(prog="eval.py merge-progressive")
    ap.add_argument("parts", nargs="+", help="result JSONs of eval.py run on a progressive model (CSV alongside)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dataset-name", default="")
    args = ap.parse_args(argv)
    with open(args.parts[0]) as f:
        first = _json.load(f)
    curve, rows = merge_results([os.path.splitext(p)[0] + ".csv" for p in args.parts], first["name"],
                                args.dataset_name or first.get("meta", {}).get("dataset", ""))
    for k, v in first.get("meta", {}).items():
        curve.meta.setdefault(k, v)
    curve.meta["num_images"] = len({r["image"] for r in rows})
    curve.meta["merged_from"] = [os.path.abspath(p) for p in args.parts]
    save_json(curve, args.out)
    write_csv(rows, os.path.splitext(args.out)[0] + ".csv")
    _print_curve(curve)
    return 0


def _progressive_artifact(args):
    """The loaded artifact when ``--checkpoint`` names one progressive (toderici2017) model, else None."""
    if args.codec or not args.checkpoint or args.compressai_checkpoint or args.random_init or args.pretrained:
        return None
    from lic_jax.artifact import ArtifactError, load_artifact

    from .progressive import is_progressive

    paths = [p for p in args.checkpoint if os.path.isdir(p)]
    if len(paths) != len(args.checkpoint):
        return None
    arts = []
    for p in paths:
        try:
            arts.append(load_artifact(p))
        except ArtifactError:
            return None
    prog = [is_progressive(a.spec) for a in arts]
    if not any(prog):
        return None
    if len(arts) != 1:
        _die("progressive models are evaluated one --checkpoint at a time (one point per iteration count)")
    if args.quality or _lmbda_requested(args) or args.entropy_estimation or args.float_recon:
        _die("a progressive model's rate is its iteration count: no --quality / --lmbda / --entropy-estimation / "
             "--float-recon (use --iterations)")
    return arts[0]


def _metric_list(args) -> list:
    """--metrics as a list; --masks adds the metrics inside the masks, which need it."""
    from .image_metrics import MASK_METRICS

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.masks:
        metrics += [m for m in MASK_METRICS if m not in metrics]
    elif any(m in MASK_METRICS for m in metrics):
        _die(f"--metrics {', '.join(m for m in metrics if m in MASK_METRICS)} need --masks DIR")
    return metrics


def _run_progressive(args, art, ds):
    import lic_jax
    from lic_jax.coding.progressive import ProgressiveCodec

    from .progressive import evaluate_progressive

    metrics = _metric_list(args)
    if "sof" in metrics:
        _die("--metrics sof is not supported for progressive models")
    codec = ProgressiveCodec.from_artifact(art, coder=args.coder)
    curve, rows = evaluate_progressive(codec, ds, args.iterations, metrics=metrics, progress=not args.no_progress,
                                       name=args.name or os.path.basename(os.path.normpath(args.checkpoint[0])),
                                       warmup=not args.no_warmup)
    if args.masks:
        curve.meta["masks"] = {"dir": os.path.abspath(args.masks), "metrics": "psnr-rgb@mask / ms-ssim-rgb@mask: "
                               "mean over the images whose mask is not empty (lic_jax.evaluation.image_metrics)",
                               "images_with_mask": int(sum(1 for r in rows if r.get("mask-fraction", 0) > 0
                                                           and r.get("point") == rows[0].get("point")))}
    curve.meta.update({
        "source": "bitstream (progressive)", "checkpoint": os.path.abspath(args.checkpoint[0]),
        "fingerprint": art.fingerprint, "model": {"name": art.spec.name, "hparams": art.spec.hparams},
        "context_fingerprint": codec.latent_coder.context_fingerprint,
        "reconstruction": "8-bit (rounded)", "lic_jax_version": getattr(lic_jax, "__version__", "?"),
    })
    return _write_curve(curve, rows, args)


class _SOFCodec:
    """A codec whose per-image output also carries the SOF numbers (``sof-*`` keys in ``extra``) of
    its reconstruction against the original (:func:`lic_jax.evaluation.sof.sof_row`)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, img):
        import numpy as np

        from .sof import sof_row

        out = self.inner.run(img)
        rec = np.clip(np.asarray(out.rec, np.float64), 0.0, 255.0)
        out.extra.update(sof_row(img, rec))
        return out


def _with_sof(points):
    import dataclasses

    return [dataclasses.replace(p, make_codec=lambda f=p.make_codec: _SOFCodec(f())) for p in points]


def _add_sof(curve, rows):
    """Per point, the mean over images (with a non-empty stripe mask) of each ``sof-*`` number →
    ``curve.metrics``; the per-image records → ``curve.meta['sof_per_image']``."""
    import numpy as np

    keys = [k for k in rows[0] if k.startswith("sof-")] if rows else []
    points = curve.meta.get("points", [])
    for k in keys:
        vals = []
        for label in points:
            v = [r[k] for r in rows if r["point"] == label and r.get(k) is not None]
            vals.append(float(np.mean(v)) if v else None)
        curve.metrics[k] = vals
    curve.meta["sof"] = ("stripe-orientation fidelity (lic_jax.evaluation.sof, SYSTEMS.md §13) of each reconstruction "
                         "(clipped to [0, 255]) against its original; results.sof-*: mean over the images with a "
                         "non-empty stripe mask")
    curve.meta["sof_per_image"] = [
        {k: r.get(k) for k in ("point", "quality", "image", "bpp", "psnr-rgb", "ms-ssim-rgb") + tuple(keys)}
        for r in rows]


def _write_curve(curve, rows, args) -> int:
    """Write the curve JSON (``args.out``) and its per-image CSV (``args.csv`` or beside it), print the curve."""
    from .results import save_json, write_csv

    save_json(curve, args.out)
    csv_path = args.csv or os.path.splitext(args.out)[0] + ".csv"
    write_csv(rows, csv_path)
    _print_curve(curve)
    print(f"wrote {args.out} and {csv_path}", file=sys.stderr)
    return 0


def _print_curve(curve):
    keys = [k for k in ("quality", "lmbda", "bpp", "raw-bpp", "psnr-rgb", "psnr-y", "ms-ssim-rgb", "ms-ssim-db-rgb",
                        "psnr-hvs-m",
                        "sof-maoe", "sof-flip-rate", "sof-washout-rate", "encoding_time", "decoding_time")
            if k == "bpp" or k in curve.metrics]
    print(" ".join(f"{k:>14s}" for k in keys))
    for i in range(len(curve.bpp)):
        vals = []
        for k in keys:
            v = curve.bpp[i] if k == "bpp" else curve.metrics[k][i]
            if isinstance(v, float):
                vals.append(f"{v:>14.6g}" if k == "lmbda" else f"{v:>14.4f}")
            else:
                vals.append(f"{v!s:>14s}")
        print(" ".join(vals))


# ------------------------------------------------------------------------------------------ bd / auc


def cmd_bd(args):
    from .bd import BDError, bd_quality, bd_rate
    from .results import resolve_metric

    metric = resolve_metric(args.metric)
    anchor = load_any(args.anchor)
    methods = ["pchip", "cubic"] if args.method == "both" else [args.method]
    out = []
    status = 0
    for t in args.test:
        test = load_any(t)
        rec = {"anchor": anchor.name, "test": test.name, "metric": metric}
        try:
            if not anchor.has(metric) or not test.has(metric):
                raise BDError(f"{'anchor' if not anchor.has(metric) else 'test'} curve has no {metric} values")
            ra, qa = anchor.points(metric)
            rb, qb = test.points(metric)
            for m in methods:
                rec[f"bd_rate_{m}"] = bd_rate(ra, qa, rb, qb, m)
                rec[f"bd_quality_{m}"] = bd_quality(ra, qa, rb, qb, m)
        except BDError as e:
            rec["error"] = str(e)
            status = 1
        out.append(rec)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        unit = "dB" if metric != "ms-ssim-rgb" else ""
        for r in out:
            if "error" in r:
                print(f"{r['test']} vs {r['anchor']} [{metric}]: error: {r['error']}")
                continue
            parts = [f"BD-rate {m} {r[f'bd_rate_{m}']:+.2f} %" for m in methods]
            parts += [f"BD-{'PSNR' if metric.startswith('psnr') else 'quality'} {m} {r[f'bd_quality_{m}']:+.3f} {unit}"
                      for m in methods]
            print(f"{r['test']} vs {r['anchor']} [{metric}]: " + ", ".join(parts))
    return status


def cmd_auc(args):
    from .bd import BDError, auc
    from .results import resolve_metric

    metric = resolve_metric(args.metric)
    status = 0
    for spec in args.curve:
        c = load_any(spec)
        try:
            b, v = c.points(metric)
            val = auc(b, v, args.range[0], args.range[1], extrapolate=args.extrapolate)
            print(f"{c.name}: {metric} AUC over [{args.range[0]:g}, {args.range[1]:g}] bpp = {val:.4f}")
        except (BDError, KeyError) as e:
            print(f"{c.name}: error: {e}")
            status = 1
    return status


# ------------------------------------------------------------------------------------------ plot / table


def cmd_plot(args):
    from .plots import plot_rd

    curves = [load_any(c) for c in args.curve]
    anchors = [load_any(a) for a in (args.anchor or [])]
    metrics = [m.strip() for m in args.metrics.split(",")]
    path = plot_rd(curves, args.out, anchors, metrics, args.title, tuple(args.xlim) if args.xlim else None)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_table(args):
    from .tables import summary_table

    curves = [load_any(c) for c in args.curve]
    vs = args.vs or ["jpeg", "bpg444"]
    anchors = {}
    for a in vs:
        c = load_any(a)
        anchors[c.name if os.path.isfile(a) else {"jpeg": "JPEG", "bpg444": "BPG 4:4:4", "bpg": "BPG 4:4:4"}.get(a, a)] = c
    md = summary_table(curves, anchors, tuple(args.auc_range))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(md)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(md)
    return 0


def cmd_anchors(args):
    from .anchors import anchor_names, anchors_dir

    print(f"# anchors in {anchors_dir()}")
    for n in anchor_names():
        print(n)
    return 0


# ------------------------------------------------------------------------------------------ main


def build_parser():
    ap = argparse.ArgumentParser(prog="eval.py", description=__doc__.split("\n\n")[0].replace("``", ""),
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]).replace("``", ""),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    _run_parser(sub)
    b = sub.add_parser("bd", help="BD-rate / BD-PSNR of test curves against an anchor")
    b.add_argument("anchor")
    b.add_argument("test", nargs="+")
    b.add_argument("--metric", default="psnr", help="psnr (RGB), psnr-y, ms-ssim-db, ms-ssim, psnr-hvs, psnr-hvs-m")
    b.add_argument("--method", choices=["pchip", "cubic", "both"], default="both")
    b.add_argument("--json", action="store_true", help="machine-readable output")
    a = sub.add_parser("auc", help="area under the quality–bpp curve (Toderici 2017)")
    a.add_argument("curve", nargs="+")
    a.add_argument("--metric", default="ms-ssim", help="ms-ssim (RGB, default), psnr-hvs, psnr-hvs-m, psnr …")
    a.add_argument("--range", nargs=2, type=float, default=[0.125, 2.0], metavar=("LO", "HI"))
    a.add_argument("--extrapolate", choices=["error", "clamp", "linear"], default="error",
                   help="when the curve does not span the range (default: error)")
    pl = sub.add_parser("plot", help="RD curves (PSNR and MS-SSIM dB vs bpp) as PNG")
    pl.add_argument("curve", nargs="*")
    pl.add_argument("--anchor", action="append", help="anchor name or file to overlay (repeatable)")
    pl.add_argument("--metrics", default="psnr-rgb,ms-ssim-db-rgb")
    pl.add_argument("--title")
    pl.add_argument("--xlim", nargs=2, type=float, metavar=("LO", "HI"))
    pl.add_argument("--out", required=True)
    t = sub.add_parser("table", help="markdown summary: BD-rates vs anchors, AUCs")
    t.add_argument("curve", nargs="+")
    t.add_argument("--vs", action="append", help="anchor to compare against (repeatable; default: jpeg, bpg444)")
    t.add_argument("--auc-range", nargs=2, type=float, default=[0.125, 2.0], metavar=("LO", "HI"))
    t.add_argument("--out")
    sub.add_parser("anchors", help="list anchor names")
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["auc-report"]:
        from .auc_report import main as report_main

        return report_main(argv[1:])
    if argv[:1] == ["merge-progressive"]:
        return cmd_merge_progressive(argv[1:])
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run"] + argv
    args = build_parser().parse_args(argv)
    cmd = {"run": cmd_run, "bd": cmd_bd, "auc": cmd_auc, "plot": cmd_plot, "table": cmd_table,
           "anchors": cmd_anchors}[args.cmd]
    return cmd(args)



