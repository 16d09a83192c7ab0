"""The ``lic`` command: compress images to ``.lic`` files and back (docs/FORMAT.md §5).

    lic compress IN.png OUT.lic [--model NAME --quality Q [--pretrained [--metric mse|ms-ssim]]
                                 | --checkpoint DIR | --compressai-checkpoint FILE]
                                [--lmbda L | --target-bpp B [--rtol R]]
                                [--coder constriction|tfc] [--drop-alpha] [--no-psnr]
                                [--qf Q]   (JPEG-payload models, e.g. comcnn-jpeg: the payload's quality)
    lic decompress IN.lic OUT.png [--checkpoint DIR | --compressai-checkpoint FILE | --pretrained [--metric M]]
                                  [--original IMG]
    lic compress IN.png OUT.lic --checkpoint TODERICI_DIR [--iterations K | --target-bpp B]   (progressive)
    lic decompress IN.lic OUT.png [--iterations k]   (progressive files: decode the first k iterations)
    lic info IN.lic [--json]   (progressive files: per-iteration byte offsets)
    lic restore IN.jpg OUT.png [--model arcnn|arcnn-aspp] [--qf Q] [--original IMG]

IN may be a folder (every image / every ``.lic`` in it, sorted); OUT is then a folder (created).
Without a model option ``compress`` uses the shipped default model; ``decompress`` finds the
model from the file's weight fingerprint among the given checkpoint or the shipped models.

``--pretrained`` (docs/ZOO.md): CompressAI's published weights for ``--model``/``--quality``
(``--metric``, default mse), downloaded once into the cache (``$LIC_JAX_CACHE``) and converted;
nothing is downloaded without it. ``decompress`` finds such a file's model in the cache by its
weight fingerprint without any option; with ``--pretrained`` it fetches the weights the header
names (model, quality; ``--metric`` or, by fingerprint, mse then ms-ssim) if they are not cached.

Variable-rate models (``mae-*``, docs/MAE.md) need ``--lmbda L`` (any λ > 0, CompressAI scale;
a warning outside the trained range) or ``--target-bpp B``: rate control per image — the λ
whose file is within ``--rtol`` (3 %) of B bpp, searched on real file sizes; when B is out of
reach the nearest achievable rate is used and a warning says so. The λ goes into the header;
``decompress`` needs no option.

``--qf Q`` (1…95): models whose latent is a standard JPEG (the ``external`` coder, e.g.
``comcnn-jpeg``, docs/COMCNN.md) write their payload at JPEG quality Q, with the same weights
(and fingerprint) whatever Q; ``decompress`` needs no option (the JPEG carries its tables).

Output: one line per file with bytes, bpp (= 8 × file bytes / pixels) and PSNR where the
original is at hand (compress: always, unless --no-psnr; decompress: with --original).
Errors: one line ``lic: error: …`` on stderr, exit status 1 (2 for usage errors); an output
file is only ever created complete (temporary file + rename).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

__all__ = ["main"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".webp", ".gif")


class CliError(Exception):
    """A one-line user-facing error."""


def _warn(msg: str):
    print(f"lic: warning: {msg}", file=sys.stderr)


# ------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------
def _assets_dir() -> str:
    from .default_model import default_model_path

    return os.path.dirname(default_model_path())


def _shipped_model_dirs() -> list[str]:
    """The default model first, then every other model directory under lic_jax/assets/models."""
    from .default_model import default_model_path

    out = []
    d = default_model_path()
    if os.path.exists(os.path.join(d, "config.json")):
        out.append(os.path.realpath(d))
    root = _assets_dir()
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            p = os.path.realpath(os.path.join(root, name))
            if os.path.exists(os.path.join(p, "config.json")) and p not in out:
                out.append(p)
    return out


def _read_config(d: str) -> dict:
    try:
        with open(os.path.join(d, "config.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _codec_from_dir(path: str, coder, float_twin: bool = False):
    """The codec of a model directory; ``float_twin``: a portable model's float twin (same weights), which
    decodes the files written before the model was made portable (docs/FORMAT.md §7)."""
    import dataclasses

    from .artifact import load_artifact
    from .coding import Codec
    from .models.portable import float_spec

    if os.path.isfile(path):
        raise CliError(f"{path} is a file; --checkpoint takes a lic_jax model directory "
                       f"(use --compressai-checkpoint for CompressAI .pth files)")
    art = load_artifact(path)
    if float_twin:
        art = dataclasses.replace(art, spec=float_spec(art.spec))
    return Codec.from_artifact(art, coder=coder)


def _float_twin_name(d: str):
    """The float model a shipped portable directory also serves (None for a float directory)."""
    from .models.registry import REGISTRY

    rec = REGISTRY.get(_read_config(d).get("model", {}).get("name"))
    return rec.portable_of if rec is not None else None


def _codec_from_compressai(path: str, coder):
    from .coding import Codec
    from .convert import from_compressai

    model, spec, variables = from_compressai(path)
    return Codec(model, spec, variables, coder=coder)


def _codec_from_zoo(args, coder):
    """``--pretrained``: CompressAI's weights for --model / --quality (lic_jax.zoo; downloaded once)."""
    from . import zoo
    from .coding import Codec

    if args.checkpoint or args.compressai_checkpoint:
        raise CliError("--pretrained takes --model and --quality, not a checkpoint")
    if not args.model or args.quality is None:
        raise CliError(f"--pretrained needs --model NAME and --quality Q (NAME: {', '.join(zoo.pretrained_names())}; "
                       f"Q: 1-8)")
    return Codec.from_artifact(zoo.load_pretrained_artifact(args.model, args.quality, args.metric or "mse"),
                               coder=coder)


def _check_zoo_args(args):
    if args.metric and not args.pretrained:
        raise CliError("--metric needs --pretrained")
    if args.pretrained and (args.checkpoint or args.compressai_checkpoint):
        raise CliError("--pretrained cannot be combined with --checkpoint / --compressai-checkpoint")


def _zoo_codec_for_header(header, args):
    """A file's model among the cached pretrained models (by fingerprint, no network); with
    --pretrained, CompressAI's weights for the header's model and quality are fetched."""
    from . import zoo
    from .coding import Codec

    p = zoo.find_cached_artifact(header.fingerprint)
    if p is not None:
        return _codec_from_dir(p, None)
    if not args.pretrained or (header.model_name, "mse") not in zoo.PRETRAINED or not header.quality:
        return None
    for metric in [args.metric] if args.metric else list(zoo.METRICS):
        art = zoo.load_pretrained_artifact(header.model_name, header.quality, metric)
        if bytes.fromhex(art.fingerprint)[:8] == header.fingerprint:
            return Codec.from_artifact(art)
    return None


def _encoder_codec(args):
    coder = args.coder
    _check_zoo_args(args)
    if args.pretrained:
        return _codec_from_zoo(args, coder)
    if args.checkpoint:
        return _codec_from_dir(args.checkpoint, coder)
    if args.compressai_checkpoint:
        return _codec_from_compressai(args.compressai_checkpoint, coder)
    if args.model or args.quality is not None:
        if not args.model:
            raise CliError("--quality needs --model")
        dirs = _shipped_model_dirs()
        if getattr(args, "qf", None) is not None:  # JPEG-payload models: the artifact trained nearest to --qf first
            def _qf_dist(d):
                m = _read_config(d).get("model", {})
                q = (m.get("hparams") or {}).get("payload_quality")
                return abs(q - args.qf) if m.get("name") == args.model and isinstance(q, int) else 0
            dirs = sorted(dirs, key=_qf_dist)
        for d in dirs:
            m = _read_config(d).get("model", {})
            if args.quality is not None and m.get("quality") != args.quality:
                continue
            if m.get("name") == args.model:
                return _codec_from_dir(d, coder)
            if _float_twin_name(d) == args.model:  # a portable directory serves its float twin too (same weights)
                return _codec_from_dir(d, coder, float_twin=not getattr(args, "portable", False))
        from .models import MODELS

        if args.model not in MODELS:
            raise CliError(f"unknown model {args.model!r}; available: {', '.join(sorted(MODELS))}")
        q = f" quality {args.quality}" if args.quality is not None else ""
        raise CliError(f"no shipped weights for {args.model}{q}; add --pretrained (CompressAI's weights, downloaded "
                       f"once), or pass --checkpoint DIR (a lic_jax model directory) or --compressai-checkpoint FILE")
    from .default_model import default_model_path

    d = default_model_path()
    if not os.path.exists(os.path.join(d, "config.json")):
        raise CliError(f"no default model is shipped (expected at {d}); pass --checkpoint DIR or "
                       f"--compressai-checkpoint FILE")
    return _codec_from_dir(d, coder)


QF_RANGE = (1, 95)


def _check_qf(q):
    lo, hi = QF_RANGE
    if isinstance(q, bool) or not lo <= q <= hi:
        raise CliError(f"--qf must be in {lo}..{hi}, got {q}")


def _with_payload_quality(codec, q: int):
    """The codec of a JPEG-payload model (latent coder ``external``) re-targeted to payload quality ``q``:
    same weights, same fingerprint (the decoder never needs the QF: the JPEG carries its tables)."""
    import jax

    from .coding import Codec
    from .models.registry import ModelSpec

    name = codec.spec.name if codec.spec is not None else codec.record.name
    if codec.kind != "external":
        raise CliError(f"--qf sets the JPEG quality of a JPEG-payload model (comcnn-jpeg); {name} codes its latents "
                       f"with its own entropy coder ({codec.kind}) and has no JPEG quality")
    spec = codec.spec
    hp = {**(spec.hparams if spec is not None else {}), "payload_quality": int(q)}
    return Codec(codec.model.clone(payload_quality=int(q)), ModelSpec(name, spec.quality if spec else None, hp),
                 jax.device_get(codec._cpu_vars), coder=codec.coder, fingerprint=codec.fingerprint,
                 max_pixels=codec.max_pixels)


class _DecoderModels:
    """Finds (and caches) the codec whose weight fingerprint matches a file's header."""

    def __init__(self, args):
        self.args = args
        self.cache: dict[tuple, object] = {}
        self.explicit: dict[bool, object] = {}  # float twin? → the --checkpoint codec
        _check_zoo_args(args)

    def for_header(self, header):
        from .coding import ModelMismatchError

        fp = header.fingerprint
        key = (fp, header.model_id)  # a portable model and its float twin share the weights' fingerprint
        if key in self.cache:
            return self.cache[key]
        a = self.args
        if a.checkpoint or a.compressai_checkpoint:
            twin = bool(a.checkpoint) and _float_twin_name(a.checkpoint) == header.model_name
            if twin not in self.explicit:
                self.explicit[twin] = (_codec_from_dir(a.checkpoint, None, float_twin=twin) if a.checkpoint
                                       else _codec_from_compressai(a.compressai_checkpoint, None))
            codec = self.explicit[twin]
            if codec.fingerprint8 != fp:
                raise ModelMismatchError(
                    f"the file was encoded with other weights ({header.model_name}, fingerprint {fp.hex()}) "
                    f"than the given checkpoint (fingerprint {codec.fingerprint8.hex()})"
                )
        else:
            codec = None
            for d in _shipped_model_dirs():
                if bytes.fromhex(_read_config(d).get("fingerprint", "")[:16] or "00")[:8] == fp:
                    # a portable directory also decodes its float twin's files (same weights)
                    codec = _codec_from_dir(d, None, float_twin=_float_twin_name(d) == header.model_name)
                    break
            if codec is None:
                codec = _zoo_codec_for_header(header, a)
            if codec is None:
                raise ModelMismatchError(
                    f"no shipped model has the file's weight fingerprint {fp.hex()} ({header.model_name}"
                    f"{' q' + str(header.quality) if header.quality else ''}), nor a "
                    f"{'' if a.pretrained else 'cached '}pretrained one; pass --checkpoint DIR with the encoder's weights"
                    f"{'' if a.pretrained else ' (or --pretrained if it was made with CompressAI weights)'}"
                )
        self.cache[key] = codec
        return codec


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _psnr(a, b) -> float:
    import numpy as np

    d = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(d * d))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _pairs(src: str, dst: str, exts, new_ext: str):
    """[(input, output)] for a file or a folder."""
    if os.path.isdir(src):
        if os.path.exists(dst) and not os.path.isdir(dst):
            raise CliError(f"{dst} exists and is not a folder (the input is a folder)")
        names = sorted(n for n in os.listdir(src) if n.lower().endswith(exts) and not n.startswith("."))
        if not names:
            raise CliError(f"{src}: no {'/'.join(exts)} files in this folder")
        os.makedirs(dst, exist_ok=True)
        return [(os.path.join(src, n), os.path.join(dst, os.path.splitext(n)[0] + new_ext)) for n in names], True
    if not os.path.exists(src):
        raise FileNotFoundError(f"{src}: no such file")
    if os.path.isdir(dst):
        dst = os.path.join(dst, os.path.splitext(os.path.basename(src))[0] + new_ext)
    return [(src, dst)], False


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    # only on a terminal: in a log or a pipe the bar's carriage returns would glue onto the result lines
    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=quiet or total < 2 or not tty,
                dynamic_ncols=True, leave=False)


def _fmt_line(src, dst, h, w, nbytes, bpp, psnr):
    s = f"{os.path.basename(src)} -> {os.path.basename(dst)}: {w}x{h}, {nbytes} bytes, {bpp:.4f} bpp"
    if psnr is not None:
        s += f", PSNR {psnr:.2f} dB"
    return s


def _run_files(pairs, folder, desc, quiet, one):
    """Run ``one(src, dst) -> (line, bpp, psnr)`` over pairs with a progress bar; returns exit status."""
    from tqdm import tqdm

    failures, bpps, psnrs = 0, [], []
    t0 = time.time()
    bar = _progress(len(pairs), desc, quiet)
    try:
        for src, dst in pairs:
            try:
                line, bpp, psnr = one(src, dst)
                bpps.append(bpp)
                if psnr is not None:
                    psnrs.append(psnr)
                if not quiet:
                    tqdm.write(line, file=sys.stdout)  # clears the bar, writes the line, redraws the bar
                    sys.stdout.flush()
            except Exception as e:  # noqa: BLE001 - reported per file, one line
                if not folder:
                    raise
                failures += 1
                tqdm.write(f"lic: error: {src}: {_message(e)}", file=sys.stderr)
            bar.update(1)
    finally:
        bar.close()
    if folder and not quiet:
        dt = time.time() - t0
        s = f"{len(bpps)} of {len(pairs)} files in {dt:.1f} s ({len(pairs) / max(dt, 1e-9):.2f} img/s)"
        if bpps:
            s += f", mean {sum(bpps) / len(bpps):.4f} bpp"
        if psnrs and all(math.isfinite(p) for p in psnrs):
            s += f", mean PSNR {sum(psnrs) / len(psnrs):.2f} dB"
        print(s)
    return 1 if failures else 0


# ------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------
def _is_progressive(codec) -> bool:
    return getattr(codec, "kind", None) == "progressive"


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
        if args.lmbda is not None or args.target_bpp is not None:
            raise CliError(f"--lmbda / --target-bpp need a variable-rate model (mae-*); {name} has the fixed rate "
                           f"it was trained for")
        return
    lo, hi = codec.lmbda_range
    if args.lmbda is None and args.target_bpp is None:
        raise CliError(f"{name} is a variable-rate model: pass --lmbda L (trained on {lo:.4g} … {hi:.4g}) "
                       f"or --target-bpp B")
    if args.lmbda is not None:
        if not (args.lmbda > 0 and math.isfinite(args.lmbda)):
            raise CliError(f"--lmbda must be positive, got {args.lmbda}")
        if not lo <= args.lmbda <= hi:
            _warn(f"λ={args.lmbda:g} is outside the trained range {lo:.4g} … {hi:.4g} (extrapolating)")
    if args.target_bpp is not None and not (args.target_bpp > 0 and math.isfinite(args.target_bpp)):
        raise CliError(f"--target-bpp must be positive, got {args.target_bpp}")
    if not 0 < args.rtol < 1:
        raise CliError(f"--rtol must be in (0, 1), got {args.rtol}")


def _set_tiling(codec, args):
    """--tile: the codec's tiled transforms (lic_jax/coding/tiling.py, docs/LARGE_IMAGES.md)."""
    if getattr(args, "tile", None) is not None:
        from .coding.tiling import as_tiling

        if args.tile < 0:
            raise CliError(f"--tile must be ≥ 0 pixels, got {args.tile}")
        codec.tiling = as_tiling(args.tile)


def cmd_compress(args) -> int:
    from .coding import encode_at_bpp
    from .coding.image_io import atomic_write_bytes, read_image

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
        from .models.registry import REGISTRY

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
    from .coding.image_io import atomic_write_bytes

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


def _original_for(args, src, folder):
    if not args.original:
        return None
    if folder:
        stem = os.path.splitext(os.path.basename(src))[0]
        for ext in IMAGE_EXTS:
            for e in (ext, ext.upper()):
                p = os.path.join(args.original, stem + e)
                if os.path.exists(p):
                    return p
        return None
    return args.original


def _read_lic(path, models, max_pixels) -> bytes:
    """The bytes of a .lic file, read only after the header's sizes passed the limits
    (docs/FORMAT.md §6): declared vs. actual file size, max_pixels, stream lengths vs. the bounds
    of the model the fingerprint names — so a forged header never makes lic read or allocate much."""
    from .coding import container, limits

    with open(path, "rb") as f:
        head = f.read(container.MAX_HEADER_SIZE)  # the whole header (or the whole file if shorter)
        header, hsize = container.read_header(head)
        if header.progressive:  # segments are checked one by one as they are parsed (FORMAT.md §8)
            limits.check_pixels(header.height, header.width, max_pixels, "image")
            limits.check_progressive_size(header, hsize, os.fstat(f.fileno()).st_size)
            f.seek(0)
            return f.read()
        container.check_declared_size(header, hsize, os.fstat(f.fileno()).st_size)
        limits.check_pixels(header.height, header.width, max_pixels, "image")
        if 1 <= header.height <= container.MAX_SIDE and 1 <= header.width <= container.MAX_SIDE:
            limits.check_streams(models.for_header(header), header)
        f.seek(0)
        return f.read()


def cmd_decompress(args) -> int:
    from .coding import container
    from .coding.image_io import read_image, write_image

    pairs, folder = _pairs(args.input, args.output, (".lic",), ".png")
    models = _DecoderModels(args)

    def one(src, dst):
        data = _read_lic(src, models, args.max_pixels)
        header, _ = container.unpack(data)
        codec = models.for_header(header)
        _set_tiling(codec, args)
        extra = ""
        if header.progressive:
            if args.iterations is not None and args.iterations > len(header.stream_lengths):
                raise CliError(f"{src} holds {len(header.stream_lengths)} iterations, --iterations {args.iterations} "
                               f"asked for more")
            img = codec.decompress(data, max_pixels=args.max_pixels, iterations=args.iterations)
            extra = f", {args.iterations or len(header.stream_lengths)} of {len(header.stream_lengths)} iterations"
        elif args.iterations is not None:
            raise CliError(f"--iterations needs a progressive file; {src} is a format-version-{header.version} file")
        else:
            img = codec.decompress(data, max_pixels=args.max_pixels)
        write_image(dst, img)
        h, w = img.shape[:2]
        bpp = 8.0 * len(data) / (h * w)
        psnr = None
        orig = _original_for(args, src, folder)
        if orig:
            ref = read_image(orig, drop_alpha=True, warn=_warn)
            if ref.shape != img.shape:
                _warn(f"{orig}: shape {ref.shape} differs from the decoded {img.shape}; no PSNR")
            else:
                psnr = _psnr(ref, img)
        return _fmt_line(src, dst, h, w, len(data), bpp, psnr) + extra, bpp, psnr

    return _run_files(pairs, folder, "decompress", args.quiet, one)


def cmd_info(args) -> int:
    from .coding.codec import info_dict
    from .coding import container

    paths = ([os.path.join(args.input, n) for n in sorted(os.listdir(args.input)) if n.endswith(".lic")]
             if os.path.isdir(args.input) else [args.input])
    out = []
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        header, _ = container.unpack(data)
        d = {"file": p, **info_dict(header, len(data))}
        out.append(d)
        if not args.json:
            q = f" q{d['quality']}" if d["quality"] else ""
            lam = f", lambda {d['lambda']:g}" if d["lambda"] is not None else ""
            print(f"{p}: .lic v{d['format_version']}, {d['model']}{q}{lam} (weights {d['fingerprint']}), "
                  f"{d['width']}x{d['height']} {'grey' if d['channels'] == 1 else 'RGB'} {d['bit_depth']}-bit, "
                  f"coder {d['coder']}, {'portable' if d['portable'] else 'not portable (float entropy path)'}, "
                  + (f"{d['iterations']} iterations, segments {d['stream_lengths']} bytes, ending at byte offsets "
                     f"{d['iteration_offsets']}, " if "iterations" in d else f"streams {d['stream_lengths']} bytes, ")
                  + f"{d['file_bytes']} bytes ({d['container_bytes']} container), {d['bpp']:.4f} bpp")
    if args.json:
        print(json.dumps(out if len(out) != 1 or os.path.isdir(args.input) else out[0], indent=2))
    return 0


def cmd_restore(args) -> int:
    """``lic restore IN.jpg OUT.png``: ARCNN / ARCNN+ASPP artifact removal of any baseline JPEG
    (lic_jax.restoration.restore; docs/RESTORATION.md)."""
    from .restoration.restore import restore_file, write_png_atomic

    if os.path.isdir(args.input):
        raise CliError(f"{args.input} is a folder; restore takes one JPEG file")
    if os.path.isdir(args.output):
        raise CliError(f"{args.output} is a folder; give the output PNG file name")
    t = time.time()
    decoded, out, info = restore_file(args.input, args.model, args.qf, args.weights_dir)
    ref = None
    if args.original:
        import numpy as np
        from PIL import Image

        from .evaluation.image_metrics import psnr

        with Image.open(args.original) as im:
            ref = np.asarray(im.convert("L" if out.ndim == 2 else "RGB"))
        if ref.shape != out.shape:
            raise CliError(f"--original has shape {ref.shape}, the JPEG decodes to {out.shape}")
    write_png_atomic(out, args.output)
    print(f"lic: restore: model {info['model']} (file QF {info['qf']} {info['qf_source']})", file=sys.stderr)
    if info["note"]:
        _warn(info["note"])
    if not args.quiet:
        line = (f"{args.input} -> {args.output}: {info['width']}x{info['height']} "
                f"{'grey' if info['mode'] == 'L' else 'RGB'}, QF {info['qf']}, {info['model']}, {time.time() - t:.1f} s")
        if ref is not None:
            line += f", PSNR {psnr(ref, decoded):.2f} -> {psnr(ref, out):.2f} dB"
        print(line)
    return 0


# ------------------------------------------------------------------------------------------
def _default_max_pixels() -> int:
    from .coding.limits import DEFAULT_MAX_PIXELS

    return DEFAULT_MAX_PIXELS


def _max_pixels_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lic", description="Learned image compression (lic_jax): .lic files.")
    sub = p.add_subparsers(dest="command", required=True)

    def model_opts(sp, encoder: bool):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--checkpoint", metavar="DIR", help="lic_jax model directory (config.json + params.msgpack)")
        g.add_argument("--compressai-checkpoint", metavar="FILE", help="CompressAI state_dict / checkpoint (.pth)")
        if encoder:
            g.add_argument("--model", metavar="NAME", help="shipped model by name (with --quality)")
            sp.add_argument("--quality", type=int, metavar="Q", help="quality of a shipped model")
        sp.add_argument("--pretrained", action="store_true",
                        help=("CompressAI's pretrained weights for --model/--quality (downloaded once into the cache; "
                              "docs/ZOO.md)") if encoder else
                        "fetch the CompressAI pretrained weights the file's header names if they are not cached")
        sp.add_argument("--metric", choices=("mse", "ms-ssim"),
                        help="with --pretrained: the weights trained for mse (default) or ms-ssim")

    c = sub.add_parser("compress", help="image(s) -> .lic")
    c.add_argument("input", help="image file or folder")
    c.add_argument("output", help=".lic file or folder")
    model_opts(c, True)
    r = c.add_mutually_exclusive_group()
    r.add_argument("--lmbda", type=float, metavar="L", help="variable-rate models: the λ to code at (CompressAI scale)")
    r.add_argument("--target-bpp", type=float, metavar="B",
                   help="variable-rate models: per-image rate control to B bpp; progressive models: the most "
                        "iterations whose real file fits B bpp")
    c.add_argument("--iterations", type=int, metavar="K",
                   help="progressive models (toderici2017): code K iterations (default: the model's)")
    c.add_argument("--rtol", type=float, default=0.03, metavar="R", help="--target-bpp tolerance (default 0.03)")
    c.add_argument("--coder", choices=("constriction", "tfc"), default=None, help="entropy coder (default constriction)")
    c.add_argument("--portable", action="store_true",
                   help="require a portable file (integer entropy path: decodes exactly on every platform; "
                        "the shipped default is portable; docs/FORMAT.md §7)")
    c.add_argument("--qf", type=int, metavar="Q",
                   help="JPEG-payload models (comcnn-jpeg): the payload's JPEG quality, 1..95 (default: the model's)")
    c.add_argument("--drop-alpha", action="store_true", help="discard an alpha channel instead of refusing the image")
    c.add_argument("--no-psnr", action="store_true", help="do not reconstruct to report PSNR")
    c.add_argument("--tile", type=int, metavar="PIXELS",
                   help="synthesis tile side in pixels, 0: no tiling (default: tiled above 2 MP; the file never depends on it)")
    c.add_argument("--max-pixels", type=_max_pixels_arg, default=None, metavar="N",
                   help=f"refuse images with more than N pixels (default {_default_max_pixels()})")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help=".lic -> image(s)")
    d.add_argument("input", help=".lic file or folder")
    d.add_argument("output", help="image file (PNG) or folder")
    model_opts(d, False)
    d.add_argument("--original", metavar="PATH", help="original image (or folder) to report PSNR against")
    d.add_argument("--iterations", type=int, metavar="K",
                   help="progressive files: decode only the first K iterations (a coarser image)")
    d.add_argument("--tile", type=int, metavar="PIXELS",
                   help="synthesis tile side in pixels, 0: no tiling (default: tiled above 2 MP; the file never depends on it)")
    d.add_argument("--max-pixels", type=_max_pixels_arg, default=None, metavar="N",
                   help=f"refuse files of images with more than N pixels (default {_default_max_pixels()})")
    d.add_argument("-q", "--quiet", action="store_true")
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="print the header of .lic file(s)")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    rs = sub.add_parser("restore", help="remove JPEG artifacts: baseline JPEG -> PNG (ARCNN, docs/RESTORATION.md)")
    rs.add_argument("input", help="baseline JPEG file (grey or YCbCr colour)")
    rs.add_argument("output", help="PNG file to write")
    rs.add_argument("--model", choices=("arcnn", "arcnn-aspp"), default="arcnn",
                    help="restoration network (default arcnn)")
    rs.add_argument("--qf", type=int, metavar="Q",
                    help="use the model trained nearest to quality Q (default: the file's QF from its tables)")
    rs.add_argument("--original", metavar="PATH", help="original image to report PSNR against")
    rs.add_argument("--weights-dir", metavar="DIR", help=argparse.SUPPRESS)
    rs.add_argument("-q", "--quiet", action="store_true")
    rs.set_defaults(func=cmd_restore)
    return p


def _message(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, (FileNotFoundError, IsADirectoryError, PermissionError)) and getattr(e, "filename", None):
        msg = f"{e.filename}: {e.strerror}"
    return msg


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("lic: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every failure is one line + exit 1
        if os.environ.get("LIC_DEBUG"):
            raise
        from .coding.errors import LicError

        kind = "error" if isinstance(e, (LicError, CliError, OSError, ValueError, ImportError)) else "internal error"
        extra = "" if kind == "error" else f" ({type(e).__name__})"
        print(f"lic: {kind}: {_message(e)}{extra}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
