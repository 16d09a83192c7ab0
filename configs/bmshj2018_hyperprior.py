"""``configs/model.py:bmshj2018-hyperprior`` under its old name: ``configs/bmshj2018_hyperprior.py[:ARG]`` ≡ ``configs/model.py:bmshj2018-hyperprior[,ARG]`` (quality, ms-ssim)."""

import os
import runpy

_get_config = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.py"))["get_config"]


def get_config(arg: str = ""):
    return _get_config(f"bmshj2018-hyperprior,{arg}")
