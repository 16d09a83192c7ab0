"""PSNR-B: Yim & Bovik, "Quality assessment of deblocked images", IEEE TIP 20(1), 2011, §III.

For a test (distorted / deblocked) image y of N_H columns × N_V rows and block size B (8 for JPEG):

* H = the horizontally neighbouring pixel pairs (columns j, j+1); H_B ⊂ H the pairs that straddle a
  vertical block boundary (j + 1 ≡ 0 mod B), H_B^c = H \\ H_B. V, V_B, V_B^c likewise for vertical
  pairs (rows i, i+1) across horizontal block boundaries.
* D_B   = [Σ_{H_B} (y_p − y_q)² + Σ_{V_B} (y_p − y_q)²] / (N_HB + N_VB)
  D_B^c = [Σ_{H_B^c} (y_p − y_q)² + Σ_{V_B^c} (y_p − y_q)²] / (N_HBc + N_VBc)
  with N_HB = N_V (N_H/B − 1), N_HBc = N_V (N_H − 1) − N_HB, N_VB = N_H (N_V/B − 1),
  N_VBc = N_H (N_V − 1) − N_VB (for sides that are multiples of B; otherwise the counts of
  the pairs that exist, which is what the slicing below counts).
* BEF(y) = η · [D_B(y) − D_B^c(y)],  η = log2 B / log2(min(N_H, N_V)) if D_B > D_B^c, else 0.
* MSE-B(x, y) = MSE(x, y) + BEF(y);  PSNR-B = 10 log10(255² / MSE-B).

Only the test image enters BEF. One block size (K = 1, B = 8) as for JPEG; colour images are
rated on one plane (callers pass Y′), as in the paper's grey-scale experiments.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["blocking_effect_factor", "psnr_b", "mse_b"]


def _plane(a, name) -> np.ndarray:
    a = np.asarray(a, np.float64)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"PSNR-B takes one plane (H, W) or (H, W, 1); {name} has shape {a.shape}")
    return a


def blocking_effect_factor(y, block: int = 8) -> float:
    """BEF of the test image ``y`` (Yim & Bovik 2011 eq. 5–8)."""
    y = _plane(y, "y")
    nv, nh = y.shape
    if min(nv, nh) < 2 or block < 2:
        raise ValueError(f"BEF needs an image of at least 2×2 and block >= 2, got {y.shape}, block {block}")
    dh = (y[:, 1:] - y[:, :-1]) ** 2  # pair (j, j+1) at index j
    dv = (y[1:, :] - y[:-1, :]) ** 2
    bh = (np.arange(nh - 1) + 1) % block == 0
    bv = (np.arange(nv - 1) + 1) % block == 0
    s_b = dh[:, bh].sum() + dv[bv, :].sum()
    n_b = dh[:, bh].size + dv[bv, :].size
    s_c = dh[:, ~bh].sum() + dv[~bv, :].sum()
    n_c = dh[:, ~bh].size + dv[~bv, :].size
    if n_b == 0 or n_c == 0:
        return 0.0
    d_b, d_c = s_b / n_b, s_c / n_c
    if d_b <= d_c:
        return 0.0
    eta = math.log2(block) / math.log2(min(nh, nv))
    return float(eta * (d_b - d_c))


def mse_b(x, y, block: int = 8) -> float:
    x, y = _plane(x, "x"), _plane(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"PSNR-B: shapes differ, {x.shape} vs {y.shape}")
    return float(np.mean((x - y) ** 2)) + blocking_effect_factor(y, block)


def psnr_b(x, y, block: int = 8, peak: float = 255.0) -> float:
    """PSNR-B of test image ``y`` against reference ``x`` (both one plane, pixel scale ``peak``)."""
    m = mse_b(x, y, block)
    return math.inf if m == 0 else 10.0 * math.log10(peak * peak / m)
