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

from .points import (add_sof, classical_points, learned_points, lmbda_requested, metric_list, progressive_artifact,
                     with_sof)
from .points import die as _die

__all__ = ["main"]

SUBCOMMANDS = ("run", "bd", "auc", "plot", "table", "anchors", "auc-report", "merge-progressive")


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
    p.add_argument("--decoder", metavar="NAME",
                   help="decode the real files with this of the model's decoders instead of its default, e.g. "
                        "synthesis_fused: akutsu2020's main + detail decoding (lic decompress --detail); the files "
                        "are the same")
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
    if args.decoder and (args.codec or args.entropy_estimation):
        _die("--decoder applies to learned models' real bitstreams (not to --codec or --entropy-estimation)")
    if args.codec and lmbda_requested(args):
        _die("--lmbda / --lmbda-grid apply to variable-rate learned models (mae-*), not to --codec")
    try:
        ds = resolve_dataset(args.dataset, args.data_dir, args.tfds_data_dir).limit(args.limit)
        if args.masks:
            ds = ds.with_masks(args.masks)
    except DatasetNotFound as e:
        _die(str(e), 1)
    prog = progressive_artifact(args)
    if prog is not None:
        if args.decoder:
            _die("--decoder: a progressive model (toderici2017) has one decoder")
        return _run_progressive(args, prog, ds)
    if args.iterations is not None:
        _die("--iterations applies to progressive models (toderici2017) only")
    points = classical_points(args) if args.codec else learned_points(args)
    metrics = metric_list(args)
    want_sof = "sof" in metrics
    if want_sof:
        metrics = [m for m in metrics if m != "sof"] or ["psnr-rgb", "ms-ssim-rgb"]
        points = with_sof(points)
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
        **({"decoder": args.decoder} if args.decoder else {}),
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
        add_sof(curve, rows)
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


def _run_progressive(args, art, ds):
    import lic_jax
    from lic_jax.coding.progressive import ProgressiveCodec

    from .progressive import evaluate_progressive

    metrics = metric_list(args)
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



