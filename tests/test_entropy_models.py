"""Entropy models: factorized density (EntropyBottleneck), Gaussian conditional, scale table and
indexes, quantisation modes — against CompressAI with the same parameters (issue 2, "Entropy models")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import nchw, nhwc
from conftest import require

from lic_jax.entropy_models import (
    SCALES_LEVELS,
    SCALES_MAX,
    SCALES_MIN,
    EntropyBottleneck,
    GaussianConditional,
    fit_quantiles,
    gaussian_likelihood,
    logits_cumulative,
    quantize,
    scale_indexes,
    scale_table,
)

C = 6

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest.py


def _rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------------
# EntropyBottleneck
# ------------------------------------------------------------------------------------------------
def _trained_like_eb_params(filters=(3, 3, 3, 3), seed=0):
    """EB parameters moved away from their initialisation (random but still a valid density)."""
    rng = _rng(seed)
    v = EntropyBottleneck(C, filters=filters).init(jax.random.key(seed), jnp.zeros((1, 2, 2, C)))["params"]
    v = jax.tree_util.tree_map(np.asarray, v)
    out = {}
    for k, a in v.items():
        a = np.array(a, np.float32)
        if k.startswith("matrix_"):
            a = a + rng.normal(scale=0.7, size=a.shape).astype(np.float32)
        elif k.startswith("bias_"):
            a = a + rng.normal(scale=1.0, size=a.shape).astype(np.float32)
        elif k.startswith("factor_"):
            a = rng.normal(scale=0.8, size=a.shape).astype(np.float32)
        out[k] = a
    q = fit_quantiles(out)
    out["quantiles"] = np.array(q, np.float32)
    return out


def _compressai_eb(params, filters=(3, 3, 3, 3), dtype=None):
    require("compressai")
    import torch
    from compressai.entropy_models import EntropyBottleneck as TEB

    eb = TEB(C, filters=filters)
    with torch.no_grad():
        for i in range(len(filters) + 1):
            eb.matrices[i].copy_(torch.tensor(params[f"matrix_{i}"]))
            eb.biases[i].copy_(torch.tensor(params[f"bias_{i}"]))
            if i < len(filters):
                eb.factors[i].copy_(torch.tensor(params[f"factor_{i}"]))
        eb.quantiles.copy_(torch.tensor(params["quantiles"]))
    if dtype is not None:
        eb = eb.to(dtype)
    return eb.eval()


def _eb_values(params, rng):
    """Values around the medians: integers (bin probabilities) over the whole coding range + noisy reals."""
    med = params["quantiles"][:, 0, 1]
    grid = np.arange(-40, 41, dtype=np.float32)
    ints = grid[None, :, None, None] + med[None, None, None, :]  # (1, 81, 1, C)
    reals = rng.normal(scale=8.0, size=(1, 81, 1, C)).astype(np.float32)
    return np.concatenate([ints, reals], axis=2)  # (1, 81, 2, C)


def test_eb_likelihood_vs_compressai():
    """Stable (sign-trick) likelihood vs CompressAI's own code in float64; plain difference
    (``stable_likelihood=False``, CompressAI's formula) vs CompressAI in float32."""
    import torch

    params = _trained_like_eb_params()
    rng = _rng(1)
    v = _eb_values(params, rng)
    eb32, eb64 = _compressai_eb(params), _compressai_eb(params, dtype=torch.float64)

    def ref(eb, dtype):
        x = torch.tensor(v.transpose(3, 0, 1, 2).reshape(C, 1, -1), dtype=dtype)
        with torch.no_grad():
            lik, _, _ = eb._likelihood(x)
            lik = torch.clamp(lik, min=1e-9)
        return lik.numpy().reshape(C, *v.shape[:3]).transpose(1, 2, 3, 0)

    r64, r32 = ref(eb64, torch.float64), ref(eb32, torch.float32)
    stable = np.asarray(EntropyBottleneck(C).apply({"params": params}, jnp.asarray(v), method="likelihood"))
    plain = np.asarray(EntropyBottleneck(C, stable_likelihood=False).apply({"params": params}, jnp.asarray(v),
                                                                          method="likelihood"))
    rel = lambda a, b: np.abs(a.astype(np.float64) - b) / b  # noqa: E731
    assert rel(stable, r64).max() <= 2e-5, rel(stable, r64).max()
    # a float32 difference of two sigmoids carries an absolute error of a few ulps of 1 (2^-24 each), which
    # is a large relative error in the upper tail (p ≪ 1): compare the plain forms with that bound
    ulp1 = 2.0**-24
    assert np.all(np.abs(plain.astype(np.float64) - r32) <= 2e-5 * r64 + 4 * ulp1)
    assert np.all(np.abs(r32.astype(np.float64) - r64) <= 2e-5 * r64 + 4 * ulp1)
    # the stable form is never worse than the plain one (against the float64 value)
    assert rel(stable, r64).max() <= rel(r32, r64).max() + 1e-6
    # bin probabilities over the integer grid telescope to c(m + 40.5) − c(m − 40.5)
    med = torch.tensor(params["quantiles"][:, :, 1:2], dtype=torch.float64)
    with torch.no_grad():
        c = torch.sigmoid(eb64._logits_cumulative(torch.cat([med - 40.5, med + 40.5], dim=2), True)).numpy()
    np.testing.assert_allclose(stable[0, :, 0].astype(np.float64).sum(axis=0), c[:, 0, 1] - c[:, 0, 0], atol=1e-5)


def test_eb_forward_and_aux_loss_vs_compressai():
    import torch

    params = _trained_like_eb_params(seed=3)
    # quantiles away from their fitted values (|logit − target| must not be ≈ 0, where |·|' is ambiguous);
    # medians off the integers
    params["quantiles"] += _rng(9).normal(scale=0.5, size=params["quantiles"].shape).astype(np.float32)
    eb = _compressai_eb(params)
    rng = _rng(2)
    y = rng.normal(scale=5.0, size=(2, 5, 7, C)).astype(np.float32)
    with torch.no_grad():
        yq_t, lik_t = eb(nchw(y), training=False)
    mod = EntropyBottleneck(C)
    yq, lik = mod.apply({"params": params}, jnp.asarray(y), "round")
    np.testing.assert_array_equal(np.asarray(yq), nhwc(yq_t))  # round(y − median) + median
    np.testing.assert_allclose(np.asarray(lik), nhwc(lik_t), rtol=2e-4)
    aux_t = eb.loss().item()
    aux = float(mod.apply({"params": params}, method="aux_loss"))
    assert abs(aux - aux_t) <= 1e-5 * abs(aux_t)

    # aux-loss gradient reaches only the quantiles, and equals CompressAI's
    def aux_fn(p):
        return mod.apply({"params": p}, method="aux_loss")

    g = jax.grad(aux_fn)(params)
    eb.zero_grad()
    eb.loss().backward()
    np.testing.assert_allclose(np.asarray(g["quantiles"]), eb.quantiles.grad.numpy(), rtol=1e-5, atol=1e-6)
    for k, v in g.items():
        if k != "quantiles":
            assert float(jnp.abs(v).max()) == 0.0, k


def test_eb_likelihood_gradients_vs_compressai():
    """∂ Σ log p / ∂(density params, values) vs CompressAI (float64 reference)."""
    import torch

    params = _trained_like_eb_params(seed=4)
    rng = _rng(4)
    v = (rng.normal(scale=4.0, size=(1, 10, 10, C)) + rng.uniform(-0.5, 0.5, size=(1, 10, 10, C))).astype(np.float32)
    eb = _compressai_eb(params, dtype=torch.float64)
    x = torch.tensor(v.transpose(3, 0, 1, 2).reshape(C, 1, -1), dtype=torch.float64, requires_grad=True)
    lik, _, _ = eb._likelihood(x)
    torch.log(torch.clamp(lik, min=1e-9)).sum().backward()

    def f(p, vals):
        return jnp.sum(jnp.log(EntropyBottleneck(C).apply({"params": p}, vals, method="likelihood")))

    gp, gv = jax.grad(f, argnums=(0, 1))(params, jnp.asarray(v))
    gv_t = x.grad.numpy().reshape(C, *v.shape[:3]).transpose(1, 2, 3, 0)
    assert np.linalg.norm(np.asarray(gv) - gv_t) / np.linalg.norm(gv_t) <= 1e-4
    for i in range(5):
        for name, tp in (("matrix", eb.matrices), ("bias", eb.biases), ("factor", eb.factors)):
            if name == "factor" and i == 4:
                continue
            gt = tp[i].grad.numpy()
            rel = np.linalg.norm(np.asarray(gp[f"{name}_{i}"]) - gt) / np.linalg.norm(gt)
            assert rel <= 1e-4, (name, i, rel)


@pytest.mark.parametrize("filters", [(3, 3, 3, 3), (3, 3, 3)])
def test_fit_quantiles_vs_compressai_update_quantiles(filters):
    import torch

    params = _trained_like_eb_params(filters, seed=5)
    params["quantiles"] = np.tile(np.array([-10.0, 0.0, 10.0], np.float32), (C, 1, 1))  # as initialised
    eb = _compressai_eb(params, filters)
    eb._update_quantiles()  # CompressAI's bisection (rtol 1e-4, atol 1e-3)
    q_t = eb.quantiles.detach().numpy()
    # a precise float64 reference with CompressAI's own search
    eb64 = _compressai_eb(params, filters, dtype=torch.float64)
    f64 = lambda y: eb64._logits_cumulative(y, stop_gradient=True)  # noqa: E731
    q64 = np.zeros_like(q_t, dtype=np.float64)
    for i in range(3):
        lo = torch.full((C, 1, 1), -1e5, dtype=torch.float64)
        hi = torch.full((C, 1, 1), 1e5, dtype=torch.float64)
        with torch.no_grad():
            q64[:, :, i] = eb64._search_target(f64, eb64.target[i], lo, hi, rtol=1e-12, atol=1e-10)[:, :, 0].numpy()
    q = np.asarray(fit_quantiles(params))
    assert q.shape == (C, 1, 3)
    np.testing.assert_allclose(q, q64, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(q, q_t, rtol=1e-4, atol=1e-3)  # CompressAI's tolerance
    # and the fitted values hit the targets: logit c(q) = (−t, 0, t), t = log(2/τ − 1)
    t = np.log(2 / 1e-9 - 1)
    logits = np.asarray(logits_cumulative({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(q)))
    np.testing.assert_allclose(logits[:, 0], np.tile([-t, 0.0, t], (C, 1)), atol=2e-3)
    assert np.all(q[:, 0, 0] < q[:, 0, 1]) and np.all(q[:, 0, 1] < q[:, 0, 2])


# ------------------------------------------------------------------------------------------------
# Gaussian conditional
# ------------------------------------------------------------------------------------------------
def _gauss_inputs(rng, n=4000):
    scales = np.exp(rng.uniform(np.log(0.02), np.log(300.0), size=n)).astype(np.float32)
    means = rng.normal(scale=3.0, size=n).astype(np.float32)
    y = (np.round(rng.normal(scale=1.0, size=n) * scales * 1.5) + means).astype(np.float32)
    return y.reshape(1, 40, 100, 1), scales.reshape(1, 40, 100, 1), means.reshape(1, 40, 100, 1)


@pytest.mark.parametrize("with_means", [True, False], ids=["mean-scale", "scale"])
def test_gaussian_likelihood_vs_compressai(with_means):
    require("compressai")
    import torch
    from compressai.entropy_models import GaussianConditional as TGC

    y, s, m = _gauss_inputs(_rng(6))
    m = m if with_means else None
    gc = TGC(None)
    yt = nchw(y).requires_grad_(True)
    st = nchw(s).requires_grad_(True)
    mt = None if m is None else nchw(m).requires_grad_(True)
    lik_t = gc.likelihood_lower_bound(gc._likelihood(yt, st, mt))
    torch.log(lik_t).sum().backward()

    def f(yy, ss, mm):
        return gaussian_likelihood(yy, ss, mm)

    lik = f(jnp.asarray(y), jnp.asarray(s), None if m is None else jnp.asarray(m))
    r = np.abs(np.asarray(lik, np.float64) - nhwc(lik_t)) / nhwc(lik_t)
    assert r.max() <= 1e-4, r.max()
    # also the GaussianConditional module (round mode: round(y − μ) + μ), with the same bounds
    yq, lik_mod = GaussianConditional().apply({}, jnp.asarray(y + 0.3), jnp.asarray(s),
                                             None if m is None else jnp.asarray(m), "round")
    with torch.no_grad():
        yq_t, lik_mod_t = gc(nchw(y + 0.3), nchw(s), None if m is None else nchw(m), training=False)
    np.testing.assert_array_equal(np.asarray(yq), nhwc(yq_t))
    assert (np.abs(np.asarray(lik_mod) - nhwc(lik_mod_t)) / nhwc(lik_mod_t)).max() <= 1e-4
    # gradients of Σ log p (scale lower bound with its gradient rule included)
    args = (jnp.asarray(y), jnp.asarray(s)) + (() if m is None else (jnp.asarray(m),))
    grads = jax.grad(lambda *a: jnp.sum(jnp.log(f(a[0], a[1], a[2] if len(a) > 2 else None))),
                     argnums=tuple(range(len(args))))(*args)
    for g, t in zip(grads, (yt, st, mt)):
        gt = nhwc(t.grad)
        assert np.linalg.norm(np.asarray(g) - gt) / np.linalg.norm(gt) <= 1e-4


def test_gaussian_bounds():
    # σ below 0.11 is treated as 0.11; the likelihood is floored at 1e-9
    a = gaussian_likelihood(jnp.array([0.0, 0.0, 50.0]), jnp.array([0.01, 0.11, 0.5]))
    b = gaussian_likelihood(jnp.array([0.0]), jnp.array([0.11]))
    assert float(a[0]) == float(b[0]) == float(a[1])
    assert float(a[2]) == pytest.approx(1e-9, rel=1e-6)
    np.testing.assert_allclose(float(b[0]), 0.9999941, rtol=1e-6)  # Φ(0.5/0.11) − Φ(−0.5/0.11)


def test_scale_table_and_indexes_vs_compressai():
    """lic's table is exp(linspace) in float64 rounded to float32; CompressAI's is computed in float32.
    Measured: 46 of the 64 entries differ, by 1–4 float32 ulps (max rel 3e-7; CompressAI's are the
    inexact ones). With CompressAI's table lic's ``scale_indexes`` equals ``build_indexes`` exactly;
    with its own table indexes differ only for σ lying between the two tables' versions of an entry
    (104 of 390 σ placed on those boundaries, none of 20 000 log-uniform random σ)."""
    require("compressai")
    import torch
    from compressai.entropy_models import GaussianConditional as TGC
    from compressai.models.base import get_scale_table

    ca = get_scale_table().numpy()
    lic = scale_table()
    assert lic.dtype == np.float32 and lic.shape == (SCALES_LEVELS,) == ca.shape
    assert lic[0] == np.float32(SCALES_MIN) and abs(lic[-1] - SCALES_MAX) <= 256 * 2**-23
    ulps = np.abs(lic.view(np.int32) - ca.view(np.int32))
    n_diff = int((ulps > 0).sum())
    assert ulps.max() <= 8, ulps.max()
    # lic's entries are the correctly rounded float64 values; CompressAI's float32 exp(linspace) is off by ulps
    exact = np.exp(np.linspace(np.log(SCALES_MIN), np.log(SCALES_MAX), SCALES_LEVELS))
    assert np.all(np.abs(lic - exact) <= 0.5 * np.spacing(lic).astype(np.float64) * (1 + 1e-9))
    rel = np.abs(lic / ca - 1).max()
    print(f"\nscale tables: {n_diff}/64 entries differ (max {ulps.max()} ulp, max rel {rel:.2e})")

    gc = TGC(None)
    gc.update_scale_table(get_scale_table())
    rng = _rng(7)
    s = np.exp(rng.uniform(np.log(0.01), np.log(400.0), size=20000)).astype(np.float32)
    edge = np.concatenate([ca, lic, np.nextafter(ca, 0), np.nextafter(ca, 1e9), np.nextafter(lic, 0),
                           np.nextafter(lic, 1e9), [0.0, 0.11, 1e-6, 255.9, 256.0, 1e4]]).astype(np.float32)
    s = np.concatenate([s, edge])
    ref = gc.build_indexes(torch.tensor(s)).numpy()
    same_table = scale_indexes(s, table=ca)
    np.testing.assert_array_equal(same_table, ref)
    np.testing.assert_array_equal(np.asarray(scale_indexes(jnp.asarray(s), table=ca)), ref)  # JAX path
    own = scale_indexes(s)
    differ = own != ref
    # differences only where σ lies between the two versions of a table entry
    lo, hi = np.minimum(lic, ca), np.maximum(lic, ca)
    between = np.any((s[:, None] >= lo[None, :]) & (s[:, None] <= hi[None, :]) & (lo != hi)[None, :], axis=1)
    assert np.all(between[differ])
    assert np.all(np.abs(own[differ] - ref[differ]) == 1)
    n_rand = len(s) - len(edge)
    print(f"scale_indexes with lic's own table: {int(differ.sum())}/{len(s)} indexes differ from CompressAI "
          f"(all at table-entry boundaries; among the {n_rand} random σ: {int(differ[:n_rand].sum())})")
    assert int(differ[:n_rand].sum()) == 0
    assert own.min() == 0 and own.max() == SCALES_LEVELS - 1


# ------------------------------------------------------------------------------------------------
# quantisation modes
# ------------------------------------------------------------------------------------------------
def test_quantize_noise():
    x = jnp.linspace(-3.0, 3.0, 20000).reshape(100, 200)
    q = quantize(x, "noise", rng=jax.random.key(0))
    d = np.asarray(q - x)
    assert d.min() >= -0.5 and d.max() <= 0.5
    assert abs(d.mean()) < 0.01 and abs(d.std() - (1 / 12) ** 0.5) < 0.01
    assert np.mean(np.asarray(q) == np.round(np.asarray(q))) < 0.01
    # means do not shift the noise; the gradient is the identity
    q2 = quantize(x, "noise", means=jnp.full_like(x, 0.3), rng=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(q2), np.asarray(q))
    g = jax.grad(lambda v: jnp.sum(quantize(v, "noise", rng=jax.random.key(0)) * 2.0))(x)
    np.testing.assert_array_equal(np.asarray(g), 2.0)
    with pytest.raises(ValueError):
        quantize(x, "noise")


def test_quantize_ste_and_round():
    x = jnp.array([-1.7, -0.5, -0.2, 0.49, 0.5, 1.5, 2.51])
    m = jnp.full_like(x, 0.25)
    np.testing.assert_array_equal(np.asarray(quantize(x, "ste")), np.round(np.asarray(x)))
    np.testing.assert_array_equal(np.asarray(quantize(x, "round")), np.round(np.asarray(x)))
    np.testing.assert_allclose(np.asarray(quantize(x, "round", m)), np.round(np.asarray(x) - 0.25) + 0.25)
    np.testing.assert_allclose(np.asarray(quantize(x, "ste", m)), np.round(np.asarray(x) - 0.25) + 0.25)
    w = jnp.arange(7.0)
    # straight-through: identity gradient w.r.t. x, none w.r.t. the means
    gx, gm = jax.grad(lambda a, b: jnp.sum(w * quantize(a, "ste", b)), argnums=(0, 1))(x, m)
    np.testing.assert_array_equal(np.asarray(gx), np.asarray(w))
    np.testing.assert_array_equal(np.asarray(gm), 0.0)
    # round: the true zero gradient of rounding; the means keep theirs (as CompressAI's "dequantize")
    gx, gm = jax.grad(lambda a, b: jnp.sum(w * quantize(a, "round", b)), argnums=(0, 1))(x, m)
    np.testing.assert_array_equal(np.asarray(gx), 0.0)
    np.testing.assert_array_equal(np.asarray(gm), np.asarray(w))
    with pytest.raises(ValueError):
        quantize(x, "dequantize")


def test_quantize_round_matches_compressai_dequantize():
    require("compressai")
    import torch
    from compressai.entropy_models import EntropyModel

    rng = _rng(8)
    x = rng.normal(scale=4, size=(3, 50)).astype(np.float32)
    m = rng.normal(size=(3, 50)).astype(np.float32)
    mt = torch.tensor(m, requires_grad=True)
    em = EntropyModel()
    qt = em.quantize(torch.tensor(x), "dequantize", mt)
    (qt * 3.0).sum().backward()
    q, g = jax.value_and_grad(lambda b: jnp.sum(quantize(jnp.asarray(x), "round", b) * 3.0))(jnp.asarray(m))
    np.testing.assert_array_equal(np.asarray(quantize(jnp.asarray(x), "round", jnp.asarray(m))), qt.detach().numpy())
    np.testing.assert_array_equal(np.asarray(g), mt.grad.numpy())
