"""The base training configuration (``ml_collections.ConfigDict``); ``configs/*.py`` start from it.

Every field can be overridden on the command line: ``--config.optim.lr=2e-4``.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from lic_jax.utils.paths import shared_data

__all__ = ["get_default_config", "apply_variable_rate_args"]


def get_default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    # -- model and loss -------------------------------------------------------------------
    c.model = "bmshj2018-hyperprior"  # a lic_jax.models registry name
    c.quality = 3  # CompressAI quality 1..8: picks (N, M) and, unless lmbda is set, λ
    c.model_hparams = ml_collections.ConfigDict()  # overrides of the registry's hyper-parameters (N, M, …)
    c.lmbda = config_dict.placeholder(float)  # explicit λ (CompressAI scale); None → the quality's λ
    c.metric = "mse"  # distortion: 'mse' (λ·255²·MSE) or 'ms-ssim' (λ·(1 − MS-SSIM))
    c.quant = "noise"  # training quantisation proxy: 'noise' | 'ste' | 'mixed'
    c.ms_ssim_small = "error"  # MS-SSIM on crops ≤ 160 px: 'shrink' the window (or 'error')
    c.dtype = "float32"  # compute dtype: 'float32' or 'bfloat16' (parameters stay float32)
    c.init_from = ""  # a lic_jax model directory to start from (fine-tuning; same architecture)
    c.integer_entropy = False  # train the portable twin: integer hyper-synthesis, fake-quant (train/portable.py)
    c.integer_calib = 16  # training images whose centre crops calibrate its activation scales

    # -- variable-rate models (mae-bls2017, mae-hyperprior; docs/MAE.md) ----------------------
    # The loss is Σ_λ w_λ·(bpp_λ + λ·255²·MSE_λ) over a λ set (CompressAI scale). Ignored by
    # fixed-rate models (they use lmbda / quality above).
    c.variable_rate = ml_collections.ConfigDict()
    c.variable_rate.lmbdas = ""  # preset 'seed001' | 'compressai', or 'l1,l2,…'; '' → model_hparams.lmbdas / the model's default
    c.variable_rate.mode = "all"  # 'all': every λ on every batch (batch replicated per λ: K·batch_size forward passes)
    #                               'sample': one λ per step, drawn with probability w_λ/Σw (loss scaled by Σw)
    c.variable_rate.weights = ""  # 'w1,w2,…' in increasing-λ order; '' → all 1 (the seed's equal weights)

    # -- data -----------------------------------------------------------------------------
    c.data = ml_collections.ConfigDict()
    c.data.train = shared_data("train")  # $LIC_JAX_SHARED/data/train (default <repo>/../shared); folder, glob, comma-separated list, or 'tfds:NAME[:SPLIT]'
    c.data.val = shared_data("val")  # same forms; '' disables validation
    c.data.crop = 256  # random crop size for training
    c.data.val_crop = 256  # centre crop for validation (0: full images, which must share one size)
    c.data.scale = ""  # 'lo,hi': downscale each training image by a random factor in [lo, hi] before cropping ('' = off)
    c.data.hflip = True
    c.data.vflip = False
    c.data.shuffle = True
    c.data.cache = False  # keep decoded training images in memory (small datasets)
    c.data.masks = ""  # GAN training: folder of PNG masks beside the training images (<masks>/<stem>.png; t_a, lic_jax.train.labels)
    c.data.val_masks = ""  # GAN training: the same for the validation images; adds PSNR / MS-SSIM inside the masks
    c.data.prefetch = 2  # batches built ahead of the training loop
    c.data.workers = 2  # input threads
    c.data.loader = "threads"  # 'threads' (input_pipeline.TrainBatches) or 'grain' (grain_pipeline.GrainBatches): the same batches
    c.data.grain_processes = 0  # data.loader='grain': worker processes (0 = threads in the training process)
    c.data.val_limit = -1  # use at most this many validation images (-1: all)
    c.data.tfds_data_dir = ""  # TFDS data_dir ('' = TFDS default)
    c.data.tfds_manual_dir = ""  # manual_dir for manual-download TFDS datasets (prepares array_record once)
    c.data.image_key = "image"  # feature holding the image in TFDS examples

    c.batch_size = 8  # global batch (all devices of all processes)
    c.val_batch_size = 8  # global validation batch (rounded up to a multiple of the device count)
    c.num_steps = 1_000_000
    c.seed = 0

    # -- optimisation ---------------------------------------------------------------------
    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-4
    # 'constant' | 'constant_then_step' | 'constant_then_linear' | 'constant_then_cosine' | 'multistep'
    c.optim.schedule = "constant_then_step"
    c.optim.milestones = ""  # 'multistep': 'f1,f2,…' fractions of num_steps where the lr is multiplied by gamma
    c.optim.gamma = 0.5  # 'multistep' factor (PyTorch MultiStepLR; Toderici's port halves)
    c.optim.decay_start = 0.9  # fraction of num_steps after which the lr decays
    c.optim.final_lr_factor = 0.1  # lr at the end (step: after the drop) = lr · factor
    c.optim.warmup_steps = 0
    c.optim.clip_norm = 1.0  # global-norm clipping of the main gradients (0: off)
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.aux_loss = True  # train EB quantiles with CompressAI's auxiliary loss
    c.optim.aux_lr = 1e-3  # its separate Adam

    # -- loop, logging, checkpoints -------------------------------------------------------
    c.log_every = 100
    c.eval_every = 5000  # 0: validate only at the end
    c.eval_at_start = False  # also validate the initial model (logged as step 0 on a fresh run)
    c.checkpoint_every = 5000  # 0: no checkpoints
    c.keep_checkpoints = 3
    c.keep_best = True  # also keep the best checkpoint by validation RD loss
    c.async_checkpoint = True
    c.tb_images = 4  # reconstructions written to TensorBoard at each validation
    c.tensorboard = True
    c.progress_bar = True

    c.export = ml_collections.ConfigDict()
    c.export.at_end = True  # write the deployable artifact when training finishes
    c.export.dir = ""  # '' → WORKDIR/artifact
    c.export.which = "best"  # 'best' (by validation) or 'last'
    c.export.fit_quantiles = True  # exact EB quantiles by bisection at export

    c.stop_at = 0  # > 0: stop after this step with a validation and a checkpoint (lr schedule still spans num_steps;
    #                  re-run with a larger stop_at to continue: equal budgets in installments,
    #                  experiments/toderici_modes.py)
    c.debug_nan_step = -1  # testing aid: poison the parameters before this step (NaN guard test)
    c.debug_step_sleep = 0.0  # testing aid: seconds to sleep after every step (kill -9 test)
    return c


def apply_variable_rate_args(c: ml_collections.ConfigDict, arg: str) -> ml_collections.ConfigDict:
    """Parse the ``configs/mae_*.py:ARG`` argument: comma-separated parts, any order — a λ preset
    (``seed001`` | ``compressai``), a mode (``all`` | ``sample``), an activation (``exp`` |
    ``sigmoid``), the modulation input (``linear``: λ/λ_max as the paper | ``log``), a distortion
    (``mse`` | ``ms-ssim``)."""
    from ..models.mae import LAMBDA_PRESETS

    for part in filter(None, (arg or "").split(",")):
        if part in LAMBDA_PRESETS:
            c.variable_rate.lmbdas = part
        elif part in ("all", "sample"):
            c.variable_rate.mode = part
        elif part in ("exp", "sigmoid"):
            c.model_hparams.activation = part
        elif part in ("linear", "log"):
            c.model_hparams.lmbda_input = part
        elif part in ("mse", "ms-ssim"):
            c.metric = part
        else:
            raise ValueError(f"config argument parts must be a λ preset ({', '.join(sorted(LAMBDA_PRESETS))}), "
                             f"'all'/'sample', 'exp'/'sigmoid', 'linear'/'log' or 'mse'/'ms-ssim', got {part!r}")
    return c


def set_recipe(c: ml_collections.ConfigDict, *, steps: int, lr: float, batch: int = 8, crop: int = 128,
               val_crop: int | None = None, schedule: str = "constant", decay_start: float | None = None,
               final_lr_factor: float | None = None, log_every: int = 100, eval_every: int = 1000,
               checkpoint_every: int = 500, keep_checkpoints: int = 2, cache: bool = True,
               **extra) -> ml_collections.ConfigDict:
    """The training recipe in one call (batch, crops, steps, learning-rate schedule, cadence), so
    that configs state only their values. ``extra``: further top-level fields (e.g. ``tb_images``)."""
    c.batch_size = c.val_batch_size = batch
    c.data.crop = crop
    c.data.val_crop = crop if val_crop is None else val_crop
    c.data.cache = cache
    c.num_steps = steps
    c.optim.lr = lr
    c.optim.schedule = schedule
    if decay_start is not None:
        c.optim.decay_start = decay_start
    if final_lr_factor is not None:
        c.optim.final_lr_factor = final_lr_factor
    c.log_every, c.eval_every, c.checkpoint_every = log_every, eval_every, checkpoint_every
    c.keep_checkpoints = keep_checkpoints
    c.progress_bar = False
    for k, v in extra.items():
        c[k] = v
    return c
