"""Fine-tuning from a model directory, and quantisation-aware training of the integer entropy path.

``config.init_from = DIR``: the run starts from the parameters of a lic_jax model directory (its
architecture must be the run's: same parameter tree and shapes; a clear error otherwise). The
optimiser state starts fresh.

``config.integer_entropy = True`` (issue 13; Ballé, Johnston & Minnen, ICLR 2019, §3): the run
trains the model's portable twin (``bmshj2018-hyperprior`` → ``bmshj2018-hyperprior-int``, …). Its
hyper-synthesis runs the fake-quant twin of the integer network (8-bit weights, 10-bit
activations, straight-through gradients; :mod:`lic_jax.models.portable`), so the rate the loss
sees is the integer path's, and the exported artifact is portable. The activation scales are
calibrated once from the *initial* parameters (``init_from`` or the seed's initialisation) on the
first ``integer_calib`` training images — a pure function of the config, so a resumed run gets the
same scales — unless ``model_hparams.int_shifts`` gives them.
"""

from __future__ import annotations

import jax
import numpy as np

from ..models.portable import calibrate_shifts, is_portable
from ..models.registry import ModelSpec, portable_twin

__all__ = ["portable_model_name", "load_init_params", "calibrate_run"]


def portable_model_name(name: str) -> str:
    """The portable twin of a registry name (itself if it is portable); ValueError if there is none."""
    try:
        return portable_twin(name)
    except ValueError as e:
        raise ValueError(f"integer_entropy: {e}") from None


def load_init_params(path: str, params):
    """The parameters of the model directory ``path``, checked against the run's ``params`` tree."""
    from ..artifact import load_artifact

    art = load_artifact(path)
    new = art.variables["params"]
    want = jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), jax.device_get(params))
    got = jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), new)
    if jax.tree_util.tree_structure(want) != jax.tree_util.tree_structure(got) or want != got:
        raise ValueError(f"init_from {path}: its parameters ({art.spec.name} {art.spec.hparams}) do not fit the "
                         f"run's model (different architecture or widths)")
    return jax.tree_util.tree_map(lambda a, ref: np.asarray(a, np.asarray(ref).dtype), new, jax.device_get(params))


def calibrate_run(model, spec: ModelSpec, params, source, n: int, crop: int):
    """(model, spec) with ``int_shifts`` calibrated on the first ``n`` images of ``source`` (centre crops of
    ``crop`` px, float32 in [0, 1]); unchanged if the model is not a portable class or is already calibrated."""
    if not hasattr(model, "int_shifts") or is_portable(model):
        return model, spec
    crops = []
    for i in range(min(int(n), len(source))):
        img = np.asarray(source[i])
        h, w = img.shape[:2]
        c = min(crop, h, w)
        t, l = (h - c) // 2, (w - c) // 2
        crops.append(img[t:t + c, l:l + c, :3].astype(np.float32) / np.float32(255.0))
    if not crops:
        raise ValueError("integer_entropy: no training images to calibrate the integer hyper-synthesis on")
    variables = {"params": jax.device_get(params)}
    shifts = calibrate_shifts(model, variables, crops)
    spec = ModelSpec(spec.name, spec.quality, {**spec.hparams, "int_shifts": list(shifts)})
    return model.clone(int_shifts=tuple(shifts)), spec
