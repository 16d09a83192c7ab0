#!/usr/bin/env python
"""Which training recipe gets the most RD quality out of a fixed CPU budget? (issue 18, item 3)

Controlled experiments, one factor at a time, each under the **same CPU budget** (``--cpu-hours``
per variant, counted in CPU-seconds of the training process: on a shared machine that is the fair
stand-in for the wall clock of a quiet one). The base is the bundled long run's recipe
(``configs/bundled_vr.py``) as a single-rate model, so that every variant is judged at one λ:

* ``bmshj2018-hyperprior``, N = 128, M = 192, λ = 0.0067 (CompressAI quality 3), MSE, from the
  initialiser;
* the 1,100 training photos + ``shared/data/train``, downscaled by [0.5, 0.75], random 128² crops,
  batch 8; mixed quantisation (noise for the rate, rounding with a straight-through gradient for
  the synthesis; Minnen & Singh 2020);
* Adam 2e-4, constant then cosine to 0.05× over the last 15 % **of the budget's steps**.

Variants (each changes one thing): ``lr1e-4``, ``lr5e-4``, ``lr1e-3``, ``no-decay`` (the long run as configured,
whose decay at 85 % of 300,000 steps a CPU never reaches), ``crop256-b2`` (the same pixels per step
in larger crops), ``b16``, ``n64-m96`` (the narrower model; ``n64-m96-lr5e-4`` with the better lr;
``q6`` and ``q6-n64-m96``: both widths at quality 6's λ = 0.0483, to be compared with each other), ``noise`` (additive-noise quantisation
everywhere). Variable-rate against single-rate models under equal budgets is the subject of
``experiments/mae_vs_single.py`` (``docs/MAE.md``).

The number of steps of a variant is its budget over its CPU seconds per step, measured in a
calibration run of ``--calib-steps`` steps (``cpu_s_per_step`` of the training metrics). Each variant
then trains through ``train.py`` in ``OUT/<variant>`` (resumable: rerun the same command), is
exported, and is evaluated on the first ``--kodak`` Kodak images through real ``.lic`` files with
``eval.py``, next to Pillow JPEG on the same images. Results: ``OUT/results.{json,csv}``, the
validation RD loss against CPU-hours ``OUT/val_vs_cpu.png``, and the table printed for
``docs/TRAINING.md``.

    nice -n 10 python experiments/recipe_sweep.py run --out ~/lic_runs/recipe-sweep      # all variants
    python experiments/recipe_sweep.py plan                                              # the variants
    python experiments/recipe_sweep.py report --out ~/lic_runs/recipe-sweep              # table + plot
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.environ.get("LIC_JAX_SHARED", os.path.join(REPO, "..", "shared"))
DATA = os.path.join(SHARED, "data")

CONFIG = os.path.join(REPO, "configs", "model.py") + ":bmshj2018-hyperprior,3"
BASE = [
    f"--config.data.train={DATA}/photos,{DATA}/train", f"--config.data.val={DATA}/val",
    "--config.data.scale=0.5,0.75", "--config.data.crop=128", "--config.data.val_crop=256",
    "--config.batch_size=8", "--config.val_batch_size=8", "--config.quant=mixed",
    "--config.optim.lr=2e-4", "--config.optim.schedule=constant_then_cosine", "--config.optim.decay_start=0.85",
    "--config.optim.final_lr_factor=0.05", "--config.progress_bar=False", "--config.tb_images=0",
    "--config.keep_checkpoints=1", "--config.export.which=last",
]
VARIANTS = {
    "base": [],
    "lr1e-4": ["--config.optim.lr=1e-4"],
    "lr5e-4": ["--config.optim.lr=5e-4"],
    "lr1e-3": ["--config.optim.lr=1e-3"],
    "no-decay": ["--config.optim.schedule=constant"],
    "crop256-b2": ["--config.data.crop=256", "--config.batch_size=2"],
    "b16": ["--config.batch_size=16"],
    "n64-m96": ["arg:N=64", "arg:M=96"],  # parts of the config argument (configs/model.py), not flags
    "n64-m96-lr5e-4": ["arg:N=64", "arg:M=96", "--config.optim.lr=5e-4"],
    # the top rate of the bundled model (λ of quality 6): does M = 96 hold there? (compare the two)
    "q6": ["--config.lmbda=0.0483"],
    "q6-n64-m96": ["--config.lmbda=0.0483", "arg:N=64", "arg:M=96"],
    "noise": ["--config.quant=noise"],
}


def _train(workdir: str, args: list[str], log: str) -> float:
    """Run train.py; return the CPU seconds it used (user + system, all threads)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spec = ",".join([CONFIG] + [a[4:] for a in args if a.startswith("arg:")])
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--workdir", workdir, "--config", spec, *BASE,
           *[a for a in args if not a.startswith("arg:")]]
    with open(log, "a") as f:
        f.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC: {' '.join(cmd)}\n")
        f.flush()
        r = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"train.py failed ({r.returncode}); see {log}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _metrics(workdir: str, kind: str) -> list[dict]:
    from lic_jax.train.metrics_writer import read_metrics

    p = os.path.join(workdir, "metrics.jsonl")
    return read_metrics(p, kind) if os.path.exists(p) else []


def _ledger_add(out: str, name: str, phase: str, cpu_s: float):
    with open(os.path.join(out, "cpu_ledger.tsv"), "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\t{name}\t{phase}\t{cpu_s:.1f}\n")


def _ledger(out: str) -> dict:
    tot: dict = {}
    p = os.path.join(out, "cpu_ledger.tsv")
    if os.path.exists(p):
        for line in open(p):
            _, name, phase, s = line.rstrip("\n").split("\t")
            tot[(name, phase)] = tot.get((name, phase), 0.0) + float(s)
    return tot


def calibrate(out: str, name: str, steps: int) -> float:
    """CPU seconds per step of a variant (after compilation), from a short run."""
    info = os.path.join(out, name, "calibration.json")
    if os.path.exists(info):
        return json.load(open(info))["cpu_s_per_step"]
    wd = os.path.join(out, name, "calib")
    half = max(2, steps // 2)
    cpu = _train(wd, [*VARIANTS[name], f"--config.num_steps={steps}", f"--config.log_every={half}",
                      "--config.eval_every=0", "--config.data.val=", "--config.checkpoint_every=0",
                      "--config.keep_best=False", "--config.export.at_end=False"], os.path.join(out, name, "train.log"))
    _ledger_add(out, name, "calibration", cpu)
    tr = _metrics(wd, "train")
    v = float(tr[-1]["cpu_s_per_step"])  # the second window: steps after the first (compiling) one
    json.dump({"cpu_s_per_step": v, "windows": [t.get("cpu_s_per_step") for t in tr], "calib_steps": steps},
              open(info, "w"), indent=1)
    return v


def run_variant(out: str, name: str, cpu_hours: float, calib_steps: int, kodak: int) -> dict:
    os.makedirs(os.path.join(out, name), exist_ok=True)
    cps = calibrate(out, name, calib_steps)
    steps = max(20, int(round(cpu_hours * 3600 / cps / 10)) * 10)
    wd = os.path.join(out, name, "run")
    art = os.path.join(wd, "artifact")
    if not os.path.exists(os.path.join(art, "config.json")):
        q = max(10, steps // 4)
        cpu = _train(wd, [*VARIANTS[name], f"--config.num_steps={steps}", f"--config.log_every={max(10, steps // 40)}",
                          f"--config.eval_every={q}", "--config.eval_at_start=False",
                          f"--config.checkpoint_every={min(100, q)}"], os.path.join(out, name, "train.log"))
        _ledger_add(out, name, "train", cpu)
    ev = os.path.join(out, name, f"kodak{kodak}.json")
    if not os.path.exists(ev):
        subprocess.run([sys.executable, os.path.join(REPO, "eval.py"), "run", "--checkpoint", art, "--dataset",
                        os.path.join(DATA, "kodak"), "--limit", str(kodak), "--out", ev, "--name", name,
                        "--metrics", "psnr-rgb,ms-ssim-rgb", "--no-progress"], cwd=REPO, check=True)
    return summarize(out, name, kodak)


def jpeg_curve(out: str, kodak: int) -> dict:
    ev = os.path.join(out, f"jpeg_kodak{kodak}.json")
    if not os.path.exists(ev):
        subprocess.run([sys.executable, os.path.join(REPO, "eval.py"), "run", "--codec", "jpeg", "--dataset",
                        os.path.join(DATA, "kodak"), "--limit", str(kodak), "--out", ev, "--quality",
                        *[str(q) for q in (5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 95)],
                        "--metrics", "psnr-rgb,ms-ssim-rgb", "--no-progress"], cwd=REPO, check=True)
    return json.load(open(ev))["results"]


def _psnr_at(curve: dict, bpp: float) -> float | None:
    """JPEG's PSNR at ``bpp``, linear in log-bpp between its points (None outside its range)."""
    import numpy as np

    b, p = np.asarray(curve["bpp"], float), np.asarray(curve["psnr-rgb"], float)
    o = np.argsort(b)
    b, p = b[o], p[o]
    if not (b[0] <= bpp <= b[-1]):
        return None
    return float(np.interp(np.log(bpp), np.log(b), p))


def summarize(out: str, name: str, kodak: int) -> dict:
    wd = os.path.join(out, name, "run")
    val = _metrics(wd, "val")
    tr = _metrics(wd, "train")
    cal = json.load(open(os.path.join(out, name, "calibration.json")))
    led = _ledger(out)
    row = {"variant": name, "cpu_s_per_step": cal["cpu_s_per_step"],
           "steps": tr[-1]["step"] if tr else 0,
           "train_cpu_h": led.get((name, "train"), 0.0) / 3600,
           "calib_cpu_h": led.get((name, "calibration"), 0.0) / 3600}
    if val:
        v = val[-1]
        row.update(val_loss=v["loss"], val_bpp=v["bpp"], val_psnr=v["psnr"], val_ms_ssim=v.get("ms_ssim"))
        row["val_curve"] = [(x["step"], x["loss"]) for x in val]
    ev = os.path.join(out, name, f"kodak{kodak}.json")
    if os.path.exists(ev):
        r = json.load(open(ev))["results"]
        row.update(kodak_bpp=r["bpp"][0], kodak_psnr=r["psnr-rgb"][0], kodak_ms_ssim=r["ms-ssim-rgb"][0])
        jp = os.path.join(out, f"jpeg_kodak{kodak}.json")
        if os.path.exists(jp):
            j = _psnr_at(json.load(open(jp))["results"], row["kodak_bpp"])
            row["jpeg_psnr_at_bpp"] = j
            row["db_over_jpeg"] = None if j is None else row["kodak_psnr"] - j
    return row


def report(out: str, kodak: int):
    rows = [summarize(out, n, kodak) for n in VARIANTS if os.path.exists(os.path.join(out, n, "calibration.json"))]
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"config": CONFIG, "base": BASE, "variants": VARIANTS, "kodak_images": kodak, "rows": rows}, f, indent=1)
    keys = ["variant", "steps", "cpu_s_per_step", "train_cpu_h", "val_loss", "val_bpp", "val_psnr", "val_ms_ssim",
            "kodak_bpp", "kodak_psnr", "kodak_ms_ssim", "jpeg_psnr_at_bpp", "db_over_jpeg"]
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    def fmt(v, spec):
        return "—" if v is None else format(v, spec)

    print(f"| variant | steps | CPU s/step | train CPU-h | val RD loss | val bpp | val PSNR | Kodak[:{kodak}] bpp | "
          "PSNR | Δ dB vs JPEG at that bpp |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['steps']} | {r['cpu_s_per_step']:.2f} | {r['train_cpu_h']:.2f} | "
              f"{fmt(r.get('val_loss'), '.4f')} | {fmt(r.get('val_bpp'), '.3f')} | {fmt(r.get('val_psnr'), '.2f')} | "
              f"{fmt(r.get('kodak_bpp'), '.3f')} | {fmt(r.get('kodak_psnr'), '.2f')} | {fmt(r.get('db_over_jpeg'), '+.2f')} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in rows:
        if r.get("val_curve"):
            xs = [s * r["cpu_s_per_step"] / 3600 for s, _ in r["val_curve"]]
            ax.plot(xs, [v for _, v in r["val_curve"]], marker="o", label=r["variant"])
    ax.set_xlabel("training CPU-hours (steps × calibrated CPU s/step)")
    ax.set_ylabel("validation RD loss (λ = 0.0067)")
    ax.set_title("Recipes under equal CPU budgets")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "val_vs_cpu.png"), dpi=110)
    print("wrote", os.path.join(out, "val_vs_cpu.png"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["plan", "run", "report"])
    ap.add_argument("--out", default=os.path.expanduser("~/lic_runs/recipe-sweep"))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--cpu-hours", type=float, default=0.33, help="training budget per variant")
    ap.add_argument("--calib-steps", type=int, default=12)
    ap.add_argument("--kodak", type=int, default=8, help="Kodak images for the real-bitstream evaluation")
    a = ap.parse_args()
    names = [n for n in a.variants.split(",") if n]
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variants {bad}; known: {', '.join(VARIANTS)}")
    if a.stage == "plan":
        for n in names:
            print(f"{n:12s} {' '.join(VARIANTS[n]) or '(the base)'}")
        print(f"budget {a.cpu_hours} CPU-h per variant; base: --config {CONFIG} {' '.join(BASE)}")
        return
    os.makedirs(a.out, exist_ok=True)
    if a.stage == "run":
        jpeg_curve(a.out, a.kodak)
        for n in names:
            print(f"[sweep] {n}: {' '.join(VARIANTS[n]) or '(the base)'}", flush=True)
            run_variant(a.out, n, a.cpu_hours, a.calib_steps, a.kodak)
    report(a.out, a.kodak)


if __name__ == "__main__":
    main()
