"""Selective detail decoding of a region (akutsu2020, issue 20; ``lic decompress --detail-roi``,
docs/AKUTSU.md "Codec").

The bitstream is the file's, unchanged: ŷ is decoded as usual, G_m runs on the whole ŷ, and G_s
runs only on the latent crop that covers the ROI plus G_s's exact receptive-field margin
(:func:`lic_jax.models.akutsu2020.detail_latent_interval`, clamped to the latent). The fused image
(eq. 1) replaces G_m's output inside the ROI only; outside it the image is the main decode. This
equals the full ``--detail`` decode inside the ROI because G_s's channel attention is local
(``detail_ca='local'``, the default): with the paper's global variance pooling
(``detail_ca='global'``) every output pixel reads the whole latent and the region decode is refused.
"""

from __future__ import annotations

import jax
import numpy as np

from . import pixels
from . import tiling as _tiling
from ..models.base import pad_amounts


@jax.jit
def _fuse(x_det, x_main, logit):
    from ..models.akutsu2020 import fuse

    return fuse(x_det, x_main, jax.nn.sigmoid(logit))  # eq. 1, as Akutsu2020.synthesis_fused

__all__ = ["parse_roi", "check_roi", "roi_latent_window", "detail_roi_synthesis", "decode_detail_roi"]


def parse_roi(text: str) -> tuple[int, int, int, int]:
    """``'x,y,w,h'`` (image pixels, integers) → (x, y, w, h); malformed text is a ValueError."""
    parts = str(text).split(",")
    try:
        if len(parts) != 4:
            raise ValueError
        x, y, w, h = (int(p.strip()) for p in parts)
    except ValueError:
        raise ValueError(f"--detail-roi must be x,y,w,h (four integers, image pixels), got {text!r}") from None
    return x, y, w, h


def check_roi(roi, height: int, width: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) inside a ``height``×``width`` image with w, h ≥ 1, else a ValueError."""
    x, y, w, h = roi
    if w < 1 or h < 1:
        raise ValueError(f"--detail-roi {x},{y},{w},{h} is empty (w and h must be ≥ 1)")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"--detail-roi {x},{y},{w},{h} is not inside the {width}x{height} image")
    return x, y, w, h


def _model_check(model):
    ca = getattr(model, "detail_ca", None)
    if ca is None:
        raise ValueError(f"--detail-roi: {type(model).__name__} has no selective detail decoder")
    if ca != "local":
        raise ValueError(f"--detail-roi needs G_s with local channel attention; this model has detail_ca={ca!r} "
                         f"(whole-map variance: every pixel reads the whole latent)")


def roi_latent_window(model, roi, height: int, width: int, shrink: int = 0):
    """The latent window ((r0, r1), (c0, c1)) G_s needs for the ROI (x, y, w, h) of a
    ``height``×``width`` image, and the ROI in padded-image pixels ((py0, py1), (px0, px1)).
    ``shrink`` (tests only): the margin that many latents smaller per side (no longer exact)."""
    from ..models.akutsu2020 import detail_latent_interval

    _model_check(model)
    x, y, w, h = check_roi(roi, height, width)
    ds = model.downsampling
    (t, b), (l, r) = pad_amounts(height, width, ds)
    hp, wp = height + t + b, width + l + r
    stride = 16  # G_s upsamples ×16
    py, px = (y + t, y + t + h), (x + l, x + l + w)
    rows = detail_latent_interval(*py, hp // stride, model.blocks, model.detail_ca, shrink=shrink)
    cols = detail_latent_interval(*px, wp // stride, model.blocks, model.detail_ca, shrink=shrink)
    return (rows, cols), (py, px)


def detail_roi_synthesis(codec, y_hat, roi, height: int, width: int, shrink: int = 0, stats: dict | None = None):
    """ŷ (H', W', M) of a ``height``×``width`` image → the padded (1, Hp, Wp, 3) decode with
    G_s fused inside ``roi`` only (G_m on the whole ŷ, G_s on :func:`roi_latent_window`'s crop).
    ``stats``: a dict that receives ``window`` ((r0, r1), (c0, c1)) and ``detail_latents`` (rows, cols)."""
    y_hat = np.asarray(y_hat, np.float32)
    (rows, cols), (py, px) = roi_latent_window(codec.model, roi, height, width, shrink)
    x_main = np.array(_tiling.synthesise(codec, y_hat, None, "synthesis_main"))  # (1, Hp, Wp, 3), whole ŷ
    crop = y_hat[None, rows[0]:rows[1], cols[0]:cols[1]]
    x_det, logit = codec._fns.synthesis("synthesis_detail")(codec._dev_vars, jax.device_put(crop, codec._dev))
    oy, ox = py[0] - 16 * rows[0], px[0] - 16 * cols[0]  # the ROI inside G_s's output
    sl = (slice(None), slice(oy, oy + py[1] - py[0]), slice(ox, ox + px[1] - px[0]))
    region = (slice(None), slice(*py), slice(*px))
    x_main[region] = np.asarray(_fuse(np.asarray(x_det)[sl], x_main[region], np.asarray(logit)[sl]))
    if stats is not None:
        stats.update(window=(rows, cols), detail_latents=(rows[1] - rows[0], cols[1] - cols[0]))
    return x_main


def decode_detail_roi(codec, data: bytes, roi, output: str = "uint8", max_pixels: int | None = None,
                      shrink: int = 0, stats: dict | None = None):
    """``.lic`` bytes → the image with selective detail decoding inside ``roi`` = (x, y, w, h) only
    (module docstring; :func:`detail_roi_synthesis`). ``output``: 'uint8' or 'float' (as
    ``Codec.decompress``)."""
    if output not in ("uint8", "float"):
        raise ValueError(f"output must be 'uint8', 'float', got {output!r}")
    _model_check(codec.model)
    _, lat, header = codec.decode(data, "latents", max_pixels)
    check_roi(roi, header.height, header.width)
    x = detail_roi_synthesis(codec, lat.y_hat, roi, header.height, header.width, shrink, stats)
    return pixels.finish_image(x, header.height, header.width, header.channels, output)
