"""The configuration that trained the bundled default model (lic_jax/assets/models/default).

bmshj2018-hyperprior with quality 3/4's architecture (N=128, M=192) at λ = 0.0130 (CompressAI's
quality-4 MSE λ), trained on shared/data/train (352 crops of 256², random 128² crops) on a 2-core
CPU within a session. A short schedule: lr 5e-4 (5× the papers' 1e-4, to get far in few steps)
constant for half the run, then a cosine decay to 2.5e-5.

    nice -n 15 python train.py --config configs/default_model.py --workdir runs/default-hp
"""

from lic_jax.train.config import get_default_config, set_recipe
from lic_jax.utils.paths import shared_data


def get_config():
    c = get_default_config()
    c.model = "bmshj2018-hyperprior"
    c.quality = 4  # N=128, M=192; λ = 0.0130 (MSE)
    c.metric = "mse"
    c.data.train = shared_data("train")  # $LIC_JAX_SHARED/data/train (default <repo>/../shared)
    c.data.val = shared_data("val")
    set_recipe(c, steps=2000, lr=5e-4, batch=8, crop=128, val_crop=256, schedule="constant_then_cosine",
               decay_start=0.5, final_lr_factor=0.05, log_every=25, eval_every=250, checkpoint_every=250)
    c.export.which = "best"
    return c
