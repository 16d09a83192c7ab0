#!/usr/bin/env python
"""Toderici 2017 (issue 15): reconstruction modes × recurrent cells (× lr schedules) at an equal budget.

Every configuration is one ``train.py --config configs/toderici2017.py:…`` run in its own workdir
under ``--root`` (default ``~/lic_runs/toderici/<tag>/<cell>-<mode>-<schedule>``), the same steps,
batch, crops, data, seed and validation for all. The lr schedule spans ``--steps``; each
invocation trains every run up to ``--until`` steps (``config.stop_at``: validation + checkpoint
there), one run after the other, then exports its best checkpoint (``train.py --mode=export``), so
the budget grows in equal installments: re-run with a larger ``--until`` to continue (train.py
resumes each run from its newest checkpoint; runs already at ``--until`` are skipped). After each run (and at the end) the report is rewritten:
``<out>/<tag>.json`` and ``.csv`` (per-iteration validation L1 / PSNR, sign binarizer, of the
exported = best-by-mean-L1 checkpoint, and of the last step) and ``<tag>.png`` (PSNR and L1 against
iterations = bpp·8).

    # the issue's experiment ({one-shot, additive} × {lstm, gru}), in the background:
    nice -n 15 nohup .venv/bin/python experiments/toderici_modes.py --tag modes --until 300 \
        >> ~/lic_runs/toderici/modes.log 2>&1 &
    # … a later session continues all four runs to step 600 of the same 3000-step schedule:
    nice -n 15 nohup .venv/bin/python experiments/toderici_modes.py --tag modes --until 600 >> … &
    # the optimiser-schedule comparison of docs/TODERICI.md (GRU one-shot, port MultiStep vs cosine):
    python experiments/toderici_modes.py --tag schedules --cells gru --modes one-shot --schedules multistep,cosine \\
        --width 0.0625 --iterations 8 --batch 8 --steps 600 --until 600 --val-crop 64
    python experiments/toderici_modes.py --tag modes --report-only      # rewrite the report from the runs
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("LIC_JAX_SHARED", os.path.join(REPO, "..", "shared"))
sys.path.insert(0, REPO)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", default="modes", help="experiment name (workdir and report names)")
    p.add_argument("--root", default=os.path.expanduser("~/lic_runs/toderici"))
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "toderici"))
    p.add_argument("--cells", default="lstm,gru")
    p.add_argument("--modes", default="one-shot,additive")
    p.add_argument("--schedules", default="cosine", help="multistep (the port's halvings) | cosine | constant")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--iterations", type=int, default=16)
    p.add_argument("--steps", type=int, default=3000, help="schedule length (num_steps)")
    p.add_argument("--until", type=int, default=300, help="train every run up to this step now (≤ --steps)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-crop", type=int, default=128)
    p.add_argument("--val-limit", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=100, help="validation cadence (plus step 0 and --until)")
    p.add_argument("--train", default=os.path.join(SHARED, "data", "train"))
    p.add_argument("--val", default=os.path.join(SHARED, "data", "val"))
    p.add_argument("--report-only", action="store_true")
    return p.parse_args(argv)


def runs(a):
    for cell in a.cells.split(","):
        for mode in a.modes.split(","):
            for sched in a.schedules.split(","):
                yield f"{cell}-{mode}-{sched}", {"cell": cell, "mode": mode, "schedule": sched}


def command(a, name, arch, workdir):
    arg = (f"cell={arch['cell']},mode={arch['mode']},width={a.width},iterations={a.iterations},"
           f"schedule={arch['schedule']}")
    return [sys.executable, os.path.join(REPO, "train.py"), "--config", f"{REPO}/configs/toderici2017.py:{arg}",
            "--workdir", workdir, f"--config.num_steps={a.steps}", f"--config.batch_size={a.batch}",
            f"--config.optim.lr={a.lr}", f"--config.seed={a.seed}", f"--config.data.train={a.train}",
            f"--config.data.val={a.val}", f"--config.data.val_crop={a.val_crop}",
            f"--config.data.val_limit={a.val_limit}", "--config.val_batch_size=8",
            f"--config.eval_every={a.eval_every}", f"--config.checkpoint_every={min(a.eval_every, 50)}",
            "--config.eval_at_start=True", f"--config.stop_at={min(a.until, a.steps)}", "--config.log_every=25",
            "--config.progress_bar=False"]


def reached(workdir, step) -> bool:
    from lic_jax.train.metrics_writer import read_metrics

    return any(v["step"] >= step for v in read_metrics(os.path.join(workdir, "metrics.jsonl"), "val"))


def exported_step(workdir):
    art = os.path.join(workdir, "artifact", "config.json")
    if not os.path.isfile(art):
        return None
    tr = json.load(open(art))["metadata"].get("training", {})
    return tr.get("exported_step", tr.get("checkpoint_meta", {}).get("step"))


def exported_until(workdir):
    """The installment the artifact was exported at (its config's ``stop_at``; the exported, best
    checkpoint can be earlier), or None: an artifact of an earlier installment is stale."""
    art = os.path.join(workdir, "artifact", "config.json")
    if not os.path.isfile(art):
        return None
    tr = json.load(open(art))["metadata"].get("training", {})
    cfg = tr.get("config", {})
    return cfg.get("stop_at") or cfg.get("num_steps") or exported_step(workdir)


def summarise(a):
    """Per-iteration curves of every run that has validation records."""
    from lic_jax.train.iterative import curve
    from lic_jax.train.metrics_writer import read_metrics

    rows, results = [], {}
    for name, arch in runs(a):
        wd = os.path.join(a.root, a.tag, name)
        val = read_metrics(os.path.join(wd, "metrics.jsonl"), "val")
        train = read_metrics(os.path.join(wd, "metrics.jsonl"), "train")
        if not val:
            continue
        exported = exported_step(wd)
        best = min(val, key=lambda v: v["loss"])
        sel = next((v for v in val if v["step"] == exported), best)
        last = val[-1]
        t0 = min(r["time"] for r in val + train)
        t1 = max(r["time"] for r in val + train)
        results[name] = {**arch, "width": a.width, "iterations": a.iterations, "steps_done": max(r["step"] for r in val + train),
                         "steps": a.steps, "selected_step": sel["step"], "selected": curve(sel), "last_step": last["step"],
                         "last": curve(last), "mean_l1_selected": sel["loss"], "wall_s_logged": t1 - t0,
                         "train_loss_last": train[-1]["loss"] if train else None,
                         "history": [{"step": v["step"], "mean_l1": v["loss"], "psnr_last": v["psnr"]} for v in val]}
        c = curve(sel)
        for k, bpp, l1, psnr in zip(c["iteration"], c["bpp"], c["l1"], c["psnr"]):
            rows.append({"run": name, **arch, "step": sel["step"], "iteration": k, "bpp": bpp, "l1": l1, "psnr": psnr})
    os.makedirs(a.out, exist_ok=True)
    meta = {"tag": a.tag, "budget": {"steps": a.steps, "until": a.until, "batch": a.batch, "crop": 32, "lr": a.lr, "width": a.width,
                                     "iterations": a.iterations, "seed": a.seed},
            "validation": {"data": a.val, "centre_crop": a.val_crop, "images": a.val_limit,
                           "binarizer": "sign", "psnr": "per image of the clipped reconstruction, then mean"},
            "runs": results}
    with open(os.path.join(a.out, f"{a.tag}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if rows:
        with open(os.path.join(a.out, f"{a.tag}.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        plot(results, os.path.join(a.out, f"{a.tag}.png"), meta["budget"])
    return results


def plot(results, path, budget):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, r in sorted(results.items()):
        c = r["selected"]
        ax[0].plot(c["bpp"], c["psnr"], marker=".", label=f"{name} (step {r['selected_step']})")
        ax[1].plot(c["iteration"], c["l1"], marker=".", label=name)
    ax[0].set_xlabel("bpp (iterations / 8, before entropy coding)")
    ax[0].set_ylabel("validation PSNR (dB)")
    ax[1].set_xlabel("iteration")
    ax[1].set_ylabel("validation mean |x − x̂|")
    ax[0].legend(fontsize=7)
    ax[1].legend(fontsize=7)
    fig.suptitle(f"Toderici 2017, equal budget: {budget['steps']} steps × batch {budget['batch']} (32×32), "
                 f"width {budget['width']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    a = parse_args(argv)
    todo = list(runs(a))
    if not a.report_only:
        t_start = time.time()
        for i, (name, arch) in enumerate(todo):
            wd = os.path.join(a.root, a.tag, name)
            until = min(a.until, a.steps)
            if reached(wd, until) and (exported_until(wd) or 0) >= until:
                print(f"[{i + 1}/{len(todo)}] {name}: at step {until} already", flush=True)
                continue
            os.makedirs(wd, exist_ok=True)
            t0 = time.time()
            print(f"[{i + 1}/{len(todo)}] {name}: training to step {until} of {a.steps} in {wd}", flush=True)
            cmd = command(a, name, arch, wd)
            with open(os.path.join(wd, "train.log"), "a") as log:
                r = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
                if r.returncode == 0 and until < a.steps:  # train.py exports by itself only at num_steps
                    r = subprocess.run(cmd + ["--mode=export"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                print(f"  {name}: train.py exited {r.returncode} (see {wd}/train.log); continuing", flush=True)
            el = time.time() - t_start
            left = len(todo) - i - 1
            print(f"  {name}: {time.time() - t0:.0f} s; elapsed {el / 60:.1f} min, ≈ {el / (i + 1) * left / 60:.0f} min "
                  f"left for {left} runs (if the rest cost the same)", flush=True)
            summarise(a)
    res = summarise(a)
    for name, r in sorted(res.items()):
        c = r["selected"]
        print(f"{name}: step {r['selected_step']} (of {r['steps_done']} done, schedule {r['steps']}) mean L1 {r['mean_l1_selected']:.4f}; PSNR @ it 1/4/8/16: "
              + " / ".join(f"{c['psnr'][k - 1]:.2f}" for k in (1, 4, 8, 16) if k <= len(c["psnr"])))
    print(f"report: {os.path.join(a.out, a.tag)}.json/.csv/.png")


if __name__ == "__main__":
    main()
