"""PSNR-HVS / PSNR-HVS-M against values computed by the authors' own MATLAB code in GNU Octave.

The reference values (tests/data/hvs_reference/hvs_reference.json, inputs in hvs_reference.npz)
were produced by Ponomarenko's psnrhvsm.m run in Octave 7.3; lic_jax was not involved. Provenance,
the toolchain check against published Octave values and the regeneration script
(make_reference.py) are next to them. Measured agreement: max |Δ| = 3.7e-13 dB; tolerance 1e-12 dB.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import load_rgb
from lic_jax.evaluation.hvs import psnr_hvs_hvsm, psnr_hvs_m, rgb_to_luma

REF_DIR = Path(__file__).parent / "data" / "hvs_reference"
REF = json.loads((REF_DIR / "hvs_reference.json").read_text())["values"]
TOL_DB = 1e-12  # ≈ 3 × the largest measured |lic_jax − Octave| (3.7e-13 dB, texture_one_pixel)


def _generator():
    spec = importlib.util.spec_from_file_location("hvs_make_reference", REF_DIR / "make_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check(name, a, b):
    v = REF[name]
    m, h = psnr_hvs_hvsm(a, b, step=v["wstep"])
    assert abs(m - v["psnr_hvs_m"]) <= TOL_DB, (name, m, v["psnr_hvs_m"])
    assert abs(h - v["psnr_hvs"]) <= TOL_DB, (name, h, v["psnr_hvs"])


@pytest.mark.parametrize("name", sorted(k for k, v in REF.items() if v["inputs"] == "npz"))
def test_matches_octave_psnrhvsm(name):
    """Committed image pairs: Kodak crops (grey, and RGB → Y′) through JPEG, random textures with
    sizes that are not multiples of 8, an overlapping window step of 5, flat blocks (the masking
    variance ratio's zero branch), a one-pixel change, identical images (100000 dB)."""
    with np.load(REF_DIR / "hvs_reference.npz") as z:
        a, b = z[f"{name}/img1"], z[f"{name}/img2"]
    assert (a.ndim == 3) == REF[name]["rgb"]
    _check(name, a, b)


def test_matches_octave_psnrhvsm_on_a_full_kodak_image(kodak_dir):
    """A whole 768×512 Kodak image (RGB → Y′) with a deterministic 3×3 box blur."""
    gen = _generator()
    for name in (k for k, v in REF.items() if v["inputs"] != "npz"):
        a, b, _ = gen.kodak_case(kodak_dir, name)
        _check(name, a, b)


def test_identical_and_scale_invariance():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    assert psnr_hvs_hvsm(a, a) == (100000.0, 100000.0)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    v255 = psnr_hvs_hvsm(a, b)
    v1 = psnr_hvs_hvsm(a / 255.0, b / 255.0, peak=1.0)
    assert v1 == pytest.approx(v255, abs=1e-9)
    assert psnr_hvs_m(a, b) == v255[0]
    # colour input is compared on BT.601 luma
    assert psnr_hvs_hvsm(a, b) == pytest.approx(psnr_hvs_hvsm(rgb_to_luma(a), rgb_to_luma(b)), abs=0)
    with pytest.raises(ValueError):
        psnr_hvs_hvsm(a[:7, :7], b[:7, :7])


def test_masking_never_adds_error(kodak_dir):
    import io

    from PIL import Image

    img = load_rgb(kodak_dir / "kodim23.png", crop=(64, 96))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=30)
    rec = np.asarray(Image.open(buf).convert("RGB"))
    m, h = psnr_hvs_hvsm(img, rec)
    assert m > h  # masking can only remove error: PSNR-HVS-M ≥ PSNR-HVS
