"""Modulated autoencoder on bls2017 (`mae-bls2017`, seed 001 / Yang et al. 2020; docs/MAE.md).

One model for every rate: loss Σ_λ w_λ·(bpp_λ + λ·255²·MSE_λ) over a λ set (CompressAI scale);
the backbone is bls2017 with N = 192 and GDN after every analysis stage (SYSTEMS.md §6), one
shared factorized entropy model for every λ.

    python train.py --config configs/mae_bls2017.py --workdir runs/mae-bls                  # seed 001's λ set
    python train.py --config configs/mae_bls2017.py:compressai,sample --workdir runs/x     # 8 λ, one per step
    python train.py --config configs/mae_bls2017.py:sigmoid --config.model_hparams.N=128 ...

Config argument: as configs/mae_hyperprior.py (`seed001`|`compressai`, `all`|`sample`, `exp`|`sigmoid`, `log`|`linear`, `mse`|`ms-ssim`).
"""

from lic_jax.train.config import apply_variable_rate_args, get_default_config


def get_config(arg: str = ""):
    c = get_default_config()
    c.model = "mae-bls2017"
    c.quality = 0  # variable-rate models have no quality
    c.model_hparams.N = 192
    c.model_hparams.activation = "exp"
    # λ enters the modulation nets as log-range (λ_min → 0, λ_max → 1); ':linear' for the paper's
    # λ/λ_max, which needs far more steps to separate small λ (measured in docs/MAE.md)
    c.model_hparams.lmbda_input = "log"
    c.variable_rate.lmbdas = "seed001"
    c.variable_rate.mode = "all"
    return apply_variable_rate_args(c, arg)
