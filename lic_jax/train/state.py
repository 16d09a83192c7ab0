"""The typed training state: the codec's parameters and optimiser state, plus extra parameter groups.

:class:`TrainState` holds ``step``, the codec's ``params`` and ``opt_state`` (what is exported),
and ``extra``: named :class:`ParamGroup` s, each with its own parameters and optax state (e.g. a
GAN discriminator), trained alongside but never exported with the codec.

Checkpoints store the plain dict ``{'step', 'params', 'opt_state'}`` (+ ``'extra'`` when there
are extra groups): exactly the layout written before this class existed, so old checkpoints
restore (:meth:`TrainState.from_checkpoint`; a state with extra groups restored from a
checkpoint without them keeps its freshly initialised groups).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from . import parallel

__all__ = ["ParamGroup", "TrainState", "create_train_state", "init_params"]


@struct.dataclass
class ParamGroup:
    """One extra group of parameters with its own optimiser state (the optimiser lives with its step)."""

    params: Any
    opt_state: Any

    @classmethod
    def create(cls, params, tx) -> "ParamGroup":
        return cls(params=params, opt_state=tx.init(params))


@struct.dataclass
class TrainState:
    step: Any
    params: Any  # the codec's parameters: what export writes
    opt_state: Any
    extra: dict = struct.field(default_factory=dict)  # name → ParamGroup, not exported

    def __getitem__(self, key):
        """``state['params']`` as with the dict state of earlier versions."""
        if key not in ("step", "params", "opt_state", "extra"):
            raise KeyError(key)
        return getattr(self, key)

    def to_checkpoint(self) -> dict:
        """The checkpoint tree (the pre-TrainState layout, plus 'extra' only if there are groups)."""
        d = {"step": self.step, "params": self.params, "opt_state": self.opt_state}
        if self.extra:
            d["extra"] = {k: {"params": g.params, "opt_state": g.opt_state} for k, g in self.extra.items()}
        return d

    @classmethod
    def from_checkpoint(cls, tree, like: "TrainState | None" = None) -> "TrainState":
        """From a checkpoint tree (or the old dict state). Extra groups the tree lacks come from ``like``."""
        if isinstance(tree, TrainState):
            return tree
        extra = {k: ParamGroup(params=g["params"], opt_state=g["opt_state"])
                 for k, g in (tree.get("extra") or {}).items()}
        if like is not None:
            extra = {**{k: g for k, g in like.extra.items() if k not in extra}, **extra}
        return cls(step=tree["step"], params=tree["params"], opt_state=tree["opt_state"], extra=extra)


def init_params(model, key, init_size: int = 64):
    """The model's initial parameters (a λ-conditioned model is initialised at its largest λ)."""
    from .setup import takes_lambda

    size = max(init_size, int(getattr(model, "downsampling", 16)))
    k1, k2 = jax.random.split(key)
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    if takes_lambda(model):
        v = model.init({"params": k1, "noise": k2}, x, model.lmbda_max, train=True)
    else:
        v = model.init({"params": k1, "noise": k2}, x, train=True)
    return v["params"]


def create_train_state(model, tx, key, mesh, init_size: int = 64, extra: dict | None = None) -> TrainState:
    """A TrainState initialised under jit, replicated over the mesh.

    ``extra``: name → ``(init_fn(key) → params, tx)`` for extra parameter groups; group ``k``
    (in sorted name order) is initialised from ``fold_in(key, 1000 + k)``."""
    extra = dict(extra or {})

    def init(key):
        params = init_params(model, key, init_size)
        groups = {}
        for i, name in enumerate(sorted(extra)):
            init_fn, gtx = extra[name]
            groups[name] = ParamGroup.create(init_fn(jax.random.fold_in(key, 1000 + i)), gtx)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), extra=groups)

    return jax.jit(init, out_shardings=parallel.replicated(mesh))(key)
