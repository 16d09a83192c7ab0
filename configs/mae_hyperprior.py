"""Modulated autoencoder on the scale hyperprior (`mae-hyperprior`, seed 001; docs/MAE.md).

One model for every rate: loss Σ_λ w_λ·(bpp_λ + λ·255²·MSE_λ) over a λ set (CompressAI scale).

    python train.py --config configs/mae_hyperprior.py --workdir runs/mae-hp                 # CompressAI's 8 λ
    python train.py --config configs/mae_hyperprior.py:seed001 --workdir runs/mae-hp-s001    # seed 001's {64,…,4096}/255²
    python train.py --config configs/mae_hyperprior.py:seed001,sample,sigmoid ...            # one λ per step; sigmoid modulation
    python train.py --config configs/mae_hyperprior.py --config.variable_rate.lmbdas=0.002,0.008,0.032 \\
        --config.variable_rate.weights=1,1,2 ...                                              # own λ set and weights

Config argument (comma-separated, any order): a λ preset (`seed001` | `compressai`), a mode
(`all`: every λ on every batch, the batch replicated per λ | `sample`: one λ per step), an
activation (`exp` | `sigmoid`), the modulation input (`log` | `linear`), `mse` / `ms-ssim`. `batch_size` counts images per λ: in `all`
mode a step runs K·batch_size forward/backward passes.
"""

from lic_jax.train.config import apply_variable_rate_args, get_default_config


def get_config(arg: str = ""):
    c = get_default_config()
    c.model = "mae-hyperprior"
    c.quality = 0  # variable-rate models have no quality
    c.model_hparams.N = 128
    c.model_hparams.M = 192
    c.model_hparams.activation = "exp"
    # λ enters the modulation nets as log-range (λ_min → 0, λ_max → 1); ':linear' for the paper's
    # λ/λ_max, which needs far more steps to separate small λ (measured in docs/MAE.md)
    c.model_hparams.lmbda_input = "log"
    c.variable_rate.lmbdas = "compressai"
    c.variable_rate.mode = "all"
    return apply_variable_rate_args(c, arg)
