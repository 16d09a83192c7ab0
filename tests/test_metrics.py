"""Metrics: PSNR, SSIM and MS-SSIM against pytorch-msssim (the implementation CompressAI uses) on real
images, incl. odd sizes and both data ranges; the small-image rule; finite gradients (issue 2,
"Losses and metrics")."""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_rgb, require

from lic_jax.metrics import ms_ssim, ms_ssim_db, mse, psnr, ssim

# one XLA compilation per shape is much cheaper on CPU than op-by-op dispatch (same function)
_STATIC = ("win_size", "win_sigma", "weights", "reduce", "small")
ms_ssim_jit = jax.jit(ms_ssim, static_argnames=_STATIC)
ssim_jit = jax.jit(ssim, static_argnames=("win_size", "win_sigma", "reduce"))


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest.py


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    """A real codec distortion: the image after a JPEG round trip."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def pairs(kodak_dir):
    """(name, reference, distorted) uint8 NHWC batches: Kodak crops, landscape, portrait and odd sizes."""
    a = load_rgb(kodak_dir / "kodim01.png")  # 512×768
    b = load_rgb(kodak_dir / "kodim23.png")
    c = load_rgb(kodak_dir / "kodim04.png")  # portrait 768×512
    a1, b1, c1 = a[100:356, 200:584], b[:256, 384:], c[200:584, 100:356]
    a2, b2 = a[:250, 7:340], b[100:350, 201:534]
    c3 = c[301:462, 11:214]
    return [
        ("256x384", np.stack([a1, b1]), np.stack([_jpeg(a1, 10), _jpeg(b1, 30)])),
        ("portrait384x256", c1[None], _jpeg(c1, 5)[None]),
        ("odd250x333", np.stack([a2, b2]), np.stack([_jpeg(a2, 15), _jpeg(b2, 50)])),
        ("odd161x203", c3[None], _jpeg(c3, 20)[None]),
    ]


def _torch(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ms_ssim_vs_pytorch_msssim(pairs, data_range):
    pm = require("pytorch_msssim")
    worst = 0.0
    for name, x, y in pairs:
        xf = x.astype(np.float32) * (data_range / 255.0)
        yf = y.astype(np.float32) * (data_range / 255.0)
        ref = pm.ms_ssim(_torch(xf), _torch(yf), data_range=data_range, size_average=False).numpy()
        got = np.asarray(ms_ssim_jit(jnp.asarray(xf), jnp.asarray(yf), data_range=data_range, reduce=False))
        assert got.shape == ref.shape == (x.shape[0],)
        d = float(np.abs(got - ref).max())
        worst = max(worst, d)
        assert d <= 1e-5, (name, got, ref)
        mean = float(ms_ssim_jit(jnp.asarray(xf), jnp.asarray(yf), data_range=data_range))
        assert abs(mean - float(ref.mean())) <= 1e-5
        assert 0.5 < ref.min() < 1.0  # real, distinct distortions
    print(f"\nms_ssim vs pytorch_msssim (data_range {data_range:g}): max |diff| {worst:.2e}")


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_vs_pytorch_msssim(pairs, data_range):
    pm = require("pytorch_msssim")
    for name, x, y in pairs:
        xf = x.astype(np.float32) * (data_range / 255.0)
        yf = y.astype(np.float32) * (data_range / 255.0)
        ref = pm.ssim(_torch(xf), _torch(yf), data_range=data_range, size_average=False).numpy()
        got = np.asarray(ssim_jit(jnp.asarray(xf), jnp.asarray(yf), data_range=data_range, reduce=False))
        assert np.abs(got - ref).max() <= 1e-5, (name, got, ref)


def test_ms_ssim_identity_and_small_image_rule(pairs):
    pm = require("pytorch_msssim")
    _, x, _ = pairs[0]
    xf = jnp.asarray(x[:1].astype(np.float32) / 255.0)
    assert float(ms_ssim_jit(xf, xf)) == pytest.approx(1.0, abs=1e-6)
    # pytorch-msssim refuses a shorter side ≤ (11 − 1)·2⁴ = 160 px; so does lic_jax (one line, ValueError)
    small = xf[:, :160, :300]
    with pytest.raises(ValueError, match="160"):
        ms_ssim(small, small)
    with pytest.raises(ValueError, match="160"):
        ms_ssim_jit(small, small)
    with pytest.raises(AssertionError):
        pm.ms_ssim(_torch(np.asarray(small)), _torch(np.asarray(small)), data_range=1.0)
    ok = xf[:, :161, :300]
    assert float(ms_ssim_jit(ok, ok)) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        ms_ssim(xf, xf[:, :200])
    # small='shrink' handles training-size patches
    p = xf[:, :64, :64]
    q = jnp.clip(p + 0.05 * jax.random.normal(jax.random.key(0), p.shape), 0, 1)
    v = float(ms_ssim_jit(p, q, small="shrink"))
    assert 0.5 < v < 1.0
    assert float(ms_ssim_jit(p, p, small="shrink")) == pytest.approx(1.0, abs=1e-6)


def test_psnr_and_mse(pairs):
    _, x, y = pairs[2]
    xf, yf = x.astype(np.float64) / 255.0, y.astype(np.float64) / 255.0
    m = np.mean((xf - yf) ** 2)
    assert float(mse(jnp.asarray(xf, jnp.float32), jnp.asarray(yf, jnp.float32))) == pytest.approx(m, rel=1e-5)
    want = 10 * np.log10(1.0 / m)
    assert float(psnr(jnp.asarray(xf, jnp.float32), jnp.asarray(yf, jnp.float32))) == pytest.approx(want, abs=1e-4)
    got255 = float(psnr(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), data_range=255.0))
    assert got255 == pytest.approx(want, abs=1e-4)
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert float(ms_ssim_db(jnp.float32(0.9))) == pytest.approx(10.0, rel=1e-5)


def test_ms_ssim_gradients_finite(pairs, kodak_dir):
    """Gradients are finite for distorted, identical and unrelated images, and for an inverted image, which
    drives cs < 0 (clamped to 0 by the ReLU) at every scale, where the clamp meets the fractional powers;
    and they agree with pytorch-msssim's."""
    require("torch")
    pm = require("pytorch_msssim")
    _, x, y = pairs[2]
    xf = jnp.asarray(x[:1].astype(np.float32) / 255.0)
    yf = jnp.asarray(y[:1].astype(np.float32) / 255.0)
    other = jnp.asarray(load_rgb(kodak_dir / "kodim13.png", (250, 333))[None].astype(np.float32) / 255.0)
    flipped = xf[:, ::-1, ::-1]
    grad = jax.jit(jax.grad(lambda a, b: ms_ssim(a, b), argnums=0))
    for b in (yf, xf, other, flipped, 1.0 - xf):
        g = np.asarray(grad(yf if b is xf else xf, b))
        assert np.all(np.isfinite(g))
    assert float(ms_ssim_jit(xf, 1.0 - xf)) == 0.0
    g = np.asarray(grad(yf, xf))
    assert np.abs(g).max() > 0
    # agreement with pytorch-msssim's gradient on the distorted pair
    yt = _torch(np.asarray(yf)).requires_grad_(True)
    pm.ms_ssim(yt, _torch(np.asarray(xf)), data_range=1.0).backward()
    gt = yt.grad.numpy().transpose(0, 2, 3, 1)
    assert np.linalg.norm(g - gt) / np.linalg.norm(gt) <= 1e-3
