"""Ballé et al. 2018, factorized prior (`bmshj2018-factorized`).

    python train.py --config configs/bmshj2018_factorized.py --workdir runs/bmshj2018_factorized-q3
    python train.py --config configs/bmshj2018_factorized.py:5 ...            # quality 5 (its (N, M) and λ)
    python train.py --config configs/bmshj2018_factorized.py:3,ms-ssim ...    # MS-SSIM distortion, quality 3's λ
    python train.py --config configs/bmshj2018_factorized.py --config.lmbda=0.01 ...   # explicit λ
"""

from lic_jax.train.config import get_default_config


def get_config(arg: str = ""):
    c = get_default_config()
    c.model = "bmshj2018-factorized"
    c.quality = 3
    for part in filter(None, (arg or "").split(",")):
        if part.isdigit():
            c.quality = int(part)
        elif part in ("mse", "ms-ssim"):
            c.metric = part
        else:
            raise ValueError(f"config argument must be a quality and/or 'mse' / 'ms-ssim', got {part!r}")
    return c
