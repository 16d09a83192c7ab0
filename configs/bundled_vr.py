"""The long CPU run for the bundled default model (issue 18): one variable-rate hyperprior for
every rate a user picks.

mae-hyperprior (N=128, M=192, exp modulation, log-λ input), λ ∈ CompressAI's qualities 1–6
(0.0018 … 0.0483, about 0.1–1.0 bpp on Kodak for trained models), one λ per step ('sample'
mode, equal weights), Minnen & Singh 2020's mixed quantisation (noise for the rate, rounding with
a straight-through gradient for the synthesis). Data: the 1,100 training photos of
shared/data/photos (OSIE + BSDS500 train/test) plus shared/data/train, each example downscaled by
a random factor in [0.5, 0.75] (removes the OSIE JPEG blocks, shared/data/README.md) before a
random 128² crop; validation on shared/data/val. Kodak is never seen.

The run lives outside the repository and resumes exactly whenever it is restarted:

    scripts/long_run.sh start      # nice -n 19, ~/lic_runs/bundled-vr, logs CPU-hours

``LIC_INIT=DIR`` starts the run from a lic_jax model directory of the same architecture, e.g. the
graft of the bundled default made by ``scripts/make_bundled_vr_init.py`` (long_run.sh records it on
the first start and sets it again on every resume).

The config argument's part ``stage2`` (``configs/bundled_vr.py:stage2``) is the recipe the
equal-CPU-budget sweep chose (``experiments/recipe_sweep.py``, ``docs/TRAINING.md`` "Recipes under
equal CPU budgets"): Adam 5e-4 instead of 2e-4 (val RD loss 1.503 against 1.897 for 2e-4 and 1.607
for 1e-3 at 0.5 CPU-h each), over 24,000 steps (200 of linear warm-up: the optimiser state starts
afresh) — a horizon whose cosine decay (the last 15 %) a CPU run reaches in ≈ 10–15 CPU-h, where the
first stage's decay at step 255,000 was out of reach (the sweep's ``no-decay`` lost 4.3 % against
decaying). Stage 2 starts from the first stage's export
(``LIC_INIT``) in its own run directory.

**Stage 2 and the narrow run were stopped** (2026-12-03): started from trained weights, lr 5e-4 knocked
both back (training PSNR 27.6-27.9 → 24.8-26.9 within 300-500 steps, still below the start after 1,600
and 2,600 steps; the narrow model's Kodak output gained a +4…+8 grey-level bias). The sweep measured lr
from the initialiser, where a high lr helps; on trained weights it does not. The long run went back to
stage 1 (lr 2e-4, its own Adam state). The part ``finetune`` is the recipe for warm-started weights now
(the GPU run's): stage 1's lr 2e-4 after 200 warm-up steps, 12,000 steps, the same cosine decay.

The part ``narrow`` (``configs/bundled_vr.py:narrow``) is the same model at N=64, M=96 with lr 5e-4,
the sweep's best recipe at 0.5 CPU-h (val RD loss 1.238, against 1.503 for N=128/M=192 at lr 5e-4;
``docs/TRAINING.md``): a step costs a third of the wide model's CPU time. 30,000 steps
(≈ 4.5 CPU-h at ≈ 0.52 CPU-s/step), 200 warm-up steps, the same cosine decay over the last 15 %.
It starts from ``LIC_INIT`` = ``scripts/make_bundled_vr_init.py OUT --source ARTIFACT`` with the
sweep's narrow export as the source. The other parts are :func:`apply_variable_rate_args`'s.
"""

import os

from lic_jax.train.config import apply_variable_rate_args, get_default_config, set_recipe

_SHARED = os.environ.get("LIC_JAX_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))


def get_config(arg: str = ""):
    c = get_default_config()
    c.model = "mae-hyperprior"
    c.quality = 0
    c.model_hparams.N = 128
    c.model_hparams.M = 192
    c.model_hparams.activation = "exp"
    c.model_hparams.lmbda_input = "log"
    c.variable_rate.lmbdas = "0.0018,0.0035,0.0067,0.0130,0.0250,0.0483"
    c.variable_rate.mode = "sample"
    c.quant = "mixed"
    data = os.path.join(_SHARED, "data")
    c.data.train = f"{data}/photos,{data}/train"
    c.data.val = f"{data}/val"
    c.data.scale = "0.5,0.75"
    c.data.workers = 2
    parts = [p for p in (arg or "").split(",") if p]
    stage2, narrow, finetune = "stage2" in parts, "narrow" in parts, "finetune" in parts
    parts = [p for p in parts if p not in ("stage2", "narrow", "finetune")]
    if narrow:
        c.model_hparams.N, c.model_hparams.M = 64, 96
    steps = 12_000 if finetune else 30_000 if narrow else 24_000 if stage2 else 300_000
    # finetune keeps stage 1's lr: warm-started at 5e-4, both stage 2 and the narrow run lost 1-2 dB
    # of training PSNR within 300 steps and had not recovered it 1,600-2,600 steps later (docs/TRAINING.md)
    lr = 2e-4 if finetune or not (stage2 or narrow) else 5e-4
    set_recipe(c, steps=steps, lr=lr, batch=8, crop=128,
               val_crop=256, schedule="constant_then_cosine", decay_start=0.85, final_lr_factor=0.05,
               log_every=100, eval_every=2000, checkpoint_every=500)
    if stage2 or narrow or finetune:
        c.optim.warmup_steps = 200  # a fresh Adam state on warm-started weights
    c.init_from = os.path.expanduser(os.environ.get("LIC_INIT", ""))
    c.export.which = "best"
    return apply_variable_rate_args(c, ",".join(parts))
