"""The ``lic`` argument parser: subcommands and their options."""

from __future__ import annotations

import argparse

from .compress import cmd_compress
from .decompress import cmd_decompress
from .info import cmd_info
from .restore import cmd_restore


def _default_max_pixels() -> int:
    from ..coding.limits import DEFAULT_MAX_PIXELS

    return DEFAULT_MAX_PIXELS


def _max_pixels_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def _size_opts(p, what: str):
    """--tile, --max-pixels and -q, shared by compress and decompress."""
    p.add_argument("--tile", type=int, metavar="PIXELS",
                   help="synthesis tile side in pixels, 0: no tiling (default: tiled above 2 MP; the file never depends on it)")
    p.add_argument("--max-pixels", type=_max_pixels_arg, default=None, metavar="N",
                   help=f"refuse {what} with more than N pixels (default {_default_max_pixels()})")
    p.add_argument("-q", "--quiet", action="store_true")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lic", description="Learned image compression (lic_jax): .lic files.")
    sub = p.add_subparsers(dest="command", required=True)

    def model_opts(sp, encoder: bool):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--checkpoint", metavar="DIR", help="lic_jax model directory (config.json + params.msgpack)")
        g.add_argument("--compressai-checkpoint", metavar="FILE", help="CompressAI state_dict / checkpoint (.pth)")
        if encoder:
            g.add_argument("--model", metavar="NAME", help="shipped model by name (with --quality)")
            sp.add_argument("--quality", type=int, metavar="Q",
                            help="quality of a shipped model (with --model); for a variable-rate model, such as the "
                                 "default, its Q-th trained λ (default model: 1-6, CompressAI's λ; without it: 3)")
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
    _size_opts(c, "images")
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help=".lic -> image(s)")
    d.add_argument("input", help=".lic file or folder")
    d.add_argument("output", help="image file (PNG) or folder")
    model_opts(d, False)
    d.add_argument("--original", metavar="PATH", help="original image (or folder) to report PSNR against")
    d.add_argument("--iterations", type=int, metavar="K",
                   help="progressive files: decode only the first K iterations (a coarser image)")
    d.add_argument("--decoder", metavar="NAME",
                   help="decode with the model's decoder NAME instead of the one the file asks for (models with "
                        "several synthesis paths; docs/FORMAT.md §2)")
    d.add_argument("--detail", action="store_true",
                   help="akutsu2020: selective detail decoding — G_s fused with G_m by its mask (eq. 1; the "
                        "decoder synthesis_fused) instead of G_m alone (docs/AKUTSU.md)")
    d.add_argument("--detail-roi", metavar="X,Y,W,H",
                   help="akutsu2020: selective detail decoding inside the rectangle X,Y,W,H (image pixels) only, "
                        "G_m elsewhere; G_s runs on the ROI's latents plus its receptive-field margin, and the "
                        "ROI equals the --detail decode (models with detail_ca='local', the default; "
                        "docs/AKUTSU.md)")
    _size_opts(d, "files of images")
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
