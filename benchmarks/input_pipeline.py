#!/usr/bin/env python
"""Images/s and CPU cost of the training input pipeline: the threaded loader against Grain (issue 18).

Both loaders produce the same batches (``tests/test_input_pipeline.py::test_grain_stream_equals_threaded_batches``);
this measures what each costs on the bundled recipe's data (``configs/bundled_vr.py``: the 1,100
photos plus the train crops, a random downscale in [0.5, 0.75], random crops, flips):

* ``threads:N`` — ``TrainBatches.iterate`` with N threads (each builds whole batches);
* ``grain:N`` — ``GrainBatches`` with N Grain read threads (examples of a batch side by side);
* ``grain-mp:N`` — ``GrainBatches`` with N Grain worker processes.

Every configuration starts a fresh iterator at a different step in each round (no warm page-cache
advantage for the later ones beyond the first round), discards its first batch (start-up is
reported separately), and times ``--steps`` batches. The rounds interleave the configurations.
Reported per configuration: median images/s, CPU milliseconds per image (this process and its
children), start-up seconds, and the other processes' CPU share (``benchmarks/quiet.py``).

The CPU share of a training step: ``--step-seconds`` (default 3.5 s, the quiet hyperprior step at
batch 8 × 256² in ``docs/SPEED.md``) × the cores gives the CPU time of one step; the input's share
is its CPU time per batch over that. ``--need`` (default 336 images/s: the H200 run of
``benchmarks/gpu_suite.sh`` at batch 16 × 256²) gives the cores a loader would need to keep a GPU fed.

    python benchmarks/input_pipeline.py --json benchmarks/results/input_pipeline_<machine>_<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from quiet import Contention, cpu_info  # noqa: E402

from lic_jax.train.input_pipeline import TrainBatches, make_source  # noqa: E402


def _cpu_seconds(proc) -> float:
    t = proc.cpu_times()
    total = t.user + t.system
    for c in proc.children(recursive=True):
        try:
            ct = c.cpu_times()
            total += ct.user + ct.system
        except Exception:  # a worker that exited between the listing and the read
            pass
    return total


def _iterator(kind: str, n: int, tb: TrainBatches, start: int, stop: int):
    if kind == "threads":
        tb.workers, tb.prefetch = n, 2
        return tb.iterate(start, stop)
    from lic_jax.train.grain_pipeline import GrainBatches

    if kind == "grain":
        return GrainBatches(tb, threads=n, prefetch=2).iterate(start, stop)
    if kind == "grain-mp":
        return GrainBatches(tb, threads=2, prefetch=2, processes=n).iterate(start, stop)
    raise ValueError(kind)


def measure(kind, n, tb, start, steps, proc):
    t0, c0 = time.perf_counter(), _cpu_seconds(proc)
    it = _iterator(kind, n, tb, start, start + steps + 64)  # open beyond the timed batches: workers stay alive
    next(it)  # start-up: threads / worker processes, the first batch
    t1, c1 = time.perf_counter(), _cpu_seconds(proc)
    pids = [proc.pid] + [c.pid for c in proc.children(recursive=True)]
    meter = Contention(pids).start()
    for _ in range(steps):
        next(it)
    t2 = time.perf_counter()
    c2 = _cpu_seconds(proc)  # while the workers still run (their CPU time is gone once they exit)
    other = meter.stop()
    it.close()
    imgs = steps * tb.local_batch
    return {"startup_s": t1 - t0, "images_per_s": imgs / (t2 - t1), "cpu_ms_per_image": 1e3 * (c2 - c1) / imgs,
            "others_cpu": other}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = os.environ.get("LIC_JAX_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--data", default=f"{shared}/data/photos,{shared}/data/train")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--scale", default="0.5,0.75")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loaders", default="threads:1,threads:2,grain:1,grain:2,grain-mp:1,grain-mp:2")
    ap.add_argument("--step-seconds", type=float, default=3.5)
    ap.add_argument("--need", type=float, default=336.0)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    import psutil

    proc = psutil.Process()
    src = make_source(a.data)
    configs = [(k, int(n)) for k, n in (c.split(":") for c in a.loaders.split(","))]
    runs = {f"{k}:{n}": [] for k, n in configs}
    for r in range(a.rounds):
        for k, n in configs:
            tb = TrainBatches(src, a.batch, a.crop, seed=0, scale=a.scale, prefetch=2, workers=2)
            res = measure(k, n, tb, 1000 * (r + 1) + 100 * len(runs[f"{k}:{n}"]), a.steps, proc)
            runs[f"{k}:{n}"].append(res)
            print(f"round {r + 1} {k}:{n}: {res['images_per_s']:.1f} img/s, {res['cpu_ms_per_image']:.2f} CPU ms/img, "
                  f"start-up {res['startup_s']:.2f} s, others {100 * (res['others_cpu'] or 0):.0f}%", flush=True)
    cores = os.cpu_count() or 1
    summary = {}
    print(f"\n{len(src)} images, batch {a.batch} × {a.crop}², scale {a.scale}, {cores} cores")
    print("| loader | images/s | CPU ms / image | start-up s | input CPU share of a "
          f"{a.step_seconds:g} s step | cores for {a.need:g} img/s | others' CPU (max) |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        ips = statistics.median(x["images_per_s"] for x in rs)
        cpu = statistics.median(x["cpu_ms_per_image"] for x in rs)
        su = statistics.median(x["startup_s"] for x in rs)
        share = cpu * 1e-3 * a.batch / (a.step_seconds * cores)
        need_cores = a.need * cpu * 1e-3
        oth = max((x["others_cpu"] or 0) for x in rs)
        summary[name] = {"images_per_s": ips, "cpu_ms_per_image": cpu, "startup_s": su, "step_cpu_share": share,
                         "cores_for_need": need_cores, "others_cpu_max": oth}
        print(f"| {name} | {ips:.1f} | {cpu:.2f} | {su:.2f} | {100 * share:.2f} % | {need_cores:.1f} | {100 * oth:.0f} % |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "cpu": cpu_info(), "images": len(src), "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "summary": summary, "rounds": runs}, f, indent=1)
        print("wrote", a.json)


if __name__ == "__main__":
    main()
