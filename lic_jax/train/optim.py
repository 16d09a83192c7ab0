"""The optimiser of the codec's parameters and the entropy bottlenecks' auxiliary loss.

``optax.multi_transform`` with two groups, as CompressAI's ``examples/train.py``: every parameter
except the entropy bottlenecks' ``quantiles`` gets global-norm clipping and Adam (with the lr
schedule); the ``quantiles`` get their own Adam on the auxiliary loss ``Σ|logit c(q) − t|``
summed over EVERY entropy bottleneck in the parameter tree (:func:`aux_loss`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["make_schedule", "param_labels", "make_optimizer", "entropy_bottlenecks", "aux_loss"]


def make_schedule(optim, num_steps: int):
    """Constant lr, then a decay over the last ``1 − decay_start`` of the run (optionally a warm-up)."""
    lr = float(optim.lr)
    final = lr * float(optim.final_lr_factor)
    start = int(round(float(optim.decay_start) * num_steps))
    rest = max(1, num_steps - start)
    kind = optim.schedule
    if kind == "constant" or (start >= num_steps and kind != "multistep"):
        sched = optax.constant_schedule(lr)
    elif kind == "constant_then_step":
        sched = optax.piecewise_constant_schedule(lr, {start: float(optim.final_lr_factor)})
    elif kind == "constant_then_linear":
        sched = optax.join_schedules([optax.constant_schedule(lr), optax.linear_schedule(lr, final, rest)], [start])
    elif kind == "multistep":  # ×gamma at each milestone (fractions of num_steps; PyTorch's MultiStepLR)
        ms = optim.get("milestones", "") or ""
        fr = [float(v) for v in ms.split(",") if v.strip()] if isinstance(ms, str) else [float(v) for v in ms]
        if not fr or any(not 0.0 < f < 1.0 for f in fr) or fr != sorted(fr):
            raise ValueError(f"schedule 'multistep' needs optim.milestones: increasing fractions of num_steps in "
                             f"(0, 1), e.g. '0.3,0.6,0.8', got {ms!r}")
        gamma = float(optim.get("gamma", 0.5))
        bounds: dict[int, float] = {}
        for f in fr:
            b = max(1, int(round(f * num_steps)))
            bounds[b] = bounds.get(b, 1.0) * gamma
        sched = optax.piecewise_constant_schedule(lr, bounds)
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


def entropy_bottlenecks(params, prefix: tuple = ()):
    """[(path, params)] of every entropy bottleneck in a parameter tree: every dict holding ``quantiles``."""
    found = []
    if isinstance(params, dict) or hasattr(params, "items"):
        if "quantiles" in params:
            found.append((prefix, params))
        for k in sorted(params):
            if k != "quantiles":
                found.extend(entropy_bottlenecks(params[k], prefix + (k,)))
    return found


def aux_loss(params, tail_mass: float = 1e-9):
    """Σ over every entropy bottleneck of Σ |logit c(q) − t|, t = (−log(2/τ − 1), 0, log(2/τ − 1)).

    The same expression as ``EntropyBottleneck.aux_loss`` (the density's parameters are held
    constant: only the ``quantiles`` get gradients); 0 for a tree without entropy bottlenecks."""
    from ..entropy_models.factorized import logits_cumulative

    t = np.log(2.0 / tail_mass - 1.0)
    target = jnp.array([-t, 0.0, t], jnp.float32)
    total = None
    for _path, eb in entropy_bottlenecks(params):
        density = {k: v for k, v in eb.items() if k != "quantiles"}
        logits = logits_cumulative(density, eb["quantiles"], stop_gradient=True)
        term = jnp.sum(jnp.abs(logits - target))
        total = term if total is None else total + term
    return jnp.zeros((), jnp.float32) if total is None else total
