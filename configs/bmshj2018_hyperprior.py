"""Ballé et al. 2018, scale hyperprior (`bmshj2018-hyperprior`).

    python train.py --config configs/bmshj2018_hyperprior.py --workdir runs/bmshj2018_hyperprior-q3
    python train.py --config configs/bmshj2018_hyperprior.py:5 ...            # quality 5 (its (N, M) and λ)
    python train.py --config configs/bmshj2018_hyperprior.py:3,ms-ssim ...    # MS-SSIM distortion, quality 3's λ
    python train.py --config configs/bmshj2018_hyperprior.py --config.lmbda=0.01 ...   # explicit λ
"""

from lic_jax.train.config import get_default_config


def get_config(arg: str = ""):
    c = get_default_config()
    c.model = "bmshj2018-hyperprior"
    c.quality = 3
    for part in filter(None, (arg or "").split(",")):
        if part.isdigit():
            c.quality = int(part)
        elif part in ("mse", "ms-ssim"):
            c.metric = part
        else:
            raise ValueError(f"config argument must be a quality and/or 'mse' / 'ms-ssim', got {part!r}")
    return c
