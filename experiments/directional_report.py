"""The directional-distortion study's answer (issue 17): the twins paired at the MS-SSIM twin's own rates, a
decision rule fixed before the last twins finished, and the markdown table of ``docs/DIRECTIONAL.md``.

Used by ``experiments/directional_distortion.py`` (which writes ``pairs.{json,csv}``, ``verdict.json`` and
``table.md``); importable on its own for the tests (``tests/test_directional_study.py``).

**Pairing.** ``matched`` in the study interpolates every codec at the fixed rates 0.15 / 0.25 / 0.4 bpp. With three
points per twin that leaves one matched rate on Barbara (the twins span ≈ 0.17–0.39 bpp there). Pairing instead
puts the MSE twin's curve (linear in log-bpp between its points) under **each MS-SSIM twin point**: up to three
pairs per architecture and image. Where the MS-SSIM point lies outside the MSE twin's range by at most
``MAX_EXTRAPOLATION`` (a bpp ratio), the end segment's line is extended and the pair is flagged ``extrapolated``;
further out there is no pair. Flip rate falls with rate, so comparing against the MSE twin at its own (higher)
rate would favour "MS-SSIM flips more"; the extension avoids that bias.

**Decision rule** (fixed 2026-12-03, with 14 of the 24 twin records in; the rule and its thresholds were not
changed after the remaining records arrived):

- A pair is *informative* when either twin flips at least ``INFORMATIVE`` (2 %) of the region's pixels. Where
  neither flips (the Houses, the periodic textures at these rates) the pair says nothing about direction.
- Per architecture, on the automatic stripe mask: **"MS-SSIM flips more"** when the informative pairs' mean
  Δflip (MS-SSIM − MSE) is ≥ ``EFFECT`` (0.02, two percentage points of the mask) and at least 3/4 of them are
  positive; **"MSE flips more"** for the mirror case; **"no clear difference"** otherwise; **"nothing to compare"**
  with no informative pair.
- Overall: the one-sided sign test over all architectures' informative mask pairs (binomial, p = 1/2). The pairs
  share images and the MS-SSIM twin starts from its MSE twin, so they are not independent: the p-value describes
  the consistency of the sign, not a population.
- The paper's regions (Barbara's trousers / tablecloth / scarf, the Houses' siding and bricks) are reported per
  pair beside the mask, not counted in the test (they overlap the mask).
"""

from __future__ import annotations

import csv
import math

import numpy as np

INFORMATIVE = 0.02  # a pair counts when either twin flips ≥ 2 % of the region
EFFECT = 0.02  # |mean Δflip| needed for a direction
MAJORITY = 0.75  # share of informative pairs that must agree in sign
MAX_EXTRAPOLATION = 1.25  # bpp ratio beyond the MSE twin's range that the end segment may be extended
PAIR_MEASURES = ("flip_rate", "washout_rate", "maoe", "ohd_mean", "psnr", "ms_ssim")
REGION_MEASURES = ("flip_rate", "washout_rate", "maoe")
TABLE_MEASURES = ("maoe", "flip_rate", "washout_rate", "ohd_mean")


def curve_at(points: list[tuple[float, float]], bpp: float, max_ratio: float = MAX_EXTRAPOLATION):
    """A measure at ``bpp`` from points linear in log(bpp): interpolated inside their range, the end segment
    extended up to a bpp ratio of ``max_ratio`` outside it. Returns (value, extrapolated) or (None, False)."""
    pts = sorted((b, v) for b, v in points if v is not None and b > 0 and math.isfinite(v))
    if len(pts) < 2:
        return None, False
    lb = [math.log(b) for b, _ in pts]
    x = math.log(bpp)
    if lb[0] <= x <= lb[-1]:
        return float(np.interp(x, lb, [v for _, v in pts])), False
    if x < lb[0] - math.log(max_ratio) or x > lb[-1] + math.log(max_ratio):
        return None, False
    (x0, y0), (x1, y1) = ((lb[0], pts[0][1]), (lb[1], pts[1][1])) if x < lb[0] else \
        ((lb[-2], pts[-2][1]), (lb[-1], pts[-1][1]))
    return float(y0 + (y1 - y0) * (x - x0) / (x1 - x0)), True


def regions_of(row: dict) -> list[str]:
    """'mask' (the automatic stripe mask) and the named ROIs a row has numbers for."""
    return ["mask"] + sorted({k.split(":")[0] for k in row if k.endswith(":flip_rate")})


def _key(region: str, measure: str) -> str:
    return measure if region == "mask" else f"{region}:{measure}"


def own_rate_pairs(rows: list[dict]) -> list[dict]:
    """Every MS-SSIM twin point paired with its MSE twin's curve at the same bpp, per region."""
    out = []
    for image, arch in sorted({(r["image"], r["arch"]) for r in rows if r["loss"] == "ms-ssim"}):
        mse = [r for r in rows if r["image"] == image and r["arch"] == arch and r["loss"] == "mse"]
        for p in sorted((r for r in rows if r["image"] == image and r["arch"] == arch and r["loss"] == "ms-ssim"),
                        key=lambda r: r["bpp"]):
            if p.get("mask_px") == 0:
                continue
            for region in regions_of(p):
                measures = PAIR_MEASURES if region == "mask" else REGION_MEASURES
                rec = {"image": image, "arch": arch, "point": p.get("point"), "region": region, "bpp": p["bpp"],
                       "extrapolated": False}
                for k in measures:
                    v, ext = curve_at([(r["bpp"], r.get(_key(region, k))) for r in mse], p["bpp"])
                    s = p.get(_key(region, k))
                    rec[f"mse_{k}"], rec[f"ms_ssim_{k}"] = v, s
                    rec[f"d_{k}"] = None if v is None or s is None else s - v
                    rec["extrapolated"] |= ext
                out.append(rec)
    return out


def informative(pair: dict) -> bool:
    a, b = pair.get("mse_flip_rate"), pair.get("ms_ssim_flip_rate")
    return a is not None and b is not None and max(a, b) >= INFORMATIVE


def sign_test_p(k: int, n: int) -> float:
    """One-sided binomial P(X ≥ k | n, 1/2)."""
    return float(sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n) if n else 1.0


def _answer(diffs: list[float]) -> str:
    if not diffs:
        return "nothing to compare"
    mean = float(np.mean(diffs))
    pos, neg = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    if mean >= EFFECT and pos >= MAJORITY * len(diffs):
        return "MS-SSIM flips more"
    if mean <= -EFFECT and neg >= MAJORITY * len(diffs):
        return "MSE flips more"
    return "no clear difference"


def verdict(pairs: list[dict], archs: tuple[str, ...] | None = None) -> dict:
    """The decision rule of the module docstring, on the automatic-mask pairs."""
    mask = [p for p in pairs if p["region"] == "mask" and p.get("d_flip_rate") is not None]
    archs = archs or tuple(sorted({p["arch"] for p in pairs}))
    per_arch = {}
    for arch in archs:
        inf = [p for p in mask if p["arch"] == arch and informative(p)]
        d = [p["d_flip_rate"] for p in inf]
        w = [p["d_washout_rate"] for p in inf if p.get("d_washout_rate") is not None]
        per_arch[arch] = {
            "answer": _answer(d), "n_pairs": len([p for p in mask if p["arch"] == arch]), "n_informative": len(d),
            "n_positive": int(sum(x > 0 for x in d)),
            "mean_d_flip": float(np.mean(d)) if d else None, "mean_d_washout": float(np.mean(w)) if w else None,
            "pairs": [{"image": p["image"], "point": p["point"], "bpp": round(p["bpp"], 4),
                       "mse_flip": p["mse_flip_rate"], "ms_ssim_flip": p["ms_ssim_flip_rate"],
                       "d_flip": p["d_flip_rate"], "extrapolated": p["extrapolated"]} for p in inf]}
    all_d = [p["d_flip_rate"] for p in mask if informative(p)]
    k = int(sum(x > 0 for x in all_d))
    yes = [a for a, v in per_arch.items() if v["answer"] == "MS-SSIM flips more"]
    return {"rule": {"informative_flip": INFORMATIVE, "effect": EFFECT, "majority": MAJORITY,
                     "max_extrapolation": MAX_EXTRAPOLATION},
            "per_arch": per_arch,
            "overall": {"n_informative": len(all_d), "n_positive": k, "sign_test_p": sign_test_p(k, len(all_d)),
                        "mean_d_flip": float(np.mean(all_d)) if all_d else None,
                        "architectures_ms_ssim_flips_more": yes,
                        "hypothesis": ("for" if len(yes) > len(per_arch) / 2 else
                                       "against" if not yes else "mixed")}}


def write_pairs_csv(pairs: list[dict], path: str):
    keys = list(dict.fromkeys(k for p in pairs for k in p))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(pairs)


def _fmt(v, nd=3):
    return "–" if v is None else f"{v:.{nd}f}"


def table_markdown(matched_rows: list[dict], image: str, arch_order: tuple[str, ...], targets) -> str:
    """One image's table: MAOE, flip, washout, OHD at each matched rate, per architecture × loss and the
    controls. Where a codec does not reach a target, the nearest point it reached, with its bpp in brackets."""
    rows = [r for r in matched_rows if r["image"] == image]
    codecs = sorted({r["codec"] for r in rows},
                    key=lambda c: (c.split(":")[0] not in arch_order,
                                   arch_order.index(c.split(":")[0]) if c.split(":")[0] in arch_order else 0, c))
    head = ["codec"] + [f"{m} @ {t}" for t in targets for m in ("MAOE °", "flip", "washout", "OHD")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in codecs:
        cells = [c]
        for t in targets:
            r = next((x for x in rows if x["codec"] == c and x["target_bpp"] == t), None)
            for m in TABLE_MEASURES:
                nd = 1 if m == "maoe" else 3
                if r is None:
                    cells.append("–")
                elif r.get(m) is not None:
                    cells.append(_fmt(r[m], nd))
                elif r.get("nearest"):
                    cells.append(f"({r['nearest']['bpp']:.2f}: {_fmt(r['nearest'].get(m), nd)})")
                else:
                    cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict_markdown(v: dict) -> str:
    lines = ["| architecture | informative pairs | Δflip > 0 | mean Δflip | mean Δwashout | answer |",
             "|---|---|---|---|---|---|"]
    for arch, a in v["per_arch"].items():
        lines.append(f"| {arch} | {a['n_informative']} of {a['n_pairs']} | {a['n_positive']} | "
                     f"{_fmt(a['mean_d_flip'])} | {_fmt(a['mean_d_washout'])} | {a['answer']} |")
    o = v["overall"]
    lines.append("")
    lines.append(f"Overall: {o['n_positive']} of {o['n_informative']} informative pairs flip more with MS-SSIM "
                 f"(one-sided sign test p = {o['sign_test_p']:.2g}; mean Δflip {_fmt(o['mean_d_flip'])}); "
                 f"hypothesis: **{o['hypothesis']}**.")
    return "\n".join(lines)
