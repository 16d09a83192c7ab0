"""Import CompressAI in the test environment without torchvision.

PyPI's torchvision wheels are CUDA builds that fail to import beside the CPU torch 2.13 wheel
("operator torchvision::nms does not exist"). CompressAI imports torchvision only to fill its
transform registry (``compressai/registry/transforms.py``) and, in ``utils.eval_model``, for
``transforms.ToTensor``. If a working torchvision is present it is used; otherwise a minimal
stand-in module providing exactly ``ToTensor`` (uint8 HWC → float CHW / 255, torchvision's
definition) is registered before ``import compressai``. Nothing else of torchvision is used.
"""

from __future__ import annotations

import importlib
import sys
import types


def _torchvision_stub():
    import numpy as np
    import torch

    class ToTensor:
        def __call__(self, pic):
            a = np.asarray(pic)
            if a.ndim == 2:
                a = a[:, :, None]
            t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
            return t.float().div(255) if t.dtype == torch.uint8 else t.float()

    tv = types.ModuleType("torchvision")
    tvt = types.ModuleType("torchvision.transforms")
    tvt.ToTensor = ToTensor
    tv.transforms = tvt
    tv.__lic_jax_stub__ = True
    return tv, tvt


def import_compressai():
    """Return the ``compressai`` module (raises ImportError if torch/compressai are missing)."""
    if "compressai" in sys.modules:
        return sys.modules["compressai"]
    importlib.import_module("torch")
    try:
        importlib.import_module("torchvision.transforms")
    except Exception:  # missing, or the CUDA wheel failing to load its operators
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        tv, tvt = _torchvision_stub()
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.transforms"] = tvt
    return importlib.import_module("compressai")
