"""Models: every registry model jits and trains on CPU, handles odd sizes by the documented pad/crop
rule, runs in bf16; bls2017 / lee2019 shapes, likelihoods and learning; the autoregressive
interface (``gaussian_params_at``) and the causality of the context models (issue 2, "Models")."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_rgb

from lic_jax.entropy_models import gaussian_likelihood
from lic_jax.losses import rate_distortion_loss
from lic_jax.models import get_model, lmbda_for, model_names, pad_amounts, total_bits

SMALL = {  # reduced widths keep the CPU tests fast
    "bmshj2018-factorized": {"N": 16, "M": 24},
    "bmshj2018-hyperprior": {"N": 16, "M": 24},
    "mbt2018-mean": {"N": 16, "M": 24},
    "mbt2018": {"N": 16, "M": 24},
    "bls2017": {"N": 16},
    "lee2019": {"N": 16, "M": 24},
}
DOWNSAMPLING = {"bmshj2018-factorized": 16, "bls2017": 16}  # the others: 64


def test_quality_table_equals_compressai():
    """(N, M) per quality for the four CompressAI architectures equal the installed CompressAI's own
    ``compressai.zoo.image.cfgs`` (until 2026-11-30 mbt2018-mean q5 was (128, 192) here, (192, 320) there)."""
    from conftest import require

    require("compressai")
    from compressai.zoo.image import cfgs

    from lic_jax.models import QUALITY_HPARAMS

    for name in ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"):
        ours = {q: (hp["N"], hp["M"]) for q, hp in QUALITY_HPARAMS[name].items()}
        assert ours == {q: tuple(v) for q, v in cfgs[name].items()}, name


def test_registry_lists_every_model():
    # the issue-2 family (later additions to the registry, e.g. variable-rate models, are tested by their owners)
    assert set(SMALL) <= set(model_names())
    model, spec = get_model("mbt2018", 5)
    assert spec.hparams == {"N": 192, "M": 320} and spec.quality == 5
    assert get_model("bmshj2018-hyperprior", 8)[1].hparams == {"N": 192, "M": 320}
    assert get_model("bmshj2018-hyperprior", 5, N=64)[1].hparams == {"N": 64, "M": 192}
    with pytest.raises(ValueError):
        get_model("nope")
    with pytest.raises(ValueError):
        get_model("mbt2018", 9)
    assert lmbda_for(1) == 0.0018 and lmbda_for(8, "ms-ssim") == 220.0


@pytest.fixture(scope="module")
def train_pool(train_dir):
    files = sorted(train_dir.glob("train_*.png"))[:64]
    return np.stack([load_rgb(f) for f in files]).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def val_batch(val_dir):
    """A fixed held-out batch: the central 64×64 crops of 8 validation images."""
    files = sorted(val_dir.glob("val_*.png"))[::4][:8]
    return np.stack([load_rgb(f)[96:160, 96:160] for f in files]).astype(np.float32) / 255.0


_INITS: dict = {}


def _init(model, x=None, seed=0):
    """The model's variables, from a jitted ``init`` (run once: XLA optimisation level 0) with the 'unsafe_rbg'
    PRNG (XLA:CPU compiles it several times faster than threefry op by op), cached per architecture.
    Parameter shapes do not depend on the image size, so ``x`` is ignored and a 64×64 image is used."""
    key = (repr(model), seed)
    if key not in _INITS:
        args = (jax.random.key(seed, impl="unsafe_rbg"), jnp.zeros((1, 64, 64, 3), jnp.float32))
        init = jax.jit(lambda k, a: model.init({"params": k}, a)).lower(*args)
        _INITS[key] = init.compile(compiler_options={"xla_backend_optimization_level": 0})(*args)
    return _INITS[key]


def _run_once(fn, *args):
    """``fn(*args)`` compiled as one XLA program at optimisation level 0: for a function run once, far less
    compilation than op-by-op dispatch (which compiles every primitive)."""
    return jax.jit(fn).lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})(*args)


def _shapes(model):
    """Variable shapes without running anything."""
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32)))


def _make_step(model, lmbda, lr=1e-3):
    opt = optax.adam(lr)

    def loss_fn(params, x, key):
        out = model.apply({"params": params}, x, train=True, rngs={"noise": key})
        return rate_distortion_loss(out, x, lmbda)["loss"]

    @jax.jit
    def step(params, opt_state, x, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return opt, step


# ------------------------------------------------------------------------------------------------
# every model: jit + one training step, odd sizes, bf16
# ------------------------------------------------------------------------------------------------
_STEPS: dict = {}


def _cached_step(model_name, hp, lmbda, lr=1e-3):
    """One compiled training step per (model, widths, λ, lr): XLA compilation dominates these CPU tests."""
    key = (model_name, tuple(sorted(hp.items())), lmbda, lr)
    if key not in _STEPS:
        model, _ = get_model(model_name, **hp)
        _STEPS[key] = (model, *_make_step(model, lmbda, lr))
    return _STEPS[key]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_jit_training_step(name, train_pool):
    """One jitted optax Adam step on CPU: finite loss, every trained parameter changes. bls2017 and lee2019
    use the widths and batch of their learning tests below (same compiled step); the others are compiled
    at XLA backend optimisation level 0 (2–3× faster to compile, and only run once)."""
    hp = LEARN_HP.get(name, SMALL[name])
    model, opt, step = _cached_step(name, hp, LEARN_LMBDA)
    x = jnp.asarray(train_pool[:8, :64, :64])
    params = _init(model, x[:1])["params"]
    args = (params, opt.init(params), x, jax.random.key(3))
    if name not in LEARN_HP:
        step = step.lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})
    new, _, loss = step(*args)
    assert np.isfinite(float(loss)) and float(loss) > 0
    changed = jax.tree_util.tree_map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), params, new)
    for path, ch in jax.tree_util.tree_flatten_with_path(changed)[0]:
        key = jax.tree_util.keystr(path)
        if "quantiles" in key:  # trained by the aux loss only
            assert not ch, key
        else:
            assert ch, f"{key} did not change"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_odd_size_pad_crop_rule(name, kodak_dir):
    """250×333: zero-padded centred to the model's multiple (left/top get pad // 2, as CompressAI's
    eval_model), x̂ cropped back; rates divided by the unpadded pixel count."""
    model, _ = get_model(name, **SMALL[name])
    mult = DOWNSAMPLING.get(name, 64)
    assert model.downsampling == mult
    x = load_rgb(kodak_dir / "kodim07.png", (250, 333))[None].astype(np.float32) / 255.0
    variables = _init(model, x[:, :64, :64])
    out = _run_once(model.apply, variables, jnp.asarray(x))
    assert out["x_hat"].shape == x.shape
    (t, b), (l, r) = pad_amounts(250, 333, mult)
    H, W = 250 + t + b, 333 + l + r
    assert H % mult == 0 and W % mult == 0 and H - 250 < mult and W - 333 < mult
    assert (t, l) == ((H - 250) // 2, (W - 333) // 2)
    assert out["y"].shape[1:3] == (H // 16, W // 16)
    # same as padding by hand (CompressAI's rule) and cropping the padded model's output
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    full = _run_once(model.apply, variables, jnp.asarray(xp))
    np.testing.assert_allclose(np.asarray(out["x_hat"]), np.asarray(full["x_hat"])[:, t : t + 250, l : l + 333],
                               atol=1e-6)
    for k in out["likelihoods"]:
        np.testing.assert_array_equal(np.asarray(out["likelihoods"][k]), np.asarray(full["likelihoods"][k]))
    res = rate_distortion_loss(out, jnp.asarray(x), lmbda_for(1))
    bits = float(total_bits(out["likelihoods"]).sum())
    assert float(res["bpp"]) == pytest.approx(bits / (250 * 333), rel=1e-5)
    assert float(res["mse"]) == pytest.approx(float(np.mean((np.asarray(out["x_hat"]) - x) ** 2)), rel=1e-5)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bf16_compute(name, kodak_dir):
    """dtype=bfloat16 (compute; parameters and entropy models stay float32) runs and gives x̂ close to fp32.
    Kernels are scaled up ×2 from their initialisation so that x̂ is not near-constant."""
    model, _ = get_model(name, **SMALL[name])
    x = jnp.asarray(load_rgb(kodak_dir / "kodim19.png", (128, 128))[None].astype(np.float32) / 255.0)
    params = _init(model, x)["params"]
    params = jax.tree_util.tree_map_with_path(
        lambda p, a: a * 2.0 if jax.tree_util.keystr(p).endswith("['kernel']") else a, params)
    m16, _ = get_model(name, dtype=jnp.bfloat16, **SMALL[name])
    key = jax.random.key(9)
    ref = _run_once(lambda p, a: model.apply({"params": p}, a, train=True, rngs={"noise": key}), params, x)
    out = _run_once(lambda p, a: m16.apply({"params": p}, a, train=True, rngs={"noise": key}), params, x)
    assert out["x_hat"].dtype == jnp.float32 and out["x_hat"].shape == ref["x_hat"].shape
    for k, v in out["likelihoods"].items():
        assert v.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(v)))
    err = np.asarray(out["x_hat"] - ref["x_hat"])
    spread = float(np.std(np.asarray(ref["x_hat"])))
    rms = float(np.sqrt(np.mean(err**2)))
    print(f"\n{name} bf16: x_hat rms error {rms:.2e} (x_hat std {spread:.3f})")
    assert spread > 0.02
    assert rms <= 0.03 * spread, (rms, spread)
    # the rate estimate (same noise) is close
    b32, b16 = float(total_bits(ref["likelihoods"])[0]), float(total_bits(out["likelihoods"])[0])
    print(f"{name} bf16: estimated bits {b16:.1f} vs {b32:.1f} in fp32")
    assert abs(b16 - b32) <= 0.02 * b32, (b16, b32)


# ------------------------------------------------------------------------------------------------
# bls2017 and lee2019: shapes, likelihoods, learning
# ------------------------------------------------------------------------------------------------
def test_bls2017_shapes_and_likelihoods(train_pool):
    model, spec = get_model("bls2017", 1)
    assert spec.hparams == {"N": 128}
    small, _ = get_model("bls2017", N=16)
    x = jnp.asarray(train_pool[:2, :64, :96])
    v = _init(small, x)
    # 3 stages: 9×9/4, 5×5/2, 5×5/2 (+ GDN after each, last_gdn=True)
    p = v["params"]
    assert p["g_a_0"]["kernel"].shape == (9, 9, 3, 16) and p["g_s_5"]["kernel"].shape == (9, 9, 16, 3)
    assert sum(1 for k in p if k.startswith("g_a")) == 3 + 3 and sum(1 for k in p if k.startswith("g_s")) == 3 + 3
    assert p["entropy_bottleneck"]["matrix_0"].shape == (16, 3, 1) and "matrix_4" not in p["entropy_bottleneck"]
    no_last, _ = get_model("bls2017", N=16, last_gdn=False)
    assert sum(1 for k in _shapes(no_last)["params"] if k.startswith("g_a")) == 5
    out = small.apply(v, x)
    assert out["y"].shape == (2, 4, 6, 16) and out["x_hat"].shape == x.shape
    lik = np.asarray(out["likelihoods"]["y"])
    assert lik.shape == (2, 4, 6, 16) and lik.min() >= 1e-9 and lik.max() <= 1.0
    med = np.asarray(p["entropy_bottleneck"]["quantiles"])[:, 0, 1]
    yh = np.asarray(out["y_hat"])
    np.testing.assert_allclose(yh - med, np.round(yh - med), atol=1e-5)  # rounded around the medians
    again = small.apply(v, jnp.asarray(yh), method=lambda m, a: m.entropy_bottleneck.likelihood(a))
    np.testing.assert_array_equal(np.asarray(again), lik)
    tr = small.apply(v, x, train=True, rngs={"noise": jax.random.key(0)})
    d = np.asarray(tr["y_hat"] - tr["y"])
    assert np.abs(d).max() <= 0.5 and np.abs(d).max() > 0.4


def test_lee2019_shapes_and_likelihoods(train_pool):
    model, spec = get_model("lee2019", 3)
    assert spec.hparams == {"N": 192, "M": 192}
    small, _ = get_model("lee2019", N=16, M=24)
    x = jnp.asarray(train_pool[:2, :128, :64])
    v = _init(small, x)
    p = v["params"]
    assert p["window"]["kernel"].shape == (4, 4, 48, 80) and p["z_scale"].shape == (16,)
    out = small.apply(v, x)
    assert out["y"].shape == (2, 8, 4, 24) and out["z"].shape == (2, 2, 1, 16) and out["x_hat"].shape == x.shape
    for k in ("y", "z"):
        lik = np.asarray(out["likelihoods"][k])
        assert lik.shape == out[k].shape and lik.min() >= 1e-9 and lik.max() <= 1.0
    np.testing.assert_array_equal(np.asarray(out["y_hat"]), np.round(np.asarray(out["y"])))
    np.testing.assert_array_equal(np.asarray(out["z_hat"]), np.round(np.asarray(out["z"])))
    # the likelihoods are those of the Gaussian model with the predicted (σ, μ) and the learned z scales
    hyper = small.apply(v, out["z_hat"], method="hyper_synthesis")["hyper"]
    s, m = small.apply(v, hyper, out["y_hat"], method="gaussian_params")
    np.testing.assert_allclose(np.asarray(s), np.asarray(out["scales"]), rtol=1e-6)
    y_rate = jnp.round(out["y"] - m) + m
    np.testing.assert_allclose(np.asarray(gaussian_likelihood(y_rate, s, m)), np.asarray(out["likelihoods"]["y"]),
                               rtol=1e-6)
    zs = jnp.abs(p["z_scale"])
    np.testing.assert_allclose(np.asarray(gaussian_likelihood(out["z_hat"], jnp.broadcast_to(zs, out["z"].shape))),
                               np.asarray(out["likelihoods"]["z"]), rtol=1e-6)
    fac, _ = get_model("lee2019", N=16, M=24, z_model="factorized")
    assert "entropy_bottleneck" in _shapes(fac)["params"] and "z_scale" not in _shapes(fac)["params"]


LEARN_HP = {"bls2017": {"N": 48}, "lee2019": {"N": 48, "M": 48}}
LEARN_LMBDA = 0.0130


def _learn(name, hp, train_pool, val_batch, steps=200, batch=8, crop=64, lmbda=LEARN_LMBDA, lr=1e-3):
    model, opt, step = _cached_step(name, hp, lmbda, lr)
    params = _init(model, train_pool[:1, :crop, :crop])["params"]
    state = opt.init(params)
    evaluate = jax.jit(lambda p, x: rate_distortion_loss(model.apply({"params": p}, x), x, lmbda))
    before = jax.tree_util.tree_map(float, evaluate(params, jnp.asarray(val_batch)))
    rng = np.random.default_rng(0)
    n, size = train_pool.shape[:2]
    t0 = time.time()
    for i in range(steps):
        idx = rng.integers(0, n, batch)
        oy, ox = rng.integers(0, size - crop + 1, 2)
        xb = train_pool[idx, oy : oy + crop, ox : ox + crop]
        params, state, loss = step(params, state, jnp.asarray(xb), jax.random.key(i))
    assert np.isfinite(float(loss))
    after = jax.tree_util.tree_map(float, evaluate(params, jnp.asarray(val_batch)))
    drop = 1 - after["loss"] / before["loss"]
    print(f"\n{name} {hp}: held-out RD loss {before['loss']:.2f} → {after['loss']:.2f} (−{100 * drop:.1f} %), "
          f"PSNR {before['psnr']:.2f} → {after['psnr']:.2f} dB, bpp {before['bpp']:.3f} → {after['bpp']:.3f}, "
          f"{steps} steps in {time.time() - t0:.1f} s")
    return before, after, drop


@pytest.mark.parametrize("name", ["bls2017", "lee2019"])
def test_learns(name, train_pool, val_batch):
    """200 Adam steps (lr 1e-3, batch 8 of 64×64 train crops, λ = 0.0130, N = M = 48): the eval-mode RD
    loss on a fixed held-out val batch falls by ≥ 70 % and the PSNR rises by ≥ 6 dB.
    Measured: bls2017 166.4 → 21.5 (−87 %), 7.3 → 16.1 dB; lee2019 175.2 → 16.9 (−90 %), 7.2 → 17.1 dB."""
    before, after, drop = _learn(name, LEARN_HP[name], train_pool, val_batch)
    assert drop >= 0.7, (before, after)
    assert after["psnr"] >= before["psnr"] + 6.0
    assert np.isfinite(after["bpp"]) and after["bpp"] > 0


# ------------------------------------------------------------------------------------------------
# autoregressive interface and causality (mbt2018, lee2019)
# ------------------------------------------------------------------------------------------------
def _ar_setup(name):
    model, _ = get_model(name, N=16, M=24)
    v = _init(model, jnp.zeros((1, 128, 128, 3)))
    rng = np.random.default_rng(1)
    # make the context weights matter: perturb every parameter a little
    v = {"params": jax.tree_util.tree_map(
        lambda a: a + 0.05 * jnp.asarray(rng.normal(size=a.shape), a.dtype), v["params"])}
    z_hat = jnp.asarray(np.round(rng.normal(scale=2.0, size=(2, 2, 3, 16))).astype(np.float32))
    hyper = model.apply(v, z_hat, method="hyper_synthesis")["hyper"]
    y_hat = np.round(rng.normal(scale=3.0, size=(2, 8, 12, 24))).astype(np.float32)
    return model, v, hyper, y_hat


def _windows(model, y_hat):
    k, (ah, aw) = model.ctx_kernel, model.ctx_anchor
    b, h, w, c = y_hat.shape
    yp = np.pad(y_hat, ((0, 0), (ah, k - 1 - ah), (aw, k - 1 - aw), (0, 0)))
    return np.stack([yp[i, r : r + k, q : q + k] for i in range(b) for r in range(h) for q in range(w)])


@pytest.mark.parametrize("name", ["mbt2018", "lee2019"])
def test_gaussian_params_at_equals_full(name):
    model, v, hyper, y_hat = _ar_setup(name)
    s, m = model.apply(v, hyper, jnp.asarray(y_hat), method="gaussian_params")
    feats = model.apply(v, hyper, method="ctx_features")
    b, h, w, _ = y_hat.shape
    s_at, m_at = model.apply(v, feats.reshape(b * h * w, -1), jnp.asarray(_windows(model, y_hat)),
                             method="gaussian_params_at")
    assert s_at.shape == (b * h * w, 24)
    np.testing.assert_allclose(np.asarray(s_at), np.asarray(s).reshape(-1, 24), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(m_at), np.asarray(m).reshape(-1, 24), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mbt2018", "lee2019"])
def test_context_taps(name):
    """``context_taps`` (precomputed once by the autoregressive coder, issue 19) are the kernel's
    unmasked taps in window order (a numpy reference from the mask), and passing them gives the
    same (σ, μ) bit for bit as slicing inside ``gaussian_params_at``."""
    from lic_jax.layers.conv import causal_mask
    from lic_jax.models.lee2019 import lee_window_mask

    model, v, hyper, y_hat = _ar_setup(name)
    M = y_hat.shape[-1]
    if name == "mbt2018":
        kernel, mask = v["params"]["context_prediction"]["kernel"], causal_mask(model.ctx_kernel, "A")
    else:
        kernel, mask = v["params"]["window"]["kernel"][:, :, :M], lee_window_mask(model.ctx_kernel, model.ctx_anchor)
    ref = np.asarray(kernel)[np.asarray(mask).astype(bool)].reshape(-1, np.asarray(kernel).shape[-1])
    taps = model.apply(v, method="context_taps")
    np.testing.assert_array_equal(np.asarray(taps), ref)
    feats = model.apply(v, hyper, method="ctx_features")
    b, h, w, _ = y_hat.shape
    f, win = feats.reshape(b * h * w, -1), jnp.asarray(_windows(model, y_hat))
    gp = jax.jit(lambda f, win, t: model.apply(v, f, win, t, method="gaussian_params_at"))
    gp0 = jax.jit(lambda f, win: model.apply(v, f, win, method="gaussian_params_at"))
    for a, b_ in zip(gp(f, win, taps), gp0(f, win)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b_))


@pytest.mark.parametrize("name", ["mbt2018", "lee2019"])
def test_context_is_causal(name):
    """Changing ŷ at and after a position (raster order) leaves (σ, μ) there unchanged; changing the
    causal neighbourhood does change them."""
    model, v, hyper, y_hat = _ar_setup(name)
    gp = jax.jit(lambda yy: model.apply(v, hyper, yy, method="gaussian_params"))
    s0, m0 = (np.asarray(a) for a in gp(jnp.asarray(y_hat)))
    _, h, w, _ = y_hat.shape
    rng = np.random.default_rng(2)
    for r, q in [(0, 0), (3, 5), (4, 0), (7, 11), (2, 11), (5, 1)]:
        fut = y_hat.copy()
        fut[:, r, q:] += rng.integers(1, 5, size=fut[:, r, q:].shape)
        fut[:, r + 1 :] -= rng.integers(1, 5, size=fut[:, r + 1 :].shape)
        s1, m1 = (np.asarray(a) for a in gp(jnp.asarray(fut)))
        np.testing.assert_array_equal(s1[:, r, q], s0[:, r, q])
        np.testing.assert_array_equal(m1[:, r, q], m0[:, r, q])
        # and everything strictly before (r, q) is unchanged as well
        np.testing.assert_array_equal(m1[:, :r], m0[:, :r])
        np.testing.assert_array_equal(m1[:, r, :q], m0[:, r, :q])
        if (r, q) != (0, 0):
            past = y_hat.copy()
            pr, pq = (r, q - 1) if q > 0 else (r - 1, q)  # the left neighbour, or the one above
            past[:, pr, pq] += 3.0
            _, m2 = (np.asarray(a) for a in gp(jnp.asarray(past)))
            assert np.abs(m2[:, r, q] - m0[:, r, q]).max() > 1e-4
