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


def train_step(net, opt, aux_opt, crit, x) -> float:
    """One iteration of CompressAI's ``examples/train.py`` ``train_one_epoch``: RD loss, global-norm
    clipping (1.0) over ``net.parameters()``, the main Adam step, then the aux loss *after* that step
    and its own Adam step. Returns the RD loss."""
    import torch

    opt.zero_grad()
    aux_opt.zero_grad()
    loss = crit(net(x), x)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    net.aux_loss().backward()
    aux_opt.step()
    return float(loss.item())


def noise_injecting_quantize(orig, noise: dict):
    """A replacement for ``EntropyModel.quantize`` whose 'noise' mode adds ``noise[type name]`` (a
    tensor of the input's shape, e.g. the noise lic_jax drew) instead of drawing its own; other modes
    call ``orig``. ``noise`` may be filled in later (it is read at call time)."""

    def quantize(self, inputs, mode, means=None):
        if mode == "noise":
            n = noise[type(self).__name__]
            assert tuple(n.shape) == tuple(inputs.shape)
            return inputs + n
        return orig(self, inputs, mode, means)

    return quantize

