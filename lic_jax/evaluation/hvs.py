"""PSNR-HVS and PSNR-HVS-M (Egiazarian et al. 2006; Ponomarenko et al. 2007).

Definition (Ponomarenko's reference MATLAB ``psnrhvsm(img1, img2, wstep=8)``):

* both images are cut into 8×8 blocks on a grid of step ``wstep`` (8: non-overlapping; blocks
  that do not fit entirely are ignored) and each block is transformed with the orthonormal 2-D
  DCT-II (MATLAB ``dct2``);
* PSNR-HVS: the coefficient differences ``u = |D_A − D_B|`` are weighted by a fixed 8×8 CSF table
  and ``S = mean((u·CSF)²)`` over all coefficients of all blocks; PSNR-HVS = 10·log10(255²/S);
* PSNR-HVS-M additionally removes, from every non-DC coefficient, a contrast-masking threshold
  ``E/MaskCof[k,l]`` (``u ← max(u − E/MaskCof, 0)``). ``E`` is the larger of the two blocks'
  masking energies ``E(z) = sqrt(Σ_{AC} D_z²·MaskCof · δ(z)) / 32`` with
  ``δ(z) = Σ_{4 quadrants} V(quadrant) / V(z)`` and ``V(a) = var(a, ddof=1)·len(a)``
  (``δ = 0`` for a flat block);
* identical (or visually indistinguishable) images give 100000 dB, as the reference code.

The result does not depend on the intensity scale (both S and the thresholds scale with it), so
images may be given in [0, 255] or [0, 1] as long as ``peak`` matches.

Colour images: the reference operates on one grey plane. ``psnr_hvs_m`` converts RGB to Y′ with
BT.601 full-range weights (0.299, 0.587, 0.114), no rounding — the usual practice (e.g. TID2013's
published PSNR-HVS-M values are computed on luma).

Validated (tests/test_hvs.py::test_matches_octave_psnrhvsm, docs/EVALUATION.md §6) against values the
authors' psnrhvsm.m computes in GNU Octave, committed with provenance in tests/data/hvs_reference/:
agreement to 1e-12 dB.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dctn

__all__ = ["CSF", "MASK", "psnr_hvs_m", "psnr_hvs_hvsm", "hvs_errors", "rgb_to_luma"]

# 8×8 contrast-sensitivity weights of DCT coefficients (Egiazarian 2006), row = vertical frequency.
CSF = np.array([
    [1.608443, 2.339554, 2.573509, 1.608443, 1.072295, 0.643377, 0.504610, 0.421887],
    [2.144591, 2.144591, 1.838221, 1.354478, 0.989811, 0.443708, 0.428918, 0.467911],
    [1.838221, 1.979622, 1.608443, 1.072295, 0.643377, 0.451493, 0.372972, 0.459555],
    [1.838221, 1.513829, 1.169777, 0.887417, 0.504610, 0.295806, 0.321689, 0.415082],
    [1.429727, 1.169777, 0.695543, 0.459555, 0.378457, 0.236102, 0.249855, 0.334222],
    [1.072295, 0.735288, 0.467911, 0.402111, 0.317717, 0.247453, 0.227744, 0.279729],
    [0.525206, 0.402111, 0.329937, 0.295806, 0.249855, 0.212687, 0.214459, 0.254803],
    [0.357432, 0.279729, 0.270896, 0.262603, 0.229778, 0.257351, 0.249855, 0.259950],
])

# Contrast-masking weights of DCT coefficients (Ponomarenko 2007).
MASK = np.array([
    [0.390625, 0.826446, 1.000000, 0.390625, 0.173611, 0.062500, 0.038447, 0.026874],
    [0.694444, 0.694444, 0.510204, 0.277008, 0.147929, 0.029727, 0.027778, 0.033058],
    [0.510204, 0.591716, 0.390625, 0.173611, 0.062500, 0.030779, 0.021004, 0.031888],
    [0.510204, 0.346021, 0.206612, 0.118906, 0.038447, 0.013212, 0.015625, 0.026015],
    [0.308642, 0.206612, 0.073046, 0.031888, 0.021626, 0.008417, 0.009426, 0.016866],
    [0.173611, 0.081633, 0.033058, 0.024414, 0.015242, 0.009246, 0.007831, 0.011815],
    [0.041649, 0.024414, 0.016437, 0.013212, 0.009426, 0.006830, 0.006944, 0.009803],
    [0.019290, 0.011815, 0.011080, 0.010412, 0.007972, 0.010000, 0.009426, 0.010203],
])

_IDENTICAL_DB = 100000.0  # the reference's value for S == 0


def rgb_to_luma(img) -> np.ndarray:
    """Y′ (BT.601 full range) of an (H, W, 3) image as float64; (H, W) input is returned as float64."""
    a = np.asarray(img, np.float64)
    if a.ndim == 2:
        return a
    if a.ndim == 3 and a.shape[-1] == 1:
        return a[..., 0]
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {a.shape}")
    return a @ np.array([0.299, 0.587, 0.114])


def _blocks(x: np.ndarray, step: int) -> np.ndarray:
    """(n, 8, 8) blocks at top-left corners 0, step, 2·step, … that fit entirely in x."""
    h, w = x.shape
    if h < 8 or w < 8:
        raise ValueError(f"PSNR-HVS needs at least 8x8 pixels, got {h}x{w}")
    if step == 8 and h % 8 == 0 and w % 8 == 0:
        return x.reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2).reshape(-1, 8, 8)
    win = np.lib.stride_tricks.sliding_window_view(x, (8, 8))[::step, ::step]
    return win.reshape(-1, 8, 8)


def _scaled_var(a: np.ndarray) -> np.ndarray:
    """MATLAB ``var(a(:)) * numel(a)`` per block (sample variance, ddof=1) over the last two axes."""
    n = a.shape[-1] * a.shape[-2]
    return a.reshape(*a.shape[:-2], n).var(axis=-1, ddof=1) * n


def _masking_energy(blocks: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    ac = coeffs**2 * MASK
    ac[:, 0, 0] = 0.0
    energy = ac.sum(axis=(1, 2))
    total = _scaled_var(blocks)
    quads = (_scaled_var(blocks[:, :4, :4]) + _scaled_var(blocks[:, :4, 4:])
             + _scaled_var(blocks[:, 4:, 4:]) + _scaled_var(blocks[:, 4:, :4]))
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(total != 0, quads / np.where(total != 0, total, 1.0), 0.0)
    return np.sqrt(energy * delta) / 32.0


def hvs_errors(ref, test, step: int = 8) -> tuple[float, float]:
    """(S_hvs_m, S_hvs): the mean CSF-weighted squared DCT errors of two grey images."""
    a = np.asarray(ref, np.float64)
    b = np.asarray(test, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"expected grey (H, W) images, got {a.shape}")
    ba, bb = _blocks(a, step), _blocks(b, step)
    da, db = dctn(ba, axes=(1, 2), norm="ortho"), dctn(bb, axes=(1, 2), norm="ortho")
    u = np.abs(da - db)
    s_hvs = np.mean((u * CSF) ** 2)
    mask = np.maximum(_masking_energy(ba, da), _masking_energy(bb, db))  # (n,)
    thr = mask[:, None, None] / MASK  # (n, 8, 8)
    um = np.where(u < thr, 0.0, u - thr)
    um[:, 0, 0] = u[:, 0, 0]  # the DC coefficient is never masked
    s_hvsm = np.mean((um * CSF) ** 2)
    return float(s_hvsm), float(s_hvs)


def _db(s: float, peak: float) -> float:
    return _IDENTICAL_DB if s == 0 else float(10.0 * np.log10(peak * peak / s))


def psnr_hvs_hvsm(ref, test, peak: float = 255.0, step: int = 8) -> tuple[float, float]:
    """(PSNR-HVS-M, PSNR-HVS) in dB of two images (grey, or RGB → BT.601 Y′)."""
    s_m, s = hvs_errors(rgb_to_luma(ref), rgb_to_luma(test), step)
    return _db(s_m, peak), _db(s, peak)


def psnr_hvs_m(ref, test, peak: float = 255.0, step: int = 8) -> float:
    """PSNR-HVS-M in dB (see the module docstring)."""
    return psnr_hvs_hvsm(ref, test, peak, step)[0]
