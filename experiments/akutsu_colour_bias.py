"""Does a colour-dynamics run's global colour bias follow the colour of the batches it trained on?
(docs/AKUTSU.md, "The step size per crop, not the batch").

    python experiments/akutsu_colour_bias.py benchmarks/results/akutsu/colour_dynamics_bias_b2.json … \\
        --out benchmarks/results/akutsu/colour_bias_2026-12-05.json

For each ``experiments/akutsu_colour_dynamics.py --data many`` result with ``bias_cb`` / ``bias_cr`` readings (the
decode's mean Cb / Cr over the fixed crops minus the images'), it redraws every training batch of the run
(:func:`akutsu_colour_dynamics.train_batch`, seeded by the step alone), takes each batch's mean Cb / Cr minus the
fixed crops', averages those exponentially with factor β (β = 0.9: Adam's first moment, about ten steps; β = 0:
the step's batch alone; bias-corrected as Adam's), and correlates the bias readings from step ``--from`` on with
that average at the same steps. It also reports the bias's standard deviation and when the colour came in: the
first reading after which the mean of the Cb and Cr correlations stays above 0.5.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "experiments"))

BETAS = (0.0, 0.9, 0.99)


def momentum_average(series: np.ndarray, beta: float) -> np.ndarray:
    """Adam's bias-corrected exponential average of ``series`` (steps × k) at every step (β = 0: the series)."""
    out, m = np.empty_like(series), np.zeros(series.shape[1])
    for s, v in enumerate(series):
        m = beta * m + (1.0 - beta) * v
        out[s] = m / (1.0 - beta ** (s + 1))
    return out


def corr(u: np.ndarray, v: np.ndarray) -> float:
    u, v = u - u.mean(), v - v.mean()
    d = np.sqrt((u * u).sum() * (v * v).sum())
    return float((u * v).sum() / d) if d > 0 else 0.0


def analyse(result: dict, pool: list[np.ndarray], start: int = 100) -> dict:
    from akutsu_colour_dynamics import mean_cbcr, train_batch

    if result.get("data") != "many" or "bias_cb" not in result["rows"][0]:
        raise ValueError("needs a --data many run with bias_cb / bias_cr readings")
    n, crop, steps = result["batch"], result["crop"], result["steps"]
    ref = mean_cbcr(np.concatenate([train_batch(pool, -1 - k, n, crop) for k in range(result["eval_batches"])]))
    batches = np.stack([mean_cbcr(train_batch(pool, s, n, crop)) - ref for s in range(steps + 1)])
    rows = [r for r in result["rows"] if r["step"] >= start]
    at = [r["step"] for r in rows]
    bias = np.array([[r["bias_cb"], r["bias_cr"]] for r in rows])
    follows = {}
    for beta in BETAS:
        avg = momentum_average(batches, beta)[at]
        follows[f"beta_{beta:g}"] = {"cb": corr(bias[:, 0], avg[:, 0]), "cr": corr(bias[:, 1], avg[:, 1])}
    colour = [(r["cb_corr"] + r["cr_corr"]) / 2 > 0.5 for r in result["rows"]]
    first = next((i for i in range(len(colour)) if all(colour[i:])), None)
    return {"batch": n, "crop": crop, "lr": result.get("lr", 5e-4), "steps": steps, "readings_from": start,
            "bias_follows_batches": follows, "bias_std": {"cb": float(bias[:, 0].std()), "cr": float(bias[:, 1].std())},
            "batch_colour_std": {"cb": float(batches[:, 0].std()), "cr": float(batches[:, 1].std())},
            "colour_in_from_step": None if first is None else result["rows"][first]["step"],
            "colour_in_from_crops": None if first is None else n * result["rows"][first]["step"],
            "final": {k: result["rows"][-1][k] for k in ("step", "cb_corr", "cr_corr", "chroma_std_ratio", "bpp")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="akutsu_colour_dynamics.py JSON results")
    ap.add_argument("--from", dest="start", type=int, default=100, help="first step of the readings correlated")
    ap.add_argument("--photos", default=None, help="training photos (default $LIC_JAX_SHARED/data/photos)")
    ap.add_argument("--out", required=True, help="JSON output path")
    args = ap.parse_args(argv)
    from akutsu_colour_dynamics import photo_pool

    from lic_jax.utils.paths import shared_data

    files = sorted(glob.glob(os.path.join(args.photos or shared_data("photos"), "*.jpg")))
    pools, out = {}, {}
    for path in args.results:
        with open(path) as f:
            result = json.load(f)
        crop = result["crop"]
        if crop not in pools:
            pools[crop] = photo_pool(files, crop)
        out[os.path.basename(path)] = a = analyse(result, pools[crop], args.start)
        f9 = a["bias_follows_batches"]["beta_0.9"]
        print(f"{os.path.basename(path)}: {a['batch']}×{crop}², lr {a['lr']:g}: colour from step "
              f"{a['colour_in_from_step']} ({a['colour_in_from_crops']} crops); bias vs. batches (β 0.9) "
              f"Cb {f9['cb']:.2f} Cr {f9['cr']:.2f}; bias std {a['bias_std']['cb']:.4f} / {a['bias_std']['cr']:.4f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
