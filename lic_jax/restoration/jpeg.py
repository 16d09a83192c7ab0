"""Real JPEG (and optionally JPEG 2000 / WebP) through Pillow, quality-factor estimation, and the
input checks of ``lic restore`` (docs/RESTORATION.md).

Nothing here simulates a codec: every round trip encodes to bytes with libjpeg (Pillow's
``JpegImagePlugin``) and decodes them again.

Quality estimation (:func:`estimate_quality`). The IJG library (libjpeg, libjpeg-turbo, Pillow,
cjpeg) scales the standard tables of ITU-T T.81 Annex K (Table K.1 luminance, K.2 chrominance)
by the quality factor Q ∈ [1, 100]:

    S(Q) = 5000 / Q          if Q < 50
         = 200 − 2 Q         otherwise
    T_i(Q) = clamp(⌊(K_i · S(Q) + 50) / 100⌋, 1, 255)          (jcparam.c, force_baseline)

Inverting it: the table of a file is compared with T(Q) for every Q = 1 … 100 (luminance, and
chrominance when present), and the Q with the smallest total absolute difference is returned —
exact when the file was written by an IJG encoder with standard tables (the usual case), the
nearest IJG quality otherwise (``exact=False``). The closed form S ≈ 100 · mean(T_i / K_i),
Q = 5000 / S (S > 100) or (200 − S) / 2, is what the search refines; the search is used because
the rounding and the clamp at 1 make the closed form off by one at high Q.
Pillow's ``Image.quantization`` holds the tables in natural (row-major) order (checked: Q 50
gives Table K.1 itself).
"""

from __future__ import annotations

import io
import os
from typing import Union

import numpy as np

__all__ = ["JpegInputError", "STD_LUMA", "STD_CHROMA", "ijg_table", "jpeg_roundtrip", "codec_roundtrip",
           "estimate_quality", "inspect_jpeg", "read_jpeg", "SUBSAMPLING"]

# ITU-T T.81 Annex K, Table K.1 / K.2 (natural order)
STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99], np.int64)
STD_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99], np.int64)

SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


class JpegInputError(ValueError):
    """A one-line error about an input file ``lic restore`` cannot take."""


def ijg_table(qf: int, base=STD_LUMA) -> np.ndarray:
    """The IJG-scaled quantisation table of quality ``qf`` (jcparam.c ``jpeg_add_quant_table``)."""
    qf = int(qf)
    if not 1 <= qf <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {qf}")
    s = 5000 // qf if qf < 50 else 200 - 2 * qf
    return np.clip((base * s + 50) // 100, 1, 255)


def _check_qf(qf) -> int:
    if isinstance(qf, bool) or not isinstance(qf, (int, np.integer)) or not 1 <= int(qf) <= 100:
        raise ValueError(f"JPEG quality must be an integer in 1..100, got {qf!r}")
    return int(qf)


def jpeg_roundtrip(img: np.ndarray, qf: int, subsampling: str = "4:4:4") -> tuple[np.ndarray, int]:
    """Encode a uint8 image (H, W), (H, W, 1) or (H, W, 3) as a baseline JPEG of quality ``qf`` with
    Pillow and decode it. Returns (decoded uint8 of the input's shape, file size in bytes).
    ``subsampling`` ('4:4:4', '4:2:2', '4:2:0') applies to colour images."""
    from PIL import Image

    qf = _check_qf(qf)
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"jpeg_roundtrip takes uint8 images, got {a.dtype}")
    if subsampling not in SUBSAMPLING:
        raise ValueError(f"subsampling must be one of {', '.join(SUBSAMPLING)}, got {subsampling!r}")
    shape = a.shape
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"jpeg_roundtrip takes (H, W), (H, W, 1) or (H, W, 3) images, got {shape}")
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=qf, subsampling=SUBSAMPLING[subsampling], optimize=False)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        out = np.asarray(im)
    return out.reshape(shape), len(data)


def codec_roundtrip(img: np.ndarray, codec: str, quality: float, subsampling: str = "4:4:4") -> tuple[np.ndarray, int]:
    """Round trip through 'jpeg' (quality 1..100), 'webp' (Pillow quality 0..100, lossy) or
    'jpeg2000' (Pillow/OpenJPEG ``quality_layers=[ratio]``, ``quality`` = compression ratio)."""
    from PIL import Image, features

    if codec == "jpeg":
        return jpeg_roundtrip(img, int(quality), subsampling)
    a = np.asarray(img)
    shape = a.shape
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    buf = io.BytesIO()
    if codec == "webp":
        if not features.check("webp"):
            raise ValueError("this Pillow has no WebP support")
        Image.fromarray(a).save(buf, "WEBP", quality=float(quality), lossless=False)
    elif codec == "jpeg2000":
        if not features.check("jpg_2000"):
            raise ValueError("this Pillow has no JPEG 2000 (OpenJPEG) support")
        Image.fromarray(a).save(buf, "JPEG2000", quality_mode="rates", quality_layers=[float(quality)])
    else:
        raise ValueError(f"unknown codec {codec!r}; expected jpeg, webp or jpeg2000")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        out = np.asarray(im.convert("L" if a.ndim == 2 else "RGB"))
    return out.reshape(shape), len(data)


def _open(src: Union[str, bytes, os.PathLike]):
    from PIL import Image, UnidentifiedImageError

    if isinstance(src, (bytes, bytearray)):
        data, name = bytes(src), "input"
    else:
        name = os.fspath(src)
        with open(name, "rb") as f:
            data = f.read()
    if not data.startswith(b"\xff\xd8\xff"):
        raise JpegInputError(f"{name}: not a JPEG file (no SOI marker)")
    try:
        im = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise JpegInputError(f"{name}: not a readable JPEG file ({' '.join(str(e).split())})") from None
    if im.format != "JPEG":
        raise JpegInputError(f"{name}: not a JPEG file ({im.format})")
    return im, name, data


def _quality_from_tables(tables: dict) -> tuple[int, bool]:
    if not tables or 0 not in tables:
        raise JpegInputError("JPEG has no quantisation table")
    luma = np.asarray(tables[0], np.int64)
    chroma = np.asarray(tables[1], np.int64) if 1 in tables else None
    if luma.size != 64:
        raise JpegInputError(f"JPEG luminance table has {luma.size} entries, expected 64")
    best, best_err = 1, None
    for q in range(1, 101):
        err = int(np.abs(ijg_table(q, STD_LUMA) - luma).sum())
        if chroma is not None and chroma.size == 64:
            err += int(np.abs(ijg_table(q, STD_CHROMA) - chroma).sum())
        if best_err is None or err < best_err:
            best, best_err = q, err
    return best, best_err == 0


def estimate_quality(src: Union[str, bytes, os.PathLike]) -> int:
    """The IJG quality factor of a JPEG file (path or bytes) from its quantisation tables (module
    docstring); exact for files written by libjpeg-family encoders with the standard tables."""
    im, _, _ = _open(src)
    with im:
        return _quality_from_tables(im.quantization)[0]


def inspect_jpeg(src: Union[str, bytes, os.PathLike]) -> dict:
    """Check that ``src`` is a baseline grey or YCbCr JPEG ``lic restore`` can take and describe it:
    {'width', 'height', 'mode' ('L' | 'RGB'), 'qf', 'qf_exact', 'subsampling', 'bytes'}.
    Raises :class:`JpegInputError` (one line) for a non-JPEG, a progressive or a CMYK/YCCK JPEG."""
    im, name, data = _open(src)
    with im:
        if im.info.get("progressive") or im.info.get("progression"):
            raise JpegInputError(f"{name}: progressive JPEG is not supported (re-encode it as baseline)")
        if im.mode in ("CMYK", "YCCK"):
            raise JpegInputError(f"{name}: CMYK JPEG is not supported (grey or YCbCr colour JPEGs only)")
        if im.mode not in ("L", "RGB"):
            raise JpegInputError(f"{name}: unsupported JPEG colour mode {im.mode}")
        qf, exact = _quality_from_tables(im.quantization)
        try:
            from PIL import JpegImagePlugin

            ss = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(JpegImagePlugin.get_sampling(im), "other")
        except Exception:  # noqa: BLE001 - informative only
            ss = "unknown"
        return {"width": im.size[0], "height": im.size[1], "mode": im.mode, "qf": qf, "qf_exact": exact,
                "subsampling": ss if im.mode == "RGB" else None, "bytes": len(data)}


def read_jpeg(src: Union[str, bytes, os.PathLike]) -> tuple[np.ndarray, dict]:
    """Decode a JPEG accepted by :func:`inspect_jpeg`: (uint8 (H, W) grey or (H, W, 3) RGB, info)."""
    info = inspect_jpeg(src)
    im, name, _ = _open(src)
    with im:
        try:
            a = np.asarray(im.convert(info["mode"]))
        except OSError as e:
            raise JpegInputError(f"{name}: cannot decode JPEG ({' '.join(str(e).split())})") from None
    return a, info
