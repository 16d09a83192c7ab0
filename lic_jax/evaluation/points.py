"""The RD points of ``eval.py run``: which codecs a command line asks for.

Each point is a :class:`lic_jax.evaluation.runner.Point` that builds its codec on first use: a
learned model per checkpoint, quality or λ (variable-rate models), a classical codec per quality,
and the SOF wrapper (``--metrics sof``). Progressive models (toderici2017) are recognised here and
evaluated by :mod:`lic_jax.evaluation.progressive`. Usage errors end the command with one line
(:func:`die`).
"""

from __future__ import annotations

import os
import sys

__all__ = ["add_sof", "classical_points", "die", "learned_points", "lmbda_label", "lmbda_requested",
           "metric_list", "progressive_artifact", "with_sof"]


def die(msg: str, code: int = 2):
    """A usage error: one line on stderr, exit status ``code``."""
    print(f"eval.py: error: {msg}", file=sys.stderr)
    raise SystemExit(code)



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
                die(f"{p!r} contains '{{q}}' but no --quality was given")
            out += [(p.replace("{q}", str(q)), q) for q in qualities]
        else:
            out.append((p, None))
    if qualities and all("{q}" not in p for p in paths):
        if len(qualities) != len(out):
            die(f"{len(out)} checkpoint(s) but {len(qualities)} --quality values (give one quality per checkpoint, "
                 "or a '{q}' path template)")
        out = [(p, q) for (p, _), q in zip(out, qualities)]
    return out


def lmbda_requested(args) -> bool:
    return args.lmbda is not None or args.lmbda_grid is not None


def lmbda_label(lam: float) -> str:
    """Point label of a variable-rate RD point: ``lambda=0.0130`` (4 significant digits below 0.01)."""
    return f"lambda={lam:.4f}" if lam >= 0.01 else f"lambda={lam:#.4g}"


def _lmbda_values(args, lo: float, hi: float, what: str) -> list[float]:
    """The λ of a variable-rate model's points: --lmbda and --lmbda-grid (log-spaced over [lo, hi]),
    rounded to float32 (what the header stores), de-duplicated, ascending."""
    import numpy as np

    if not lmbda_requested(args):
        die(f"{what} is variable-rate (trained on λ {lo:.4g} … {hi:.4g}): give --lmbda L… or --lmbda-grid N "
             "(one RD point per λ)")
    vals = list(args.lmbda or [])
    if args.lmbda_grid is not None:
        if args.lmbda_grid < 1:
            die(f"--lmbda-grid must be >= 1, got {args.lmbda_grid}")
        vals += np.geomspace(lo, hi, args.lmbda_grid).tolist()
    for v in vals:
        if not (np.isfinite(v) and v > 0):
            die(f"--lmbda values must be positive and finite, got {v!r}")
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


def _check_decoder(args, name: str):
    """--decoder NAME must be one of the model's decoders (its registry record's); checked before any
    codec is built, with the list in the message."""
    if not getattr(args, "decoder", None):
        return
    from lic_jax.models import registry

    known = registry.record(name).decoders
    if args.decoder not in known:
        die(f"--decoder {args.decoder!r}: {name} has no such decoder; its decoders: {', '.join(known)}")


def learned_points(args):
    from lic_jax.models import is_variable_rate

    from .codecs import LearnedCodec
    from .runner import Point

    qualities = _qualities(args)
    kw = dict(entropy_estimation=args.entropy_estimation, float_recon=args.float_recon, coder=args.coder,
              warmup=not args.no_warmup, decoder=getattr(args, "decoder", None))
    points = []
    if args.checkpoint:
        from lic_jax.artifact import ArtifactError, load_artifact

        pairs = _expand(args.checkpoint, qualities)
        for path, q in pairs:
            if not os.path.isdir(path):
                die(f"--checkpoint {path}: not a model directory")
            try:
                art = load_artifact(path)
            except ArtifactError as e:
                die(str(e))
            if args.model and art.spec.name != args.model:
                die(f"{path} holds a {art.spec.name} model, not {args.model}")
            _check_decoder(args, art.spec.name)
            base = os.path.basename(os.path.normpath(path))
            if is_variable_rate(art.spec):
                if q is not None:
                    die(f"{path} holds a variable-rate {art.spec.name} model, which has no quality: "
                         "use --lmbda / --lmbda-grid instead of --quality")
                points += _vr_points(args, art.model, art.spec, art.variables,
                                     {"checkpoint": os.path.abspath(path), "fingerprint": art.fingerprint},
                                     f"{base} " if len(pairs) > 1 else "", kw, artifact=art)
                continue
            if lmbda_requested(args):
                die(f"--lmbda / --lmbda-grid apply to variable-rate models (mae-*); {path} holds the fixed-rate "
                     f"model {art.spec.name}")
            quality = q if q is not None else art.spec.quality
            points.append(Point(base, quality,
                                lambda a=art: LearnedCodec(a.model, a.spec, a.variables, **kw),
                                {"checkpoint": os.path.abspath(path), "fingerprint": art.fingerprint}))
    elif args.compressai_checkpoint:
        from lic_jax.convert import from_compressai

        if lmbda_requested(args):
            die("--lmbda / --lmbda-grid apply to variable-rate lic_jax models (mae-*); CompressAI checkpoints "
                 "are fixed-rate")

        for path, q in _expand(args.compressai_checkpoint, qualities):
            if not os.path.isfile(path):
                die(f"--compressai-checkpoint {path}: no such file")
            model, spec, variables = from_compressai(path, name=args.model, quality=q)
            _check_decoder(args, spec.name)
            points.append(Point(os.path.basename(path), q,
                                lambda m=model, s=spec, v=variables: LearnedCodec(m, s, v, **kw),
                                {"compressai_checkpoint": os.path.abspath(path), "model": spec.name,
                                 "hparams": dict(spec.hparams)}))
    elif args.pretrained:
        from lic_jax import zoo

        if not args.model or not qualities:
            die("--pretrained needs --model and --quality")
        if lmbda_requested(args):
            die("--lmbda / --lmbda-grid apply to variable-rate models (mae-*); CompressAI's pretrained models are "
                 "fixed-rate")
        for q in qualities:
            if not float(q).is_integer():
                die(f"--pretrained: quality must be an integer 1-8, got {q}")
            try:
                art = zoo.load_pretrained_artifact(args.model, int(q), args.pretrained)
            except zoo.ZooError as e:
                die(str(e), 1)
            _check_decoder(args, art.spec.name)
            points.append(Point(f"q{int(q)}", int(q), lambda a=art: LearnedCodec(a.model, a.spec, a.variables, **kw),
                                {"pretrained": "compressai", "metric": args.pretrained,
                                 "file": art.metadata.get("file"), "fingerprint": art.fingerprint}))
    elif args.random_init:
        import jax
        import numpy as np

        from lic_jax.models import get_model

        if args.model:
            _check_decoder(args, args.model)
        if args.model and is_variable_rate(args.model):
            if qualities:
                die(f"{args.model} is a variable-rate model, which has no quality: use --lmbda / --lmbda-grid")
            model, spec = get_model(args.model)
            lo = float(model.lmbda_range[0])
            variables = model.init(jax.random.key(args.seed), np.zeros((1, 64, 64, 3), np.float32), lo)
            return _vr_points(args, model, spec, {"params": variables["params"]}, {"random_init_seed": args.seed},
                              "", kw)
        if not args.model or not qualities:
            die("--random-init needs --model and --quality")
        if lmbda_requested(args):
            die(f"--lmbda / --lmbda-grid apply to variable-rate models (mae-*); {args.model} is fixed-rate")

        for q in qualities:
            model, spec = get_model(args.model, int(q))
            key = jax.random.fold_in(jax.random.key(args.seed), int(q))  # different weights per quality
            variables = model.init(key, np.zeros((1, 64, 64, 3), np.float32))
            variables = {"params": variables["params"]}
            points.append(Point(f"q{q}", q, lambda m=model, s=spec, v=variables: LearnedCodec(m, s, v, **kw),
                                {"random_init_seed": args.seed}))
    else:
        die("give --codec, or --model with --checkpoint / --compressai-checkpoint / --pretrained / --random-init")
    if all(p.quality is not None for p in points):
        points.sort(key=lambda p: p.quality)
    return points


def classical_points(args):
    from .codecs import DEFAULT_SWEEPS, PillowCodec, pillow_available
    from .runner import Point

    if not pillow_available(args.codec):
        die(f"this Pillow has no {args.codec} support (PIL.features)")
    qs = _qualities(args) or DEFAULT_SWEEPS[args.codec]
    if args.codec == "jpeg2000":
        qs = sorted(qs, reverse=True)  # compression ratio: high ratio = low rate
    else:
        qs = sorted(qs)
    return [Point(f"q{q}", q, lambda q=q: PillowCodec(args.codec, q)) for q in qs]


def progressive_artifact(args):
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
        die("progressive models are evaluated one --checkpoint at a time (one point per iteration count)")
    if args.quality or lmbda_requested(args) or args.entropy_estimation or args.float_recon:
        die("a progressive model's rate is its iteration count: no --quality / --lmbda / --entropy-estimation / "
             "--float-recon (use --iterations)")
    return arts[0]


def metric_list(args) -> list:
    """--metrics as a list; --masks adds the metrics inside the masks, which need it."""
    from .image_metrics import MASK_METRICS

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.masks:
        metrics += [m for m in MASK_METRICS if m not in metrics]
    elif any(m in MASK_METRICS for m in metrics):
        die(f"--metrics {', '.join(m for m in metrics if m in MASK_METRICS)} need --masks DIR")
    return metrics


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


def with_sof(points):
    import dataclasses

    return [dataclasses.replace(p, make_codec=lambda f=p.make_codec: _SOFCodec(f())) for p in points]


def add_sof(curve, rows):
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
