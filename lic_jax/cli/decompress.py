"""``lic decompress``: .lic -> image(s); the model is found from the file's weight fingerprint."""

from __future__ import annotations

import os

from .compress import _is_progressive
from .errors import CliError, _warn
from .files import _fmt_line, _original_for, _pairs, _psnr, _run_files, _set_tiling
from .models import _DecoderModels


def _read_lic(path, models, max_pixels) -> bytes:
    """The bytes of a .lic file, read only after the header's sizes passed the limits
    (docs/FORMAT.md §6): declared vs. actual file size, max_pixels, stream lengths vs. the bounds
    of the model the fingerprint names — so a forged header never makes lic read or allocate much."""
    from ..coding import container, limits

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


DETAIL_DECODER = "synthesis_fused"  # --detail (akutsu2020: G_s fused with G_m, eq. 1)


def _decoder_choice(codec, name, detail: bool = False):
    """``--decoder NAME``: what ``codec.decompress`` gets as ``decoder`` (None: the one the file asks for).
    NAME must be one of the model's decoders (its registry record's ``decoders``, docs/FORMAT.md §2).
    ``--detail`` (and ``--detail-roi``): the decoder ``synthesis_fused`` (models with selective detail
    decoding)."""
    model = codec.spec.name if codec.spec is not None else codec.record.name
    if detail:
        if name is not None and name != DETAIL_DECODER:
            raise CliError(f"--detail decodes with {DETAIL_DECODER}; it cannot go with --decoder {name!r}")
        if DETAIL_DECODER not in codec.decoders:
            raise CliError(f"--detail: {model} has no selective detail decoder; its decoders: "
                           f"{', '.join(codec.decoders)}")
        name = DETAIL_DECODER
    if name is None:
        return None
    if name not in codec.decoders:
        raise CliError(f"--decoder {name!r}: {model} has no such decoder; its decoders: {', '.join(codec.decoders)}")
    return None if _is_progressive(codec) else name  # a progressive model has a single decoder


def cmd_decompress(args) -> int:
    from ..coding import container
    from ..coding.image_io import read_image, write_image

    pairs, folder = _pairs(args.input, args.output, (".lic",), ".png")
    models = _DecoderModels(args)

    def one(src, dst):
        data = _read_lic(src, models, args.max_pixels)
        header, _ = container.unpack(data)
        codec = models.for_header(header)
        _set_tiling(codec, args)
        roi = getattr(args, "detail_roi", None)
        decoder = _decoder_choice(codec, args.decoder, getattr(args, "detail", False) or roi is not None)
        extra = ""
        if roi is not None and (header.progressive or args.iterations is not None):
            raise CliError("--detail-roi decodes a selective-detail (akutsu2020) file; it cannot go with a "
                           "progressive file or --iterations")
        if header.progressive:
            if args.iterations is not None and args.iterations > len(header.stream_lengths):
                raise CliError(f"{src} holds {len(header.stream_lengths)} iterations, --iterations {args.iterations} "
                               f"asked for more")
            img = codec.decompress(data, max_pixels=args.max_pixels, iterations=args.iterations)
            extra = f", {args.iterations or len(header.stream_lengths)} of {len(header.stream_lengths)} iterations"
        elif args.iterations is not None:
            raise CliError(f"--iterations needs a progressive file; {src} is a format-version-{header.version} file")
        elif roi is not None:
            from ..coding.detail_roi import decode_detail_roi, parse_roi

            try:
                img = decode_detail_roi(codec, data, parse_roi(roi), max_pixels=args.max_pixels)
            except ValueError as e:
                raise CliError(str(e)) from None
            extra = f", detail in {roi}"
        else:
            img = codec.decompress(data, max_pixels=args.max_pixels, decoder=decoder)
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
