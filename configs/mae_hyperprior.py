"""``configs/model.py:mae-hyperprior`` under its old name: ``configs/mae_hyperprior.py[:ARG]`` ≡ ``configs/model.py:mae-hyperprior[,ARG]`` (λ preset, mode, activation, λ input, metric)."""

import os
import runpy

_get_config = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.py"))["get_config"]


def get_config(arg: str = ""):
    return _get_config(f"mae-hyperprior,{arg}")
