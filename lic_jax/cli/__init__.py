"""The ``lic`` command: compress images to ``.lic`` files and back (docs/FORMAT.md §5).

    lic compress IN.png OUT.lic [--model NAME --quality Q [--pretrained [--metric mse|ms-ssim]]
                                 | --checkpoint DIR | --compressai-checkpoint FILE]
                                [--lmbda L | --target-bpp B [--rtol R]]
                                [--coder constriction|tfc] [--drop-alpha] [--no-psnr]
                                [--qf Q]   (JPEG-payload models, e.g. comcnn-jpeg: the payload's quality)
    lic decompress IN.lic OUT.png [--checkpoint DIR | --compressai-checkpoint FILE | --pretrained [--metric M]]
                                  [--original IMG] [--decoder NAME] [--detail | --detail-roi X,Y,W,H]
    lic compress IN.png OUT.lic --checkpoint TODERICI_DIR [--iterations K | --target-bpp B]   (progressive)
    lic decompress IN.lic OUT.png [--iterations k]   (progressive files: decode the first k iterations)
    lic info IN.lic [--json]   (progressive files: per-iteration byte offsets)
    lic restore IN.jpg OUT.png [--model arcnn|arcnn-aspp] [--qf Q] [--original IMG]

``--decoder NAME``: decode with another of the model's decoders (its registry record's
``decoders``) than the one the file asks for; an unknown name is an error listing them.
``--detail`` (akutsu2020, docs/AKUTSU.md): selective detail decoding, G_s fused with G_m by its
mask (the decoder ``synthesis_fused``); a model without it is an error.
``--detail-roi X,Y,W,H`` (image pixels): the same, inside that rectangle only (G_m elsewhere); the
file is unchanged. G_s runs on the ROI's latents plus its exact receptive-field margin and the ROI
equals the ``--detail`` decode (G_s with local channel attention, ``detail_ca='local'``, the
default); a 'global' model, an empty, malformed or out-of-image ROI are one-line errors.

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

Compiled codecs are kept across runs in a persistent XLA cache (``$LIC_JAX_XLA_CACHE``, default
``xla/`` in the weight cache; ``LIC_JAX_XLA_CACHE=off`` turns it off; :mod:`lic_jax.cli.xla_cache`).

Package layout: ``parser`` (the options), ``compress`` / ``decompress`` / ``info`` / ``restore``
(the subcommands), ``models`` (which codec), ``files`` (shared helpers), ``errors``, ``xla_cache``.
"""

from __future__ import annotations

import os
import sys

from .errors import CliError, _message
from .parser import _parser

__all__ = ["main"]


def main(argv=None) -> int:
    """``argv`` None: run as the ``lic`` program (the console script, ``python -m lic_jax.cli``),
    with the persistent XLA cache (:mod:`lic_jax.cli.xla_cache`); a list: called from Python, which
    leaves the caller's JAX configuration alone."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if argv is None and args.command != "info":  # info reads headers only: no JAX
            from .xla_cache import enable

            enable()
        return args.func(args)
    except KeyboardInterrupt:
        print("lic: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every failure is one line + exit 1
        if os.environ.get("LIC_DEBUG"):
            raise
        from ..coding.errors import LicError

        kind = "error" if isinstance(e, (LicError, CliError, OSError, ValueError, ImportError)) else "internal error"
        extra = "" if kind == "error" else f" ({type(e).__name__})"
        print(f"lic: {kind}: {_message(e)}{extra}", file=sys.stderr)
        return 1
