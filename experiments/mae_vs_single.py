#!/usr/bin/env python
"""One modulated model for every rate vs separately trained single-rate models (seed 001's Table I, in spirit).

    nice -n 10 python experiments/mae_vs_single.py --out runs/mae-vs-single        # train + evaluate (resumable)
    python experiments/mae_vs_single.py --out runs/mae-vs-single --stage eval       # re-evaluate trained models

What it does (docs/MAE.md records a run):

1. **(a)** trains ONE modulated autoencoder (``mae-bls2017`` or ``mae-hyperprior``) over a λ set
   (default seed 001's {64, 256, 1024, 4096}/255² on CompressAI's scale, loss
   Σ_λ (bpp_λ + λ·255²·MSE_λ), every λ on every batch), and **(b)** one unmodulated model of the
   same backbone and width (``bls2017`` / ``bmshj2018-hyperprior`` of the registry) per λ, all
   through ``lic_jax.train.trainer.train_and_evaluate`` (the code path of ``train.py``).
2. **Same total training budget**, counted in *image-passes*: one forward + backward pass of one
   crop at one λ (the unit of compute; the modulation MLPs add < 0.1 % FLOPs). Each single-rate
   model gets ``--steps`` steps of ``--batch`` crops (S·B passes, K models: K·S·B). The modulated
   model gets K·S steps of ``--batch``/K crops, each crop replicated at all K λ (B passes per step):
   K·S·B passes, the same number of optimizer steps in total, the same schedule shape and lr.
3. Evaluates everything on Kodak through **real bitstreams** (``.lic`` files, file bytes →
   bpp; decoded 8-bit images → PSNR / MS-SSIM; exact round trip of the latents checked for every
   image and λ): the single models at their λ, the modulated model at the K trained λ and on a
   denser log-spaced λ grid (continuous λ).
4. Writes ``OUT/results.json`` (all numbers), CompressAI-format curves ``OUT/mae.json``,
   ``OUT/mae-dense.json``, ``OUT/single.json``, the RD plot ``OUT/rd.png``, BD-rate of the modulated
   model against the single models (PCHIP and cubic; ``lic_jax.evaluation.bd``), parameter
   counts and storage (bytes of ``params.msgpack``) of one modulated model vs the set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

BACKBONES = {"bls2017": ("mae-bls2017", "bls2017"), "hyperprior": ("mae-hyperprior", "bmshj2018-hyperprior")}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO, "runs", "mae-vs-single"))
    p.add_argument("--stage", choices=["all", "train", "eval"], default="all")
    p.add_argument("--backbone", choices=sorted(BACKBONES), default="bls2017")
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=96, help="latent channels (hyperprior backbone only)")
    p.add_argument("--lmbdas", default="seed001", help="preset (seed001, compressai) or comma-separated λ (CompressAI scale)")
    p.add_argument("--activation", choices=["exp", "sigmoid"], default="exp")
    p.add_argument("--steps", type=int, default=1500, help="steps of each single-rate model (the modulated one: K×)")
    p.add_argument("--batch", type=int, default=8, help="crops per step of a single-rate model (image-passes per step)")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-data", default=os.path.join(REPO, "..", "shared", "data", "train"))
    p.add_argument("--val-data", default=os.path.join(REPO, "..", "shared", "data", "val"))
    p.add_argument("--kodak", default=None, help="Kodak directory (default: lic_jax's lookup, shared/data/kodak)")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N Kodak images only (0: all 24)")
    p.add_argument("--dense", type=int, default=8, help="λ values of the modulated model's dense curve (log-spaced)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def base_config(args, model: str):
    from lic_jax.train.config import get_default_config

    c = get_default_config()
    c.model = model
    c.quality = 0
    c.model_hparams.N = args.N
    if args.backbone == "hyperprior":
        c.model_hparams.M = args.M
    c.data.train = os.path.abspath(args.train_data)
    c.data.val = os.path.abspath(args.val_data)
    c.data.crop = args.crop
    c.data.val_crop = 256
    c.data.val_limit = 8
    c.data.cache = True
    c.val_batch_size = 8
    c.seed = args.seed
    c.optim.lr = args.lr
    c.optim.schedule = "constant_then_cosine"
    c.optim.decay_start = 0.5
    c.optim.final_lr_factor = 0.05
    c.log_every = 50
    c.eval_every = 0  # validate at the end only
    c.checkpoint_every = 500
    c.keep_checkpoints = 1
    c.keep_best = False
    c.tb_images = 0
    c.progress_bar = False
    c.export.which = "last"
    return c


def run_configs(args):
    """[(name, workdir, config)]: the modulated model first, then one single-rate model per λ."""
    from lic_jax.models import resolve_lmbdas

    lmbdas = resolve_lmbdas(args.lmbdas)
    K = len(lmbdas)
    if args.batch % K:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the number of λ ({K})")
    mae_name, single_name = BACKBONES[args.backbone]
    runs = []
    c = base_config(args, mae_name)
    c.model_hparams.activation = args.activation
    c.variable_rate.lmbdas = ",".join(repr(v) for v in lmbdas)
    c.variable_rate.mode = "all"
    c.batch_size = args.batch // K  # images per step; each at all K λ → args.batch image-passes
    c.num_steps = K * args.steps
    runs.append(("mae", os.path.join(args.out, "mae"), c))
    for k, lam in enumerate(lmbdas):
        c = base_config(args, single_name)
        c.lmbda = lam
        c.batch_size = args.batch
        c.num_steps = args.steps
        runs.append((f"single-{k}", os.path.join(args.out, f"single-{k}"), c))
    return lmbdas, runs


def train_all(args):
    from lic_jax.train.metrics_writer import read_metrics
    from lic_jax.train.trainer import train_and_evaluate

    lmbdas, runs = run_configs(args)
    times = {}
    for name, wd, c in runs:
        art = os.path.join(wd, "artifact", "config.json")
        if os.path.exists(art):
            print(f"[{name}] already trained ({art})", flush=True)
            continue
        print(f"[{name}] training {c.model} for {c.num_steps} steps × batch {c.batch_size} → {wd}", flush=True)
        t0 = time.time()
        train_and_evaluate(c, wd)
        times[name] = time.time() - t0
        print(f"[{name}] done in {times[name] / 60:.1f} min", flush=True)
    return lmbdas, runs


def train_wall_time(wd: str) -> float:
    """Training wall time of a run (from its exported metadata)."""
    with open(os.path.join(wd, "artifact", "config.json")) as f:
        return float(json.load(f)["metadata"]["training"].get("wall_time_s", float("nan")))


if __name__ == "__main__":
    a = parse_args()
    if a.stage in ("all", "train"):
        train_all(a)
