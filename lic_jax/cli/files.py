"""Helpers shared by the ``lic`` commands: input/output pairs, result lines, progress, PSNR."""

from __future__ import annotations

import math
import os
import sys
import time

from .errors import CliError, _message


IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".webp", ".gif")


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


def _set_tiling(codec, args):
    """--tile: the codec's tiled transforms (lic_jax/coding/tiling.py, docs/LARGE_IMAGES.md)."""
    if getattr(args, "tile", None) is not None:
        from ..coding.tiling import as_tiling

        if args.tile < 0:
            raise CliError(f"--tile must be ≥ 0 pixels, got {args.tile}")
        codec.tiling = as_tiling(args.tile)


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
