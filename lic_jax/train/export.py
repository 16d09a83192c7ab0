"""Export of the deployable artifact from a training state or a checkpoint.

Only the codec's parameters (``TrainState.params``) are exported; extra parameter groups (e.g. a
GAN discriminator) never are. The artifact's training metadata is built in one place,
:func:`export_metadata`.
"""

from __future__ import annotations

import datetime
import os

import jax
import numpy as np

from . import parallel
from .setup import to_dict

__all__ = ["fit_all_quantiles", "export_artifact", "export_metadata", "export_from_workdir", "versions"]


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

    from .setup import objective

    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)
    if fit_quantiles:
        params = fit_all_quantiles(params)
    # a model without an RD objective (Toderici 2017: ±1 bits, a learned binary context model) has no
    # CDF tables to store: no tables.npz (a coder that wants tables builds them at load time)
    tables = None if objective(spec.name) == "rd" else False
    return save_artifact(out_dir, spec, {"params": params}, metadata or {}, tables=tables)


def versions():
    import flax
    import optax

    v = {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__}
    try:
        import orbax.checkpoint as ocp

        v["orbax"] = getattr(ocp, "__version__", "?")
    except Exception:
        pass
    return v


def export_metadata(config, vr, *, exported_step: int, exported_from: str, **fields) -> dict:
    """The artifact's ``{'training': …}`` record: config, λ (fixed-rate) or λ set (variable-rate),
    metric, the exported step and where it came from, ``fields`` (steps, devices, final metrics, …
    or the checkpoint's record), date and library versions. ``vr``: the variable-rate set or None."""
    from .setup import objective, resolve_lambda

    kind = objective(config.model)
    lmbda = resolve_lambda(config) if vr is None and kind == "rd" else None
    training = {"config": to_dict(config), "lmbda": lmbda, **({"objective": kind} if kind != "rd" else {}),
                **({"lmbdas": list(vr.lmbdas), "variable_rate": vr.to_dict()} if vr is not None else {}),
                "metric": config.metric}
    training.update(fields)
    training.update(exported_step=int(exported_step), exported_from=exported_from,
                    date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    versions=versions())
    return {"training": training}


def export_from_workdir(config, workdir: str, out_dir: str | None = None) -> str:
    """Export the artifact from the best (``config.export.which='best'``) or newest checkpoint in ``workdir``."""
    from .checkpoint import Checkpointer
    from .optim import make_optimizer
    from .setup import build_model, objective, resolve_variable_rate
    from .state import create_train_state

    workdir = os.path.abspath(workdir)
    mesh = parallel.make_mesh()
    model, spec = build_model(config)
    vr = resolve_variable_rate(config, spec)
    tx, _ = make_optimizer(config, int(config.num_steps))
    extra = None
    if objective(spec.name) == "gan":  # the checkpoint holds D's group too: restore into the same layout
        from .gan import extra_groups

        extra = extra_groups(model, config)
    state = create_train_state(model, tx, jax.random.PRNGKey(int(config.seed)), mesh, extra=extra)
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
    host_params = parallel.fetch(state.params)
    if jax.process_index() == 0:
        md = export_metadata(config, vr, exported_step=step, exported_from=kind, checkpoint_meta=meta)
        export_artifact(spec, host_params, out_dir, md, bool(config.export.fit_quantiles))
    parallel.sync("lic_export")
    return out_dir
