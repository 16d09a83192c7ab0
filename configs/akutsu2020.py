"""Akutsu et al. 2020 selective detail decoding (seed 002; SYSTEMS.md §8; docs/AKUTSU.md): the paper's recipe.

Objective ``'gan'`` (``lic_jax.train.gan``): alternating D / G steps (1:1), the G loss
L_d + λ_e·bpp + λ_g·L_g with λ_p 5, λ_e 0.18, λ_g 0.01 (S002 §3.1), eq. 5's softplus GAN loss;
Adam lr 8e-5 for both networks, batch 8, ≈ 800 k iterations [V §3.1]; 256² random crops and no
warm-up [I, §8] (``warmup=N``: MS-SSIM + rate only, D frozen, for the first N steps).
Validation: eval-mode bpp, PSNR and MS-SSIM of G_m and of the fused image on centre crops of
``data.val``; the best checkpoint minimises L_d + λ_e·bpp (no GAN term).

The argument is comma-separated ``key=value`` parts (or the bare word ``small``)::

    python train.py --config configs/akutsu2020.py --workdir runs/akutsu              # the paper's recipe
    python train.py --config configs/akutsu2020.py:small --workdir /tmp/akutsu-smoke  # CPU smoke run
    python train.py --config configs/akutsu2020.py:width=0.25,blocks=2,warmup=5000 --workdir runs/akutsu-q

keys: ``small`` (width 1/16, 1 RCAB per group, 64² crops, batch 2, 20 steps, MS-SSIM window
shrunk for the small crops), ``cpu`` (the CPU run: width 1/4, 1 RCAB, 256² crops of the training
photos, batch 4, 2,000 MSE steps at lr 5e-4, then MS-SSIM at lr 1e-4, the GAN term from step 4,000; ``_cpu``), ``ablation_b`` (the paper's ablation (b): the same
network trained with MS-SSIM + rate on G_m alone, λ_p = 0 and no GAN term for the whole run; G_s
gets no gradient and is not used: evaluate with the main decoder), ``masks`` / ``val_masks`` (mask folders, t_a), ``width`` (channel multiplier, 1 = the paper), ``blocks`` (RCABs per
residual group, paper 6), ``detail_ca`` (G_s's channel attention: ``local`` (default, a
9×9 variance; ``lic decompress --detail-roi`` is exact) or ``global`` (the paper's whole-map
variance); docs/AKUTSU.md), ``decoder_norm`` (the decoder bodies' normalisation: ``gdn``, the default
and CVQN's, or ``igdn``, the form before 2026-12-04, which did not carry over from 176² crops to whole
images; docs/AKUTSU.md ambiguity 3), ``mean_shift`` (``true``, the default and CVQN's: E sees x minus
the RGB mean and the decoders add it back; ``false``, the form before 2026-12-05; docs/AKUTSU.md ambiguity 8), ``latent`` (the latent's channels at width 1, the paper's 64, scaled by
``width`` like every channel count: ``width=0.25,latent=256`` gives 64 channels; docs/AKUTSU.md "Colour"), ``encoder`` (E's four body widths at
width 1, colon-separated, the paper's ``32:64:128:192``, also scaled by ``width``), ``window`` (a local causal-attention window of that radius, decoded
by wavefronts; default: the paper's global attention; docs/AKUTSU.md "A local attention window"),
``mse`` (steps of MSE pre-training before eq. 3's MS-SSIM, ``gan.mse_steps``: CompressAI fine-tunes
its MS-SSIM models from MSE ones; trained on MS-SSIM from the start the CPU model codes no colour,
docs/AKUTSU.md "Colour"), ``mse_weighted`` (``true``: the MSE phase's fused term is t_a-weighted like eq. 3's
wMS-SSIM; ``false``: uniform, t_a from the MS-SSIM phase on; docs/AKUTSU.md "The masks in the MSE phase"),
``warmup`` (steps without GAN term and D update), ``steps``, ``batch``, ``crop``.
"""

from lic_jax.train.config import get_default_config, set_recipe
from lic_jax.train.gan import SETTINGS

import ml_collections


def _small(c):
    c.model_hparams.width = 0.0625
    c.model_hparams.blocks = 1
    set_recipe(c, steps=20, lr=8e-5, batch=2, crop=64, val_crop=64, log_every=1, eval_every=10,
               checkpoint_every=10, cache=True)
    c.val_batch_size = 2
    c.data.val_limit = 4
    c.ms_ssim_small = "shrink"
    c.tb_images = 2
    return c


def _cpu(c):
    """The CPU run (issue 20): a quarter-width model with one RCAB per group on 256² crops (the paper's
    size; ẑ 4 × 4) of the 1,100 training photos downscaled by [0.5, 0.75] (shared/data/README.md),
    batch 4, then validation on 16 centre crops of 256² of shared/data/val every 1,000 steps. Phases:
    2,000 steps of MSE + rate at lr 5e-4 (``gan.mse_steps``), 2,000 of eq. 3's MS-SSIM + rate at lr 1e-4
    (D frozen), then the GAN term (warm-up 4,000). Until 2026-12-05 (session o): batch 2, MS-SSIM from
    step 0 at lr 1e-4, warm-up 2,000; that model coded no colour, and two images a step were the cause
    (docs/AKUTSU.md "The batch, not the loss weights"). The MSE phase's fused term is uniform
    (``gan.mse_weighted`` False, since 2026-12-05 session p): weighted by t_a, whose background is 1e-3 of a
    face or text pixel, it spent the fused term on a few marked pixels per crop and the model coded no
    colour (docs/AKUTSU.md "The masks in the MSE phase"). Masks: ``masks=DIR`` and ``val_masks=DIR``
    (``python -m lic_jax.train.labels``). The lr drops at the end of the MSE phase, also when ``mse=N``
    or ``steps=N`` change it (:func:`get_config`)."""
    import os

    shared = os.environ.get("LIC_JAX_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    c.model_hparams.width = 0.25
    c.model_hparams.blocks = 1
    set_recipe(c, steps=200_000, lr=5e-4, batch=4, crop=256, val_crop=256, log_every=50, eval_every=1000,
               checkpoint_every=250, cache=False, schedule="constant_then_step", final_lr_factor=0.2)
    c.gan.mse_steps = 2000
    c.gan.mse_weighted = False  # t_a only from the MS-SSIM phase on (docs/AKUTSU.md "The masks in the MSE phase")
    c.data.train = os.path.join(shared, "data", "photos")
    c.data.val = os.path.join(shared, "data", "val")
    c.data.scale = "0.5,0.75"
    c.data.val_limit = 16
    c.gan.warmup_steps = 4000
    c.tb_images = 2
    # scripts/long_run.sh start sets LIC_INIT: on a new machine, the committed seed (the generator; D starts afresh)
    c.init_from = os.path.expanduser(os.environ.get("LIC_INIT", ""))
    return c


def _flag(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError(f"configs/akutsu2020.py: a flag is 'true' or 'false', got {value!r}")
    return value == "true"


# bare words: recipes applied in order (``ablation_b`` is applied last, after every key)
BARE = {"small": _small, "cpu": _cpu, "ablation_b": None}
# key=value parts: key → (parser, config field, …); the module docstring says what each means
KEYS = {
    "masks": (str, "data.masks"),
    "val_masks": (str, "data.val_masks"),
    "width": (float, "model_hparams.width"),
    "blocks": (int, "model_hparams.blocks"),
    "detail_ca": (str, "model_hparams.detail_ca"),
    "decoder_norm": (str, "model_hparams.decoder_norm"),
    "mean_shift": (_flag, "model_hparams.mean_shift"),
    "latent": (int, "model_hparams.latent"),  # the latent's channels at width 1, scaled by width
    "encoder": (lambda v: tuple(int(w) for w in v.split(":")), "model_hparams.encoder_channels"),  # E's bodies
    "window": (int, "model_hparams.attention_window"),  # a local causal-attention window (wavefronts)
    "mse": (int, "gan.mse_steps"),  # MSE pre-training steps (docs/AKUTSU.md "Colour")
    "mse_weighted": (_flag, "gan.mse_weighted"),  # its fused term t_a-weighted (true) or uniform (false)
    "warmup": (int, "gan.warmup_steps"),
    "steps": (int, "num_steps"),
    "batch": (int, "batch_size", "val_batch_size"),
    "crop": (int, "data.crop", "data.val_crop"),
}


def get_config(arg: str = ""):
    c = get_default_config()
    c.model = "akutsu2020"
    c.quality = 0  # no quality, no λ: the objective is the GAN loss of train/gan.py
    c.metric = "ms-ssim"
    c.model_hparams.width = 1.0
    c.model_hparams.blocks = 6
    c.model_hparams.detail_ca = "local"  # G_s's CA: 'local' (9×9: --detail-roi exact) or 'global' (the paper)
    c.model_hparams.decoder_norm = "gdn"  # the decoder bodies: 'gdn' (CVQN) or 'igdn' (before 2026-12-04; AKUTSU.md)
    c.model_hparams.mean_shift = True  # CVQN's RGB mean shift around E and the decoders (False before 2026-12-05)
    set_recipe(c, steps=800_000, lr=8e-5, batch=8, crop=256, val_crop=256, log_every=100, eval_every=10_000,
               checkpoint_every=5000, cache=False)
    c.optim.clip_norm = 1.0  # the project's default for the codec; the paper states none
    c.optim.aux_loss = True  # the hyper-latent's entropy bottleneck
    c.export.fit_quantiles = True
    c.data.val_limit = 24
    c.gan = ml_collections.ConfigDict(dict(SETTINGS))  # λ_p, λ_e, λ_g, warmup_steps, d_lr, d_b1, d_b2, d_clip_norm
    ablation = False
    for part in filter(None, (p.strip() for p in (arg or "").split(","))):
        key, _, value = part.partition("=")
        if not value:
            if key not in BARE:
                raise ValueError(f"configs/akutsu2020.py: the bare parts are {', '.join(BARE)}, got {part!r}")
            if key == "ablation_b":
                ablation = True
            else:
                BARE[key](c)
            continue
        if key not in KEYS:
            raise ValueError(f"configs/akutsu2020.py keys: {', '.join((*BARE, *KEYS))}; got {key!r}")
        parse, *paths = KEYS[key]
        v = parse(value)
        c.update_from_flattened_dict({path: v for path in paths})
    if c.optim.schedule == "constant_then_step" and c.gan.mse_steps:  # the cpu recipe: lr × 0.2 after MSE
        c.optim.decay_start = min(1.0, c.gan.mse_steps / c.num_steps)
    if ablation:  # the paper's ablation (b): G_m alone, MS-SSIM + rate, no GAN (D never runs), no detail term
        c.gan.lambda_p = 0.0
        c.gan.warmup_steps = int(c.num_steps)
    return c
