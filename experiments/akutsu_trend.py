"""The trend over steps of akutsu2020 training runs (issue 20, "report what budget gave what, the trend
over steps"; docs/AKUTSU.md, "The CPU run").

    python experiments/akutsu_trend.py RUN_DIR [RUN_DIR ...] [--label NAME ...] --out PREFIX

Reads each run directory's ``metrics.jsonl`` (train.py's log: a training line every ``log_every``
steps, a validation line every ``eval_every``) and writes ``PREFIX.csv`` (one row per run, step and
split) and ``PREFIX.png``: training bpp and G_m's MS-SSIM with their moving average, validation
MS-SSIM of G_m and of the fused output inside the masks, and D's accuracy once the GAN term is on.
A run's later lines replace earlier ones at the same step (a resumed run logs the steps after its
checkpoint again).
"""

from __future__ import annotations

import argparse
import csv
import json
import os

COLUMNS = ("bpp", "ms_ssim_main", "ms_ssim", "psnr_main", "ms_ssim_fused", "ms_ssim_main_mask",
           "ms_ssim_fused_mask", "d_acc_real", "d_acc_fake", "gan_on", "cpu_s_per_step")


def read_run(path: str) -> dict:
    """{(split, step): record} of ``path``/metrics.jsonl, later lines winning."""
    f = os.path.join(path, "metrics.jsonl")
    if not os.path.isfile(f):
        raise SystemExit(f"akutsu_trend.py: error: {f} does not exist (not a train.py run directory)")
    out = {}
    with open(f) as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                out[(rec["split"], int(rec["step"]))] = rec
            except (ValueError, KeyError, TypeError):
                raise SystemExit(f"akutsu_trend.py: error: {f}:{n} is not a metrics record") from None
    return out


def smooth(values, k: int = 5):
    """Trailing moving average over ``k`` points."""
    return [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="train.py run directories (with metrics.jsonl)")
    ap.add_argument("--label", nargs="*", default=None, help="one name per run (default: the directory names)")
    ap.add_argument("--out", required=True, help="output prefix: PREFIX.csv and PREFIX.png")
    a = ap.parse_args(argv)
    labels = a.label or [os.path.basename(os.path.normpath(r)) for r in a.runs]
    if len(labels) != len(a.runs):
        raise SystemExit(f"akutsu_trend.py: error: {len(a.runs)} runs but {len(labels)} labels")
    runs = {lab: read_run(r) for lab, r in zip(labels, a.runs)}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)) or ".", exist_ok=True)
    with open(a.out + ".csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("run", "split", "step") + COLUMNS)
        for lab, recs in runs.items():
            for (split, step), rec in sorted(recs.items()):
                w.writerow((lab, split, step) + tuple(rec.get(c, "") for c in COLUMNS))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    for lab, recs in runs.items():
        tr = [(s, r) for (sp, s), r in sorted(recs.items()) if sp == "train"]
        va = [(s, r) for (sp, s), r in sorted(recs.items()) if sp == "val"]
        steps = [s for s, _ in tr]
        line, = ax[0, 0].plot(steps, smooth([r["bpp"] for _, r in tr]), label=lab)
        ax[0, 1].plot(steps, smooth([r["ms_ssim_main"] for _, r in tr]), color=line.get_color(), label=lab)
        if va:
            vs = [s for s, _ in va]
            ax[1, 0].plot(vs, [r.get("ms_ssim_main_mask", float("nan")) for _, r in va], "o--",
                          color=line.get_color(), label=f"{lab}: main")
            ax[1, 0].plot(vs, [r.get("ms_ssim_fused_mask", float("nan")) for _, r in va], "s-",
                          color=line.get_color(), label=f"{lab}: fused")
        gan = [(s, r) for s, r in tr if r.get("gan_on")]
        if gan:
            gs = [s for s, _ in gan]
            ax[1, 1].plot(gs, smooth([r["d_acc_real"] for _, r in gan]), "-", color=line.get_color(),
                          label=f"{lab}: on real")
            ax[1, 1].plot(gs, smooth([r["d_acc_fake"] for _, r in gan]), ":", color=line.get_color(),
                          label=f"{lab}: on G_m's")
    for a_, title, yl in ((ax[0, 0], "training bpp (moving average of 5 logs)", "bpp"),
                          (ax[0, 1], "training MS-SSIM of G_m (moving average)", "MS-SSIM"),
                          (ax[1, 0], "validation MS-SSIM inside the masks", "MS-SSIM"),
                          (ax[1, 1], "D's accuracy (GAN term on)", "accuracy")):
        a_.set_title(title, fontsize=10)
        a_.set_xlabel("step")
        a_.set_ylabel(yl)
        a_.grid(alpha=0.3)
        if a_.lines:
            a_.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=110)
    print(f"wrote {a.out}.csv and {a.out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
