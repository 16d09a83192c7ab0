"""Train ARCNN / ARCNN+ASPP on real-JPEG patches, evaluate, and export small weights.

    nice -n 10 python experiments/arcnn_train.py --workdir ~/lic_runs/arcnn/arcnn-qf10 \
        --model arcnn --qf 10 --steps 3000 [--max-minutes M] [--eval-only] [--export]

Re-running the same command resumes from ``<workdir>/ckpt.msgpack`` (exactly: the data stream is a
pure function of the seed and the step). ``--export`` evaluates on the classic grey images and
Kodak Y′ and writes ``lic_jax/assets/arcnn/<model>-y-qf<QF>.{msgpack,json}``.
See docs/RESTORATION.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("LIC_JAX_SHARED", os.path.join(os.path.dirname(REPO), "shared"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--model", default="arcnn", choices=("arcnn", "arcnn-aspp"))
    p.add_argument("--activation", default="relu", choices=("relu", "prelu"))
    p.add_argument("--init", default="he", choices=("he", "paper"))
    p.add_argument("--colour", default="y", choices=("y", "rgb"))
    p.add_argument("--rates", default="1,6,12,18")
    p.add_argument("--qf", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--patch", type=int, default=40)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=os.path.join(SHARED, "data", "train"))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--export", action="store_true")
    p.add_argument("--init-from", default=None,
                   help="start from exported weights (path stem, e.g. lic_jax/assets/arcnn/arcnn-y-qf10); "
                        "recorded as init_from in the exported JSON")
    p.add_argument("--kodak-limit", type=int, default=None, help="evaluate on the first N Kodak images only")
    a = p.parse_args(argv)

    import jax

    jax.config.update("jax_threefry_partitionable", True)
    from lic_jax.restoration.train import Recipe, TrainRun, evaluate, export

    r = Recipe(model=a.model, activation=a.activation, init=a.init, colour=a.colour,
               rates=tuple(int(v) for v in a.rates.split(",")), qf=a.qf, batch=a.batch, patch=a.patch, crop=a.crop,
               lr=a.lr, seed=a.seed, data=a.data)
    run = TrainRun(r, a.workdir, workers=a.workers, init_from=a.init_from)
    if not a.eval_only:
        rec = run.run(a.steps, log_every=a.log_every, ckpt_every=a.ckpt_every,
                      max_seconds=None if a.max_minutes is None else 60 * a.max_minutes)
        print(json.dumps(rec), flush=True)
    if a.eval_only or a.export:
        t = time.time()
        res = {"step": run.step}
        res["classic"] = evaluate(r, run.state["params"], os.path.join(SHARED, "data", "classic"))
        print("classic", json.dumps(res["classic"]["mean"]), flush=True)
        res["kodak"] = evaluate(r, run.state["params"], os.path.join(SHARED, "data", "kodak"), limit=a.kodak_limit)
        print("kodak", json.dumps(res["kodak"]["mean"]), flush=True)
        res["eval_s"] = time.time() - t
        with open(os.path.join(a.workdir, f"eval_step{run.step}.json"), "w") as f:
            json.dump(res, f, indent=1)
        if a.export:
            gain = res["classic"]["mean"]["psnr_gain"]
            if gain <= 0:
                print(f"not exported: no PSNR gain on the classic images ({gain:+.3f} dB)", flush=True)
                return 1
            extra = {}
            if run.init_from:
                extra = {**run.init_from, "steps_total": run.step + (run.init_from.get("init_from_steps") or 0)}
            stem = export(r, run.state["params"], os.path.join(REPO, "lic_jax", "assets", "arcnn"),
                          {"steps": run.step, **extra, "classic": res["classic"]["mean"], "kodak_y": res["kodak"]["mean"],
                           "command": "python experiments/arcnn_train.py " + " ".join(sys.argv[1:])})
            print("exported", stem, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
