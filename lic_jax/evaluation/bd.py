"""Bjøntegaard deltas (VCEG-M33, 2001) and the area-under-curve figure of merit (Toderici 2017).

BD-rate: with quality Q (PSNR in dB, or MS-SSIM in dB) on the horizontal axis, fit
``r(Q) = log10(rate)`` for the anchor A and the test curve B, integrate both over the quality
interval where the two curves overlap, and report ``10^{mean(r_B − r_A)} − 1`` in percent
(negative = the test curve needs fewer bits for the same quality). BD-PSNR (more generally
BD-quality) swaps the axes: ``Q(log10 rate)`` integrated over the overlapping log-rate interval,
mean ``Q_B − Q_A`` in dB.

Two interpolants:

* ``"pchip"`` (default) — piecewise-cubic Hermite (Fritsch–Carlson, ``scipy.interpolate.
  PchipInterpolator``) through all points, integrated exactly. This is the "piecewise cubic"
  variant used by modern JVET/VCEG tools; it agrees with the PyPI ``bjontegaard`` package
  (checked in ``shared/docs/PERF_ANCHORS.md`` §1.1).
* ``"cubic"`` — the classic VCEG-M33 least-squares cubic polynomial (``np.polyfit(Q, log10 R,
  3)``), integrated analytically. With the original four points per curve that is the paper's
  method; long curves (JPEG sweeps of ~20 points spanning 20 dB) are not well described by one
  cubic, so by default (``cubic_window="overlap"``) the fit uses only the points inside the
  overlap interval plus one bracketing point on each side (as ``rd_anchors.py`` in
  PERF_ANCHORS.md). ``cubic_window="all"`` fits every point.

Curves are sorted by rate; exactly repeated rates are removed (first kept). A curve must have at
least 4 distinct points and quality strictly increasing with rate; otherwise
:class:`NonMonotoneCurveError` is raised. Curves whose quality (or rate) ranges do not overlap
raise :class:`NoOverlapError`.
"""

from __future__ import annotations


from typing import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = [
    "BDError",
    "NoOverlapError",
    "NonMonotoneCurveError",
    "bd_rate",
    "bd_psnr",
    "bd_quality",
    "prepare_curve",
    "auc",
]

METHODS = ("pchip", "cubic")


class BDError(ValueError):
    """A Bjøntegaard computation is not defined for these curves."""


class NoOverlapError(BDError):
    """The two curves' quality (or rate) intervals do not overlap."""


class NonMonotoneCurveError(BDError):
    """Quality does not increase strictly with rate (or fewer than 4 distinct points)."""


def prepare_curve(rate: Sequence[float], quality: Sequence[float], name: str = "curve", min_points: int = 4):
    """Sort by rate, drop exactly repeated rates, check positivity, finiteness and monotonicity.

    Returns ``(rate, quality)`` as float64 arrays.
    """
    r = np.asarray(rate, np.float64).ravel()
    q = np.asarray(quality, np.float64).ravel()
    if r.shape != q.shape:
        raise BDError(f"{name}: {r.size} rates but {q.size} quality values")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise BDError(f"{name}: rates and quality values must be finite")
    if np.any(r <= 0):
        raise BDError(f"{name}: rates must be positive (log-rate axis)")
    order = np.argsort(r, kind="stable")
    r, q = r[order], q[order]
    keep = np.concatenate([[True], np.diff(r) > 0])
    r, q = r[keep], q[keep]
    if r.size < min_points:
        raise NonMonotoneCurveError(f"{name}: needs at least {min_points} distinct rate points, has {r.size}")
    dq = np.diff(q)
    if np.any(dq <= 0):
        i = int(np.argmax(dq <= 0))
        raise NonMonotoneCurveError(
            f"{name}: quality is not strictly increasing with rate: {q[i]:.4f} at rate {r[i]:.4g} → "
            f"{q[i + 1]:.4f} at rate {r[i + 1]:.4g} (point {i + 1} of {r.size}, sorted by rate)"
        )
    return r, q


def _overlap(xa: np.ndarray, xb: np.ndarray, what: str):
    lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
    if not hi > lo:
        raise NoOverlapError(
            f"the curves' {what} ranges do not overlap: anchor [{xa.min():.4g}, {xa.max():.4g}], "
            f"test [{xb.min():.4g}, {xb.max():.4g}]"
        )
    return lo, hi


def _window(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Indexes of the points in [lo, hi] plus one bracketing point on each side (x sorted)."""
    i0 = max(int(np.searchsorted(x, lo, side="right")) - 1, 0)
    i1 = min(int(np.searchsorted(x, hi, side="left")) + 1, x.size)
    idx = np.arange(i0, i1)
    if idx.size < 4:  # a cubic needs 4 points: widen symmetrically where possible
        while idx.size < 4 and (idx[0] > 0 or idx[-1] < x.size - 1):
            if idx[0] > 0:
                idx = np.concatenate([[idx[0] - 1], idx])
            if idx.size < 4 and idx[-1] < x.size - 1:
                idx = np.concatenate([idx, [idx[-1] + 1]])
    return idx


def _mean_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str, cubic_window: str) -> float:
    """(1/(hi−lo)) ∫_lo^hi f(t) dt for the interpolant f of the points (x, y), x increasing."""
    if method == "pchip":
        return float(PchipInterpolator(x, y).integrate(lo, hi)) / (hi - lo)
    if method == "cubic":
        idx = np.arange(x.size) if cubic_window == "all" else _window(x, lo, hi)
        p = np.polyint(np.polyfit(x[idx], y[idx], 3))
        return float(np.polyval(p, hi) - np.polyval(p, lo)) / (hi - lo)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _check(method, cubic_window):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if cubic_window not in ("overlap", "all"):
        raise ValueError(f"cubic_window must be 'overlap' or 'all', got {cubic_window!r}")


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "pchip",
            cubic_window: str = "overlap", interval: tuple[float, float] | None = None) -> float:
    """BD-rate of the test curve against the anchor, in percent (negative = bit savings).

    ``interval`` optionally restricts the quality window (it is intersected with the overlap).
    """
    _check(method, cubic_window)
    ra, qa = prepare_curve(anchor_rate, anchor_quality, "anchor")
    rb, qb = prepare_curve(test_rate, test_quality, "test")
    lo, hi = _overlap(qa, qb, "quality")
    if interval is not None:
        lo, hi = max(lo, interval[0]), min(hi, interval[1])
        if not hi > lo:
            raise NoOverlapError(f"the requested quality interval {interval} lies outside the curves' overlap")
    la, lb = np.log10(ra), np.log10(rb)
    ia = _mean_integral(qa, la, lo, hi, method, cubic_window)
    ib = _mean_integral(qb, lb, lo, hi, method, cubic_window)
    return (10.0 ** (ib - ia) - 1.0) * 100.0


def bd_quality(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "pchip",
               cubic_window: str = "overlap") -> float:
    """BD-quality (BD-PSNR for PSNR curves): mean quality difference test − anchor at equal rate."""
    _check(method, cubic_window)
    ra, qa = prepare_curve(anchor_rate, anchor_quality, "anchor")
    rb, qb = prepare_curve(test_rate, test_quality, "test")
    la, lb = np.log10(ra), np.log10(rb)
    lo, hi = _overlap(la, lb, "log-rate")
    return _mean_integral(lb, qb, lo, hi, method, cubic_window) - _mean_integral(la, qa, lo, hi, method, cubic_window)


bd_psnr = bd_quality


def auc(rate, quality, lo: float = 0.125, hi: float = 2.0, extrapolate: str = "error") -> float:
    """Area under the quality-vs-bpp curve over [lo, hi] (Toderici et al. 2017, seed 003).

    Linear interpolation between the measured points (sorted by rate, exactly repeated rates
    averaged), trapezoid rule (exact for the piecewise-linear curve); quality is MS-SSIM (RGB,
    in [0, 1]) or PSNR-HVS (dB). ``extrapolate`` decides what happens when the curve does not
    cover [lo, hi]: ``"error"`` (default) raises :class:`BDError`; ``"clamp"`` holds the first /
    last measured quality constant beyond the measured range (``np.interp``'s behaviour);
    ``"linear"`` extends the first / last segment.
    """
    r = np.asarray(rate, np.float64).ravel()
    q = np.asarray(quality, np.float64).ravel()
    if r.shape != q.shape or r.size < 2:
        raise BDError("auc needs at least two (rate, quality) points of equal length")
    if not hi > lo:
        raise BDError(f"empty AUC interval [{lo}, {hi}]")
    order = np.argsort(r, kind="stable")
    r, q = r[order], q[order]
    ur, inv = np.unique(r, return_inverse=True)
    uq = np.bincount(inv, weights=q) / np.bincount(inv)
    r, q = ur, uq
    if r.size < 2:
        raise BDError("auc needs at least two distinct rates")
    if lo < r[0] or hi > r[-1]:
        if extrapolate == "error":
            raise BDError(
                f"the curve covers [{r[0]:.4g}, {r[-1]:.4g}] bpp, not the AUC interval [{lo}, {hi}]; "
                "pass extrapolate='clamp' or 'linear' to extend it"
            )
        if extrapolate == "linear":
            def ext(x, i, j):
                return q[i] + (q[j] - q[i]) * (x - r[i]) / (r[j] - r[i])
            if lo < r[0]:
                r, q = np.concatenate([[lo], r]), np.concatenate([[ext(lo, 0, 1)], q])
            if hi > r[-1]:
                r, q = np.concatenate([r, [hi]]), np.concatenate([q, [ext(hi, -2, -1)]])
        elif extrapolate != "clamp":
            raise ValueError(f"extrapolate must be 'error', 'clamp' or 'linear', got {extrapolate!r}")
    inside = (r > lo) & (r < hi)
    xs = np.concatenate([[lo], r[inside], [hi]])
    ys = np.interp(xs, r, q)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))


def ms_ssim_to_db(v):
    """−10·log10(1 − MS-SSIM) (works on scalars and arrays)."""
    v = np.asarray(v, np.float64)
    with np.errstate(divide="ignore"):
        out = -10.0 * np.log10(1.0 - v)
    return float(out) if out.ndim == 0 else out


__all__.append("ms_ssim_to_db")

