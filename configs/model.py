"""One training configuration for every registered model (``lic_jax.models.registry``).

The config argument names the model first (registry name; ``_`` may stand for ``-``), then its
options, comma-separated, in any order:

fixed-rate models (``bmshj2018-factorized``, ``bmshj2018-hyperprior``, ``mbt2018-mean``,
``mbt2018``, ``bls2017``, ``lee2019``): a quality (default 3: the record's (N, M) and λ) and/or
the distortion (``mse`` | ``ms-ssim``)::

    python train.py --config configs/model.py:mbt2018 --workdir runs/mbt2018-q3
    python train.py --config configs/model.py:mbt2018,5 ...             # quality 5 (its (N, M) and λ)
    python train.py --config configs/model.py:bls2017,3,ms-ssim ...     # MS-SSIM distortion, quality 3's λ
    python train.py --config configs/model.py:lee2019 --config.lmbda=0.01 ...   # explicit λ
    python train.py --config configs/model.py:bmshj2018-hyperprior,3,N=64,M=96 ...  # quality 3's λ, other widths

variable-rate models (``mae-bls2017``: N = 192, seed 001's λ set; ``mae-hyperprior``: N = 128,
M = 192, CompressAI's eight λ) take the parts of ``lic_jax.train.config.apply_variable_rate_args``:
a λ preset (``seed001`` | ``compressai``), a mode (``all``: every λ on every batch | ``sample``: one
λ per step), the activation (``exp`` | ``sigmoid``), the modulation input (``log`` | ``linear``),
``mse`` / ``ms-ssim``::

    python train.py --config configs/model.py:mae-hyperprior,seed001,sample --workdir runs/mae-hp

The old per-model files (``configs/mbt2018.py``, ``configs/mae_bls2017.py``, …) are shims over
this one: ``configs/mbt2018.py:5,ms-ssim`` ≡ ``configs/model.py:mbt2018,5,ms-ssim``.
"""

from lic_jax.models import registry
from lic_jax.train.config import apply_variable_rate_args, get_default_config

DEFAULT_QUALITY = 3

# Variable-rate models: the architecture and λ set of their recipe (docs/MAE.md). λ enters the
# modulation nets as log-range (λ_min → 0, λ_max → 1); ':linear' is the paper's λ/λ_max, which needs
# far more steps to separate small λ (measured in docs/MAE.md).
VARIABLE_RATE_DEFAULTS = {
    "mae-bls2017": {"hparams": {"N": 192}, "lmbdas": "seed001"},
    "mae-hyperprior": {"hparams": {"N": 128, "M": 192}, "lmbdas": "compressai"},
}


def get_config(arg: str = ""):
    parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
    if not parts:
        raise ValueError(f"configs/model.py needs a model: configs/model.py:NAME[,options]; NAME one of "
                         f"{', '.join(sorted(registry.REGISTRY))}")
    name, options = _model_name(parts[0]), parts[1:]
    rec = registry.record(name)
    if rec.objective == "iterative-l1":  # Toderici 2017: its own recipe and options (configs/toderici2017.py)
        from configs import toderici2017

        return toderici2017.get_config(",".join(options))
    c = get_default_config()
    c.model = name
    if rec.variable_rate:
        c.quality = 0  # variable-rate models have no quality
        defaults = VARIABLE_RATE_DEFAULTS.get(name, {})
        for k, v in defaults.get("hparams", {}).items():
            c.model_hparams[k] = v
        c.model_hparams.activation = "exp"
        c.model_hparams.lmbda_input = "log"
        c.variable_rate.lmbdas = defaults.get("lmbdas", "compressai")
        c.variable_rate.mode = "all"
        return apply_variable_rate_args(c, ",".join(options))
    c.quality = DEFAULT_QUALITY
    for part in options:
        if part.isdigit():
            c.quality = int(part)
        elif part in ("mse", "ms-ssim"):
            c.metric = part
        elif "=" in part and part.partition("=")[2].isdigit():  # an integer hyper-parameter, e.g. N=64
            c.model_hparams[part.partition("=")[0]] = int(part.partition("=")[2])
        else:
            raise ValueError(f"config argument must be a quality, 'mse' / 'ms-ssim' or NAME=INTEGER "
                             f"(a hyper-parameter such as N=64), got {part!r}")
    if rec.qualities is not None and c.quality not in rec.qualities:
        raise ValueError(f"quality must be one of {sorted(rec.qualities)} for {name}, got {c.quality}")
    return c


def _model_name(part: str) -> str:
    if part in registry.REGISTRY:
        return part
    dashed = part.replace("_", "-")
    if dashed in registry.REGISTRY:
        return dashed
    raise ValueError(f"unknown model {part!r}; available: {', '.join(sorted(registry.REGISTRY))}")
