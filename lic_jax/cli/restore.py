"""``lic restore``: ARCNN / ARCNN+ASPP JPEG artifact removal (docs/RESTORATION.md)."""

from __future__ import annotations

import os
import sys
import time

from .errors import CliError, _warn


def cmd_restore(args) -> int:
    """``lic restore IN.jpg OUT.png``: ARCNN / ARCNN+ASPP artifact removal of any baseline JPEG
    (lic_jax.restoration.restore; docs/RESTORATION.md)."""
    from ..restoration.restore import restore_file, write_png_atomic

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

        from ..evaluation.image_metrics import psnr

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
