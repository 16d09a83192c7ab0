"""Packaging: `pip install -e .` (the README's first command) must keep working after setuptools
drops the deprecated TOML-table form of ``project.license`` (announced for 2027-02-18)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    meta = tomllib.loads(PYPROJECT.read_text())
    lic = meta["project"]["license"]
    assert isinstance(lic, str) and re.fullmatch(r"[A-Za-z0-9.\-+]+( (AND|OR|WITH) [A-Za-z0-9.\-+]+)*", lic), lic
    req = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    m = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", req[0].replace(" ", ""))
    assert m and int(m.group(1)) >= 77, req  # setuptools 77 is the first to accept the SPDX string
