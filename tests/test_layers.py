"""Layers: GDN/IGDN, the lower-bound gradient rule, CompressAI-padded (transposed) convolutions,
masked convolutions — against numpy references and against PyTorch / CompressAI with the same
weights (issue 2, "Layers")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import nchw, nhwc
from conftest import require

from lic_jax.layers import GDN, Conv, ConvTranspose, MaskedConv, causal_mask, conv_transpose2d, lower_bound
from lic_jax.layers.conv import conv2d
from lic_jax.layers.bounds import REPARAM_OFFSET, nonneg_init, nonneg_value

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest.py


def _rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------------
# lower bound and the non-negative re-parameterisation
# ------------------------------------------------------------------------------------------------
def test_lower_bound_forward_and_gradient_rule():
    x = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    b = 0.0
    np.testing.assert_array_equal(lower_bound(x, b), [0.0, 0.0, 0.0, 0.5, 2.0])
    _, vjp = jax.vjp(lambda v: lower_bound(v, b), x)
    # g > 0 (gradient descent would push x down): blocked below the bound, passed at/above it
    np.testing.assert_array_equal(vjp(jnp.ones(5))[0], [0.0, 0.0, 1.0, 1.0, 1.0])
    # g < 0 (descent pushes x up, back above the bound): always passed
    np.testing.assert_array_equal(vjp(-jnp.ones(5))[0], [-1.0, -1.0, -1.0, -1.0, -1.0])
    # mixed signs
    g = jnp.array([3.0, -3.0, 3.0, -3.0, 3.0])
    np.testing.assert_array_equal(vjp(g)[0], [0.0, -3.0, 3.0, -3.0, 3.0])


def test_lower_bound_matches_compressai():
    require("compressai")
    import torch
    from compressai.ops import LowerBound

    rng = _rng(1)
    x = rng.normal(size=1000).astype(np.float32)
    g = rng.normal(size=1000).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = LowerBound(0.25)(xt)
    yt.backward(torch.tensor(g))
    y, vjp = jax.vjp(lambda v: lower_bound(v, 0.25), jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(y), yt.detach().numpy())
    np.testing.assert_array_equal(np.asarray(vjp(jnp.asarray(g))[0]), xt.grad.numpy())


def test_nonneg_reparam_matches_compressai():
    require("compressai")
    import torch
    from compressai.ops.parametrizers import NonNegativeParametrizer

    rng = _rng(2)
    v = np.abs(rng.normal(size=64)).astype(np.float32)
    v[:8] = 0.0
    for minimum in (0.0, 1e-6):
        ref = NonNegativeParametrizer(minimum=minimum)
        p_t = ref.init(torch.tensor(v))
        p_j = nonneg_init(jnp.asarray(v))
        np.testing.assert_allclose(np.asarray(p_j), p_t.numpy(), rtol=2.5e-7, atol=0)  # sqrt: ≤ 1 ulp
        np.testing.assert_allclose(np.asarray(nonneg_value(p_j, minimum)), ref(p_t).numpy(), rtol=1e-6, atol=1e-12)
        # round trip: value → parameter → value (exact up to float32 rounding; values ≥ minimum)
        back = np.asarray(nonneg_value(p_j, minimum))
        np.testing.assert_allclose(back, np.maximum(v, minimum), rtol=1e-6, atol=REPARAM_OFFSET**2 * 4)


# ------------------------------------------------------------------------------------------------
# GDN
# ------------------------------------------------------------------------------------------------
def _random_gdn_params(c, rng):
    beta = rng.uniform(0.5, 2.0, size=c).astype(np.float32)
    gamma = (0.1 * np.eye(c) + rng.uniform(0.0, 0.05, size=(c, c))).astype(np.float32)
    return {"beta": nonneg_init(jnp.asarray(beta)), "gamma": nonneg_init(jnp.asarray(gamma))}, beta, gamma


def _gdn_numpy(x, beta, gamma, inverse, simplified):
    x = x.astype(np.float64)
    f = np.abs(x) if simplified else x * x
    norm = np.einsum("bhwj,ij->bhwi", f, gamma.astype(np.float64)) + beta.astype(np.float64)
    if not simplified:
        norm = np.sqrt(norm)
    return x * norm if inverse else x / norm


@pytest.mark.parametrize("simplified", [False, True], ids=["sqrt", "simplified"])
@pytest.mark.parametrize("inverse", [False, True], ids=["GDN", "IGDN"])
def test_gdn_vs_numpy_reference(inverse, simplified):
    rng = _rng(3)
    c = 6
    params, beta, gamma = _random_gdn_params(c, rng)
    x = rng.normal(scale=2.0, size=(2, 5, 7, c)).astype(np.float32)
    y = GDN(inverse=inverse, simplified=simplified).apply({"params": params}, jnp.asarray(x))
    # the stored parameters reproduce beta, gamma up to the re-parameterisation's offset ε² = 2^-36
    np.testing.assert_allclose(np.asarray(y), _gdn_numpy(x, beta, gamma, inverse, simplified), rtol=2e-6, atol=1e-6)


def test_gdn_init_matches_papers():
    x = jnp.ones((1, 2, 2, 4))
    v = GDN().init(jax.random.key(0), x)["params"]
    np.testing.assert_allclose(np.asarray(nonneg_value(v["beta"], 1e-6)), np.ones(4), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(nonneg_value(v["gamma"])), 0.1 * np.eye(4), atol=1e-9)


@pytest.mark.parametrize("simplified", [False, True], ids=["GDN", "GDN1"])
@pytest.mark.parametrize("inverse", [False, True], ids=["fwd", "inverse"])
def test_gdn_vs_compressai(inverse, simplified):
    require("compressai")
    import torch
    from compressai.layers import GDN as TGDN
    from compressai.layers import GDN1 as TGDN1

    rng = _rng(4)
    c = 8
    params, _, _ = _random_gdn_params(c, rng)
    # include parameters below the re-parameterisation bound (their gradient rule matters)
    params["gamma"] = params["gamma"].at[0, 1].set(-0.01)
    x = rng.normal(scale=1.5, size=(2, 9, 11, c)).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)

    tl = (TGDN1 if simplified else TGDN)(c, inverse=inverse)
    with torch.no_grad():
        tl.beta.copy_(torch.tensor(np.asarray(params["beta"])))
        tl.gamma.copy_(torch.tensor(np.asarray(params["gamma"])))
    xt = nchw(x).requires_grad_(True)
    yt = tl(xt)
    yt.backward(nchw(g))

    layer = GDN(inverse=inverse, simplified=simplified)
    y, vjp = jax.vjp(lambda p, v: layer.apply({"params": p}, v), params, jnp.asarray(x))
    gp, gx = vjp(jnp.asarray(g))
    np.testing.assert_allclose(np.asarray(y), nhwc(yt), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gx), nhwc(xt.grad), rtol=1e-4, atol=1e-5)
    for name in ("beta", "gamma"):
        gt = getattr(tl, name).grad.numpy()
        rel = np.linalg.norm(np.asarray(gp[name]) - gt) / np.linalg.norm(gt)
        assert rel <= 1e-5, (name, rel)
    # the below-bound entry: gradient passed only where it pushes the parameter back up
    assert (np.asarray(gp["gamma"])[0, 1] == 0.0) == (tl.gamma.grad.numpy()[0, 1] == 0.0)


# ------------------------------------------------------------------------------------------------
# convolutions
# ------------------------------------------------------------------------------------------------
CONV_CASES = [(5, 2, 16, 16), (5, 2, 15, 13), (3, 1, 9, 8), (9, 4, 17, 20), (9, 4, 32, 30), (1, 1, 5, 6)]


@pytest.mark.parametrize("k,s,h,w", CONV_CASES)
def test_conv_matches_torch_conv2d(k, s, h, w):
    torch = require("torch")
    rng = _rng(5)
    cin, cout = 3, 4
    x = rng.normal(size=(2, h, w, cin)).astype(np.float32)
    wt = rng.normal(size=(cout, cin, k, k)).astype(np.float32) * 0.2
    b = rng.normal(size=cout).astype(np.float32)
    ref = torch.nn.functional.conv2d(nchw(x), torch.from_numpy(wt), torch.from_numpy(b), stride=s, padding=k // 2)
    params = {"kernel": jnp.asarray(wt.transpose(2, 3, 1, 0)), "bias": jnp.asarray(b)}
    y = Conv(cout, k, s).apply({"params": params}, jnp.asarray(x))
    assert y.shape == (2, -(-h // s), -(-w // s), cout)
    np.testing.assert_allclose(np.asarray(y), nhwc(ref), rtol=1e-5, atol=1e-5)


def test_flax_same_padding_differs():
    """Documents why Conv pads explicitly: Flax 'SAME' pads (1, 2) for k=5, s=2; CompressAI pads (2, 2)."""
    import flax.linen as nn

    rng = _rng(6)
    x = jnp.asarray(rng.normal(size=(1, 16, 16, 2)).astype(np.float32))
    kernel = jnp.asarray(rng.normal(size=(5, 5, 2, 3)).astype(np.float32))
    ours = Conv(3, 5, 2, use_bias=False).apply({"params": {"kernel": kernel}}, x)
    flax_same = nn.Conv(3, (5, 5), (2, 2), padding="SAME", use_bias=False).apply({"params": {"kernel": kernel}}, x)
    assert ours.shape == flax_same.shape
    assert float(jnp.abs(ours - flax_same).max()) > 1e-2


TCONV_CASES = [(5, 2, 8, 8), (5, 2, 7, 5), (9, 4, 4, 5), (9, 4, 3, 3), (3, 1, 6, 7), (3, 1, 5, 5)]


@pytest.mark.parametrize("k,s,h,w", TCONV_CASES)
def test_conv_transpose_impls_match_torch(k, s, h, w):
    """'subpixel' == 'winograd' == 'winograd-blocked' == 'winograd-phases' == 'transpose' == torch
    ConvTranspose2d(k, s, padding=k//2, output_padding=s-1): outputs and gradients w.r.t. the input and the
    kernel ('winograd-phases' runs its own form only for 5×5 stride 2, else the blocked one)."""
    torch = require("torch")
    rng = _rng(7)
    cin, cout = 4, 3
    x = rng.normal(size=(2, h, w, cin)).astype(np.float32)
    wt = rng.normal(size=(cin, cout, k, k)).astype(np.float32) * 0.2  # torch layout (in, out, kh, kw)
    b = rng.normal(size=cout).astype(np.float32)
    gout = rng.normal(size=(2, h * s, w * s, cout)).astype(np.float32)

    xt = nchw(x).requires_grad_(True)
    wtt = torch.from_numpy(wt).requires_grad_(True)
    yt = torch.nn.functional.conv_transpose2d(xt, wtt, torch.from_numpy(b), stride=s, padding=k // 2,
                                              output_padding=s - 1)
    yt.backward(nchw(gout))
    assert yt.shape[2:] == (h * s, w * s)

    params = {"kernel": jnp.asarray(wt.transpose(2, 3, 0, 1)), "bias": jnp.asarray(b)}
    outs = {}
    for impl in ("subpixel", "winograd", "winograd-blocked", "winograd-phases", "transpose"):
        layer = ConvTranspose(cout, k, s, impl=impl)
        y, vjp = jax.vjp(lambda p, v: layer.apply({"params": p}, v), params, jnp.asarray(x))
        gp, gx = vjp(jnp.asarray(gout))
        outs[impl] = (np.asarray(y), np.asarray(gx), np.asarray(gp["kernel"]))
        np.testing.assert_allclose(outs[impl][0], nhwc(yt), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(outs[impl][1], nhwc(xt.grad), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(outs[impl][2], wtt.grad.numpy().transpose(2, 3, 0, 1), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(gp["bias"]), gout.sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-4)
    for impl in ("subpixel", "winograd", "winograd-blocked", "winograd-phases"):
        for a, b_ in zip(outs[impl], outs["transpose"]):
            np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", [None, 8])
@pytest.mark.parametrize("h,w,pad", [(12, 10, ((1, 1), (1, 1))), (7, 9, ((1, 1), (1, 1))), (6, 5, ((0, 2), (2, 0)))])
def test_winograd_conv3x3_matches_float64(h, w, pad, block):
    """Winograd F(2×2, 3×3) == a float64 numpy cross-correlation, even and odd sizes, asymmetric
    padding, one product per tap or blocks of 8 tiles (60, 40 and 24 tiles: a padded last block).
    Measured max |error| / max |output| 2.4–3.3e-7 (outputs ~70; x, w ~ N(0, 1), 48 inputs;
    XLA's own float32 convolution: 3.0–4.3e-7): bound 1e-6."""
    from lic_jax.layers.conv import winograd_conv3x3
    rng = _rng(3)
    x = rng.normal(size=(2, h, w, 48)).astype(np.float32)
    k = rng.normal(size=(3, 3, 48, 20)).astype(np.float32)
    xp = np.pad(x.astype(np.float64), ((0, 0), pad[0], pad[1], (0, 0)))
    ho, wo = xp.shape[1] - 2, xp.shape[2] - 2
    ref = sum(np.einsum("nhwc,co->nhwo", xp[:, i:i + ho, j:j + wo], k[i, j].astype(np.float64))
              for i in range(3) for j in range(3))
    got = np.asarray(winograd_conv3x3(jnp.asarray(x), jnp.asarray(k), pad, block))
    assert got.shape == ref.shape
    rel = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert rel < 1e-6, rel


@pytest.mark.parametrize("block", [None, 8])
@pytest.mark.parametrize("h,w", [(12, 10), (7, 9), (1, 3)])
def test_winograd_phases_matches_float64(h, w, block):
    """The four-phase Winograd 5×5 stride-2 transposed convolution == a float64 numpy loop over the
    definition ``out[o] = Σ_i x[i]·W[o + 2 − 2i]`` (PyTorch's padding 2, output padding 1), even and
    odd sizes, one product per tap or blocks of 8 tiles (30, 20 and 2 tiles). Measured max |error| /
    max |output| 2.2–3.3e-7 (outputs 29–86; x, w ~ N(0, 1), 48 inputs; XLA's dilated convolution
    1.3–4.7e-7): bound 1e-6."""
    from lic_jax.layers.conv import winograd_phases_5x5s2
    rng = _rng(4)
    x = rng.normal(size=(2, h, w, 48)).astype(np.float32)
    k = rng.normal(size=(5, 5, 48, 20)).astype(np.float32)
    ref = np.zeros((2, 2 * h, 2 * w, 20))
    for i in range(h):
        for j in range(w):
            for a in range(5):
                for b in range(5):
                    o1, o2 = 2 * i + a - 2, 2 * j + b - 2
                    if 0 <= o1 < 2 * h and 0 <= o2 < 2 * w:
                        ref[:, o1, o2] += x[:, i, j].astype(np.float64) @ k[a, b].astype(np.float64)
    got = np.asarray(winograd_phases_5x5s2(jnp.asarray(x), jnp.asarray(k), block))
    assert got.shape == ref.shape
    rel = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert rel < 1e-6, rel
    with pytest.raises(ValueError):
        winograd_phases_5x5s2(jnp.asarray(x), jnp.zeros((3, 3, 48, 20)))


def test_conv_transpose_auto_and_bad_impl():
    x = jnp.ones((1, 3, 3, 2))
    kern = jnp.ones((5, 5, 2, 1))
    a = conv_transpose2d(x, kern, 2, impl="auto")
    b = conv_transpose2d(x, kern, 2, impl="transpose")
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    with pytest.raises(ValueError):
        conv_transpose2d(x, kern, 2, impl="bogus")


def test_conv_init_matches_pytorch_bounds():
    x = jnp.ones((1, 8, 8, 6))
    v = Conv(16, 5, 2).init(jax.random.key(0), x)["params"]
    bound = 1 / np.sqrt(6 * 25)
    assert float(jnp.abs(v["kernel"]).max()) <= bound and float(jnp.abs(v["kernel"]).max()) > 0.9 * bound
    vt = ConvTranspose(16, 5, 2).init(jax.random.key(0), x)["params"]
    bound_t = 1 / np.sqrt(16 * 25)  # PyTorch's fan-in of ConvTranspose2d is out·k·k
    assert float(jnp.abs(vt["kernel"]).max()) <= bound_t and float(jnp.abs(vt["kernel"]).max()) > 0.9 * bound_t


# ------------------------------------------------------------------------------------------------
# masked convolution
# ------------------------------------------------------------------------------------------------
def test_causal_mask_shapes():
    a, b = causal_mask(5, "A"), causal_mask(5, "B")
    assert a.sum() == 12 and b.sum() == 13
    assert a[2, 2] == 0 and b[2, 2] == 1 and a[2, 1] == 1 and a[2, 3] == 0 and a[3].sum() == 0
    with pytest.raises(ValueError):
        causal_mask(5, "C")


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_matches_compressai(mask_type):
    require("compressai")
    import torch
    from compressai.layers import MaskedConv2d

    rng = _rng(8)
    cin, cout, k = 4, 6, 5
    x = rng.normal(size=(2, 9, 10, cin)).astype(np.float32)
    tl = MaskedConv2d(cin, cout, k, padding=k // 2, stride=1, mask_type=mask_type)
    wt = rng.normal(size=(cout, cin, k, k)).astype(np.float32) * 0.2  # unmasked weights, as a state_dict may hold
    b = rng.normal(size=cout).astype(np.float32)
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(wt))
        tl.bias.copy_(torch.from_numpy(b))
        yt = tl(nchw(x))
    np.testing.assert_array_equal(tl.mask.numpy()[0, 0], causal_mask(k, mask_type))
    params = {"kernel": jnp.asarray(wt.transpose(2, 3, 1, 0)), "bias": jnp.asarray(b)}
    layer = MaskedConv(cout, k, mask_type)
    y = layer.apply({"params": params}, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), nhwc(yt), rtol=1e-5, atol=1e-5)
    # valid mode: one output per full window == the same-size output at interior positions
    yv = layer.apply({"params": params}, jnp.asarray(x), valid=True)
    np.testing.assert_allclose(np.asarray(yv), np.asarray(y)[:, 2:-2, 2:-2], rtol=1e-5, atol=1e-5)
    # causality: the output at p depends only on inputs before p in raster order ('B': and p itself)
    p = (4, 5)
    x2 = x.copy()
    x2[:, p[0], p[1] + (mask_type == "B"):] += 10.0
    x2[:, p[0] + 1 :] -= 10.0
    y2 = layer.apply({"params": params}, jnp.asarray(x2))
    np.testing.assert_allclose(np.asarray(y2)[:, p[0], p[1]], np.asarray(y)[:, p[0], p[1]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h,w,c,o,k,s", [(13, 11, 5, 20, 5, 2), (16, 16, 3, 24, 5, 2), (12, 10, 24, 32, 3, 1),
                                         (9, 7, 8, 17, 3, 1)])
def test_conv2d_fast_gradient_matches_float64(h, w, c, o, k, s):
    """conv2d's CPU gradient through the Winograd form (5×5 stride 2 via space-to-depth, 3×3 stride 1)
    == a float64 numpy gradient; the forward value is XLA's convolution, bit for bit. Measured max
    relative error 2.0–5.3e-7 (vs XLA's own gradient): bound 2e-6."""
    from lic_jax.layers.conv import _fast_form
    assert _fast_form((k, k, c, o), s, ((k // 2, k // 2),) * 2) is not None  # the fast path is taken
    rng = _rng(5)
    x = rng.normal(size=(2, h, w, c)).astype(np.float32)
    kern = (rng.normal(size=(k, k, c, o)) * 0.1).astype(np.float32)
    y, vjp = jax.vjp(lambda a, b: conv2d(a, b, s), jnp.asarray(x), jnp.asarray(kern))
    y_xla = conv2d(jnp.asarray(x), jnp.asarray(kern), s, grad="xla")
    assert np.array_equal(np.asarray(y), np.asarray(y_xla))
    g = rng.normal(size=y.shape).astype(np.float32)
    dx, dk = (np.asarray(a) for a in vjp(jnp.asarray(g)))
    p = k // 2
    xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
    ho, wo = g.shape[1:3]
    dk_ref = np.zeros((k, k, c, o))
    dxp_ref = np.zeros_like(xp)
    for i in range(k):
        for j in range(k):
            win = xp[:, i:i + s * ho:s, j:j + s * wo:s]
            dk_ref[i, j] = np.einsum("nhwc,nhwo->co", win, g)
            dxp_ref[:, i:i + s * ho:s, j:j + s * wo:s] += np.einsum("nhwo,co->nhwc", g, kern[i, j].astype(np.float64))
    dx_ref = dxp_ref[:, p:p + h, p:p + w]
    for got, ref in ((dx, dx_ref), (dk, dk_ref)):
        rel = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
        assert rel < 2e-6, rel


def test_conv2d_fast_gradient_switches(monkeypatch):
    """The Winograd gradient is taken only where it is faster, and LIC_JAX_CONV_GRAD=xla (or
    grad='xla') switches it off: XLA's own convolution, no custom VJP in the program."""
    x, k = jnp.zeros((1, 8, 8, 4)), jnp.zeros((3, 3, 4, 24))
    custom = lambda f: "custom_vjp" in str(jax.make_jaxpr(f)(x, k))  # noqa: E731
    assert custom(lambda a, b: conv2d(a, b, 1))
    assert not custom(lambda a, b: conv2d(a, b, 1, grad="xla"))
    assert not custom(lambda a, b: conv2d(a, b[..., :16], 1))  # ≤ 16 output channels: XLA's
    monkeypatch.setenv("LIC_JAX_CONV_GRAD", "xla")
    assert not custom(lambda a, b: conv2d(a, b, 1))
