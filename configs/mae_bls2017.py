"""``configs/model.py:mae-bls2017`` under its old name: ``configs/mae_bls2017.py[:ARG]`` ≡ ``configs/model.py:mae-bls2017[,ARG]`` (λ preset, mode, activation, λ input, metric)."""

import os
import runpy

_get_config = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.py"))["get_config"]


def get_config(arg: str = ""):
    return _get_config(f"mae-bls2017,{arg}")
