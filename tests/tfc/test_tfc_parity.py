"""Parity of lic_jax with tensorflow-compression (TFC) 2.14.1 and TensorFlow 2.14.1 (issue 2, "Parity with TFC").

Runs in the ``[tfc]`` environment only (``.venv-tfc``: Python 3.11, jax 0.4.30, flax 0.10.4,
TF 2.14.1, TFC 2.14.1, numpy 1.26)::

    nice -n 10 .venv-tfc/bin/python -m pytest -q tests/tfc/test_tfc_parity.py

What is compared, and how TFC is configured (TFC source: ``tensorflow_compression/python/...``
of the installed package):

1. **GDN / IGDN.** ``tfc.GDN(inverse=..., rectify=False, alpha_parameter=2, epsilon_parameter=.5)``
   computes ``y_i = x_i / sqrt(beta_i + sum_j gamma[j, i] x_j^2)`` (IGDN: ``x_i * sqrt(...)``) —
   the papers' square-root form, ``lic_jax.layers.GDN(simplified=False)``. The default
   ``tfc.GDN()`` (``alpha_parameter=1, epsilon_parameter=1``) is the simplified form
   ``x_i / (beta_i + sum_j gamma[j, i] |x_j|)`` = ``GDN(simplified=True)``. Both libraries store
   the same re-parameterised variables (``GDNParameter``: ``v = sqrt(max(p + 2^-36, 2^-36))``,
   ``p = lower_bound(v, sqrt(min + 2^-36))^2 - 2^-36``, min 1e-6 for beta, 0 for gamma, the same
   ``identity_if_towards`` gradient), so the mapping is exact on the *stored* variables:
   ``reparam_beta <- params['beta']``, ``reparam_gamma <- params['gamma'].T`` (TFC indexes
   gamma[input, output], lic_jax/CompressAI [output, input]). Outputs and gradients (w.r.t. the
   input and the stored variables, including entries below the bound) are compared on
   activations of a real Kodak crop.
2. **Factorized density.** ``tfc.NoisyDeepFactorized(batch_shape=(C,), num_filters=filters,
   init_scale=10)`` wraps ``DeepFactorized`` whose variables ``_matrices[i]``, ``_biases[i]``,
   ``_factors[i]`` have exactly the shapes and the parameterisation (softplus(matrix), bias,
   tanh(factor)) of ``EntropyBottleneck``'s ``matrix_i``, ``bias_i``, ``factor_i``: they are
   assigned 1:1. Filters (3, 3) (TFC v2 default), (3, 3, 3) (Ballé 2018 / TFC v1) and
   (3, 3, 3, 3) (CompressAI). ``NoisyDeepFactorized.prob(x)`` = c(x+½) − c(x−½) is compared with
   ``EntropyBottleneck.likelihood(x)`` at integer and non-integer x, with and without lic_jax's
   1e-9 likelihood floor; TFC run in float64 is the exact reference for both float32 results.
3. **Gaussian.** ``tfc.NoisyNormal(loc=mu, scale=sigma).prob(x)`` vs
   ``gaussian_likelihood(x, sigma, mu)`` on a grid (sigma ≥ 0.11, lic_jax's scale bound).
4. **MS-SSIM** vs ``tf.image.ssim_multiscale``: all 24 Kodak images vs their PIL-JPEG versions
   (q = 10, 30, 70). The two definitions coincide exactly when every scale has even size
   (768×512 Kodak) and differ in how odd sizes are down-sampled (250×333 crops); a float64
   re-implementation of both rules (below) attributes the whole difference to that rule. The
   bounds asserted here are 1.5× the maxima measured on the full set (``docs/METRICS.md``;
   re-measure with ``python tests/tfc/test_tfc_parity.py --measure``).
5. **Smoke test** of the whole model family in this old-JAX environment (init, forward, one
   jitted RD gradient step, ``flax.serialization`` msgpack and model-artifact round trips).
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

if __name__ != "__main__":
    from conftest import load_rgb, require  # tests/conftest.py (sets jax_threefry_partitionable)

from lic_jax.entropy_models import EntropyBottleneck, gaussian_likelihood, logits_cumulative
from lic_jax.layers import GDN, Conv
from lic_jax.metrics import MS_SSIM_WEIGHTS, ms_ssim

pytestmark = pytest.mark.tfc


def enable_x64():
    """float64 context: ``jax.experimental.enable_x64`` (jax 0.4.30), ``jax.enable_x64(True)`` (newer jax)."""
    try:
        from jax.experimental import enable_x64 as ctx

        return ctx()
    except ImportError:
        return jax.enable_x64(True)

JPEG_QUALITIES = (10, 30, 70)
ODD_CROP = (250, 333)  # 250x333 -> 125x167 -> 63x84 -> 32x42 -> 16x21: odd sizes at 3 of 4 down-samplings


# ----------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tf():
    tf = require("tensorflow")
    tf.random.set_seed(0)
    return tf


@pytest.fixture(scope="module")
def tfc(tf):
    return require("tensorflow_compression")


@pytest.fixture(scope="module")
def activations(kodak_dir):
    """Real image-derived GDN input: a 96×128 Kodak crop through a (seeded) 5×5/2 conv, 16 channels."""
    x = load_rgb(kodak_dir / "kodim23.png", crop=(96, 128)).astype(np.float32)[None] / 255.0
    conv = Conv(16, 5, 2)
    v = conv.init(jax.random.PRNGKey(0), x)
    a = np.asarray(conv.apply(v, x)) * 4.0  # magnitudes of a trained g_a's first layer (|a| up to ~5)
    assert a.shape == (1, 48, 64, 16) and 1.0 < np.abs(a).max() < 20.0
    return a


def _trained_like_gdn_params(c: int, seed: int):
    """Stored (re-parameterised) beta (C,) and gamma (C_out, C_in), as after training: varied
    magnitudes, non-symmetric gamma, ~25 % of gamma entries and one beta at/below their bounds."""
    rng = np.random.default_rng(seed)
    beta = np.sqrt(rng.uniform(0.05, 3.0, c)).astype(np.float32)
    beta[0] = -0.01  # below sqrt(1e-6 + 2^-36): effective beta_min
    gamma = np.sqrt(np.abs(rng.normal(0.0, 0.15, (c, c))) + 0.1 * np.eye(c)).astype(np.float32)
    dead = rng.random((c, c)) < 0.25
    gamma[dead] = rng.uniform(-0.02, 0.0, dead.sum()).astype(np.float32)  # stored below the bound 2^-18
    return beta, gamma


def _tfc_gdn(tfc, shape, simplified: bool, inverse: bool, beta=None, gamma=None):
    """The TFC layer computing the same function as ``GDN(simplified, inverse)``; optionally
    with lic_jax's stored variables copied in."""
    if simplified:
        layer = tfc.GDN(inverse=inverse, rectify=False)  # defaults: alpha_parameter=1, epsilon_parameter=1
    else:
        layer = tfc.GDN(inverse=inverse, rectify=False, alpha_parameter=2, epsilon_parameter=0.5)
    layer.build(shape)
    if beta is not None:
        layer.beta_parameter.variable.assign(beta)
        layer.gamma_parameter.variable.assign(np.ascontiguousarray(gamma.T))
    return layer


# ----------------------------------------------------------------------------------------------
# 1. GDN / IGDN
# ----------------------------------------------------------------------------------------------
def test_gdn_default_init_matches_tfc(tf, tfc):
    """Default initialisation: identical stored variables (beta = 1, gamma = 0.1·I re-parameterised)."""
    c = 16
    for simplified in (False, True):
        m = GDN(simplified=simplified)
        p = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, c)))["params"]
        layer = _tfc_gdn(tfc, (1, 2, 2, c), simplified, inverse=False)
        np.testing.assert_array_equal(np.asarray(p["beta"]), layer.beta_parameter.variable.numpy())
        np.testing.assert_array_equal(np.asarray(p["gamma"]).T, layer.gamma_parameter.variable.numpy())
        np.testing.assert_allclose(np.asarray(layer.gamma), 0.1 * np.eye(c), atol=1e-9)


@pytest.mark.parametrize("simplified", [False, True], ids=["sqrt", "simplified"])
@pytest.mark.parametrize("inverse", [False, True], ids=["GDN", "IGDN"])
def test_gdn_matches_tfc(tf, tfc, activations, simplified, inverse):
    a = activations
    c = a.shape[-1]
    beta, gamma = _trained_like_gdn_params(c, seed=1 + 2 * simplified + inverse)
    params = {"beta": jnp.asarray(beta), "gamma": jnp.asarray(gamma)}
    m = GDN(inverse=inverse, simplified=simplified)
    w = np.random.default_rng(7).normal(size=a.shape).astype(np.float32)  # random cotangent

    def loss(p, x):
        y = m.apply({"params": p}, x)
        return jnp.sum(y * w), y

    (_, y), (g_p, g_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, jnp.asarray(a))
    y = np.asarray(y)

    layer = _tfc_gdn(tfc, a.shape, simplified, inverse, beta, gamma)
    xt = tf.constant(a)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        yt = layer(xt)
        lt = tf.reduce_sum(yt * w)
    gt_x, gt_beta, gt_gamma = tape.gradient(
        lt, [xt, layer.beta_parameter.variable, layer.gamma_parameter.variable])
    yt = yt.numpy()

    # effective parameters agree (bound hit where stored below it)
    np.testing.assert_allclose(np.asarray(layer.beta), np.maximum(beta, (1e-6 + 2.0**-36) ** 0.5) ** 2 - 2.0**-36,
                               rtol=1e-6)
    assert np.asarray(layer.beta)[0] == pytest.approx(1e-6, rel=1e-3)

    abs_diff = np.abs(y - yt).max()
    big = np.abs(yt) > 1e-3
    rel_diff = (np.abs(y - yt)[big] / np.abs(yt[big])).max()
    print(f"GDN simplified={simplified} inverse={inverse}: |y| max {np.abs(yt).max():.3f}, "
          f"max abs diff {abs_diff:.2e}, max rel diff {rel_diff:.2e}")
    # measured over the 4 variants (2026-11-30): abs ≤ 1.19e-7 at |y| max 1.57, rel ≤ 1.19e-7 → 3×
    assert abs_diff <= 2.5e-7 * max(1.0, np.abs(yt).max())
    assert rel_diff <= 3.6e-7

    for name, gj, gt in (("x", g_x, gt_x), ("beta", g_p["beta"], gt_beta), ("gamma", g_p["gamma"], gt_gamma.numpy().T)):
        gj, gt = np.asarray(gj), np.asarray(gt)
        scale = np.abs(gt).max()
        d = np.abs(gj - gt).max() / scale
        print(f"  grad {name}: max |g| {scale:.3e}, max diff / max |g| {d:.2e}")
        # measured max over the 4 variants: x 1.13e-7, beta 3.97e-6, gamma 3.20e-7 (2026-11-30, AMD EPYC, AVX2)
        # and x 1.13e-7, beta 3.97e-6, gamma 1.40e-6 (2026-12-05, Intel Xeon, AVX-512: a sum over positions in
        # another order, as beta's) → ~3× the larger
        assert d <= {"x": 3.5e-7, "beta": 1.2e-5, "gamma": 4.2e-6}[name], name
        # the lower-bound gradient rule is the same: zero exactly where TFC's is zero
        np.testing.assert_array_equal(gj == 0, gt == 0)
    assert (np.asarray(g_p["gamma"]) == 0).any()  # some stored gamma entries are below the bound with outward gradient


# ----------------------------------------------------------------------------------------------
# 2. factorized density (EntropyBottleneck vs NoisyDeepFactorized)
# ----------------------------------------------------------------------------------------------
EB_CHANNELS = 6


def _eb_points():
    """Integer points (bin centres of quantised values) and non-integer points, per channel."""
    ints = np.arange(-150, 151, dtype=np.float32)
    frac = (np.linspace(-150, 150, 301) + 0.137).astype(np.float32)
    v = np.concatenate([ints, frac])
    return np.tile(v[:, None], (1, EB_CHANNELS)).astype(np.float32)


def _trained_like_eb_params(filters, seed: int):
    """lic_jax's initial EB params perturbed as after training (skewed, shifted, non-trivial factors)."""
    eb = EntropyBottleneck(EB_CHANNELS, filters=filters)
    p = dict(jax.tree_util.tree_map(np.asarray, eb.init(jax.random.PRNGKey(seed), _eb_points(),
                                                        method=eb.likelihood)["params"]))
    rng = np.random.default_rng(seed)
    for k in sorted(p):
        if k.startswith("matrix_"):
            p[k] = (p[k] + 0.7 * rng.normal(size=p[k].shape)).astype(np.float32)
        elif k.startswith("bias_"):
            p[k] = (p[k] + 2.0 * rng.normal(size=p[k].shape)).astype(np.float32)
        elif k.startswith("factor_"):
            p[k] = (p[k] + rng.normal(size=p[k].shape)).astype(np.float32)
    return p


def _tfc_noisy_deep_factorized(tf, tfc, filters, params, dtype):
    d = tfc.NoisyDeepFactorized(batch_shape=(EB_CHANNELS,), num_filters=filters, init_scale=10, dtype=dtype)
    base = d.base
    assert len(base._matrices) == len(filters) + 1 and len(base._factors) == len(filters)
    npd = dtype.as_numpy_dtype
    for i in range(len(filters) + 1):
        base._matrices[i].assign(params[f"matrix_{i}"].astype(npd))
        base._biases[i].assign(params[f"bias_{i}"].astype(npd))
        if i < len(filters):
            base._factors[i].assign(params[f"factor_{i}"].astype(npd))
    return d


@pytest.mark.parametrize("filters", [(3, 3), (3, 3, 3), (3, 3, 3, 3)], ids=["tfc2", "bmshj2018", "compressai"])
def test_factorized_matches_tfc(tf, tfc, filters):
    # default initialisation: same matrices (the biases are random in both libraries)
    eb0 = EntropyBottleneck(EB_CHANNELS, filters=filters)
    p0 = eb0.init(jax.random.PRNGKey(0), _eb_points(), method=eb0.likelihood)["params"]
    d0 = tfc.DeepFactorized(batch_shape=(EB_CHANNELS,), num_filters=filters, init_scale=10)
    for i in range(len(filters) + 1):
        np.testing.assert_allclose(np.asarray(p0[f"matrix_{i}"]), d0._matrices[i].numpy(), rtol=1e-6)
        np.testing.assert_array_equal(d0._biases[i].numpy().shape, np.asarray(p0[f"bias_{i}"]).shape)
    for i in range(len(filters)):
        np.testing.assert_array_equal(np.asarray(p0[f"factor_{i}"]), d0._factors[i].numpy())

    p = _trained_like_eb_params(filters, seed=len(filters))
    x = _eb_points()
    d32 = _tfc_noisy_deep_factorized(tf, tfc, filters, p, tf.float32)
    d64 = _tfc_noisy_deep_factorized(tf, tfc, filters, p, tf.float64)
    p_tfc = d32.prob(x).numpy()
    p_ref = d64.prob(x.astype(np.float64)).numpy()  # exact (float64) value of the same density

    eb = EntropyBottleneck(EB_CHANNELS, filters=filters, likelihood_bound=0.0)
    p_lic = np.asarray(eb.apply({"params": p}, jnp.asarray(x), method=eb.likelihood))
    assert p_lic.shape == x.shape and p_ref.min() < 1e-9 < 0.02 < p_ref.max()  # covers far tails and the modes

    m = p_ref > 1e-6
    rel_tfc = np.abs(p_lic - p_tfc)[m] / p_tfc[m]
    err_lic = np.abs(p_lic - p_ref)[m] / p_ref[m]
    err_tfc = np.abs(p_tfc - p_ref)[m] / p_ref[m]
    abs_diff = np.abs(p_lic - p_tfc).max()
    print(f"factorized {filters}: lic vs TFC(f32) max abs {abs_diff:.2e}, max rel (p>1e-6) {rel_tfc.max():.2e}; "
          f"vs float64: lic {err_lic.max():.2e}, TFC f32 {err_tfc.max():.2e}")
    assert abs_diff <= 1e-6
    assert rel_tfc.max() <= 9e-5  # measured ≤ 2.98e-5 (2026-11-30): float32 rounding of the 5-layer cumulative
    # lic_jax's float32 error is no larger than TFC's own float32 error (same formula, same precision)
    assert err_lic.max() <= max(2.0 * err_tfc.max(), 1e-5)
    # tails (p ≤ 1e-6): lic_jax's sign trick keeps full relative precision there as TFC's sf/cdf switch does
    t = (p_ref <= 1e-6) & (p_ref > 1e-30)
    if t.any():
        tail_err = (np.abs(p_lic - p_ref)[t] / p_ref[t]).max()
        print(f"  tails (1e-30 < p <= 1e-6, {t.sum()} points): lic vs float64 max rel {tail_err:.2e}")
        assert tail_err <= 1e-4  # measured ≤ 5.03e-5 (2026-11-30)

    # with lic_jax's default floor (1e-9) the likelihood is max(TFC prob, 1e-9)
    ebb = EntropyBottleneck(EB_CHANNELS, filters=filters)
    p_lic_b = np.asarray(ebb.apply({"params": p}, jnp.asarray(x), method=ebb.likelihood))
    ref_b = np.maximum(p_ref, 1e-9)
    assert (np.abs(p_lic_b - ref_b) / ref_b).max() <= 1e-4  # measured ≤ 4.84e-5 (2026-11-30)

    # the same function exactly: lic_jax's logits_cumulative in float64 == TFC's in float64
    with enable_x64():
        p64 = {k: jnp.asarray(v, jnp.float64) for k, v in p.items()}
        xv = jnp.asarray(np.ascontiguousarray(x.T.astype(np.float64))[:, None, :])  # (C, 1, N)
        assert xv.dtype == jnp.float64
        lo = np.asarray(logits_cumulative(p64, xv - 0.5))[:, 0, :].T
        hi = np.asarray(logits_cumulative(p64, xv + 0.5))[:, 0, :].T
    lo_t = d64.base._logits_cumulative(tf.constant(x.astype(np.float64) - 0.5)).numpy()
    hi_t = d64.base._logits_cumulative(tf.constant(x.astype(np.float64) + 0.5)).numpy()
    # measured max |Δ| 2.84e-14 (2026-11-30) → 1e-13 absolute
    np.testing.assert_allclose(lo, lo_t, rtol=0, atol=1e-13)
    np.testing.assert_allclose(hi, hi_t, rtol=0, atol=1e-13)


def test_factorized_medians_match_tfc(tf, tfc):
    """fit_quantiles' median (logit 0) is TFC's median (the point its quantisation offset comes from)."""
    from lic_jax.entropy_models import fit_quantiles

    filters = (3, 3, 3, 3)
    p = _trained_like_eb_params(filters, seed=11)
    q = np.asarray(fit_quantiles({**p, "quantiles": np.zeros((EB_CHANNELS, 1, 3), np.float32)}))
    d = _tfc_noisy_deep_factorized(tf, tfc, filters, p, tf.float64)
    med_tfc = tf.function(d.base._quantization_offset)().numpy()  # estimate_tails(logits, 0): an Adam search
    # check the TFC estimate is itself accurate, then compare
    assert np.abs(d.base._logits_cumulative(tf.constant(med_tfc[None])).numpy()).max() < 1e-5
    print(f"medians: max |lic - TFC| {np.abs(q[:, 0, 1] - med_tfc).max():.2e} "
          f"(range {med_tfc.min():.1f}..{med_tfc.max():.1f})")
    np.testing.assert_allclose(q[:, 0, 1], med_tfc, atol=7.5e-5)  # measured 2.51e-5 (2026-11-30)


# ----------------------------------------------------------------------------------------------
# 3. Gaussian likelihood vs NoisyNormal
# ----------------------------------------------------------------------------------------------
def test_gaussian_matches_tfc(tf, tfc):
    xs = np.concatenate([np.arange(-30, 31), np.linspace(-30, 30, 97) + 0.31]).astype(np.float32)
    locs = np.array([-3.3, -0.5, 0.0, 0.25, 1.7, 10.0], np.float32)
    scales = np.geomspace(0.11, 256.0, 25).astype(np.float32)
    x, mu, s = (a.astype(np.float32) for a in np.meshgrid(xs, locs, scales, indexing="ij"))

    p_tfc = tfc.NoisyNormal(loc=mu, scale=s).prob(x).numpy()
    p_ref = tfc.NoisyNormal(loc=mu.astype(np.float64), scale=s.astype(np.float64)).prob(x.astype(np.float64)).numpy()
    p_lic = np.asarray(gaussian_likelihood(jnp.asarray(x), jnp.asarray(s), jnp.asarray(mu), likelihood_bound=0.0))

    m = p_ref > 1e-9
    rel = np.abs(p_lic - p_tfc)[m] / p_tfc[m]
    err_lic = np.abs(p_lic - p_ref)[m] / p_ref[m]
    err_tfc = np.abs(p_tfc - p_ref)[m] / p_ref[m]
    print(f"gaussian: max abs {np.abs(p_lic - p_tfc).max():.2e}, max rel (p>1e-9) {rel.max():.2e}; "
          f"vs float64: lic {err_lic.max():.2e}, TFC f32 {err_tfc.max():.2e}")
    assert np.abs(p_lic - p_tfc).max() <= 3.6e-7  # measured 1.19e-7 (2026-11-30)
    # measured 3.8e-5: Φ(a) − Φ(b) with both ≈ ½ at σ = 256 (p ≈ 1.6e-3) cancels in float32 in both
    assert rel.max() <= 1e-4
    assert err_lic.max() <= max(2.0 * err_tfc.max(), 1e-5)
    # with the default floor: max(p, 1e-9)
    p_lic_b = np.asarray(gaussian_likelihood(jnp.asarray(x), jnp.asarray(s), jnp.asarray(mu)))
    ref_b = np.maximum(p_ref, 1e-9)
    assert (np.abs(p_lic_b - ref_b) / ref_b).max() <= 6e-5  # measured 2.00e-5 (2026-11-30)

    # exactly the same function in float64 (σ = float32(0.11) < 0.11 is lower-bounded by lic_jax: give
    # TFC the bounded scale)
    p_ref = tfc.NoisyNormal(loc=mu.astype(np.float64), scale=np.maximum(s.astype(np.float64), 0.11)).prob(
        x.astype(np.float64)).numpy()
    with enable_x64():
        p64 = np.asarray(gaussian_likelihood(jnp.asarray(x, jnp.float64), jnp.asarray(s, jnp.float64),
                                             jnp.asarray(mu, jnp.float64), likelihood_bound=0.0))
    m = p_ref > 1e-30  # (TF's and XLA's erfc differ by ~1e-5 relative only beyond ~1e-250)
    rel64 = (np.abs(p64 - p_ref)[m] / p_ref[m]).max()
    print(f"gaussian float64: lic vs TFC max rel (p>1e-30) {rel64:.2e}")
    assert rel64 <= 1.2e-13  # measured 3.85e-14 (2026-11-30)


# ----------------------------------------------------------------------------------------------
# 4. MS-SSIM vs tf.image.ssim_multiscale
# ----------------------------------------------------------------------------------------------
def _gauss_win(size=11, sigma=1.5):
    c = np.arange(size) - size // 2
    g = np.exp(-(c**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filt64(x, g):
    k = len(g)
    h, w = x.shape[-2:]
    o = sum(g[i] * x[..., i:h - k + 1 + i, :] for i in range(k))
    return sum(g[i] * o[..., :, i:w - k + 1 + i] for i in range(k))


def _pool64(x, rule):
    """2×2 down-sampling of (..., H, W). 'torch': pytorch-msssim (and lic_jax): avg_pool2d with one
    zero row/column on *both* sides of an odd axis, counted in the mean. 'tf': TF's
    ssim_multiscale: pad odd axes by one row/column at the *end*, mode SYMMETRIC (the edge is
    repeated), then avg_pool VALID."""
    rh, rw = x.shape[-2] % 2, x.shape[-1] % 2
    lead = [(0, 0)] * (x.ndim - 2)
    if rule == "torch":
        x = np.pad(x, lead + [(rh, rh), (rw, rw)])
    else:
        x = np.pad(x, lead + [(0, rh), (0, rw)], mode="symmetric")
    h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
    x = x[..., :h, :w]
    return 0.25 * (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2])


def ms_ssim64(a, b, data_range, rule):
    """Float64 MS-SSIM of two (H, W, C) images with either down-sampling rule (else identical:
    11-tap σ=1.5 Gaussian, valid filtering, K=(0.01, 0.03), ReLU on cs / SSIM, per-channel
    product over scales, mean over channels)."""
    x = np.moveaxis(np.asarray(a, np.float64), -1, 0)
    y = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    g = _gauss_win()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for s in range(len(MS_SSIM_WEIGHTS)):
        m1, m2 = _filt64(x, g), _filt64(y, g)
        s1, s2, s12 = _filt64(x * x, g) - m1 * m1, _filt64(y * y, g) - m2 * m2, _filt64(x * y, g) - m1 * m2
        cs = (2 * s12 + c2) / (s1 + s2 + c2)
        if s < len(MS_SSIM_WEIGHTS) - 1:
            vals.append(np.maximum(cs.mean(axis=(-2, -1)), 0.0))
            x, y = _pool64(x, rule), _pool64(y, rule)
        else:
            lum = (2 * m1 * m2 + c1) / (m1 * m1 + m2 * m2 + c1)
            vals.append(np.maximum((lum * cs).mean(axis=(-2, -1)), 0.0))
    v = np.stack(vals, 0)
    return float(np.prod(v ** np.asarray(MS_SSIM_WEIGHTS)[:, None], axis=0).mean())


def _jpeg(a, quality):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def _db(v):
    return -10.0 * math.log10(1.0 - v)


_lic_ms_ssim = jax.jit(lambda a, b, r: ms_ssim(a, b, data_range=r, reduce=False), static_argnums=2)


def _pair_values(tf, a, b, data_range, with_ref=False):
    """(lic_jax, TF[, float64 torch rule, float64 TF rule]) MS-SSIM of uint8 images a, b."""
    div = 255.0 if data_range == 1.0 else 1.0
    x, y = a.astype(np.float32) / div, b.astype(np.float32) / div
    lic = float(_lic_ms_ssim(x[None], y[None], data_range)[0])
    tfv = float(tf.image.ssim_multiscale(x[None], y[None], data_range)[0])
    if not with_ref:
        return lic, tfv
    return lic, tfv, ms_ssim64(x, y, data_range, "torch"), ms_ssim64(x, y, data_range, "tf")


# Measured on all 24 Kodak images × JPEG q ∈ {10, 30, 70} × data range {1, 255} (docs/METRICS.md,
# `--measure`); the test bounds are 1.5× these maxima. Keys: (size class, quality) -> (max |Δ MS-SSIM|,
# max |Δ dB|).
MEASURED_MAX = {
    ("full", 10): (9.6e-6, 4.0e-4), ("full", 30): (5.05e-5, 7.94e-3), ("full", 70): (5.57e-5, 2.64e-2),
    ("odd", 10): (2.76e-2, 1.02), ("odd", 30): (6.70e-3, 0.915), ("odd", 70): (1.48e-3, 0.373),
}
# float32 rounding of each implementation against its own rule evaluated in float64 (measured max
# 4.3e-5 for lic_jax, 5.6e-5 for TF over the same set), times 1.5
F32_TOL_LIC, F32_TOL_TF = 6.5e-5, 8.5e-5
BOUND_FACTOR = 1.5


@pytest.fixture(scope="module")
def kodak_jpeg(kodak_dir):
    """{name: (original, {q: jpeg})} for the 24 Kodak images (JPEG by PIL on the full image)."""
    files = sorted(kodak_dir.glob("kodim*.png"))
    assert len(files) == 24
    out = {}
    for f in files:
        a = load_rgb(f)
        out[f.stem] = (a, {q: _jpeg(a, q) for q in JPEG_QUALITIES})
    return out


def test_ms_ssim_vs_tf_odd_size(tf, kodak_jpeg):
    """250×333 crops of all 24 Kodak images × 3 JPEG qualities, data range 1 (and 255 on every 6th):
    the difference to TF is the down-sampling rule for odd sizes, and only that."""
    diffs = {q: [] for q in JPEG_QUALITIES}
    dbs = {q: [] for q in JPEG_QUALITIES}
    names = sorted(kodak_jpeg)
    for i, name in enumerate(names):
        a, jp = kodak_jpeg[name]
        a = a[: ODD_CROP[0], : ODD_CROP[1]]
        for q in JPEG_QUALITIES:
            b = jp[q][: ODD_CROP[0], : ODD_CROP[1]]
            with_ref = i % 6 == 0  # float64 attribution on 4 images
            vals = _pair_values(tf, a, b, 1.0, with_ref)
            lic, tfv = vals[:2]
            diffs[q].append(abs(lic - tfv))
            dbs[q].append(abs(_db(lic) - _db(tfv)))
            if with_ref:
                r_torch, r_tf = vals[2:]
                # each implementation is its own rule up to float32 rounding, and the gap is the rule
                assert abs(lic - r_torch) <= F32_TOL_LIC, (name, q)
                assert abs(tfv - r_tf) <= F32_TOL_TF, (name, q)
                assert abs((lic - tfv) - (r_torch - r_tf)) <= F32_TOL_LIC + F32_TOL_TF, (name, q)
            if i % 6 == 3:
                lic255, tf255 = _pair_values(tf, a, b, 255.0)
                # scale invariant up to float32 rounding
                assert abs(lic255 - lic) <= 2 * F32_TOL_LIC and abs(tf255 - tfv) <= 2 * F32_TOL_TF
                diffs[q].append(abs(lic255 - tf255))
    for q in JPEG_QUALITIES:
        d, db = np.array(diffs[q]), np.array(dbs[q])
        print(f"odd 250x333 q={q}: |Δ MS-SSIM| max {d.max():.2e} mean {d.mean():.2e}; "
              f"|Δ dB| max {db.max():.3f} mean {db.mean():.3f}")
        bound, bound_db = (BOUND_FACTOR * v for v in MEASURED_MAX[("odd", q)])
        assert d.max() <= bound and db.max() <= bound_db
        assert d.mean() >= 1e-4  # the difference is real (not an accident of a few images)


def test_ms_ssim_vs_tf_even_size(tf, kodak_jpeg):
    """Full 768×512 Kodak images (even at every scale): the two definitions coincide; what is left is
    float32 rounding of both. kodim01 and kodim13 × 3 qualities at range 1, q=70 also at range 255 (the
    full set is in docs/METRICS.md; lic_jax's MS-SSIM takes ~1 s per 768×512 image on this CPU)."""
    names = sorted(kodak_jpeg)[::12]
    worst = {q: (0.0, 0.0) for q in JPEG_QUALITIES}
    for j, name in enumerate(names):
        a, jp = kodak_jpeg[name]
        for q in JPEG_QUALITIES:
            with_ref = j < 2
            vals = _pair_values(tf, a, jp[q], 1.0, with_ref)
            lic, tfv = vals[:2]
            pairs = [(lic, tfv)]
            if with_ref:
                assert vals[2] == pytest.approx(vals[3], abs=1e-12)  # same definition at even sizes
                assert abs(lic - vals[2]) <= F32_TOL_LIC and abs(tfv - vals[3]) <= F32_TOL_TF
            if q == 70:
                pairs.append(_pair_values(tf, a, jp[q], 255.0))
            for l, t in pairs:
                worst[q] = (max(worst[q][0], abs(l - t)), max(worst[q][1], abs(_db(l) - _db(t))))
    for q in JPEG_QUALITIES:
        print(f"full 768x512 q={q}: max |Δ MS-SSIM| {worst[q][0]:.2e}, max |Δ dB| {worst[q][1]:.4f}")
        bound, bound_db = (BOUND_FACTOR * v for v in MEASURED_MAX[("full", q)])
        assert worst[q][0] <= bound and worst[q][1] <= bound_db


def test_ms_ssim_min_size_same_as_tf(tf, kodak_dir):
    """Both need more than 160 px on the shorter side (TF: ≥ 11 px after 4 ceil-halvings)."""
    a = load_rgb(kodak_dir / "kodim05.png", crop=(161, 170)).astype(np.float32) / 255.0
    b = _jpeg((a * 255).round().astype(np.uint8), 30).astype(np.float32) / 255.0
    lic = float(ms_ssim(a[None], b[None]))
    tfv = float(tf.image.ssim_multiscale(a[None], b[None], 1.0)[0])
    print(f"161x170 crop: lic {lic:.5f} TF {tfv:.5f}")
    assert abs(lic - tfv) <= 5e-5  # odd at 4 of 5 scales, so the rules differ (measured 1.64e-5 on this crop)
    with pytest.raises(ValueError):
        ms_ssim(a[None, :160], b[None, :160])
    with pytest.raises(Exception):  # tf.errors.InvalidArgumentError
        tf.image.ssim_multiscale(a[None, :160], b[None, :160], 1.0)


# ----------------------------------------------------------------------------------------------
# 5. the model family in the old-JAX environment
# ----------------------------------------------------------------------------------------------
def _tiny_hparams(name):
    return {"N": 8} if name == "bls2017" else {"N": 8, "M": 12}


FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
MODEL_NAMES = ["bls2017", "bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018", "lee2019"]


def test_model_registry_complete(tfc):  # (the tfc fixture: run in the TFC environment only)
    from lic_jax.models import model_names
    from lic_jax.models.registry import record

    # portable twins share their float model's layers and run in this environment in
    # tests/test_portable.py::test_cross_environment_round_trips; 'external' models code a standard
    # JPEG/PNG payload (no range coder, nothing of TFC's involved); toderici2017 (objective 'iterative-l1')
    # codes ±1 bits with its own learned binary model, no TFC density
    covered = [n for n in model_names() if record(n).portable_of is None and record(n).coder != "external"
               and record(n).objective == "rd"]
    assert sorted(covered) == sorted(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_family_runs_in_tfc_env(tfc, name, kodak_dir, tmp_path):
    import optax
    from flax import serialization

    from lic_jax.artifact import load_artifact, save_artifact
    from lic_jax.losses import rate_distortion_loss
    from lic_jax.models import get_model

    x = jnp.asarray(load_rgb(kodak_dir / "kodim07.png", crop=(40, 56)).astype(np.float32)[None] / 255.0)
    model, spec = get_model(name, **_tiny_hparams(name))
    variables = model.init({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, x, train=True)
    params = variables["params"]

    opt = optax.adam(1e-3)
    state = opt.init(params)

    # one compilation per model: RD gradient step, then an eval-mode forward with the new params
    def step(p, st, key):
        def loss_fn(p):
            o = model.apply({"params": p}, x, train=True, rngs={"noise": key})
            return rate_distortion_loss(o, x, 0.0067)["loss"]

        loss, g = jax.value_and_grad(loss_fn)(p)
        upd, st = opt.update(g, st, p)
        p = optax.apply_updates(p, upd)
        return p, st, loss, g, model.apply({"params": p}, x)  # eval mode: rounding around medians/means

    key = jax.random.PRNGKey(2)
    # jitted; XLA's backend optimisations off: compiles in ~2 s instead of ~20 s here, same numbers
    step = jax.jit(step).lower(params, state, key).compile(FAST_COMPILE)
    new_params, _, loss, grads, out = step(params, state, key)
    assert np.isfinite(float(loss))
    gl = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in gl)
    n_nonzero = sum(bool(jnp.any(g != 0)) for g in gl)
    assert n_nonzero >= len(gl) - 1  # only the EB 'quantiles' (trained by the aux loss) may get no RD gradient
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), params, new_params)
    assert sum(jax.tree_util.tree_leaves(changed)) >= len(gl) - 1

    assert out["x_hat"].shape == x.shape  # odd size 40×56: padded to the model's multiple, cropped back
    assert bool(jnp.all(jnp.isfinite(out["x_hat"])))
    for lik in out["likelihoods"].values():
        assert bool(jnp.all((lik > 0) & (lik <= 1)))

    # msgpack round trip (flax.serialization, the artifact's params format): bit-exact arrays and the
    # same tree, hence the same outputs (the forward is a pure function of them)
    ref = jax.tree_util.tree_map(np.asarray, {"params": new_params})
    blob = serialization.to_bytes({"params": new_params})

    def assert_same(tree):
        assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(ref)
        for a, b in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(ref)):
            assert np.asarray(a).dtype == b.dtype
            np.testing.assert_array_equal(np.asarray(a), b)

    assert_same(serialization.from_bytes({"params": params}, blob))
    assert_same(serialization.msgpack_restore(blob))  # target-free restore, as load_artifact does

    # the model artifact directory (config.json + params.msgpack) round-trips too
    fp = save_artifact(tmp_path / "model", spec, {"params": new_params}, metadata={"env": "tfc"})
    art = load_artifact(tmp_path / "model")
    assert art.fingerprint == fp and art.spec == spec and type(art.model) is type(model)
    assert_same(art.variables)


# ----------------------------------------------------------------------------------------------
# the full MS-SSIM measurement behind docs/METRICS.md
# ----------------------------------------------------------------------------------------------
def _measure():  # pragma: no cover - run by hand: python tests/tfc/test_tfc_parity.py --measure
    import tensorflow as tf_

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import DATA as data, load_rgb as load

    jax.config.update("jax_threefry_partitionable", True)
    files = sorted((data / "kodak").glob("kodim*.png"))
    rows = []
    for f in files:
        a = load(f)
        for q in JPEG_QUALITIES:
            b = _jpeg(a, q)
            for size, (aa, bb) in (("full", (a, b)), ("odd", (a[: ODD_CROP[0], : ODD_CROP[1]],
                                                              b[: ODD_CROP[0], : ODD_CROP[1]]))):
                for r in (1.0, 255.0):
                    lic, tfv, rt, rf = _pair_values(tf_, aa, bb, r, with_ref=True)
                    rows.append((f.stem, q, size, r, lic, tfv, rt, rf))
        print(f.stem, flush=True)
    print("\n| size | q | range | mean MS-SSIM (lic) | max abs Δ | mean abs Δ | mean signed Δ (lic−TF) "
          "| max abs Δ dB | mean abs Δ dB | max abs (lic − f64 torch rule) | max abs (TF − f64 TF rule) "
          "| max abs (f64 torch rule − f64 TF rule) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in ("full", "odd"):
        for q in JPEG_QUALITIES:
            for r in (1.0, 255.0):
                R = np.array([row[4:] for row in rows if row[1] == q and row[2] == size and row[3] == r])
                lic, tfv, rt, rf = R.T
                d = lic - tfv
                ddb = np.array([_db(u) - _db(v) for u, v in zip(lic, tfv)])
                print(f"| {size} | {q} | {r:g} | {lic.mean():.4f} | {np.abs(d).max():.2e} | {np.abs(d).mean():.2e} "
                      f"| {d.mean():+.2e} | {np.abs(ddb).max():.4f} | {np.abs(ddb).mean():.4f} "
                      f"| {np.abs(lic - rt).max():.1e} | {np.abs(tfv - rf).max():.1e} | {np.abs(rt - rf).max():.2e} |")
    for size in ("full", "odd"):
        for q in JPEG_QUALITIES:
            R = np.array([row[4:6] for row in rows if row[1] == q and row[2] == size])
            d = np.abs(R[:, 0] - R[:, 1]).max()
            ddb = max(abs(_db(u) - _db(v)) for u, v in R)
            print(f"MEASURED_MAX[({size!r}, {q})] = ({d:.3g}, {ddb:.3g})")


if __name__ == "__main__":  # pragma: no cover
    if "--measure" in sys.argv:
        _measure()
