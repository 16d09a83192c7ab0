"""A CPU-sized mbt2018 (N=128, M=192, λ = 0.0130) fine-tuned from the bundled default's transforms.

Used to measure the RD cost of the portable ``mbt2018-int`` against float mbt2018 on trained
weights (issue 13; docs/FORMAT.md §7.1). Not a paper-quality model: 800 steps on a 2-core CPU.

    python scripts/make_mbt2018_init.py ~/lic_runs/mbt2018-small/init
    LIC_INIT=~/lic_runs/mbt2018-small/init nice -n 5 python train.py --config configs/mbt2018_small.py \
        --workdir ~/lic_runs/mbt2018-small/run
"""

import os

from lic_jax.train.config import get_default_config, set_recipe
from lic_jax.utils.paths import shared_data


def get_config():
    c = get_default_config()
    c.model = "mbt2018"
    c.quality = 4
    c.model_hparams = {"N": 128, "M": 192}
    c.metric = "mse"
    c.init_from = os.path.expanduser(os.environ.get("LIC_INIT", "~/lic_runs/mbt2018-small/init"))
    c.data.train = shared_data("train")
    c.data.val = shared_data("val")
    set_recipe(c, steps=800, lr=3e-4, batch=8, crop=128, val_crop=256, schedule="constant_then_cosine",
               decay_start=0.5, final_lr_factor=0.1, log_every=25, eval_every=200, checkpoint_every=100)
    c.export.which = "best"
    return c
