"""``configs/model.py:lee2019`` under its old name: ``configs/lee2019.py[:ARG]`` ≡ ``configs/model.py:lee2019[,ARG]`` (quality, ms-ssim)."""

import os
import runpy

_get_config = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.py"))["get_config"]


def get_config(arg: str = ""):
    return _get_config(f"lee2019,{arg}")
