"""Akutsu et al. 2020 (seed 002; issue 20, increment 1): networks and loss pieces
(``lic_jax.models.akutsu2020``, ``lic_jax.losses_gan``; ``/work/shared/docs/SYSTEMS.md`` §8;
docs/AKUTSU.md).

Parameter counts are checked at full width by tracing only (``jax.eval_shape``), against a hand
count written below from §8's channel lists. Values are checked on a tiny model (``width=1/16``,
one RCAB per group, 64×64 images).

Initialisation: ``jit(model.init)`` of even the tiny model compiles for ≈45–70 s on the shared,
loaded 2-core CPU (measured: ~300 parameter leaves, each its own random initialiser; the forward
pass compiles in ≈9 s). The tests therefore fill the *same* tree (structure and shapes from
``eval_shape`` of the real ``init``) on the host with the same distributions
(:func:`_host_init`; GDN and entropy-bottleneck leaves from their own initialisers).
Compiled functions use XLA:CPU's fast-compile options, as tests/test_toderici2017.py.

Broken on purpose once each (a sed edit of the source, the named test run, the file restored; all failed):
* ``causal_attention_mask`` → all ones (non-causal attention): test_context_causality failed
  (future latents reached the output).
* ``MaskedConv(…, "A")`` → ``"B"`` in ContextEstimator: test_context_causality failed (position i
  depended on itself).
* ``fuse`` → ``x_detail * mask + x_main * mask``: test_fusion_identity failed.
* weighted MS-SSIM without the weight normalisation (Σ ω·map / N instead of / Σ ω):
  test_weighted_ms_ssim_constant_weight failed.
* weighted MS-SSIM with the weight ignored (plain mean): test_weighted_ms_ssim_nonconstant failed.
* ``discriminator_loss`` with softplus(fake) instead of softplus(−fake): test_gan_losses failed.
* a residual group with one extra RCAB: test_param_counts_and_shapes_full_width failed.
* G_m's output not cropped back: test_eval_mode_padding_main_only failed.
* space_to_depth with a different channel order: test_space_to_depth_inverse failed.
* ``analysis_stages`` without the mean shift (2026-12-05 session o): test_mean_shift_cvqn failed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lic_jax.entropy_models import EntropyBottleneck
from lic_jax.layers import MaskedConv
from lic_jax.layers.bounds import nonneg_init
from lic_jax.losses_gan import (discriminator_accuracy, discriminator_loss, distortion_loss, generator_gan_loss,
                                weighted_ms_ssim)
from lic_jax.metrics import ms_ssim
from lic_jax.models import akutsu2020 as A

FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
TINY = dict(width=1 / 16, blocks=1)


def _compiled(fn, *args):
    lowered = jax.jit(fn).lower(*args)
    return lowered.compile(compiler_options=FAST if jax.default_backend() == "cpu" else None)


def _host_init(module, *args, seed=0):
    """Variables with the structure of ``module.init(key, *args)``, filled on the host: conv kernels
    and biases U(±1/√fan_in) (the project's Conv / MaskedConv / depthwise init), GDN β, γ as GDN
    initialises them, entropy bottlenecks from their own ``init``."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *args)
    rng = np.random.default_rng(seed)

    def fill(tree):
        if "beta" in tree and "gamma" in tree:  # GDN
            c = tree["beta"].shape[0]
            return {"beta": nonneg_init(jnp.ones(c)), "gamma": nonneg_init(0.1 * jnp.eye(c))}
        if "quantiles" in tree:  # EntropyBottleneck
            c = tree["quantiles"].shape[0]
            eb, z = EntropyBottleneck(c), jnp.zeros((1, 1, 1, c))
            return _compiled(eb.init, jax.random.PRNGKey(seed), z)(jax.random.PRNGKey(seed), z)["params"]
        out = {}
        bound = None
        if "kernel" in tree:
            bound = 1.0 / np.sqrt(np.prod(tree["kernel"].shape[:3]))
        for k, v in tree.items():
            if isinstance(v, dict):
                out[k] = fill(v)
            else:
                out[k] = jnp.asarray(rng.uniform(-bound, bound, v.shape), jnp.float32)
        return out

    return {"params": fill(jax.tree_util.tree_map(lambda s: s, shapes["params"]))}


def _images(b=1, h=64, w=64, seed=0):
    """Smooth random images + noise in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(2 * np.pi * (f * xx + g * yy)) for f, g in ((1, 2), (3, 1), (2, 3))], -1)
    x = 0.5 + 0.3 * base[None] + 0.1 * rng.standard_normal((b, h, w, 3))
    return jnp.asarray(np.clip(x, 0, 1), jnp.float32)


# ------------------------------------------------------------------------------------------------
# hand count from SYSTEMS.md §8 (blocks = 6 RCABs per group, CA reduction 1, d_k = 16)
# ------------------------------------------------------------------------------------------------
def conv(cin, cout, k):
    return k * k * cin * cout + cout


def gdn(c):
    return c + c * c


def rcab(c):  # conv3×3, conv3×3, CA 1×1 c→c, 1×1 c→c, depthwise 3×3 (+ biases)
    return 2 * conv(c, c, 3) + 2 * conv(c, c, 1) + (9 * c + c)


def group(c, n=6):
    return n * rcab(c) + conv(c, c, 3)


def enc(cin, cout):  # space-to-depth → GDN(4cin) → group(4cin) → conv3×3 4cin→cout
    return gdn(4 * cin) + group(4 * cin) + conv(4 * cin, cout, 3)


def dec(cin, cout):  # conv3×3 cin→4cout → group(4cout) → IGDN(4cout) → pixel shuffle
    return conv(cin, 4 * cout, 3) + group(4 * cout) + gdn(4 * cout)


def attn(c, dk=16):
    return 2 * conv(c, dk, 1) + 2 * conv(c, c, 1)


HAND = {
    "E": enc(3, 32) + enc(32, 64) + enc(64, 128) + enc(128, 192) + conv(192, 64, 3),
    "G_m": conv(64, 192, 3) + dec(192, 128) + dec(128, 64) + dec(64, 32) + dec(32, 3),
    "G_s": conv(64, 192, 3) + dec(192, 96) + dec(96, 64) + dec(64, 32) + dec(32, 4),
    "H_e": conv(64, 32, 3) + enc(32, 32) + enc(32, 32),
    "H_d": dec(32, 32) + dec(32, 32) + conv(32, 128, 3),
    "context": conv(64, 128, 5) + attn(128),
    "mixing": conv(256, 192, 1) + attn(192) + conv(192, 128, 1),
    "hyper_prior": 32 * (3 + 27 + 3 + 13 + 12 + 3),  # EB (3,3,3,3): matrices, biases, factors, quantiles
    "D": conv(5, 16, 1) + conv(16, 5, 1) + enc(8, 32) + enc(32, 64) + enc(64, 128) + enc(128, 192) + conv(192, 1, 3),
}
PREFIX = {"g_a_": "E", "g_m_": "G_m", "g_d_": "G_s", "h_a_": "H_e", "h_s_": "H_d", "context_estimator": "context",
          "mixing_body": "mixing", "entropy_bottleneck": "hyper_prior"}


def _count(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def test_param_counts_and_shapes_full_width():
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    model = A.Akutsu2020()
    p = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
    got = {}
    for name, sub in p.items():
        key = next(v for k, v in PREFIX.items() if name.startswith(k))
        got[key] = got.get(key, 0) + _count(sub)
    d = A.Discriminator()
    got["D"] = _count(jax.eval_shape(d.init, jax.random.PRNGKey(0), x, jax.ShapeDtypeStruct((1, 64, 64, 5),
                                                                                            jnp.float32)))
    assert got == HAND
    assert sum(HAND[k] for k in PREFIX.values()) == 132_546_220 and HAND["D"] == 46_206_166
    # channel lists of §8 at the joints
    assert p["g_a_4"]["kernel"].shape == (3, 3, 192, 64)  # E's head: 192 → 64 latent channels
    assert p["g_m_0"]["kernel"].shape == (3, 3, 64, 192) and p["g_d_0"]["kernel"].shape == (3, 3, 64, 192)
    assert p["h_a_0"]["kernel"].shape == (3, 3, 64, 32) and p["h_s_2"]["kernel"].shape == (3, 3, 32, 128)
    assert p["mixing_body"]["Conv_0"]["kernel"].shape == (1, 1, 256, 192)
    assert p["mixing_body"]["Conv_1"]["kernel"].shape == (1, 1, 192, 128)  # (μ, σ) × 64
    out = jax.eval_shape(lambda v, x: model.apply(v, x), {"params": p}, x)
    assert out["y"].shape == (1, 4, 4, 64) and out["z"].shape == (1, 1, 1, 32)
    assert out["x_hat_detail"].shape == (1, 64, 64, 3) and out["mask"].shape == (1, 64, 64, 1)
    assert out["x_hat_main"].shape == out["x_hat"].shape == (1, 64, 64, 3)


@pytest.fixture(scope="module")
def tiny():
    model = A.Akutsu2020(**TINY)
    x = _images(2)
    v = _host_init(model, x[:1])
    fwd = _compiled(lambda v, x, k: model.apply(v, x, train=True, rngs={"noise": k}), v, x, jax.random.PRNGKey(1))
    return model, v, x, fwd(v, x, jax.random.PRNGKey(1))


def test_host_init_matches_init_structure(tiny):
    model, mine, x, _ = tiny
    real = jax.eval_shape(model.init, jax.random.PRNGKey(0), x[:1])
    assert jax.tree_util.tree_structure(real) == jax.tree_util.tree_structure(mine)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: a.shape == b.shape and a.dtype == b.dtype,
                                                         real, mine))


def test_tiny_forward(tiny):
    model, v, x, out = tiny
    lat = A.scaled(64, 1 / 16)
    assert out["y"].shape == (2, 4, 4, lat) and out["likelihoods"]["y"].shape == (2, 4, 4, lat)
    assert out["z"].shape == (2, 1, 1, A.scaled(32, 1 / 16))
    for k in ("x_hat", "x_hat_main", "x_hat_detail"):
        assert out[k].shape == x.shape and out[k].dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(out[k])))
    assert out["mask"].shape == (2, 64, 64, 1)
    assert bool(jnp.all((out["mask"] > 0) & (out["mask"] < 1)))
    for lik in out["likelihoods"].values():
        assert bool(jnp.all((lik > 0) & (lik <= 1)))
    np.testing.assert_array_equal(out["x_hat"], A.fuse(out["x_hat_detail"], out["x_hat_main"], out["mask"]))
    # D: one logit per 16×16 patch
    d = A.Discriminator(width=1 / 16, blocks=1)
    labels = jax.nn.one_hot(jnp.zeros((2, 64, 64), jnp.int32), 5)
    dv = _host_init(d, x, labels)
    logits = _compiled(d.apply, dv, x, labels)(dv, x, labels)
    assert logits.shape == (2, 4, 4, 1) and logits.dtype == jnp.float32


def test_eval_mode_padding_main_only(tiny):
    """Eval mode rounds (ŷ integer), odd sizes are padded to ×64 and cropped back, and
    ``detail=False`` skips G_s (x̂ = x̂_m, no mask)."""
    model, v, _, _ = tiny
    x = _images(1, 48, 80, seed=4)
    out = _compiled(lambda v, x: model.apply(v, x, detail=False), v, x)(v, x)
    assert out["x_hat"].shape == x.shape and "mask" not in out and "x_hat_detail" not in out
    np.testing.assert_array_equal(out["x_hat"], out["x_hat_main"])
    assert out["y_hat"].shape[1:3] == (4, 8)  # 64 × 128 padded → /16
    np.testing.assert_array_equal(out["y_hat"], jnp.round(out["y"]))
    for lik in out["likelihoods"].values():
        assert bool(jnp.all((lik > 0) & (lik <= 1)))


def test_space_to_depth_inverse():
    x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
    s = A.space_to_depth(x)
    assert s.shape == (2, 2, 3, 12)
    np.testing.assert_array_equal(A.depth_to_space(s), x)
    np.testing.assert_array_equal(s[0, 0, 0, :4], x[0, :2, :2, 0].ravel())  # PyTorch pixel_shuffle order


def test_fusion_identity():
    rng = np.random.default_rng(0)
    xs, xm = (jnp.asarray(rng.standard_normal((2, 8, 8, 3)), jnp.float32) for _ in range(2))
    ones = jnp.ones((2, 8, 8, 1))
    np.testing.assert_array_equal(A.fuse(xs, xm, ones), xs)
    np.testing.assert_array_equal(A.fuse(xs, xm, 0 * ones), xm)
    for t in (0.25, 0.5, 0.8):
        # linear in m: x̂_m + m·(x̂_s − x̂_m); float32 rounding only (measured ≤ 2.4e-7; tolerance 7e-7)
        np.testing.assert_allclose(A.fuse(xs, xm, t * ones), xm + t * (xs - xm), atol=7e-7)
    m = jnp.asarray(rng.uniform(size=(2, 8, 8, 1)), jnp.float32)
    a, b = A.fuse(xs, xm, m), 0.5 * (A.fuse(xs, xm, 2 * m) + xm)  # fuse(·, ·, 0) = xm and linearity
    np.testing.assert_allclose(a, b, atol=7e-7)  # measured 2.4e-7


def _position_jacobian(fn, y):
    """(P, P) matrix: Σ over channels |∂ out[p] / ∂ in[q]|, positions in raster order."""
    b, h, w, c = y.shape
    jac = _compiled(jax.jacfwd(lambda t: fn(t)[0]), y)(y)  # (h, w, C_out, 1, h, w, c)
    return np.asarray(jnp.abs(jac).sum(axis=(2, 3, 6))).reshape(h * w, h * w)


def test_context_causality():
    rng = np.random.default_rng(0)
    y = jnp.asarray(np.round(3 * rng.standard_normal((1, 6, 6, 3))), jnp.float32)
    hyper = jnp.asarray(rng.standard_normal((1, 6, 6, 8)), jnp.float32)
    ctx = A.ContextEstimator(features=8, key_dim=4)
    cv = _host_init(ctx, y)
    mix = A.MixingBody(latent=3, features=8, key_dim=4)
    mv = _host_init(mix, jax.ShapeDtypeStruct((1, 6, 6, 8), jnp.float32), hyper, seed=1)
    upper = np.triu(np.ones((36, 36), bool))  # q ≥ p: the current and later latents
    conv_only = lambda t: MaskedConv(8, 5, "A").apply({"params": cv["params"]["MaskedConv_0"]}, t)  # noqa: E731
    context = lambda t: ctx.apply(cv, t)  # noqa: E731
    params = lambda t: jnp.concatenate(mix.apply(mv, ctx.apply(cv, t), hyper), -1)  # noqa: E731
    jacs = {name: _position_jacobian(fn, y) for name, fn in
            (("masked conv", conv_only), ("context", context), ("μ, σ", params))}
    for name, j in jacs.items():
        assert np.all(j[upper] == 0), f"{name}: output depends on current / future latents"
        assert j[7, 0] > 0 and j[1, 0] > 0, name  # and it does depend on the past (not trivially zero)
        if name != "masked conv":
            assert np.all(j[1:, 0] > 0), name  # attention: every later position reads ŷ at (0, 0)
    # attention reaches beyond the 5×5 window: the last position (5, 5) reads (0, 0) only through it
    assert jacs["masked conv"][35, 0] == 0 and jacs["context"][35, 0] > 0 and jacs["μ, σ"][35, 0] > 0


def test_weighted_ms_ssim_constant_weight():
    x = _images(2, 64, 64, seed=1)
    y = jnp.clip(x + 0.08 * jax.random.normal(jax.random.PRNGKey(0), x.shape), 0, 1)
    ref = jax.jit(lambda a, b: ms_ssim(a, b, small="shrink", reduce=False))(y, x)
    wf = jax.jit(lambda a, b, m: weighted_ms_ssim(a, b, m, small="shrink", reduce=False))
    for c in (0.0, 0.3, 1.0):  # c = 0: only the ε floor is left
        w = wf(y, x, jnp.full(x.shape[:3], c))
        # float32 summation order only: measured max 4.8e-7 at c = 0.3 (jit, AVX2 EPYC) and 1.8e-6 at c = 0
        # (AVX-512 EPYC, 2026-12-03: XLA's reductions differ by CPU); tolerance 3 × the larger
        np.testing.assert_allclose(w, ref, atol=5.4e-6)
    # strict mode at 176×176 against the project's MS-SSIM and pytorch-msssim (independent reference)
    x = _images(1, 176, 176, seed=2)
    y = jnp.clip(x + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x.shape), 0, 1)
    w = float(jax.jit(weighted_ms_ssim)(y, x, jnp.full((1, 176, 176, 1), 0.5)))
    assert abs(w - float(jax.jit(ms_ssim)(y, x))) < 2e-7  # measured 6e-8 (jit; 0.0 eager)
    torch = pytest.importorskip("torch")
    pm = pytest.importorskip("pytorch_msssim")
    t = lambda a: torch.from_numpy(np.asarray(a).transpose(0, 3, 1, 2).copy())  # noqa: E731
    ref_pt = float(pm.ms_ssim(t(y), t(x), data_range=1.0, size_average=True))
    assert abs(w - ref_pt) < 1.6e-6  # measured 4.8e-7 (jit), 5.4e-7 (eager; = project MS-SSIM vs pytorch-msssim)


def test_weighted_ms_ssim_nonconstant():
    x = _images(1, 64, 64, seed=3)
    noise = 0.15 * jax.random.normal(jax.random.PRNGKey(2), x.shape)
    left = jnp.zeros(x.shape[:3] + (1,)).at[:, :, :32].set(1.0)
    y = jnp.clip(x + noise * left, 0, 1)  # distortion only in the left half
    plain = float(jax.jit(lambda a, b: ms_ssim(a, b, small="shrink"))(y, x))
    wf = jax.jit(lambda a, b, m: weighted_ms_ssim(a, b, m, small="shrink"))
    on, off = float(wf(y, x, left[..., 0])), float(wf(y, x, 1 - left[..., 0]))
    assert on < plain - 0.02 and off > plain + 0.02, (on, plain, off)
    # the ε floor is required (a zero map = plain MS-SSIM is checked in the constant-weight test)
    with pytest.raises(ValueError):
        weighted_ms_ssim(y, x, left[..., 0], small="shrink", eps=0.0)
    d = jax.jit(lambda *a: distortion_loss(*a, small="shrink"))(x, y, y, left[..., 0])
    np.testing.assert_allclose(d["loss"], (1 - plain) + 5.0 * (1 - on), rtol=1e-6)


def test_gan_losses():
    r = np.array([[-3.0, -0.5], [0.2, 4.0]], np.float32)
    f = np.array([[1.5, -2.0], [0.0, 30.0]], np.float32)
    sp = lambda v: np.log1p(np.exp(v.astype(np.float64)))  # noqa: E731
    np.testing.assert_allclose(discriminator_loss(jnp.asarray(r), jnp.asarray(f)), sp(r).mean() + sp(-f).mean(),
                               rtol=1e-6)
    np.testing.assert_allclose(generator_gan_loss(jnp.asarray(f)), sp(f).mean(), rtol=1e-6)
    acc = discriminator_accuracy(jnp.asarray(r), jnp.asarray(f))
    assert float(acc["real"]) == 0.5 and float(acc["fake"]) == 0.5 and float(acc["mean"]) == 0.5
    # gradients: the D step pushes real logits down and fake logits up; the G step pushes fake down
    gr, gf = jax.grad(discriminator_loss, argnums=(0, 1))(jnp.asarray(r), jnp.asarray(f))
    assert np.all(np.asarray(gr) > 0) and np.all(np.asarray(gf) <= 0)
    assert np.all(np.asarray(jax.grad(generator_gan_loss)(jnp.asarray(f))) >= 0)


def test_bf16_compute(tiny):
    model, v, x, out32 = tiny
    m16 = A.Akutsu2020(**TINY, dtype=jnp.bfloat16)
    k = jax.random.PRNGKey(1)  # the fixture's noise key: the same noise sample as out32
    out = _compiled(lambda v, x, k: m16.apply(v, x, train=True, rngs={"noise": k}), v, x, k)(v, x, k)
    for name in ("x_hat", "x_hat_main", "x_hat_detail", "mask"):
        assert out[name].dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out[name])))
    assert bool(jnp.all(jnp.isfinite(out["likelihoods"]["y"])))
    # bf16 stays near float32 (measured mean |Δx̂| = 5.7e-4, max 4.3e-3; tolerances 1.7e-3 / 1.3e-2)
    d = jnp.abs(out["x_hat"] - out32["x_hat"])
    assert float(jnp.mean(d)) < 1.7e-3 and float(jnp.max(d)) < 1.3e-2


def test_decoder_norm_gdn_and_legacy_igdn(tiny):
    """Ambiguity 3 (docs/AKUTSU.md): the decoder bodies normalise with GDN, as CVQN's code does
    (``decoder_norm='gdn'``, the default since 2026-12-04); ``'igdn'`` is the earlier form, and a
    stored spec without the field reads as ``'igdn'``. Checked against a numpy GDN / IGDN of the
    body's own intermediate (the residual group's output) with β and γ read from the parameters,
    for the default model's H_d, G_m and G_s bodies (one GDN each), and for a standalone IGDN body."""
    from lic_jax.layers.bounds import nonneg_value
    from lic_jax.models.registry import ModelSpec

    model, v, x, _ = tiny

    def check(module, variables, inp, method=None, inverse=False):
        _, st = module.apply(variables, inp, method=method, capture_intermediates=True, mutable=["intermediates"])
        inter, n = st["intermediates"], 0
        params = variables["params"]

        def walk(t, p, path):
            nonlocal n
            decoder = not path or path[0].startswith(("g_m_", "g_d_", "h_s_"))  # not E, H_e (GDN before the group)
            if decoder and "GDN_0" in t and "ResidualGroup_0" in t:  # a decoder body
                r = np.asarray(t["ResidualGroup_0"]["__call__"][0], np.float64)
                out = np.asarray(t["GDN_0"]["__call__"][0], np.float64)
                beta = np.asarray(nonneg_value(p["GDN_0"]["beta"], 1e-6), np.float64)
                gamma = np.asarray(nonneg_value(p["GDN_0"]["gamma"]), np.float64)
                norm = np.sqrt(beta + np.einsum("...j,ij->...i", r * r, gamma))
                want = r * norm if inverse else r / norm
                np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6, err_msg="/".join(path))
                n += 1
            for k, sub in t.items():
                if isinstance(sub, dict) and k in p and isinstance(p[k], dict):
                    walk(sub, p[k], path + [k])
        walk(inter, params, [])
        return n

    assert model.decoder_norm == "gdn"
    # H_d: 2 bodies; G_m and G_s: 4 each (the forward runs both decoders with detail=True)
    assert check(model, v, x[:1]) == 10
    body = A.DecoderBody(8, blocks=1, norm="igdn")
    h = jnp.asarray(np.random.default_rng(3).normal(size=(1, 6, 5, 8)), jnp.float32)
    bv = _host_init(body, h)
    assert check(body, bv, h, inverse=True) == 1
    legacy = {"name": "akutsu2020", "quality": None, "hparams": {"width": 0.0625, "blocks": 1, "detail_ca": "local"}}
    assert ModelSpec.from_dict(legacy).build().decoder_norm == "igdn"
    with pytest.raises(ValueError, match="decoder_norm"):
        A.Akutsu2020(**TINY, decoder_norm="GDN").check_hparams()


def test_mean_shift_cvqn(tiny):
    """Ambiguity 8 (docs/AKUTSU.md; item 7 of the module docstring): CVQN's MeanShift around the codec (``mean_shift``, default
    True since 2026-12-05): E sees x − mean and G_m's and G_s's RGB outputs are + mean, with CVQN's
    yaml mean written out here (not read from the module). Reference: the same parameters with
    ``mean_shift=False`` on a shifted input / plus the mean; the mask logit is not shifted. A stored
    spec without the field reads as False."""
    from lic_jax.models.registry import ModelSpec

    model, v, x, _ = tiny
    mean = np.array([0.4488, 0.4371, 0.4040], np.float32)  # CVQN yaml/*.yaml DATASET.MEAN
    assert model.mean_shift is True
    plain = model.clone(mean_shift=False)
    y = model.apply(v, x, method=model.analysis)
    np.testing.assert_allclose(y, plain.apply(v, x - mean, method=plain.analysis), rtol=0, atol=1e-6)
    assert float(jnp.abs(y - plain.apply(v, x, method=plain.analysis)).max()) > 1e-3  # the shift matters
    y_hat = jnp.round(y)
    np.testing.assert_allclose(model.apply(v, y_hat, method=model.synthesis_main),
                               plain.apply(v, y_hat, method=plain.synthesis_main) + mean, rtol=0, atol=1e-6)
    (det, logit), (det0, logit0) = (m.apply(v, y_hat, method=m.synthesis_detail) for m in (model, plain))
    np.testing.assert_allclose(det, det0 + mean, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(logit, logit0)
    # E's intermediate outputs (analysis_stages): four bodies at strides 2…16, then y; shifted like analysis
    stages = model.apply(v, x, method=model.analysis_stages)
    assert [a.shape[1] for a in stages] == [32, 16, 8, 4, 4] and len(stages) == len(model.encoder_channels) + 1
    np.testing.assert_array_equal(stages[-1], y)  # analysis is stages[-1] (pins that, should it be rewritten)
    for a, b in zip(stages, plain.apply(v, x - mean, method=plain.analysis_stages)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    legacy = {"name": "akutsu2020", "quality": None, "hparams": {"width": 0.0625, "blocks": 1, "detail_ca": "local",
                                                                 "decoder_norm": "gdn"}}
    assert ModelSpec.from_dict(legacy).build().mean_shift is False
    assert ModelSpec.from_dict(legacy).build().latent == 64  # the latent became a spec field later (spec_legacy)
    with pytest.raises(ValueError, match="mean_shift"):
        A.Akutsu2020(**TINY, mean_shift="yes").check_hparams()
