"""A tiny configuration for tests and smoke runs: a narrow hyperprior model on 64×64 crops.

    python train.py --config configs/smoke.py --workdir /tmp/lic-smoke
"""

from lic_jax.train.config import get_default_config


def get_config():
    c = get_default_config()
    c.model = "bmshj2018-hyperprior"
    c.quality = 3
    c.model_hparams.N = 16
    c.model_hparams.M = 24
    c.lmbda = 0.0130
    c.data.crop = 64
    c.data.val_crop = 64
    c.data.cache = True
    c.data.val_limit = 8
    c.batch_size = 8
    c.val_batch_size = 8
    c.num_steps = 20
    c.optim.lr = 1e-3
    c.optim.schedule = "constant"
    c.log_every = 5
    c.eval_every = 10
    c.checkpoint_every = 10
    c.keep_checkpoints = 2
    c.tb_images = 2
    c.progress_bar = False
    return c
