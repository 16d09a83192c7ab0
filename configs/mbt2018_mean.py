"""``configs/model.py:mbt2018-mean`` under its old name: ``configs/mbt2018_mean.py[:ARG]`` ≡ ``configs/model.py:mbt2018-mean[,ARG]`` (quality, ms-ssim)."""

import os
import runpy

_get_config = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.py"))["get_config"]


def get_config(arg: str = ""):
    return _get_config(f"mbt2018-mean,{arg}")
