"""ARCNN / ARCNN+ASPP (lic_jax.models.arcnn), the real-JPEG patch pipeline and the resumable trainer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lic_jax.models.arcnn import ARCNN, ARCNN_ASPP, arcnn_param_count
from lic_jax.restoration.data import augment, load_folder, make_batch, PatchPipeline
from lic_jax.restoration.jpeg import jpeg_roundtrip


def _conv(k, cin, cout):
    return k * k * cin * cout + cout


def _shapes(m, c):
    """The parameter tree's shapes, without computing anything (jax.eval_shape)."""
    return jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, c)))["params"]


def test_arcnn_layers_and_param_count():
    """9×9 64 → 7×7 32 → 1×1 16 → 5×5 c (Dong et al. 2015 §3.1), counted independently."""
    for c in (1, 3):
        p = _shapes(ARCNN(channels=c), c)
        shapes = {k: v["kernel"].shape for k, v in p.items()}
        assert shapes == {"extraction": (9, 9, c, 64), "enhancement": (7, 7, 64, 32), "mapping": (1, 1, 32, 16),
                          "reconstruction": (5, 5, 16, c)}
        assert arcnn_param_count(p) == _conv(9, c, 64) + _conv(7, 64, 32) + _conv(1, 32, 16) + _conv(5, 16, c)
    assert arcnn_param_count(_shapes(ARCNN(), 1)) == 106561
    pp = _shapes(ARCNN(activation="prelu"), 1)
    assert arcnn_param_count(pp) == 106561 + 3  # one PReLU slope per hidden layer


def test_aspp_layers_and_param_count():
    m = ARCNN_ASPP(rates=(1, 6, 12, 18), width=32, global_pool=True)
    p = _shapes(m, 1)
    want = (_conv(9, 1, 64) + _conv(7, 64, 32) + _conv(1, 32, 32) + 4 * _conv(3, 32, 32) + _conv(1, 32, 32)
            + _conv(1, 6 * 32, 16) + _conv(5, 16, 1))
    assert arcnn_param_count(p) == want
    for r in (1, 6, 12, 18):
        assert p[f"aspp_r{r}"]["kernel"].shape == (3, 3, 32, 32)
    assert p["projection"]["kernel"].shape == (1, 1, 6 * 32, 16)


@pytest.mark.parametrize("model,radius", [(ARCNN(weight_init="he"), 4 + 3 + 0 + 2),
                                          (ARCNN_ASPP(weight_init="he"), 4 + 3 + 18 + 0 + 2)])
def test_receptive_field(model, radius):
    """The output at the centre depends on inputs exactly ``radius`` px away (ARCNN: 9; ASPP after
    the 7×7 layer with rate 18: 27) and on nothing further — the placement of the atrous branch."""
    n = 2 * radius + 9
    x = jax.random.uniform(jax.random.PRNGKey(1), (1, n, n, 1))
    p = model.init(jax.random.PRNGKey(0), x)["params"]
    g = jax.grad(lambda x: model.apply({"params": p}, x)[0, n // 2, n // 2, 0])(x)[0, :, :, 0]
    nz = np.argwhere(np.abs(np.asarray(g)) > 0)
    assert np.abs(nz - n // 2).max() == radius


def test_residual_and_zero_last_layer_is_identity():
    x = jax.random.uniform(jax.random.PRNGKey(2), (2, 24, 24, 1))
    for m in (ARCNN(), ARCNN_ASPP()):
        p = m.init(jax.random.PRNGKey(0), x)["params"]
        p = {**p, "reconstruction": jax.tree_util.tree_map(jnp.zeros_like, p["reconstruction"])}
        np.testing.assert_array_equal(np.asarray(m.apply({"params": p}, x)), np.asarray(x))
    with pytest.raises(ValueError, match="expects"):
        ARCNN().init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


@pytest.fixture(scope="module")
def images(train_dir):
    return load_folder(str(train_dir), "y", limit=4)


def test_batches_are_real_jpeg_and_deterministic(images):
    b1 = make_batch(images, np.random.default_rng([0, 5]), 4, 10, patch=40, crop=64)
    with PatchPipeline(images, 10, batch=4, seed=0, start=5, workers=3, prefetch=3) as pipe:
        i, x, y = pipe.next()
        assert pipe.wait_s >= 0.0
    assert i == 5
    np.testing.assert_array_equal(x, b1[0])  # batch i is a pure function of (seed, i), whatever the threads
    assert x.shape == y.shape == (4, 40, 40, 1) and x.dtype == np.float32
    mse = float(np.mean((x - y) ** 2))
    # QF 10 on 40×40 natural patches: measured 24-30 dB; a pipeline without the codec gives inf
    assert 18 < 10 * np.log10(1 / mse) < 36
    a = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    assert len({augment(a, k).tobytes() for k in range(8)}) == 8


def test_learning_loss_falls(images):
    """40 Adam steps (lr 3e-3) on one fixed batch: the MSE falls well below the JPEG's own MSE (what
    the residual net's identity gives). Measured (seed 0): 2.52× the JPEG MSE at step 1, 0.995× at
    step 10, 0.67× at step 40; required < 0.85× (a net that does not learn stays >= 1×)."""
    from lic_jax.restoration.train import Recipe, init_params, make_optimizer, make_train_step

    r = Recipe(lr=3e-3, batch=8, patch=24)
    x, y = make_batch(images, np.random.default_rng(0), 8, 10, patch=24, crop=32)
    p = init_params(r, jax.random.PRNGKey(0))
    tx = make_optimizer(r, p)
    o = tx.init(p)
    step = make_train_step(r, tx)
    for _ in range(40):
        p, o, loss = step(p, o, x, y)
    jpeg_mse = float(np.mean((x - y) ** 2))
    assert float(loss) < 0.85 * jpeg_mse, (float(loss), jpeg_mse)


def test_last_layer_learning_rate_is_a_tenth():
    from lic_jax.restoration.train import Recipe, init_params, make_optimizer

    r = Recipe(lr=1e-3)
    p = init_params(r, jax.random.PRNGKey(0))
    tx = make_optimizer(r, p)
    g = jax.tree_util.tree_map(jnp.ones_like, p)
    u, _ = tx.update(g, tx.init(p), p)  # first Adam step: |update| = lr for a constant gradient
    np.testing.assert_allclose(np.asarray(u["extraction"]["kernel"]), -1e-3, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(u["reconstruction"]["kernel"]), -1e-4, rtol=1e-4)


def test_checkpoint_resume_is_exact(images, tmp_path):
    from lic_jax.restoration.train import Recipe, TrainRun

    r = Recipe(batch=2, patch=16, crop=24, lr=1e-3)
    a = TrainRun(r, str(tmp_path / "a"), images=images)
    a.run(4, quiet=True)
    b = TrainRun(r, str(tmp_path / "b"), images=images)
    b.run(2, quiet=True)
    b2 = TrainRun(r, str(tmp_path / "b"), images=images)  # a new process would do the same
    assert b2.step == 2
    b2.run(4, quiet=True)
    for u, v in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b2.state)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    with pytest.raises(ValueError, match="different recipe"):
        TrainRun(Recipe(batch=3), str(tmp_path / "a"), images=images)


def test_jpeg_roundtrip_is_real():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    d444, n444 = jpeg_roundtrip(img, 10, "4:4:4")
    d420, n420 = jpeg_roundtrip(img, 10, "4:2:0")
    assert d444.shape == img.shape and n420 < n444  # 4:2:0 drops 3/4 of the chroma samples
    assert not np.array_equal(d444, img)
    with pytest.raises(ValueError, match="1..100"):
        jpeg_roundtrip(img, 0)


def test_init_from_exported_weights(images, tmp_path):
    """Fine-tuning (--init-from): step 0 holds exactly the exported parameters (read back with
    flax.serialization directly, not through load_exported), training moves them, the run resumes
    from its checkpoint, and a different architecture is refused."""
    from flax import serialization

    from lic_jax.restoration.train import Recipe, TrainRun, export, init_params

    src = Recipe(batch=2, patch=16, crop=24, qf=10)
    p0 = jax.tree_util.tree_map(lambda a: a + 0.01, init_params(src, jax.random.PRNGKey(7)))  # not the seed-0 init
    stem = export(src, p0, str(tmp_path / "w"))
    r = Recipe(batch=2, patch=16, crop=24, qf=30)
    run = TrainRun(r, str(tmp_path / "ft"), images=images, init_from=stem)
    ref = serialization.msgpack_restore(open(stem + ".msgpack", "rb").read())
    for u, v in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(run.state["params"])):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert run.init_from == {"init_from": "arcnn-y-qf10", "init_from_qf": 10, "init_from_steps": None}
    run.run(2, quiet=True)
    moved = run.state["params"]["reconstruction"]["kernel"]
    assert not np.array_equal(np.asarray(moved), np.asarray(ref["reconstruction"]["kernel"]))
    again = TrainRun(r, str(tmp_path / "ft"), images=images, init_from=stem)  # resume: the checkpoint wins
    assert again.step == 2 and np.array_equal(np.asarray(again.state["params"]["reconstruction"]["kernel"]),
                                              np.asarray(moved))
    with pytest.raises(ValueError, match="different architecture"):
        TrainRun(Recipe(model="arcnn-aspp", batch=2, patch=16, crop=24), str(tmp_path / "x"), images=images,
                 init_from=stem)
