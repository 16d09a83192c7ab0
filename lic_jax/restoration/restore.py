"""Restore any baseline JPEG with shipped ARCNN / ARCNN+ASPP weights (``lic restore``; docs/RESTORATION.md).

* The file is checked and decoded by :func:`lic_jax.restoration.jpeg.read_jpeg` (one-line errors
  for a non-JPEG, a progressive or a CMYK JPEG) and its quality factor estimated from its
  quantisation tables.
* The model: the shipped ``<model>-y-qf<Q>`` (``lic_jax/assets/arcnn/``) whose Q is nearest to
  the estimated QF (or to ``qf`` when given; ties go to the lower Q, the stronger filter); the
  caller is told which, and whether the QF was a trained one.
* Colour: the networks are trained on Y′. A colour JPEG is decoded to RGB, converted to
  full-range YCbCr (JFIF / BT.601: Y′ = 0.299 R + 0.587 G + 0.114 B, Cb = 128 − 0.168736 R −
  0.331264 G + 0.5 B, Cr = 128 + 0.5 R − 0.418688 G − 0.081312 B) in float, Y′ is restored, Cb/Cr
  are kept as decoded, and the inverse transform gives RGB (rounded, clipped):
  :mod:`lic_jax.utils.colour`. Chroma artifacts
  are therefore not removed.
* Large images (> ``TILE_ABOVE`` pixels) run in tiles of ``TILE`` px with a ``MARGIN`` px
  overlap — more than the receptive-field radius of both networks (ARCNN 9 px, ARCNN+ASPP
  27 px), so tiling does not change the output.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..utils.colour import rgb_to_ycbcr, ycbcr_to_rgb
from .jpeg import JpegInputError, read_jpeg

__all__ = ["MODELS", "ASSETS", "RestoreError", "available", "choose", "restore_image", "restore_file",
           "write_png_atomic"]

MODELS = ("arcnn", "arcnn-aspp")
ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "arcnn")
TILE_ABOVE, TILE, MARGIN = 2 ** 21, 512, 32


class RestoreError(ValueError):
    """A one-line error of ``lic restore``."""


def available(model: str, weights_dir: str | None = None) -> dict[int, str]:
    """{QF: path stem} of the shipped grey weights of ``model``."""
    if model not in MODELS:
        raise RestoreError(f"unknown restoration model {model!r}; expected {' or '.join(MODELS)}")
    d = weights_dir or ASSETS
    out = {}
    if os.path.isdir(d):
        pat = re.compile(rf"^{re.escape(model)}-y-qf(\d+)\.msgpack$")
        for n in os.listdir(d):
            m = pat.match(n)
            if m and os.path.exists(os.path.join(d, n[: -len(".msgpack")] + ".json")):
                out[int(m.group(1))] = os.path.join(d, n[: -len(".msgpack")])
    return dict(sorted(out.items()))


def choose(model: str, qf: int, weights_dir: str | None = None) -> tuple[int, str]:
    """(trained QF, path stem) of the shipped model nearest to ``qf``."""
    have = available(model, weights_dir)
    if not have:
        raise RestoreError(f"no shipped {model} weights in {weights_dir or ASSETS}")
    q = min(have, key=lambda k: (abs(k - qf), k))
    return q, have[q]


def _restore_plane_tiled(r, params, y: np.ndarray) -> np.ndarray:
    from .train import restore_plane

    h, w = y.shape[:2]
    if h * w <= TILE_ABOVE:
        return restore_plane(r, params, y)
    out = np.empty(y.shape, np.float64)
    for ty in range(0, h, TILE):
        for tx in range(0, w, TILE):
            y0, x0 = max(ty - MARGIN, 0), max(tx - MARGIN, 0)
            y1, x1 = min(ty + TILE + MARGIN, h), min(tx + TILE + MARGIN, w)
            t = restore_plane(r, params, y[y0:y1, x0:x1])
            out[ty:min(ty + TILE, h), tx:min(tx + TILE, w)] = t[ty - y0:ty - y0 + min(TILE, h - ty),
                                                                 tx - x0:tx - x0 + min(TILE, w - tx)]
    return out


def restore_image(decoded: np.ndarray, r, params) -> np.ndarray:
    """Restore a decoded JPEG (uint8 (H, W) grey or (H, W, 3) RGB) with a grey model → uint8."""
    a = np.asarray(decoded)
    if r.colour != "y":
        raise RestoreError("lic restore runs grey (Y') models")
    if a.ndim == 2:
        out = _restore_plane_tiled(r, params, a)
    elif a.ndim == 3 and a.shape[2] == 3:
        ycc = rgb_to_ycbcr(a)
        ycc[..., 0] = _restore_plane_tiled(r, params, ycc[..., 0])
        out = ycbcr_to_rgb(ycc)
    else:
        raise RestoreError(f"expected a grey or RGB image, got shape {a.shape}")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def restore_file(path, model: str = "arcnn", qf: int | None = None, weights_dir: str | None = None):
    """(decoded JPEG, restored uint8 image, info) for a JPEG file; ``info`` names the model used,
    the estimated QF and ``note`` (a sentence when the QF is not a trained one, else None)."""
    from .train import load_exported

    decoded, jinfo = read_jpeg(path)
    if qf is not None and (isinstance(qf, bool) or not 1 <= int(qf) <= 100):
        raise RestoreError(f"--qf must be in 1..100, got {qf}")
    target = jinfo["qf"] if qf is None else int(qf)
    q, stem = choose(model, target, weights_dir)
    r, params, _ = load_exported(stem)
    have = sorted(available(model, weights_dir))
    src = "given by --qf" if qf is not None else (
        "estimated from its quantisation tables" if jinfo["qf_exact"] else
        "estimated from its quantisation tables (non-standard tables, nearest IJG quality)")
    note = None if q == target else (f"no {model} model trained at QF {target} (trained: "
                                     f"{', '.join(map(str, have))}); using the nearest, QF {q}")
    info = {**jinfo, "qf_source": src, "model": os.path.basename(stem), "model_qf": q, "note": note}
    return decoded, restore_image(decoded, r, params), info


def write_png_atomic(img: np.ndarray, out_path: str):
    """Write ``img`` as PNG to ``out_path`` via a temporary file in the same folder + rename, so
    an error never leaves a partial file."""
    from PIL import Image

    d = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(d):
        raise RestoreError(f"output folder does not exist: {d}")
    tmp = os.path.join(d, f".{os.path.basename(out_path)}.tmp{os.getpid()}")
    try:
        Image.fromarray(np.asarray(img)).save(tmp, format="PNG")
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_ = JpegInputError  # re-exported for callers catching input errors
