"""Evaluate RD points (codec × quality) on a data set → a CompressAI-format curve + per-image rows.

``evaluate(points, dataset)`` runs every point on every image (points outer, so each model is
loaded once), computes the metrics of :mod:`lic_jax.evaluation.image_metrics`, and aggregates per
point the **mean over images** of each per-image value (CompressAI's rule: the mean of per-image
PSNRs, not the PSNR of the mean MSE) — except ``ms-ssim-db-rgb``, which is −10·log10(1 − mean
MS-SSIM) so that it matches the dB values derived from published curves; the per-image CSV has
the per-image dB.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, Callable, Sequence

import numpy as np

from .image_metrics import DEFAULT_METRICS, compute_metrics, ms_ssim_db
from .results import CURVE_KEYS, RDCurve

__all__ = ["Point", "evaluate", "aggregate"]


@dataclasses.dataclass
class Point:
    """One RD point: a label (``q3``, ``lambda=0.0130``, a checkpoint path, …), its quality parameter,
    and a factory returning the codec (called once, when the point is evaluated). ``lmbda``: the λ
    of the point (variable-rate models; also informational for fixed-rate ones), recorded in the
    per-image rows and as the curve's ``lmbda`` list."""

    label: str
    quality: float | int | None
    make_codec: Callable[[], Any]
    info: dict = dataclasses.field(default_factory=dict)
    lmbda: float | None = None


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)
    except Exception:  # noqa: BLE001 - tqdm missing or broken: no bar
        return None


def aggregate(rows: Sequence[dict], keys=None) -> dict[str, float]:
    """Per-point means of per-image rows (NaN-free values only; NaN if none)."""
    keys = keys or [k for k in CURVE_KEYS if k not in ("ms-ssim-db-rgb", "ms-ssim-db-rgb@mask")]
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if k in r and r[k] is not None]
        if not vals:
            continue
        arr = np.asarray(vals, np.float64)
        arr = arr[np.isfinite(arr)]
        out[k] = float(arr.mean()) if arr.size else math.nan
    for m in ("ms-ssim-rgb", "ms-ssim-rgb@mask"):  # dB of the mean MS-SSIM
        if m in out:
            out[m.replace("ms-ssim", "ms-ssim-db")] = ms_ssim_db(out[m])
    return out


def evaluate(points: Sequence[Point], dataset, metrics=DEFAULT_METRICS, progress: bool = True,
             name: str | None = None, description: str | None = None, cache_images: bool | None = None,
             on_point: Callable[[Point, dict], None] | None = None) -> tuple[RDCurve, list[dict]]:
    """Run ``points`` on ``dataset`` (a :class:`~lic_jax.evaluation.datasets.Dataset`).

    Returns ``(curve, rows)``: the curve has one entry per point, in the given order; rows are the
    per-image records (``point``, ``quality``, ``lmbda`` (points that have one), ``image``, ``height``,
    ``width``, ``bytes``, ``bpp``, metrics, ``encoding_time``, ``decoding_time``, and the codec's extras).
    """
    n_img = len(dataset)
    if n_img == 0:
        raise ValueError("the data set is empty")
    if cache_images is None:
        cache_images = n_img <= 64
    cache: dict[int, np.ndarray] = {}

    def image(i):
        if i in cache:
            return cache[i]
        a = dataset.loaders[i]()
        if cache_images:
            cache[i] = a
        return a

    bar = _progress(len(points) * n_img, progress)
    rows: list[dict] = []
    per_point: list[dict] = []
    codec_name, codec_desc = None, None
    try:
        for p in points:
            if bar is not None:
                bar.set_description(str(p.label))
            codec = p.make_codec()
            codec_name = codec_name or getattr(codec, "name", None)
            codec_desc = codec_desc or getattr(codec, "description", None)
            prow = []
            for i in range(n_img):
                img = image(i)
                h, w = img.shape[:2]
                out = codec.run(img)
                r: dict[str, Any] = {"point": p.label, "quality": p.quality}
                if p.lmbda is not None:
                    r["lmbda"] = float(p.lmbda)
                r.update({"image": dataset.names[i], "height": h, "width": w, "bytes": out.nbytes,
                          "bpp": out.bits / (h * w)})
                mask = None if dataset.masks is None else dataset.masks[i](img.shape)
                if mask is not None:
                    r["mask-fraction"] = float(np.mean(mask))
                r.update(compute_metrics(img, out.rec, metrics, mask))
                r["encoding_time"] = out.enc_time
                r["decoding_time"] = out.dec_time
                r.update(out.extra)
                prow.append(r)
                if bar is not None:
                    bar.update(1)
            rows.extend(prow)
            agg = aggregate(prow)
            per_point.append(agg)
            if on_point is not None:
                on_point(p, agg)
            del codec
    finally:
        if bar is not None:
            bar.close()

    keys = [k for k in CURVE_KEYS if any(k in a for a in per_point)]
    metrics_lists = {k: [a.get(k, math.nan) for a in per_point] for k in keys if k != "bpp"}
    qualities = [p.quality for p in points]
    if any(q is not None for q in qualities):
        metrics_lists["quality"] = qualities
    if any(p.lmbda is not None for p in points):
        metrics_lists["lmbda"] = [None if p.lmbda is None else float(p.lmbda) for p in points]
    curve = RDCurve(
        name or codec_name or "codec",
        [a["bpp"] for a in per_point],
        metrics_lists,
        description or codec_desc or "",
        None,
        {"dataset": getattr(dataset, "name", ""), "dataset_source": getattr(dataset, "source", ""),
         "num_images": n_img, "points": [p.label for p in points],
         "point_info": [p.info for p in points] if any(p.info for p in points) else None,
         "aggregation": "mean over images of per-image values; ms-ssim-db-rgb = -10*log10(1 - mean ms-ssim-rgb)"},
    )
    if curve.meta.get("point_info") is None:
        curve.meta.pop("point_info")
    return curve, rows
