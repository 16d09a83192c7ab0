"""RD training loop: optax optimiser, jitted data-parallel train/eval steps, checkpoints, export.

Entry point: :func:`train_and_evaluate(config, workdir)` (what ``train.py`` runs).

* **Optimiser** — ``optax.multi_transform`` with two groups, as CompressAI's ``examples/train.py``:
  every parameter except the entropy bottlenecks' ``quantiles`` gets global-norm clipping (1.0)
  and Adam (lr 1e-4, constant-then-decay schedule); the ``quantiles`` get their own Adam (1e-3)
  on the auxiliary loss ``Σ|logit c(q) − t|`` (gradients of the RD loss never reach them). At
  export the quantiles are additionally replaced by the exact bisection fit
  (``fit_quantiles``); see ``docs/TRAINING.md`` for why both.
* **Data parallelism** — one ``jax.jit`` step on a ``('data',)`` mesh over all devices of all
  processes, parameters replicated, batch sharded; the mean over the global batch makes XLA
  all-reduce the gradients (:mod:`lic_jax.train.parallel`).
* **Randomness** — the noise key of step ``s`` is ``fold_in(key, s)`` and the batch of step ``s``
  is a pure function of ``(seed, s)``: a run restarted from a checkpoint continues with exactly
  the data and noise the uninterrupted run would have used.
* **Variable-rate models** (``mae-*``, :func:`resolve_variable_rate`) — loss
  Σ_λ w_λ·(bpp_λ + λ·255²·MSE_λ) over the model's λ set: every λ on every batch (``'all'``, the
  batch replicated per λ) or one λ per step drawn ∝ w (``'sample'``); validation per λ
  (``bpp@λ``, ``psnr@λ``, ``loss@λ``; ``loss`` = Σ w_λ loss_λ selects the best checkpoint);
  the artifact's spec and metadata carry the λ set (``docs/MAE.md``).
* **NaN/Inf guard** — every step reports whether its loss, gradients and new parameters are
  finite; the loop checks this before every log line, validation and checkpoint, and stops
  with :class:`NonFiniteError` without saving anything after the last finite step.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..losses import rate_distortion_loss
from ..models import MODELS, get_model, is_variable_rate, lmbda_for, resolve_lmbdas
from ..models.base import total_bits
from . import parallel
from .input_pipeline import TrainBatches, eval_batches, make_source
from .metrics_writer import MetricWriter

__all__ = [
    "NonFiniteError",
    "build_model",
    "resolve_lambda",
    "VariableRate",
    "resolve_variable_rate",
    "make_schedule",
    "make_optimizer",
    "param_labels",
    "create_train_state",
    "make_train_step",
    "make_eval_step",
    "fit_all_quantiles",
    "export_artifact",
    "train_and_evaluate",
    "TrainResult",
]

log = logging.getLogger(__name__)

_DTYPES = {"float32": None, "fp32": None, "bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16}


class NonFiniteError(FloatingPointError):
    """The loss, the gradients or the parameters became NaN/Inf."""


@dataclasses.dataclass
class TrainResult:
    step: int
    params: Any  # host numpy pytree (last state)
    train_metrics: dict
    val_metrics: dict
    artifact: str | None
    wall_time_s: float


# ----------------------------------------------------------------------------------------------
# model, λ, optimiser
# ----------------------------------------------------------------------------------------------
def _to_dict(cfg):
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def build_model(config):
    """(training module, ModelSpec). The spec is what gets exported; the training module may run in bf16.

    Variable-rate models get their λ set (``variable_rate.lmbdas``, which must agree with
    ``model_hparams.lmbdas`` if both are given) in the spec, so the artifact records it."""
    hparams = _to_dict(config.get("model_hparams", {}) or {})
    quality = config.get("quality")
    if is_variable_rate(config.model):
        if quality:
            raise ValueError(f"{config.model} is a variable-rate model and has no quality: set --config.quality=0 "
                             f"and the λ set with --config.variable_rate.lmbdas")
        vr_set = _vr_config(config).get("lmbdas", "")
        if vr_set:
            lm = resolve_lmbdas(vr_set)
            if hparams.get("lmbdas") and resolve_lmbdas(hparams["lmbdas"]) != lm:
                raise ValueError(f"variable_rate.lmbdas {lm} and model_hparams.lmbdas "
                                 f"{resolve_lmbdas(hparams['lmbdas'])} disagree (set one of them)")
            hparams["lmbdas"] = lm
    model, spec = get_model(config.model, quality if quality else None, **hparams)
    dtype_name = str(config.get("dtype", "float32"))
    if dtype_name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype_name!r}")
    if _DTYPES[dtype_name] is not None:
        model = MODELS[spec.name](**{**spec.hparams, "dtype": _DTYPES[dtype_name]})
    return model, spec


def _vr_config(config) -> dict:
    vr = config.get("variable_rate", None)
    return _to_dict(vr) if vr is not None else {}


@dataclasses.dataclass(frozen=True)
class VariableRate:
    """The λ set of a variable-rate run, its weights w_λ and the mode ('all' | 'sample')."""

    lmbdas: tuple
    weights: tuple
    mode: str

    @property
    def probs(self) -> tuple:
        tot = float(sum(self.weights))
        return tuple(w / tot for w in self.weights)

    def tag(self, k: int) -> str:
        """Metric-name suffix of the k-th λ: '@0.0130'."""
        return f"@{self.lmbdas[k]:.4g}"

    def to_dict(self):
        return {"lmbdas": list(self.lmbdas), "weights": list(self.weights), "mode": self.mode}


def resolve_variable_rate(config, spec=None) -> VariableRate | None:
    """The variable-rate set-up of a config (None for fixed-rate models). The λ set is the model's
    (``spec.hparams['lmbdas']``, i.e. ``variable_rate.lmbdas`` or the registry default)."""
    if not is_variable_rate(config.model):
        return None
    if spec is None:
        spec = build_model(config)[1]
    lmbdas = tuple(float(v) for v in spec.hparams["lmbdas"])
    vr = _vr_config(config)
    mode = vr.get("mode", "all") or "all"
    if mode not in ("all", "sample"):
        raise ValueError(f"variable_rate.mode must be 'all' or 'sample', got {mode!r}")
    w = vr.get("weights", "") or ""
    if isinstance(w, str):
        try:
            weights = tuple(float(v) for v in w.split(",") if v.strip()) if w.strip() else (1.0,) * len(lmbdas)
        except ValueError:
            raise ValueError(f"variable_rate.weights must be comma-separated numbers, got {w!r}") from None
    else:
        weights = tuple(float(v) for v in w)
    if len(weights) != len(lmbdas):
        raise ValueError(f"variable_rate.weights has {len(weights)} values for {len(lmbdas)} λ {lmbdas}")
    if any(not (v >= 0 and math.isfinite(v)) for v in weights) or sum(weights) <= 0:
        raise ValueError(f"variable_rate.weights must be non-negative and not all zero, got {weights}")
    return VariableRate(lmbdas, weights, mode)


def resolve_lambda(config) -> float:
    if is_variable_rate(config.model):
        raise ValueError(f"{config.model} is a variable-rate model: use resolve_variable_rate (a λ set)")
    if config.get("lmbda") is not None:
        return float(config.lmbda)
    if not config.get("quality"):
        raise ValueError("set either config.lmbda or config.quality")
    return lmbda_for(int(config.quality), config.metric)


def make_schedule(optim, num_steps: int):
    """Constant lr, then a decay over the last ``1 − decay_start`` of the run (optionally a warm-up)."""
    lr = float(optim.lr)
    final = lr * float(optim.final_lr_factor)
    start = int(round(float(optim.decay_start) * num_steps))
    rest = max(1, num_steps - start)
    kind = optim.schedule
    if kind == "constant" or start >= num_steps:
        sched = optax.constant_schedule(lr)
    elif kind == "constant_then_step":
        sched = optax.piecewise_constant_schedule(lr, {start: float(optim.final_lr_factor)})
    elif kind == "constant_then_linear":
        sched = optax.join_schedules([optax.constant_schedule(lr), optax.linear_schedule(lr, final, rest)], [start])
    elif kind == "constant_then_cosine":
        sched = optax.join_schedules(
            [optax.constant_schedule(lr), optax.cosine_decay_schedule(lr, rest, alpha=float(optim.final_lr_factor))],
            [start])
    else:
        raise ValueError(f"unknown lr schedule {kind!r}")
    warm = int(optim.get("warmup_steps", 0) or 0)
    if warm > 0:
        base = sched

        def sched(step):  # noqa: F811
            return base(step) * jnp.minimum(1.0, (step + 1.0) / warm)

    return sched


def param_labels(params):
    """'aux' for every EB ``quantiles`` leaf, 'main' for everything else."""

    def label(path, _):
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", None))
        return "aux" if name == "quantiles" else "main"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(config, num_steps: int):
    o = config.optim
    schedule = make_schedule(o, num_steps)
    main = [optax.clip_by_global_norm(float(o.clip_norm))] if float(o.clip_norm) > 0 else []
    main.append(optax.adam(schedule, b1=float(o.b1), b2=float(o.b2), eps=float(o.eps)))
    aux = optax.adam(float(o.aux_lr)) if o.aux_loss else optax.set_to_zero()
    tx = optax.multi_transform({"main": optax.chain(*main), "aux": aux}, param_labels)
    return tx, schedule


def _aux_loss_method(m):
    eb = getattr(m, "entropy_bottleneck", None)
    return eb.aux_loss() if eb is not None else jnp.zeros((), jnp.float32)


# ----------------------------------------------------------------------------------------------
# state and steps
# ----------------------------------------------------------------------------------------------
def create_train_state(model, tx, key, mesh, init_size: int = 64):
    """{'step', 'params', 'opt_state'} initialised under jit, replicated over the mesh."""
    size = max(init_size, int(getattr(model, "downsampling", 16)))

    def init(key):
        k1, k2 = jax.random.split(key)
        x = jnp.zeros((1, size, size, 3), jnp.float32)
        if is_variable_rate(model):
            v = model.init({"params": k1, "noise": k2}, x, model.lmbda_max, train=True)
        else:
            v = model.init({"params": k1, "noise": k2}, x, train=True)
        params = v["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    return jax.jit(init, out_shardings=parallel.replicated(mesh))(key)


def _step_from_loss(loss_fn, model, config, tx, schedule, mesh):
    """A jitted train step around ``loss_fn(params, x, step) → (loss, metrics)``: RD gradients for
    the 'main' group, aux-loss gradients for the quantiles, one optax update, the finite flag."""
    use_aux = bool(config.optim.aux_loss)

    def aux_fn(params):
        return model.apply({"params": params}, method=_aux_loss_method)

    def step_fn(state, batch):
        params = state["params"]
        x = batch.astype(jnp.float32) / 255.0
        (loss, r), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, state["step"])
        labels = param_labels(params)
        if use_aux:
            aux, aux_grads = jax.value_and_grad(aux_fn)(params)
            grads = jax.tree_util.tree_map(lambda l, g, ga: ga if l == "aux" else g, labels, grads, aux_grads)
        else:
            aux = jnp.zeros((), jnp.float32)
        main_grads = jax.tree_util.tree_map(lambda l, g: g if l == "main" else jnp.zeros_like(g), labels, grads)
        gnorm = optax.global_norm(main_grads)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm) & jnp.isfinite(aux)
        for leaf in jax.tree_util.tree_leaves(new_params):
            finite = finite & jnp.all(jnp.isfinite(leaf))
        metrics = {k: v for k, v in r.items()}
        metrics.update(aux_loss=aux, grad_norm=gnorm, lr=schedule(state["step"]), finite=finite)
        new_state = {"step": state["step"] + 1, "params": new_params, "opt_state": opt_state}
        return new_state, metrics

    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(step_fn, in_shardings=(rep, dat), out_shardings=(rep, rep), donate_argnums=(0,))


def make_train_step(model, config, lmbda: float, tx, schedule, mesh, noise_key):
    metric = config.metric
    quant = config.quant
    small = config.get("ms_ssim_small", "error")

    def loss_fn(params, x, step):
        rng = jax.random.fold_in(noise_key, step)
        out = model.apply({"params": params}, x, train=True, quant=quant, rngs={"noise": rng})
        r = rate_distortion_loss(out, x, lmbda, metric, ms_ssim_small=small)
        return r["loss"], r

    return _step_from_loss(loss_fn, model, config, tx, schedule, mesh)


def _per_image_rd(out, x, lam, metric, small, clip_for_distortion=False):
    """Per-image bpp, mse, psnr (of x̂ clipped), [ms_ssim] and RD loss with per-image λ ``lam`` (B,)."""
    from ..metrics import ms_ssim

    h, w = x.shape[1:3]
    x_hat = out["x_hat"].astype(jnp.float32)
    bpp = total_bits(out["likelihoods"]) / (h * w)
    mse = jnp.mean(jnp.square(x_hat - x), axis=(1, 2, 3))
    x_c = jnp.clip(x_hat, 0.0, 1.0)
    psnr = 10.0 * jnp.log10(1.0 / jnp.maximum(jnp.mean(jnp.square(x_c - x), axis=(1, 2, 3)), 1e-12))
    vals = {"bpp": bpp, "mse": mse, "psnr": psnr}
    if metric == "ms-ssim":
        s = ms_ssim(x_c if clip_for_distortion else x_hat, x, data_range=1.0, reduce=False, small=small)
        vals["ms_ssim"] = s
        vals["loss"] = bpp + lam * (1.0 - s)
    else:
        vals["loss"] = bpp + lam * 255.0**2 * mse
    return vals


def make_vr_train_step(model, config, vr: VariableRate, tx, schedule, mesh, noise_key, lmbda_key):
    """Train step of a variable-rate model: loss Σ_λ w_λ·(bpp_λ + λ·255²·MSE_λ).

    * ``vr.mode == 'all'``: the batch is replicated once per λ (K·B images in one forward pass,
      per-image λ), each λ's terms are batch means; metrics per λ are logged as ``bpp@λ``, ``psnr@λ``,
      ``loss@λ``.
    * ``vr.mode == 'sample'``: one λ per step, λ_k drawn with probability w_k/Σw from
      ``fold_in(lmbda_key, step)`` (a pure function of the step: resumes are exact), loss
      ``Σw · (bpp + λ_k·255²·MSE)`` — an unbiased estimate of the 'all' objective.
    """
    metric = config.metric
    quant = config.quant
    small = config.get("ms_ssim_small", "error")
    lm = jnp.asarray(vr.lmbdas, jnp.float32)
    w = jnp.asarray(vr.weights, jnp.float32)
    K = len(vr.lmbdas)
    logp = jnp.log(jnp.asarray(vr.probs, jnp.float32))
    wsum = float(sum(vr.weights))

    def loss_fn(params, x, step):
        rng = jax.random.fold_in(noise_key, step)
        B = x.shape[0]
        if vr.mode == "all":
            xs = jnp.tile(x, (K, 1, 1, 1))
            lam = jnp.repeat(lm, B)
        else:
            k = jax.random.categorical(jax.random.fold_in(lmbda_key, step), logp)
            xs, lam = x, jnp.full((B,), lm[k])
        out = model.apply({"params": params}, xs, lam, train=True, quant=quant, rngs={"noise": rng})
        v = _per_image_rd(out, xs, lam, metric, small)
        if vr.mode == "all":
            per = {key: jnp.mean(val.reshape(K, B), axis=1) for key, val in v.items()}  # (K,) each
            loss = jnp.sum(w * per["loss"])
            r = {"loss": loss, "bpp": jnp.mean(per["bpp"]), "mse": jnp.mean(per["mse"]), "psnr": jnp.mean(per["psnr"])}
            for i in range(K):
                for key in ("loss", "bpp", "psnr"):
                    r[f"{key}{vr.tag(i)}"] = per[key][i]
        else:
            loss = wsum * jnp.mean(v["loss"])
            r = {"loss": loss, "bpp": jnp.mean(v["bpp"]), "mse": jnp.mean(v["mse"]), "psnr": jnp.mean(v["psnr"]),
                 "lmbda": lm[k]}
        if "ms_ssim" in v:
            r["ms_ssim"] = jnp.mean(v["ms_ssim"])
        return loss, r

    return _step_from_loss(loss_fn, model, config, tx, schedule, mesh)


def _eval_sums(out, x, lam, weights, metric, small, with_msssim):
    """Eval-mode metrics as weighted sums over the global batch (MS-SSIM of the clipped x̂), and the uint8 x̂."""
    from ..metrics import ms_ssim

    vals = _per_image_rd(out, x, lam, "mse", small)
    x_c = jnp.clip(out["x_hat"].astype(jnp.float32), 0.0, 1.0)
    if with_msssim:
        vals["ms_ssim"] = ms_ssim(x_c, x, data_range=1.0, reduce=False, small=small if small == "shrink" else "error")
    if metric == "ms-ssim":
        vals["loss"] = vals["bpp"] + lam * (1.0 - vals["ms_ssim"])
    sums = {k: jnp.sum(weights * v) for k, v in vals.items()}
    sums["count"] = jnp.sum(weights)
    return sums, jnp.round(x_c * 255.0).astype(jnp.uint8)


def make_eval_step(model, config, lmbda: float, mesh, crop: int):
    """Eval-mode (rounding) RD metrics: weighted sums over the global batch, and the uint8 x̂."""
    metric = config.metric
    small = config.get("ms_ssim_small", "error")
    with_msssim = metric == "ms-ssim" or crop > 160 or small == "shrink"

    def step_fn(params, batch, weights):
        x = batch.astype(jnp.float32) / 255.0
        out = model.apply({"params": params}, x, train=False)
        return _eval_sums(out, x, lmbda, weights, metric, small, with_msssim)

    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(step_fn, in_shardings=(rep, dat, dat), out_shardings=(rep, dat))


def make_vr_eval_step(model, config, mesh, crop: int):
    """Eval-mode RD metrics of a variable-rate model at one λ (a traced scalar argument, so one
    compilation serves every λ): weighted sums over the global batch, and the uint8 x̂."""
    metric = config.metric
    small = config.get("ms_ssim_small", "error")
    with_msssim = metric == "ms-ssim" or crop > 160 or small == "shrink"

    def step_fn(params, batch, weights, lmbda):
        x = batch.astype(jnp.float32) / 255.0
        lam = jnp.full((x.shape[0],), lmbda, jnp.float32)
        out = model.apply({"params": params}, x, lam, train=False)
        return _eval_sums(out, x, lam, weights, metric, small, with_msssim)

    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(step_fn, in_shardings=(rep, dat, dat, rep), out_shardings=(rep, dat))


def _local_rows(x):
    """This process's rows of a batch-sharded array (in global order)."""
    if x.is_fully_addressable:
        return np.asarray(x)
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    seen, parts = set(), []
    for s in shards:
        k = s.index[0].start or 0
        if k not in seen:
            seen.add(k)
            parts.append(np.asarray(s.data))
    return np.concatenate(parts)


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------
def fit_all_quantiles(params, tail_mass: float = 1e-9):
    """Replace the ``quantiles`` of every entropy bottleneck by the exact bisection fit."""
    from ..entropy_models import fit_quantiles

    def walk(t):
        if isinstance(t, dict):
            t = {k: walk(v) for k, v in t.items()}
            if "quantiles" in t and "matrix_0" in t:
                t["quantiles"] = np.asarray(fit_quantiles(t, tail_mass=tail_mass))
            return t
        return t

    return walk(jax.tree_util.tree_map(np.asarray, params))


def export_artifact(spec, params, out_dir: str, metadata: dict | None = None, fit_quantiles: bool = True) -> str:
    """Write the deployable artifact (``lic_jax.artifact.save_artifact``); returns the fingerprint."""
    from ..artifact import save_artifact

    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)
    if fit_quantiles:
        params = fit_all_quantiles(params)
    return save_artifact(out_dir, spec, {"params": params}, metadata or {})


# ----------------------------------------------------------------------------------------------
# loop
# ----------------------------------------------------------------------------------------------
class _Stop:
    """SIGTERM/SIGINT → checkpoint at the end of the current step and stop (preemption)."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGTERM,):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            pass
        return self

    def _handle(self, signum, _frame):
        self.requested = True
        log.warning("signal %d: stopping after this step with a checkpoint", signum)

    def __exit__(self, *exc):
        for sig, h in self._old.items():
            signal.signal(sig, h)


def _mean_metrics(ms: list[dict]) -> dict:
    keys = [k for k in ms[0] if k != "finite"]
    return {k: float(np.mean([float(m[k]) for m in ms])) for k in keys}


def _versions():
    import flax
    import optax as _optax

    v = {"jax": jax.__version__, "flax": flax.__version__, "optax": _optax.__version__}
    try:
        import orbax.checkpoint as ocp

        v["orbax"] = getattr(ocp, "__version__", "?")
    except Exception:
        pass
    return v


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Train (resuming from the newest intact checkpoint in ``workdir``), validate, export."""
    t_start = time.time()
    jax.config.update("jax_threefry_partitionable", True)
    workdir = os.path.abspath(workdir)
    pidx, pcount = jax.process_index(), jax.process_count()
    mesh = parallel.make_mesh()
    ndev = mesh.size
    B = int(config.batch_size)
    if B % ndev:
        raise ValueError(f"batch_size {B} must be a multiple of the {ndev} devices")
    num_steps = int(config.num_steps)
    if pidx == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(_to_dict(config), f, indent=2, sort_keys=True, default=str)

    model, spec = build_model(config)
    vr = resolve_variable_rate(config, spec)
    lmbda = resolve_lambda(config) if vr is None else None
    lmbda_desc = (f"λ={lmbda}" if vr is None else
                  f"λ set {list(vr.lmbdas)} (weights {list(vr.weights)}, mode '{vr.mode}')")
    tx, schedule = make_optimizer(config, num_steps)
    key = jax.random.PRNGKey(int(config.seed))
    init_key, noise_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    state = create_train_state(model, tx, init_key, mesh)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(state["params"]))

    ckpt = None
    start_step = 0
    if int(config.checkpoint_every) > 0 or config.keep_best:
        from .checkpoint import Checkpointer

        ckpt = Checkpointer(workdir, keep=int(config.keep_checkpoints), keep_best=bool(config.keep_best),
                            async_save=bool(config.async_checkpoint))
        restored = ckpt.restore(state)
        if restored is None and ckpt.best_step is not None:
            restored = ckpt.restore_best(state)  # every periodic checkpoint is gone or damaged
        if restored is not None:
            start_step, state, _meta = restored
            log.info("resumed from checkpoint at step %d", start_step)

    writer = MetricWriter(workdir, enabled=pidx == 0, tensorboard=bool(config.tensorboard),
                          progress=bool(config.progress_bar), total_steps=num_steps, initial_step=start_step)
    writer.truncate_after(start_step)
    writer.message(f"lic_jax train: {spec.name} q={spec.quality} {spec.hparams} {lmbda_desc} ({config.metric}), "
                   f"{n_params / 1e6:.2f}M params, {ndev} devices / {pcount} processes, global batch {B}, "
                   f"steps {start_step}→{num_steps}, workdir {workdir}")

    d = config.data
    src_kw = dict(tfds_data_dir=d.tfds_data_dir or None, image_key=d.image_key, manual_dir=d.tfds_manual_dir or None)
    train_src = make_source(d.train, cache=bool(d.cache), default_split="train", **src_kw)
    batches = TrainBatches(train_src, B, int(d.crop), int(config.seed), pidx, pcount, hflip=bool(d.hflip),
                           vflip=bool(d.vflip), shuffle=bool(d.shuffle), prefetch=int(d.prefetch),
                           workers=int(d.workers), scale=d.get("scale", ""))
    val_src = make_source(d.val, cache=True, default_split="validation", **src_kw) if d.val else None
    vb = int(config.val_batch_size)
    vb = -(-max(vb, pcount) // ndev) * ndev
    if vb % pcount:
        vb = ndev * pcount
    if vr is None:
        train_step = make_train_step(model, config, lmbda, tx, schedule, mesh, noise_key)
        eval_step = make_eval_step(model, config, lmbda, mesh, int(d.val_crop)) if val_src is not None else None
    else:
        train_step = make_vr_train_step(model, config, vr, tx, schedule, mesh, noise_key, jax.random.fold_in(key, 2))
        eval_step = make_vr_eval_step(model, config, mesh, int(d.val_crop)) if val_src is not None else None

    def validate(params, step):
        if eval_step is None:
            return {}
        if vr is not None:
            return validate_vr(params, step)
        totals, shown = None, None
        for local, w in eval_batches(val_src, vb, int(d.val_crop), pidx, pcount, int(d.val_limit)):
            s, xh = eval_step(params, parallel.global_batch(local, mesh), parallel.global_batch(w, mesh))
            s = parallel.fetch(s)
            totals = s if totals is None else {k: totals[k] + s[k] for k in s}
            if shown is None and int(config.tb_images) > 0 and pidx == 0:
                k = int(config.tb_images)
                shown = np.concatenate([local[:k], _local_rows(xh)[:k]], axis=2)  # side by side
        if totals is None:
            return {}
        n = max(1.0, float(totals.pop("count")))
        res = {k: float(v) / n for k, v in totals.items()}
        if "ms_ssim" in res:
            res["ms_ssim_db"] = -10.0 * math.log10(max(1e-12, 1.0 - res["ms_ssim"]))
        writer.write(step, "val", res)
        if shown is not None:
            writer.images(step, "val/original|reconstruction", shown)
        return res

    def validate_vr(params, step):
        """Every λ of the set: per-λ metrics ``bpp@λ``, ``psnr@λ``, ``loss@λ`` (…); ``loss`` = Σ w_λ loss_λ
        (what 'best' selects on), ``bpp`` / ``psnr`` / ``mse`` = means over the λ set."""
        res, shown = {}, None
        per: dict[str, list] = {}
        rep_ = parallel.replicated(mesh)
        for k, lam in enumerate(vr.lmbdas):
            lam_dev = jax.device_put(jnp.asarray(lam, jnp.float32), rep_)
            totals = None
            for local, w in eval_batches(val_src, vb, int(d.val_crop), pidx, pcount, int(d.val_limit)):
                s, xh = eval_step(params, parallel.global_batch(local, mesh), parallel.global_batch(w, mesh), lam_dev)
                s = parallel.fetch(s)
                totals = s if totals is None else {kk: totals[kk] + s[kk] for kk in s}
                if k == len(vr.lmbdas) - 1 and shown is None and int(config.tb_images) > 0 and pidx == 0:
                    n_show = int(config.tb_images)
                    shown = np.concatenate([local[:n_show], _local_rows(xh)[:n_show]], axis=2)
            if totals is None:
                return {}
            n = max(1.0, float(totals.pop("count")))
            for kk, v in totals.items():
                val = float(v) / n
                res[f"{kk}{vr.tag(k)}"] = val
                per.setdefault(kk, []).append(val)
        res["loss"] = float(sum(wk * lk for wk, lk in zip(vr.weights, per["loss"])))
        for kk in ("bpp", "mse", "psnr", "ms_ssim"):
            if kk in per:
                res[kk] = float(np.mean(per[kk]))
        if "ms_ssim" in res:
            res["ms_ssim_db"] = -10.0 * math.log10(max(1e-12, 1.0 - res["ms_ssim"]))
        writer.write(step, "val", res)
        if shown is not None:
            writer.images(step, f"val/original|reconstruction (λ={vr.lmbdas[-1]:.4g})", shown)
        return res

    poison = jax.jit(lambda s: {**s, "params": jax.tree_util.tree_map(lambda p: p * jnp.nan, s["params"])},
                     in_shardings=parallel.replicated(mesh), out_shardings=parallel.replicated(mesh),
                     donate_argnums=(0,))

    def ckpt_meta(step, train_m, val_m):
        return {"step": int(step), "train": train_m, "val": val_m, "time": time.time(), "lmbda": lmbda,
                "model": spec.to_dict(), **({"variable_rate": vr.to_dict()} if vr is not None else {})}

    pending: list = []
    last_train, last_val = {}, {}
    last_finite_step = start_step
    win_t, win_steps = time.time(), 0
    log_every = max(1, int(config.log_every))
    eval_every, ckpt_every = int(config.eval_every), int(config.checkpoint_every)
    done = start_step
    first_step_time = None

    def check_finite(step_now):
        """Fetch pending metrics; raise NonFiniteError at the first non-finite step."""
        nonlocal last_finite_step
        host = jax.device_get(pending)
        for i, m in enumerate(host):
            s = step_now - len(host) + i + 1
            if not bool(m["finite"]):
                bad = {k: float(v) for k, v in m.items() if k != "finite"}
                raise NonFiniteError(
                    f"non-finite training state at step {s} (loss/gradients/parameters are NaN or Inf; metrics "
                    f"{bad}). Stopped; the last good checkpoint (step ≤ {last_finite_step}) is intact in "
                    f"{os.path.join(workdir, 'checkpoints')}. Lower the learning rate, check the data, or resume "
                    f"from that checkpoint with a different seed.")
            last_finite_step = s
        return host

    if config.get("eval_at_start", False) and start_step == 0:
        last_val = validate(state["params"], 0)
    sleep = float(config.get("debug_step_sleep", 0.0) or 0.0)
    try:
        with _Stop() as stopper:
            for step, local in batches.iterate(start_step, num_steps):
                if step == int(config.debug_nan_step):
                    state = poison(state)
                t0 = time.time() if first_step_time is None else None
                state, m = train_step(state, parallel.global_batch(local, mesh))
                if t0 is not None:
                    jax.block_until_ready(m["loss"])
                    first_step_time = time.time() - t0
                    win_t, win_steps = time.time(), -1
                pending.append(m)
                win_steps += 1
                if sleep > 0:
                    time.sleep(sleep)
                done = step + 1
                writer.advance(1)
                is_log = done % log_every == 0 or done == num_steps
                is_eval = (eval_every > 0 and done % eval_every == 0) or done == num_steps
                is_ckpt = ckpt is not None and ckpt_every > 0 and (done % ckpt_every == 0 or done == num_steps)
                stop_now = stopper.requested
                if is_log or is_eval or is_ckpt or stop_now:
                    host = check_finite(done)
                    pending = []
                    if host:
                        last_train = _mean_metrics(host)
                        now = time.time()
                        dt = now - win_t
                        if win_steps > 0 and dt > 0:
                            last_train["steps_per_s"] = win_steps / dt
                            last_train["images_per_s"] = win_steps * B / dt
                            if vr is not None and vr.mode == "all":  # (image, λ) forward/backward passes
                                last_train["passes_per_s"] = win_steps * B * len(vr.lmbdas) / dt
                        win_t, win_steps = now, 0
                        writer.write(done, "train", last_train)
                if is_eval:
                    last_val = validate(state["params"], done)
                    if ckpt is not None and last_val:
                        ckpt.save_best(done, state, last_val["loss"], ckpt_meta(done, last_train, last_val))
                if is_ckpt or (stop_now and ckpt is not None):
                    ckpt.save(done, state, ckpt_meta(done, last_train, last_val))
                if is_eval or is_ckpt:
                    win_t = time.time()  # throughput excludes validation and checkpoint time
                if stop_now:
                    writer.message(f"stopped by signal after step {done}; checkpoint saved")
                    break
    except NonFiniteError as e:
        writer.message(f"ERROR: {e}")
        if ckpt is not None:
            ckpt.close()
        writer.close()
        raise
    if ckpt is not None:
        ckpt.wait()

    artifact_path = None
    if config.export.at_end and done >= num_steps:
        params = state["params"]
        which = config.export.which
        src_step, kind = done, "last"
        if which == "best" and ckpt is not None and ckpt.best_step is not None:
            r = ckpt.restore_best(state)
            if r is not None:
                src_step, best_state, _ = r
                params = best_state["params"]
                kind = "best"
        host_params = parallel.fetch(params)
        artifact_path = config.export.dir or os.path.join(workdir, "artifact")
        if pidx == 0:
            meta = {
                "training": {
                    "config": _to_dict(config),
                    "lmbda": lmbda,
                    **({"lmbdas": list(vr.lmbdas), "variable_rate": vr.to_dict()} if vr is not None else {}),
                    "metric": config.metric,
                    "steps": int(done),
                    "exported_step": int(src_step),
                    "exported_from": kind,
                    "global_batch": B,
                    "devices": ndev,
                    "processes": pcount,
                    "final_train": last_train,
                    "final_val": last_val,
                    "best_val_loss": ckpt.best_value if ckpt is not None else None,
                    "wall_time_s": time.time() - t_start,
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "versions": _versions(),
                }
            }
            fp = export_artifact(spec, host_params, artifact_path, meta, bool(config.export.fit_quantiles))
            writer.message(f"exported artifact (step {src_step}) to {artifact_path} [{fp[:12]}]")
        parallel.sync("lic_export")
    if ckpt is not None:
        ckpt.close()
    writer.flush()
    writer.close()
    # every process leaves together: jax.distributed's shutdown barrier at exit has a timeout, and a
    # process that finished long before another (export, orbax finalisation) must not wait there alone
    parallel.sync("lic_done")
    return TrainResult(step=done, params=parallel.fetch(state["params"]), train_metrics=last_train,
                       val_metrics=last_val, artifact=artifact_path, wall_time_s=time.time() - t_start)


def export_from_workdir(config, workdir: str, out_dir: str | None = None) -> str:
    """Export the artifact from the best (``config.export.which='best'``) or newest checkpoint in ``workdir``."""
    from .checkpoint import Checkpointer

    jax.config.update("jax_threefry_partitionable", True)
    workdir = os.path.abspath(workdir)
    mesh = parallel.make_mesh()
    model, spec = build_model(config)
    vr = resolve_variable_rate(config, spec)
    lmbda = resolve_lambda(config) if vr is None else None
    tx, _ = make_optimizer(config, int(config.num_steps))
    state = create_train_state(model, tx, jax.random.PRNGKey(int(config.seed)), mesh)
    ckpt = Checkpointer(workdir, keep=int(config.keep_checkpoints), keep_best=True, async_save=False)
    r = ckpt.restore_best(state) if config.export.which == "best" else None
    kind = "best"
    if r is None:
        r, kind = ckpt.restore(state), "last"
    if r is None:
        raise FileNotFoundError(f"no intact checkpoint in {workdir}")
    step, state, meta = r
    ckpt.close()
    out_dir = out_dir or config.export.dir or os.path.join(workdir, "artifact")
    host_params = parallel.fetch(state["params"])
    if jax.process_index() == 0:
        md = {"training": {"config": _to_dict(config), "lmbda": lmbda, "metric": config.metric,
                           **({"lmbdas": list(vr.lmbdas), "variable_rate": vr.to_dict()} if vr is not None else {}),
                           "exported_step": int(step), "exported_from": kind, "checkpoint_meta": meta,
                           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                           "versions": _versions()}}
        export_artifact(spec, host_params, out_dir, md, bool(config.export.fit_quantiles))
    parallel.sync("lic_export")
    return out_dir
