"""Markdown summary tables: BD-rates against chosen anchors and seed 003's AUC figures of merit."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .bd import BDError, auc, bd_rate
from .results import RDCurve

__all__ = ["summary_table", "bd_cell", "auc_cell"]


def bd_cell(anchor: RDCurve, test: RDCurve, metric: str) -> str:
    """``pchip (cubic)`` BD-rate in percent, or the reason it is undefined."""
    if not (anchor.has(metric) and test.has(metric)):
        return "–"
    ra, qa = anchor.points(metric)
    rb, qb = test.points(metric)
    try:
        p = bd_rate(ra, qa, rb, qb, "pchip")
        c = bd_rate(ra, qa, rb, qb, "cubic")
    except BDError as e:
        return "n/a (" + ("no overlap" if "overlap" in str(e) else "non-monotone" if "increasing" in str(e)
                         else "too few points") + ")"
    return f"{p:+.1f} % ({c:+.1f})"


def auc_cell(curve: RDCurve, metric: str, lo: float = 0.125, hi: float = 2.0, digits: int = 4) -> str:
    if not curve.has(metric):
        return "–"
    b, v = curve.points(metric)
    if b.size < 2:
        return "–"
    try:
        return f"{auc(b, v, lo, hi):.{digits}f}"
    except BDError:
        return f"{auc(b, v, lo, hi, extrapolate='clamp'):.{digits}f}†"


def summary_table(curves: Sequence[RDCurve], anchors: Mapping[str, RDCurve],
                  auc_range: tuple[float, float] = (0.125, 2.0)) -> str:
    """Markdown: one row per curve; BD-rate (PSNR-RGB and MS-SSIM dB) vs each anchor; AUCs."""
    lo, hi = auc_range
    head = ["curve", "points", "bpp range"]
    for an in anchors:
        head += [f"BD-rate PSNR vs {an}", f"BD-rate MS-SSIM dB vs {an}"]
    head += [f"MS-SSIM AUC [{lo:g}, {hi:g}]", "PSNR-HVS AUC", "PSNR-HVS-M AUC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in curves:
        b = np.asarray(c.bpp, float)
        b = b[np.isfinite(b)]
        row = [c.name, str(b.size), f"{b.min():.3f}–{b.max():.3f}" if b.size else "–"]
        for a in anchors.values():
            row += [bd_cell(a, c, "psnr-rgb"), bd_cell(a, c, "ms-ssim-db-rgb")]
        row += [auc_cell(c, "ms-ssim-rgb", lo, hi), auc_cell(c, "psnr-hvs", lo, hi, 2),
                auc_cell(c, "psnr-hvs-m", lo, hi, 2)]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("BD-rate: Bjøntegaard delta rate of the row's curve against the anchor, pchip interpolation "
                 "(classic cubic fit in parentheses); negative = fewer bits at equal quality. "
                 f"AUC: area under the quality–bpp curve over [{lo:g}, {hi:g}] bpp (trapezoid, linear "
                 "interpolation; Toderici et al. 2017); † = the curve does not span the interval and was held "
                 "constant beyond its end points.")
    return "\n".join(lines) + "\n"
