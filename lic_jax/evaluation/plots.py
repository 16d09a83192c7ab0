"""Rate-distortion plots (matplotlib, Agg backend): PSNR and MS-SSIM (dB) against bpp."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .results import RDCurve, resolve_metric

__all__ = ["plot_rd", "legend_labels", "AXIS_LABELS"]

AXIS_LABELS = {
    "psnr-rgb": "PSNR RGB [dB]",
    "psnr-y": "PSNR Y′ (BT.601) [dB]",
    "ms-ssim-rgb": "MS-SSIM RGB",
    "ms-ssim-db-rgb": "MS-SSIM RGB [dB]  (−10·log10(1−MS-SSIM))",
    "psnr-hvs": "PSNR-HVS [dB]",
    "psnr-hvs-m": "PSNR-HVS-M [dB]",
}


_SEPARATORS = "_- "


def _distinguishers(keys: list[str]) -> list[str]:
    """What tells apart strings sharing a prefix and a suffix: each with their longest common prefix and
    suffix removed, both cut back to a separator (``_``, ``-``, space) so that words stay whole."""
    pre = os.path.commonprefix(keys)
    pre = pre[:max(pre.rfind(ch) for ch in _SEPARATORS) + 1]
    rest = [k[len(pre):] for k in keys]
    suf = os.path.commonprefix([r[::-1] for r in rest])[::-1]
    cuts = [suf.find(ch) for ch in _SEPARATORS if ch in suf]
    suf = suf[min(cuts):] if cuts else ""
    return [r[:len(r) - len(suf)] if suf else r for r in rest]


def legend_labels(curves: Sequence[RDCurve]) -> list[str]:
    """One legend label per curve: its name, and where several curves share a name (CompressAI's MSE and
    MS-SSIM results of one model are both named after the model), what tells their source files apart
    (their stems' differing middle: ``mse`` / ``ms-ssim``), else their descriptions, else their ordinal."""
    labels = [c.name for c in curves]
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(curves):
        groups.setdefault(c.name, []).append(i)
    for name, idx in groups.items():
        if len(idx) < 2:
            continue
        for keys in ([os.path.splitext(os.path.basename(curves[i].source or ""))[0] for i in idx],
                     [curves[i].description for i in idx],
                     [f"#{n + 1}" for n in range(len(idx))]):
            if all(keys) and len(set(keys)) == len(keys):
                tags = _distinguishers(keys)
                if not (all(tags) and len(set(tags)) == len(tags)):
                    tags = keys
                for i, tag in zip(idx, tags):
                    labels[i] = f"{name} ({tag})"
                break
    return labels


def plot_rd(curves: Sequence[RDCurve], path, anchors: Sequence[RDCurve] = (),
            metrics: Sequence[str] = ("psnr-rgb", "ms-ssim-db-rgb"), title: str | None = None,
            xlim: tuple[float, float] | None = None, dpi: int = 120) -> str:
    """One panel per metric; ``curves`` drawn solid with markers, ``anchors`` dashed. Curves lacking a
    metric are left out of that panel. Default x-range: 0 … 1.1 × the largest bpp of ``curves`` (or of
    the anchors if there are no curves). Returns the path written."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = [resolve_metric(m) for m in metrics]
    fig, axes = plt.subplots(1, len(keys), figsize=(6.2 * len(keys), 4.8), squeeze=False)
    main_bpp = [b for c in curves for b in c.bpp if np.isfinite(b)]
    all_bpp = main_bpp or [b for c in anchors for b in c.bpp if np.isfinite(b)]
    if xlim is None and all_bpp:
        xlim = (0.0, 1.1 * max(all_bpp))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = legend_labels(list(curves) + list(anchors))
    for ax, key in zip(axes[0], keys):
        ymin, ymax = [], []
        for i, c in enumerate(list(curves) + list(anchors)):
            is_anchor = i >= len(curves)
            if not c.has(key):
                continue
            b, v = c.points(key)
            order = np.argsort(b)
            b, v = b[order], v[order]
            color = cycle[i % len(cycle)]
            if is_anchor:
                ax.plot(b, v, "--", color=color, lw=1.4, label=labels[i], alpha=0.9)
            else:
                ax.plot(b, v, "-o", color=color, lw=2.0, ms=4.5, label=labels[i])
            if xlim is not None:
                sel = (b >= xlim[0]) & (b <= xlim[1])
                if sel.any():
                    ymin.append(v[sel].min())
                    ymax.append(v[sel].max())
        if xlim is not None:
            ax.set_xlim(*xlim)
        if ymin:
            pad = 0.04 * (max(ymax) - min(ymin) or 1.0)
            ax.set_ylim(min(ymin) - pad, max(ymax) + pad)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(AXIS_LABELS.get(key, key))
        ax.grid(True, alpha=0.35)
        ax.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
