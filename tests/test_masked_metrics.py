"""Metrics inside region masks (issue 20, seed 002's face / text evaluation): ``psnr-rgb@mask``,
``ms-ssim-rgb@mask`` (lic_jax.evaluation.image_metrics) and ``eval.py run --masks DIR``.

References: the PSNR of the cropped rectangle (plain ``psnr``), plain ``ms_ssim_255`` for a full
mask, and the JAX float32 weighted MS-SSIM of the GAN loss (``losses_gan.weighted_ms_ssim``, a
separate implementation) with the 0/1 mask as t_a and ε → 0.

Broken once on purpose, each test failed:
* the weighted means of ``_ssim_cs`` over the *unfiltered* mask (cropped to the valid grid)
  instead of G ∗ mask: the JAX agreement failed (|Δ| 2.8e-3 against the 4e-6 bound);
* the mask not pooled between scales: a shape error in the full-mask and the CLI tests;
* ``psnr_masked`` over all pixels: the rectangle test failed (12.64 vs 29.04 dB).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from lic_jax.evaluation.cli import main
from lic_jax.evaluation.image_metrics import compute_metrics, ms_ssim_255, psnr, psnr_masked


def _pair(h=200, w=232, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    a = np.stack([128 + 60 * np.sin(xx / 7.0 + c) * np.cos(yy / 11.0) for c in range(3)], -1)
    a = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 9, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_inside_a_rectangle_is_the_psnr_of_the_crop():
    a, b = _pair()
    b[:40] = 0  # heavy damage outside the rectangle
    m = np.zeros(a.shape[:2], bool)
    m[60:150, 30:200] = True
    assert psnr_masked(a, b, m) == pytest.approx(psnr(a[60:150, 30:200], b[60:150, 30:200]), abs=1e-12)
    assert psnr_masked(a, b, m) > psnr(a, b) + 3
    assert math.isnan(psnr_masked(a, b, np.zeros_like(m)))


def test_ms_ssim_full_mask_is_ms_ssim_and_empty_mask_is_nan():
    a, b = _pair(192, 224)  # even through the four poolings: exact
    full = np.ones(a.shape[:2], bool)
    assert ms_ssim_255(a, b, mask=full) == pytest.approx(ms_ssim_255(a, b), abs=1e-12)
    a, b = _pair()  # 200 × 232 → 25 × 29 at scale 4, padded: the padded border weighs less (measured 1.3e-9)
    full = np.ones(a.shape[:2], bool)
    assert ms_ssim_255(a, b, mask=full) == pytest.approx(ms_ssim_255(a, b), abs=1e-8)
    out = compute_metrics(a, b, ("ms-ssim-rgb@mask", "psnr-rgb@mask"), mask=np.zeros_like(full))
    assert all(math.isnan(v) for v in out.values()), out  # dB included: NaN, not inf
    with pytest.raises(ValueError, match="needs a mask"):
        compute_metrics(a, b, ("psnr-rgb@mask",))
    with pytest.raises(ValueError, match="mask shape"):
        compute_metrics(a, b, ("psnr-rgb@mask",), mask=full[:-1])


def test_ms_ssim_inside_a_mask_matches_the_weighted_ms_ssim_of_the_gan_loss():
    """Same definition, independent code: numpy float64 here, JAX float32 there (ε = 1e-9 ≈ 0).
    Measured |Δ| 2.3e-7 (damage outside) and 1.2e-6 (inside) on these images (float32 statistics); bound 4e-6. The masked value
    follows the damage: higher than the whole-image MS-SSIM when the damage is outside the mask,
    lower when it is inside."""
    import jax.numpy as jnp

    from lic_jax.losses_gan import weighted_ms_ssim

    a, b = _pair()
    m = np.zeros(a.shape[:2], bool)
    m[50:170, 40:150] = True
    m[10:30, 180:220] = True  # two regions, one near the border
    for damage_inside in (False, True):
        d = b.copy()
        region = m if damage_inside else ~m
        d[region] = np.clip(d[region].astype(int) + np.random.default_rng(1).normal(0, 40, d[region].shape), 0,
                            255).astype(np.uint8)
        ours = ms_ssim_255(a, d, mask=m)
        ref = float(weighted_ms_ssim(jnp.asarray(a[None], jnp.float32), jnp.asarray(d[None], jnp.float32),
                                     jnp.asarray(m[None], jnp.float32), data_range=255.0, eps=1e-9))
        assert abs(ours - ref) <= 4e-6, (damage_inside, ours, ref)
        whole = ms_ssim_255(a, d)
        assert (ours < whole - 0.01) if damage_inside else (ours > whole + 0.01), (damage_inside, ours, whole)


def test_eval_run_with_masks(tmp_path, capsys):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for i in range(2):
        a, _ = _pair(seed=i)
        Image.fromarray(a).save(imgs / f"im{i}.png")
        m = np.zeros(a.shape[:2], np.uint8)
        if i == 0:
            m[40:120, 50:180] = 255  # the second image has an empty mask: left out of the @mask means
        Image.fromarray(m).save(masks / f"im{i}.png")
    out = tmp_path / "jpeg.json"
    assert main(["run", "--codec", "jpeg", "--quality", "30", "--dataset", str(imgs), "--masks", str(masks),
                 "--metrics", "psnr-rgb,ms-ssim-rgb", "--out", str(out), "--no-progress"]) == 0
    d = json.loads(out.read_text())
    rows = list(__import__("csv").DictReader(open(out.with_suffix(".csv"))))
    assert d["meta"]["masks"]["images_with_mask"] == 1
    r0 = next(r for r in rows if r["image"] == "im0.png")
    assert d["results"]["psnr-rgb@mask"][0] == pytest.approx(float(r0["psnr-rgb@mask"]))
    assert d["results"]["ms-ssim-rgb@mask"][0] == pytest.approx(float(r0["ms-ssim-rgb@mask"]))
    assert float(r0["mask-fraction"]) == pytest.approx(80 * 130 / (200 * 232))
    (masks / "im1.png").unlink()
    with pytest.raises(SystemExit):
        main(["run", "--codec", "jpeg", "--quality", "30", "--dataset", str(imgs), "--masks", str(masks),
              "--out", str(tmp_path / "x.json"), "--no-progress"])
    assert "1 of 2 masks missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--codec", "jpeg", "--quality", "30", "--dataset", str(imgs), "--metrics", "psnr-rgb@mask",
              "--out", str(tmp_path / "y.json"), "--no-progress"])
    assert "need --masks" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()
