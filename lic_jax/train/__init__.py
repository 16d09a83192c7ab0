"""RD training at scale: input pipelines, data-parallel steps, orbax checkpoints, export.

``train.py`` (repository root) is the command-line front end; everything it does is here:

* :mod:`.input_pipeline` — image folders/globs and TFDS array_record sources, deterministic
  resumable per-host batches, prefetch;
* :mod:`.parallel` — ``Mesh``/``NamedSharding`` data parallelism, ``jax.distributed`` set-up;
* :mod:`.checkpoint` — orbax checkpoints (async, keep-N + best, verified, corruption fallback);
* :mod:`.setup` — model building and the λ set (a fixed-rate model trains on a one-λ set);
* :mod:`.optim` — optimiser, lr schedule, the aux loss over every entropy bottleneck;
* :mod:`.state` — the typed train state (codec parameters + extra parameter groups);
* :mod:`.steps` — the train step and the eval step; :mod:`.validation` — validation;
* :mod:`.export` — export of the deployable artifact; :mod:`.loop` — the training loop;
* :mod:`.trainer` — the names of all of these, as before the split;
* :mod:`.jax_setup` — the process-wide JAX settings the entry points apply;
* :mod:`.config` — the base ``ml_collections`` configuration.

Submodules are imported lazily so that ``import lic_jax.train`` is cheap and works in every
supported environment (including the TFC one, where orbax 0.4 cannot write checkpoints).
"""

from __future__ import annotations

import importlib

_SUBMODULES = ("input_pipeline", "parallel", "checkpoint", "trainer", "config", "metrics_writer", "setup", "optim",
               "state", "steps", "validation", "export", "loop", "jax_setup")
__all__ = [*_SUBMODULES, "train_and_evaluate", "get_default_config"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "train_and_evaluate":
        return importlib.import_module(f"{__name__}.loop").train_and_evaluate
    if name == "get_default_config":
        return importlib.import_module(f"{__name__}.config").get_default_config
    raise AttributeError(name)
