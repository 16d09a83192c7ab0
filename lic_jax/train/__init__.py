"""RD training at scale: input pipelines, data-parallel steps, orbax checkpoints, export.

``train.py`` (repository root) is the command-line front end; everything it does is here:

* :mod:`.input_pipeline` — image folders/globs and TFDS array_record sources, deterministic
  resumable per-host batches, prefetch;
* :mod:`.parallel` — ``Mesh``/``NamedSharding`` data parallelism, ``jax.distributed`` set-up;
* :mod:`.checkpoint` — orbax checkpoints (async, keep-N + best, verified, corruption fallback);
* :mod:`.trainer` — optimiser, train/eval steps, the loop, export of the deployable artifact;
* :mod:`.config` — the base ``ml_collections`` configuration.

Submodules are imported lazily so that ``import lic_jax.train`` is cheap and works in every
supported environment (including the TFC one, where orbax 0.4 cannot write checkpoints).
"""

from __future__ import annotations

import importlib

__all__ = ["input_pipeline", "parallel", "checkpoint", "trainer", "config", "metrics_writer",
           "train_and_evaluate", "get_default_config"]


def __getattr__(name):
    if name in ("input_pipeline", "parallel", "checkpoint", "trainer", "config", "metrics_writer"):
        return importlib.import_module(f"{__name__}.{name}")
    if name == "train_and_evaluate":
        return importlib.import_module(f"{__name__}.trainer").train_and_evaluate
    if name == "get_default_config":
        return importlib.import_module(f"{__name__}.config").get_default_config
    raise AttributeError(name)
