"""Rate control for variable-rate models: the λ that makes one image's ``.lic`` file hit a target bpp.

    from lic_jax.coding import Codec, encode_at_bpp
    codec = Codec.from_artifact("lic_jax/assets/models/mae-bls2017")
    r = encode_at_bpp(codec, img, 0.5)          # r.encoded.data: the file; r.lmbda, r.bpp, r.hit

The rate is measured on **real files** (8 × bytes of the complete ``.lic`` file / pixels, the
container included), never on an estimate. The search runs over log λ inside the model's trained
λ interval (or ``lmbda_range``): the two ends are coded first; a target outside
[bpp(λ_min), bpp(λ_max)] returns the nearest end (``hit`` False unless it is within tolerance).
Inside, a bracketing search — log-bpp vs log-λ secant steps kept inside the bracket, every
third step a bisection — stops at the first file within ``rtol`` of the target, typically after
3–6 encodes. The file's bpp is a step function of λ (integer bytes, integer latents); when the
bracket closes to a jump without a file within ``rtol`` the closer end is returned
(``hit`` False, ``note`` says so).

With ``not_above=True`` the result is the largest-rate file with bpp ≤ target found (a budget),
and ``hit`` means it is within ``rtol`` below the target.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["RateControlResult", "encode_at_bpp"]


@dataclasses.dataclass
class RateControlResult:
    encoded: object  # lic_jax.coding.codec.Encoded of the chosen λ
    lmbda: float  # float32 λ, as in the file's header
    bpp: float  # 8 × file bytes / pixels
    target_bpp: float
    hit: bool  # |bpp / target − 1| ≤ rtol (not_above: target·(1 − rtol) ≤ bpp ≤ target)
    encodes: int  # files coded during the search
    trials: list  # [(λ, bpp)] in the order tried
    note: str = ""

    @property
    def rel_error(self) -> float:
        return self.bpp / self.target_bpp - 1.0


def encode_at_bpp(codec, img, target_bpp: float, rtol: float = 0.03, lmbda_range=None, max_encodes: int = 24,
                  not_above: bool = False) -> RateControlResult:
    """Encode ``img`` with the λ whose file is closest to ``target_bpp`` (see the module docstring)."""
    if not getattr(codec, "variable_rate", False):
        raise ValueError(f"rate control needs a variable-rate model (mae-*); {codec.spec.name} has a fixed rate")
    if not (target_bpp > 0 and math.isfinite(target_bpp)):
        raise ValueError(f"target bpp must be positive and finite, got {target_bpp!r}")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    lo, hi = (float(v) for v in (lmbda_range or codec.lmbda_range))
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"λ range must satisfy 0 < lo ≤ hi, got {(lo, hi)}")
    H, W = np.asarray(img).shape[:2]
    trials, files = [], {}

    def code(lam: float):
        lam32 = float(np.float32(lam))
        if lam32 not in files:
            enc = codec.encode(img, lam32)
            files[lam32] = (enc, 8.0 * len(enc.data) / (H * W))
            trials.append((lam32, files[lam32][1]))
        return lam32, files[lam32][1]

    def ok(bpp: float) -> bool:
        if not_above:
            return target_bpp * (1 - rtol) <= bpp <= target_bpp
        return abs(bpp / target_bpp - 1.0) <= rtol

    def best():
        if not_above:
            under = [(b, l) for l, b in trials if b <= target_bpp]
            lam = max(under)[1] if under else min((b, l) for l, b in trials)[1]
        else:
            lam = min(trials, key=lambda t: abs(math.log(t[1] / target_bpp)))[0]
        return lam

    def result(lam, note=""):
        enc, bpp = files[lam]
        return RateControlResult(enc, lam, bpp, float(target_bpp), ok(bpp), len(trials), list(trials), note)

    l_lo, b_lo = code(lo)
    if lo == hi:
        return result(l_lo, "" if ok(b_lo) else f"a single λ ({lo:.4g}) gives {b_lo:.4f} bpp")
    if target_bpp <= b_lo:
        return result(l_lo, "" if ok(b_lo) else f"target below the lowest rate of the λ range ({b_lo:.4f} bpp at λ={lo:.4g})")
    l_hi, b_hi = code(hi)
    if target_bpp >= b_hi:
        lam = l_hi if (not not_above or b_hi <= target_bpp) else best()
        return result(lam, "" if ok(files[lam][1]) else
                      f"target above the highest rate of the λ range ({b_hi:.4f} bpp at λ={hi:.4g})")
    step = 0
    while len(trials) < max_encodes:
        step += 1
        a, b = math.log(l_lo), math.log(l_hi)
        if b - a < 1e-6:
            break
        if step % 3 == 0 or b_hi <= b_lo:
            t = 0.5
        else:
            t = (math.log(target_bpp) - math.log(b_lo)) / (math.log(b_hi) - math.log(b_lo))
            t = min(max(t, 0.05), 0.95)
        lam, bpp = code(math.exp(a + t * (b - a)))
        if lam in (l_lo, l_hi):  # float32 resolution reached
            break
        if ok(bpp):
            return result(lam)
        if bpp < target_bpp:
            l_lo, b_lo = lam, bpp
        else:
            l_hi, b_hi = lam, bpp
    lam = best()
    return result(lam, "" if ok(files[lam][1]) else
                  f"no λ gives a file within {rtol:.0%} of the target (rate jumps from {b_lo:.4f} to {b_hi:.4f} bpp); "
                  f"nearest achievable returned")
