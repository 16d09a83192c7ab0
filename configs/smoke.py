"""A tiny configuration for tests and smoke runs: a narrow hyperprior model on 64×64 crops.

    python train.py --config configs/smoke.py --workdir /tmp/lic-smoke
"""

from lic_jax.train.config import get_default_config, set_recipe


def get_config():
    c = get_default_config()
    c.model = "bmshj2018-hyperprior"
    c.quality = 3
    c.model_hparams.N = 16
    c.model_hparams.M = 24
    c.lmbda = 0.0130
    c.data.val_limit = 8
    set_recipe(c, steps=20, lr=1e-3, batch=8, crop=64, log_every=5, eval_every=10, checkpoint_every=10, tb_images=2)
    return c
