"""Toderici et al. 2017 recurrent codec (seed 003; SYSTEMS.md §7; docs/TODERICI.md): the port's recipe.

Random 32×32 crops (``data.train``: ../shared/data/train by default, any image folder / glob /
list via ``--config.data.train``), batch 32, the L1 residual loss summed over the unrolled
iterations / their number (``toderici2017.l1_loss``; objective ``'iterative-l1'``), the stochastic
binarizer keyed by the step (exact resume), Adam 5e-4 without gradient clipping, halved at the
port's MultiStep milestones (epochs 3, 10, 20, 50, 100 of 200 [V RNN-PT train.py] → fractions of
``num_steps``). Validation: the per-iteration curve (sign binarizer) on centre crops of
``data.val``; the best checkpoint is the one with the lowest mean L1 over the iterations.

The argument sets the architecture, comma-separated ``key=value`` parts in any order (a bare cell
or mode name works too)::

    python train.py --config configs/toderici2017.py:cell=gru,mode=one-shot,width=0.25 --workdir runs/tod
    python train.py --config configs/toderici2017.py:lstm,additive --workdir runs/tod-lstm   # the port
    python train.py --config configs/toderici2017.py:gru,one-shot,width=0.25,schedule=cosine ...

keys: ``cell`` (lstm | gru | residual-gru), ``mode`` (one-shot | additive | residual-scaling),
``width`` (channel multiplier, 1 = the paper's layer table), ``iterations`` (default 16),
``schedule`` (``multistep``: the port's halvings | ``cosine``: constant then cosine to 5 % over the
last 30 % | ``constant``).
"""

from lic_jax.models import toderici2017 as T
from lic_jax.train.config import get_default_config, set_recipe

PORT_MILESTONES = "0.015,0.05,0.1,0.25,0.5"  # epochs 3, 10, 20, 50, 100 of the port's 200


def apply_schedule(c, name: str):
    """The two optimiser schedules compared in docs/TODERICI.md (same Adam, same lr)."""
    if name == "multistep":
        c.optim.schedule = "multistep"
        c.optim.milestones = PORT_MILESTONES
        c.optim.gamma = 0.5
    elif name == "cosine":
        c.optim.schedule = "constant_then_cosine"
        c.optim.decay_start = 0.7
        c.optim.final_lr_factor = 0.05
    elif name == "constant":
        c.optim.schedule = "constant"
    else:
        raise ValueError(f"schedule must be multistep | cosine | constant, got {name!r}")
    return c


def get_config(arg: str = ""):
    c = get_default_config()
    c.model = "toderici2017"
    c.quality = 0  # no quality, no λ: the objective is the iterative L1 loss
    c.model_hparams.cell = "lstm"
    c.model_hparams.mode = "additive"
    c.model_hparams.width = 1.0
    c.model_hparams.iterations = 16
    set_recipe(c, steps=200_000, lr=5e-4, batch=32, crop=32, val_crop=256, log_every=100, eval_every=2000,
               checkpoint_every=1000)
    c.optim.clip_norm = 0.0  # the port does not clip
    c.optim.aux_loss = False  # no entropy bottlenecks
    c.export.fit_quantiles = False
    c.data.cache = True
    c.data.val_limit = 16
    apply_schedule(c, "multistep")
    for part in filter(None, (p.strip() for p in (arg or "").split(","))):
        key, _, value = part.partition("=")
        if not value:  # a bare cell or mode name
            if key in T.CELLS:
                key, value = "cell", key
            elif key in T.MODES:
                key, value = "mode", key
            else:
                raise ValueError(f"configs/toderici2017.py: a bare part must be a cell {T.CELLS} or a mode {T.MODES}, "
                                 f"got {part!r}")
        if key == "cell":
            if value not in T.CELLS:
                raise ValueError(f"cell must be one of {T.CELLS}, got {value!r}")
            c.model_hparams.cell = value
        elif key == "mode":
            if value not in T.MODES:
                raise ValueError(f"mode must be one of {T.MODES}, got {value!r}")
            c.model_hparams.mode = value
        elif key == "width":
            c.model_hparams.width = float(value)
        elif key == "iterations":
            c.model_hparams.iterations = int(value)
        elif key == "schedule":
            apply_schedule(c, value)
        else:
            raise ValueError(f"configs/toderici2017.py keys: cell, mode, width, iterations, schedule; got {key!r}")
    return c
