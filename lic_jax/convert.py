"""Import CompressAI weights (``state_dict`` or checkpoint files) into lic_jax variables.

Supported architectures: the registered models whose ``ModelRecord.compressai`` names a CompressAI
zoo architecture (``bmshj2018-factorized``, ``bmshj2018-hyperprior``, ``mbt2018-mean``, ``mbt2018``:
the four lic_jax shares with CompressAI; :func:`supported_architectures`). Accepted inputs:

* a ``state_dict`` (mapping name → torch tensor or numpy array);
* a file saved by ``torch.save``: a bare ``state_dict`` (the zoo's ``*.pth.tar``) or a training
  checkpoint of CompressAI's ``examples/train.py`` (``{"epoch", "state_dict", "optimizer", …}``).
  Files are read without torch (``lic_jax.utils.torchfile``).

Layouts: Conv2d (out, in, kh, kw) → (kh, kw, in, out); ConvTranspose2d (in, out, kh, kw) →
(kh, kw, in, out); GDN ``beta``/``gamma`` and the entropy bottleneck's ``matrices``,
``biases``, ``factors`` and ``quantiles`` keep their shapes (old ``_matrix0``-style keys and a
``module.`` prefix are accepted). CompressAI's derived buffers (``_quantized_cdf``,
``_offset``, ``_cdf_length``, ``scale_table``, masks, bounds) are ignored: lic_jax derives its
coding tables from the parameters.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import jax
import numpy as np

from .layers import Conv, ConvTranspose, MaskedConv
from .models import get_model
from .models import registry as _registry

__all__ = ["from_compressai", "load_compressai_state_dict", "infer_compressai_architecture", "CompressAIImportError",
           "supported_architectures"]


class CompressAIImportError(ValueError):
    """The state_dict does not fit the requested lic_jax architecture."""


_IGNORED = re.compile(
    r"(\._offset|\._quantized_cdf|\._cdf_length|\.target|\.scale_table|\.scale_bound|\.bound|\.pedestal|\.mask)$"
)
_OLD_EB = re.compile(r"^entropy_bottleneck\._(matrix|bias|factor)(\d+)$")


def supported_architectures() -> dict[str, str]:
    """CompressAI architecture → lic_jax registry name, from the records' ``compressai`` field."""
    return {r.compressai: r.name for r in _registry.REGISTRY.values() if r.compressai}


def _to_numpy(v):
    if isinstance(v, np.ndarray):
        return v
    if hasattr(v, "detach"):  # torch tensor
        return v.detach().cpu().numpy()
    return np.asarray(v)


def load_compressai_state_dict(src) -> dict[str, np.ndarray]:
    """A normalised CompressAI state_dict (numpy values, canonical key names) from a path or mapping."""
    if isinstance(src, (str, os.PathLike)):
        if not os.path.exists(src):
            raise FileNotFoundError(f"no such checkpoint file: {src}")
        from .utils.torchfile import load_torch_file

        src = load_torch_file(src)
    if not isinstance(src, Mapping):
        raise CompressAIImportError(f"expected a state_dict or checkpoint dict, got {type(src).__name__}")
    if "state_dict" in src and isinstance(src["state_dict"], Mapping):
        src = src["state_dict"]
    out = {}
    for k, v in src.items():
        k = k[7:] if k.startswith("module.") else k
        m = _OLD_EB.match(k)
        if m:
            k = f"entropy_bottleneck.{ {'matrix': 'matrices', 'bias': 'biases', 'factor': 'factors'}[m[1]] }.{m[2]}"
        if _IGNORED.search(k):
            continue
        out[k] = _to_numpy(v)
    return out


def infer_compressai_architecture(sd: Mapping[str, np.ndarray]) -> tuple[str, dict[str, int]]:
    """(CompressAI architecture, {'N', 'M'}) from the keys and shapes of a CompressAI state_dict (the
    four CompressAI names are also the lic_jax registry names; :func:`supported_architectures` maps them)."""
    if "g_a.0.weight" not in sd or "g_a.6.weight" not in sd:
        raise CompressAIImportError("not a CompressAI bmshj2018/mbt2018 state_dict (no g_a.0.weight / g_a.6.weight)")
    hp = {"N": int(sd["g_a.0.weight"].shape[0]), "M": int(sd["g_a.6.weight"].shape[0])}
    if "context_prediction.weight" in sd:
        return "mbt2018", hp
    if "h_s.4.weight" in sd:
        return ("mbt2018-mean" if sd["h_s.4.weight"].shape[0] == 2 * hp["M"] else "bmshj2018-hyperprior"), hp
    return "bmshj2018-factorized", hp


def _layer_kinds(model, variables) -> dict[str, type]:
    """Map each lic_jax layer path ('g_s_0', 'context_prediction', …) to its layer class."""
    kinds = {}

    def collect(bound):
        for attr in ("g_a", "g_s", "h_a", "h_s", "entropy_parameters"):
            layers = getattr(bound, attr, None)
            if isinstance(layers, (list, tuple)):
                for i, layer in enumerate(layers):
                    if isinstance(layer, (Conv, ConvTranspose)):
                        kinds[f"{attr}_{i}"] = type(layer)
        if isinstance(getattr(bound, "context_prediction", None), MaskedConv):
            kinds["context_prediction"] = MaskedConv

    model.apply(variables, method=lambda m: collect(m))
    return kinds


def _torch_key(path: tuple[str, ...]) -> str:
    head, leaf = path[0], path[-1]
    if head == "entropy_bottleneck":
        m = re.match(r"(matrix|bias|factor)_(\d+)$", leaf)
        if m:
            return f"entropy_bottleneck.{ {'matrix': 'matrices', 'bias': 'biases', 'factor': 'factors'}[m[1]] }.{m[2]}"
        return f"entropy_bottleneck.{leaf}"
    m = re.match(r"(.+)_(\d+)$", head)
    mod = f"{m[1]}.{m[2]}" if m and head != "context_prediction" else head
    return f"{mod}.{ {'kernel': 'weight'}.get(leaf, leaf) }"


def from_compressai(src, name: str | None = None, quality: int | None = None) -> tuple[Any, Any, dict]:
    """Convert a CompressAI state_dict / checkpoint to ``(module, spec, variables)``.

    ``name`` defaults to the architecture inferred from the keys; N and M always come from the
    weights' shapes (``quality`` is only recorded). Raises :class:`CompressAIImportError` with a
    one-line reason on any missing, unexpected or mis-shaped tensor.
    """
    sd = load_compressai_state_dict(src)
    inferred, hp = infer_compressai_architecture(sd)
    supported = supported_architectures()
    by_name = {v: k for k, v in supported.items()}
    name = name or supported.get(inferred, inferred)
    if name not in by_name:
        raise CompressAIImportError(f"CompressAI import supports {', '.join(sorted(by_name))}; got {name!r}")
    if by_name[name] != inferred:
        raise CompressAIImportError(f"state_dict holds a {inferred} model (N={hp['N']}, M={hp['M']}), not {name}")
    model, spec = get_model(name, None, **hp)
    if quality is not None:
        spec = type(spec)(spec.name, quality, spec.hparams)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32)))
    kinds = _layer_kinds(model, jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes))
    flat = jax.tree_util.tree_flatten_with_path(shapes["params"])[0]
    used = set()
    params: dict = {}
    for keypath, leaf in flat:
        path = tuple(k.key for k in keypath)
        key = _torch_key(path)
        if key not in sd:
            raise CompressAIImportError(f"missing tensor {key!r} for lic_jax parameter {'/'.join(path)} ({name})")
        v = np.asarray(sd[key], np.float32)
        if path[-1] == "kernel":
            kind = kinds.get(path[0], Conv)
            v = v.transpose(2, 3, 0, 1) if kind is ConvTranspose else v.transpose(2, 3, 1, 0)
        if v.shape != tuple(leaf.shape):
            raise CompressAIImportError(f"{key}: shape {sd[key].shape} does not fit {name} (expects {tuple(leaf.shape)})")
        used.add(key)
        node = params
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = v
    extra = sorted(set(sd) - used)
    if extra:
        raise CompressAIImportError(f"unexpected tensors for {name}: {', '.join(extra[:5])}{' …' if len(extra) > 5 else ''}")
    return model, spec, {"params": jax.tree_util.tree_map(jax.numpy.asarray, params)}
