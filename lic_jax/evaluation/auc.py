"""Area under the quality–bpp curve (Toderici et al. 2017's figure of merit; SYSTEMS.md §12.5).

    AUC = ∫_{lo}^{hi} q̄(b) db,   [lo, hi] = [0.125, 2.0] bpp,

q̄ = the dataset-average MS-SSIM (RGB, in [0, 1]) or PSNR-HVS (dB), averaged over images **at a
fixed iteration count** (rate averaged the same way) before integrating; linear interpolation
between the measured points, trapezoid rule (:func:`lic_jax.evaluation.bd.auc`, exact for the
piecewise-linear curve). TFC's published Toderici-2017 Kodak MS-SSIM curve gives 1.8116 and its
JPEG 4:2:0 curve 1.7947 (held constant below its first point, 0.1697 bpp); seed 003's table says
1.8098 (best GRU) and 1.7998 (JPEG 4:2:0).

Range handling: a curve that does not cover [lo, hi] is **refused** (:class:`AUCRangeError`)
unless the caller asks for ``extrapolate="clamp"`` (hold the first / last quality — for a codec
whose quality rises with rate this under-states its AUC above its last point and over-states it
below its first) or ``"linear"``; :func:`progressive_aucs` reports, besides the strict value, the
covered interval, the clamped value (flagged) and the AUC over the interval the curve and the
anchors have in common, so nothing is silently extrapolated.

For a progressive model, two rates exist: the real file bytes (``bpp``, bit context model
applied) and the raw binary code (``raw-bpp`` = 0.125 bpp per iteration on Kodak, what the
paper's curves use: 16 iterations = 0.125 … 2.0 bpp exactly).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from .bd import BDError
from .bd import auc as _auc

__all__ = ["AUCRangeError", "auc", "auc_strict", "covered", "mean_curve", "progressive_aucs", "AUC_RANGE"]

AUC_RANGE = (0.125, 2.0)


class AUCRangeError(BDError):
    """The curve does not cover the AUC interval."""


def auc(rate, quality, lo: float = AUC_RANGE[0], hi: float = AUC_RANGE[1], extrapolate: str = "error") -> float:
    """Trapezoid AUC of a (rate, quality) curve over [lo, hi]; see the module docstring. Raises
    :class:`AUCRangeError` when ``extrapolate="error"`` and the curve does not cover [lo, hi]."""
    r = np.asarray(rate, np.float64).ravel()
    if extrapolate == "error" and r.size >= 2 and (lo < r.min() or hi > r.max()):
        raise AUCRangeError(
            f"the curve covers [{r.min():.4g}, {r.max():.4g}] bpp, not the AUC interval [{lo:g}, {hi:g}] bpp; "
            "refusing to extrapolate (pass extrapolate='clamp' or 'linear', or integrate over the covered range)")
    return _auc(rate, quality, lo, hi, extrapolate=extrapolate)


auc_strict = auc


def covered(rate) -> tuple[float, float]:
    r = np.asarray(rate, np.float64)
    return float(r.min()), float(r.max())


def mean_curve(rows: Sequence[Mapping], rate_key: str = "bpp", metric: str = "ms-ssim-rgb",
               group_key: str = "iteration") -> tuple[np.ndarray, np.ndarray]:
    """Average per-image rows at a fixed ``group_key`` (iteration count): (mean rate, mean metric)
    per group, ordered by the group value. Every group must hold the same images."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(r[group_key], []).append(r)
    names = None
    rates, quals = [], []
    for g in sorted(groups):
        sel = groups[g]
        n = sorted(str(r.get("image", i)) for i, r in enumerate(sel))
        if names is not None and n != names:
            raise ValueError(f"{group_key}={g} holds other images than the first group; cannot average per curve")
        names = n
        rates.append(float(np.mean([float(r[rate_key]) for r in sel])))
        quals.append(float(np.mean([float(r[metric]) for r in sel])))
    return np.asarray(rates), np.asarray(quals)


def progressive_aucs(rate, quality, anchors: Mapping[str, tuple] | None = None,
                     lo: float = AUC_RANGE[0], hi: float = AUC_RANGE[1]) -> dict:
    """All the AUC readings of one curve: ``strict`` (None + ``error`` when the curve does not cover
    [lo, hi]), ``clamped`` (np.interp-style hold, always given, flagged by ``extrapolated``),
    ``covered`` = [first, last] rate, and — when ``anchors`` ({name: (rate, quality)}) are given —
    ``common`` = the AUC of this curve and of each anchor over [max(lo, first), min(hi, last)]."""
    out: dict = {"range": [lo, hi], "covered": list(covered(rate))}
    try:
        out["strict"] = auc(rate, quality, lo, hi)
        out["extrapolated"] = False
    except AUCRangeError as e:
        out["strict"] = None
        out["error"] = str(e)
        out["extrapolated"] = True
    out["clamped"] = _auc(rate, quality, lo, hi, extrapolate="clamp")
    if anchors:
        a_lo, a_hi = max(lo, out["covered"][0]), min(hi, out["covered"][1])
        if a_hi > a_lo:
            common = {"range": [a_lo, a_hi], "self": _auc(rate, quality, a_lo, a_hi)}
            for name, (ar, aq) in anchors.items():
                try:
                    common[name] = auc(ar, aq, a_lo, a_hi)
                except AUCRangeError:
                    common[name] = _auc(ar, aq, a_lo, a_hi, extrapolate="clamp")
                    common[name + " (clamped)"] = True
            out["common"] = common
    return out


def _fmt(v, digits=4):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"
