"""``lic compress``: image(s) -> .lic (rate options, --qf, --portable, progressive models)."""

from __future__ import annotations

import math
import sys

from .errors import CliError, _warn
from .files import IMAGE_EXTS, _fmt_line, _pairs, _psnr, _run_files, _set_tiling
from .models import _encoder_codec


QF_RANGE = (1, 95)


def _check_qf(q):
    lo, hi = QF_RANGE
    if isinstance(q, bool) or not lo <= q <= hi:
        raise CliError(f"--qf must be in {lo}..{hi}, got {q}")


def _with_payload_quality(codec, q: int):
    """The codec of a JPEG-payload model (latent coder ``external``) re-targeted to payload quality ``q``:
    same weights, same fingerprint (the decoder never needs the QF: the JPEG carries its tables)."""
    import jax

    from ..coding import Codec
    from ..models.registry import ModelSpec

    name = codec.spec.name if codec.spec is not None else codec.record.name
    if codec.kind != "external":
        raise CliError(f"--qf sets the JPEG quality of a JPEG-payload model (comcnn-jpeg); {name} codes its latents "
                       f"with its own entropy coder ({codec.kind}) and has no JPEG quality")
    spec = codec.spec
    hp = {**(spec.hparams if spec is not None else {}), "payload_quality": int(q)}
    return Codec(codec.model.clone(payload_quality=int(q)), ModelSpec(name, spec.quality if spec else None, hp),
                 jax.device_get(codec._cpu_vars), coder=codec.coder, fingerprint=codec.fingerprint,
                 max_pixels=codec.max_pixels)


def _is_progressive(codec) -> bool:
    return getattr(codec, "kind", None) == "progressive"


def quality_lmbda(codec, quality: int) -> float:
    """``--quality Q`` of a variable-rate model: its Q-th smallest trained λ (the bundled model was trained
    on CompressAI's λ of qualities 1–6, so its Q is CompressAI's)."""
    lmbdas = sorted(float(v) for v in codec.model.lmbdas)
    if not 1 <= quality <= len(lmbdas):
        raise CliError(f"--quality must be 1 … {len(lmbdas)} for {codec.spec.name if codec.spec else 'this model'} "
                       f"(its trained λ: {', '.join(f'{v:g}' for v in lmbdas)}), got {quality}")
    return lmbdas[quality - 1]


def _check_rate_args(args, codec):
    name = codec.spec.name if codec.spec is not None else "this model"
    if _is_progressive(codec):  # rate = number of iterations (docs/PROGRESSIVE.md)
        if args.lmbda is not None:
            raise CliError(f"{name} is progressive: its rate is set by --iterations K or --target-bpp B, not λ")
        if args.iterations is not None and args.target_bpp is not None:
            raise CliError("--iterations and --target-bpp exclude each other (--target-bpp picks the iterations)")
        if args.target_bpp is not None and not (args.target_bpp > 0 and math.isfinite(args.target_bpp)):
            raise CliError(f"--target-bpp must be positive, got {args.target_bpp}")
        if args.iterations is not None and not 1 <= args.iterations <= 64:
            raise CliError(f"--iterations must be 1 … 64, got {args.iterations}")
        return
    if args.iterations is not None:
        raise CliError(f"--iterations needs a progressive model (toderici2017); {name} is not one")
    if not codec.variable_rate:
        if args.quality is not None and not args.model and not args.pretrained:
            raise CliError(f"--quality without --model sets the rate of a variable-rate model; {name} has the fixed "
                           f"rate it was trained for (pick a quality with --model NAME --quality Q)")
        if args.lmbda is not None or args.target_bpp is not None:
            raise CliError(f"--lmbda / --target-bpp need a variable-rate model (mae-*); {name} has the fixed rate "
                           f"it was trained for")
        return
    lo, hi = codec.lmbda_range
    if args.quality is not None:
        if args.lmbda is not None or args.target_bpp is not None:
            raise CliError("--quality, --lmbda and --target-bpp exclude each other (each sets the rate)")
        args.lmbda = quality_lmbda(codec, args.quality)
    if args.lmbda is None and args.target_bpp is None:
        if codec.lmbda is not None:  # the artifact's default λ (the bundled model's: its quality 3)
            args.lmbda = float(codec.lmbda)
        else:
            raise CliError(f"{name} is a variable-rate model: pass --quality Q (1 … {len(codec.model.lmbdas)}), "
                           f"--lmbda L (trained on {lo:.4g} … {hi:.4g}) or --target-bpp B")
    if args.lmbda is not None:
        if not (args.lmbda > 0 and math.isfinite(args.lmbda)):
            raise CliError(f"--lmbda must be positive, got {args.lmbda}")
        if not lo <= args.lmbda <= hi:
            _warn(f"λ={args.lmbda:g} is outside the trained range {lo:.4g} … {hi:.4g} (extrapolating)")
    if args.target_bpp is not None and not (args.target_bpp > 0 and math.isfinite(args.target_bpp)):
        raise CliError(f"--target-bpp must be positive, got {args.target_bpp}")
    if not 0 < args.rtol < 1:
        raise CliError(f"--rtol must be in (0, 1), got {args.rtol}")


def cmd_compress(args) -> int:
    from ..coding import encode_at_bpp
    from ..coding.image_io import atomic_write_bytes, read_image

    if args.qf is not None:
        _check_qf(args.qf)
    pairs, folder = _pairs(args.input, args.output, IMAGE_EXTS, ".lic")
    codec = _encoder_codec(args)
    if args.qf is not None:
        payload_q = (codec.spec.hparams or {}).get("payload_quality") if codec.spec is not None else None
        codec = _with_payload_quality(codec, args.qf)
        if payload_q is not None and payload_q != args.qf and not args.quiet:
            print(f"lic: compress: {codec.spec.name} weights trained at QF {payload_q}, payload written at QF "
                  f"{args.qf}", file=sys.stderr)
    if args.portable and not codec.latent_coder.portable:
        from ..models.registry import REGISTRY

        twins = ", ".join(sorted(r.name for r in REGISTRY.values() if r.portable_of))
        raise CliError(f"--portable: {codec.spec.name if codec.spec else codec.record.name} has a float entropy path "
                       f"(its files decode only under the encoder's jax/CPU); portable models: {twins} — make one "
                       f"from a float model directory with scripts/make_portable.py DIR")
    _set_tiling(codec, args)
    if args.max_pixels is not None:
        codec.max_pixels = args.max_pixels
    _check_rate_args(args, codec)

    def one(src, dst):
        img = read_image(src, drop_alpha=args.drop_alpha, warn=_warn, max_pixels=args.max_pixels)
        extra = ""
        if _is_progressive(codec):
            return _compress_progressive(codec, args, src, dst, img)
        if args.target_bpp is not None:
            r = encode_at_bpp(codec, img, args.target_bpp, rtol=args.rtol)
            if not r.hit:
                _warn(f"{src}: {r.note or 'target not reached'}; wrote {r.bpp:.4f} bpp")
            enc, lam = r.encoded, r.lmbda
            extra = f", λ {lam:.5g} ({r.encodes} encodes)"
        else:
            lam = args.lmbda if codec.variable_rate else None
            enc = codec.encode(img, lam)
            if lam is not None:
                extra = f", λ {enc.header.lmbda:.5g}"
        atomic_write_bytes(dst, enc.data)
        h, w = img.shape[:2]
        bpp = 8.0 * len(enc.data) / (h * w)
        psnr = None
        if not args.no_psnr:
            rec = codec.reconstruct(enc.latents.y_hat, h, w, 1 if img.ndim == 2 else 3,
                                    lmbda=enc.header.lmbda if codec.variable_rate else None)
            psnr = _psnr(img, rec)
        return _fmt_line(src, dst, h, w, len(enc.data), bpp, psnr) + extra, bpp, psnr

    return _run_files(pairs, folder, "compress", args.quiet, one)


def _compress_progressive(codec, args, src, dst, img):
    """One image with a progressive codec: --iterations K (default: the model's) or --target-bpp B
    (the longest prefix of the real file that fits B; the file is cut at an iteration boundary)."""
    from ..coding.image_io import atomic_write_bytes

    if args.target_bpp is not None:
        enc = codec.encode_at_bpp(img, args.target_bpp)
        if 8.0 * len(enc.data) / (img.shape[0] * img.shape[1]) > args.target_bpp:
            _warn(f"{src}: one iteration already takes {8.0 * len(enc.data) / (img.shape[0] * img.shape[1]):.4f} bpp "
                  f"> {args.target_bpp}; wrote 1 iteration")
    else:
        enc = codec.encode(img, iterations=args.iterations)
    atomic_write_bytes(dst, enc.data)
    h, w = img.shape[:2]
    bpp = 8.0 * len(enc.data) / (h * w)
    psnr = None
    if not args.no_psnr:
        psnr = _psnr(img, codec.reconstruct(enc.bits, h, w, 1 if img.ndim == 2 else 3))
    return _fmt_line(src, dst, h, w, len(enc.data), bpp, psnr) + f", {enc.iterations} iterations", bpp, psnr
