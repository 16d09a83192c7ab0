"""lic_jax.train after the split (issue 11): the typed TrainState and its checkpoints, the aux loss
over every entropy bottleneck, one train/eval step over a λ set, global JAX settings only in entry points."""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lic_jax.entropy_models import EntropyBottleneck
from lic_jax.train import parallel
from lic_jax.train.config import get_default_config
from lic_jax.train.optim import aux_loss, entropy_bottlenecks, make_optimizer
from lic_jax.train.setup import LambdaSet, build_model, resolve_lambda_set
from lic_jax.train.state import ParamGroup, TrainState, create_train_state
from lic_jax.train.steps import make_eval_step, make_train_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _eb_params(key, channels):
    eb = EntropyBottleneck(channels)
    p = eb.init(key, jnp.zeros((1, 4, 4, channels)), mode="round")["params"]
    # move the quantiles off their initial values so the aux loss is not the same for every EB
    p = dict(p, quantiles=p["quantiles"] + jax.random.normal(jax.random.fold_in(key, 7), p["quantiles"].shape))
    own = float(eb.apply({"params": p}, method=lambda m: m.aux_loss()))
    return p, own


def _tiny_config(model="bmshj2018-hyperprior"):
    c = get_default_config()
    c.model, c.quality = model, 3
    c.model_hparams.N = c.model_hparams.M = 8
    c.lmbda = 0.013
    c.optim.schedule = "constant"
    return c


# ----------------------------------------------------------------------------------------------
# aux loss
# ----------------------------------------------------------------------------------------------
def test_aux_loss_sums_every_entropy_bottleneck():
    """Two bottlenecks under any names: both in the aux loss, and both quantiles get its gradient."""
    p1, a1 = _eb_params(jax.random.key(0), 3)
    p2, a2 = _eb_params(jax.random.key(1), 5)
    params = {"entropy_bottleneck": p1, "side": {"z_bottleneck": p2}, "g_a": {"kernel": jnp.ones((2, 2))}}
    assert [path for path, _ in entropy_bottlenecks(params)] == [("entropy_bottleneck",), ("side", "z_bottleneck")]
    assert float(aux_loss(params)) == pytest.approx(a1 + a2, rel=1e-6)
    assert float(aux_loss({"entropy_bottleneck": p1})) == pytest.approx(a1, rel=1e-6)
    g = jax.grad(aux_loss)(params)
    assert float(jnp.abs(g["entropy_bottleneck"]["quantiles"]).sum()) > 0
    assert float(jnp.abs(g["side"]["z_bottleneck"]["quantiles"]).sum()) > 0
    assert float(jnp.abs(g["side"]["z_bottleneck"]["matrix_0"]).sum()) == 0  # density held constant
    assert float(aux_loss({"g_a": {"kernel": jnp.ones(2)}})) == 0.0


def test_aux_loss_equals_the_models_own_bottleneck():
    model, _ = build_model(_tiny_config())
    mesh = parallel.make_mesh(jax.devices()[:1])
    tx, _ = make_optimizer(_tiny_config(), 10)
    params = jax.device_get(create_train_state(model, tx, jax.random.key(0), mesh).params)
    own = model.apply({"params": params}, method=lambda m: m.entropy_bottleneck.aux_loss())
    assert np.asarray(aux_loss(params)) == np.asarray(own)  # bit for bit


# ----------------------------------------------------------------------------------------------
# TrainState, checkpoints
# ----------------------------------------------------------------------------------------------
def _state(extra=False):
    params = {"w": jnp.arange(4.0), "eb": {"quantiles": jnp.ones((2, 1, 3))}}
    tx = optax.adam(1e-3)
    groups = {"disc": ParamGroup.create({"v": jnp.full((3,), 2.0)}, optax.sgd(0.1))} if extra else {}
    return TrainState(step=jnp.asarray(5, jnp.int32), params=params, opt_state=tx.init(params), extra=groups)


def test_train_state_dict_access_and_checkpoint_tree():
    s = _state()
    assert s["params"] is s.params and s["step"] is s.step
    assert set(s.to_checkpoint()) == {"step", "params", "opt_state"}  # the layout of earlier versions
    e = _state(extra=True)
    assert set(e.to_checkpoint()) == {"step", "params", "opt_state", "extra"}
    back = TrainState.from_checkpoint(e.to_checkpoint())
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(e)


def test_old_layout_checkpoint_restores_into_train_state(tmp_path):
    pytest.importorskip("orbax.checkpoint")
    from lic_jax.train.checkpoint import Checkpointer

    old = _state().to_checkpoint()  # the plain dict state earlier versions saved
    ck = Checkpointer(str(tmp_path), keep=2, keep_best=False, async_save=False)
    ck.save(3, old, {"note": "old"})
    ck.close()
    target = jax.tree_util.tree_map(jnp.zeros_like, _state())
    ck = Checkpointer(str(tmp_path), keep=2, keep_best=False, async_save=False)
    step, st, meta = ck.restore(target)
    assert step == 3 and isinstance(st, TrainState) and meta["note"] == "old"
    np.testing.assert_array_equal(st.params["w"], np.arange(4.0))
    assert int(st.step) == 5
    # a state with an extra group (a discriminator) restores from the old layout and keeps its group
    target_x = _state(extra=True)
    step, stx, _ = ck.restore(target_x)
    np.testing.assert_array_equal(stx.params["w"], np.arange(4.0))
    np.testing.assert_array_equal(stx.extra["disc"].params["v"], np.full((3,), 2.0))
    # and a state with its extra group round-trips
    ck.save(4, jax.tree_util.tree_map(lambda a: a + 1, target_x))
    ck.wait()
    step, sty, _ = ck.restore(jax.tree_util.tree_map(jnp.zeros_like, target_x))
    ck.close()
    assert step == 4
    np.testing.assert_array_equal(sty.extra["disc"].params["v"], np.full((3,), 3.0))
    np.testing.assert_array_equal(sty.params["w"], np.arange(4.0) + 1)


# ----------------------------------------------------------------------------------------------
# one train step / eval step over a λ set
# ----------------------------------------------------------------------------------------------
def test_fixed_rate_is_a_one_lambda_set():
    c = _tiny_config()
    assert resolve_lambda_set(c).lmbdas == (0.013,) and resolve_lambda_set(c).weights == (1.0,)
    model, _ = build_model(c)
    mesh = parallel.make_mesh(jax.devices()[:1])
    tx, sched = make_optimizer(c, 10)
    batch = np.asarray(jax.random.randint(jax.random.key(3), (2, 64, 64, 3), 0, 256), np.uint8)
    res = []
    for lm in (0.013, LambdaSet((0.013,))):
        state = create_train_state(model, tx, jax.random.key(0), mesh)
        step = make_train_step(model, c, lm, tx, sched, mesh, jax.random.key(1))
        state, m = step(state, batch)
        res.append(jax.device_get(m))
    assert set(res[0]) == {"loss", "bpp", "mse", "psnr", "aux_loss", "grad_norm", "lr", "finite"}
    for k in res[0]:
        assert np.asarray(res[0][k]) == np.asarray(res[1][k]), k
    with pytest.raises(ValueError, match="fixed-rate"):
        make_train_step(model, c, LambdaSet((0.01, 0.02)), tx, sched, mesh, jax.random.key(1))
    ev = make_eval_step(model, c, 0.013, mesh, 64)
    sums, xh = ev(state.params, batch, np.ones(2, np.float32))
    assert xh.dtype == np.uint8 and float(sums["count"]) == 2.0
    with pytest.raises(ValueError):
        ev(state.params, batch, np.ones(2, np.float32), 0.5)


def test_extra_groups_pass_through_the_step_and_legacy_dict_state():
    c = _tiny_config()
    model, _ = build_model(c)
    mesh = parallel.make_mesh(jax.devices()[:1])
    tx, sched = make_optimizer(c, 10)
    disc = (lambda k: {"w": jax.random.normal(k, (4,))}, optax.adam(1e-3))
    state = create_train_state(model, tx, jax.random.key(0), mesh, extra={"disc": disc})
    w0 = np.asarray(state.extra["disc"].params["w"])
    step = make_train_step(model, c, 0.013, tx, sched, mesh, jax.random.key(1))
    batch = np.zeros((2, 64, 64, 3), np.uint8)
    state, _ = step(state, batch)
    assert isinstance(state, TrainState) and int(state.step) == 1
    np.testing.assert_array_equal(np.asarray(state.extra["disc"].params["w"]), w0)
    legacy = create_train_state(model, tx, jax.random.key(0), mesh).to_checkpoint()
    out, _ = step(legacy, batch)  # the plain dict state of earlier versions comes back as a dict
    assert isinstance(out, dict) and int(out["step"]) == 1


# ----------------------------------------------------------------------------------------------
# global JAX settings
# ----------------------------------------------------------------------------------------------
def test_global_jax_settings_only_in_entry_point_functions():
    """jax.config.update / XLA_FLAGS / compilation cache: only lic_jax.train.jax_setup (called by
    train.py / eval.py), parallel.initialize_distributed (called explicitly by train.py) and
    lic_jax.cli.xla_cache.enable (called by the ``lic`` program's main only when run as a program,
    argv None; tests/test_cli.py::test_xla_cache)."""
    allowed = {os.path.join("lic_jax", "train", "jax_setup.py"), os.path.join("lic_jax", "train", "parallel.py"),
               os.path.join("lic_jax", "cli", "xla_cache.py")}
    pat = re.compile(r"jax\.config\.update|XLA_FLAGS|compilation_cache")
    bad = []
    for root, _dirs, files in os.walk(os.path.join(REPO, "lic_jax")):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, name), REPO)
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    if pat.search(f.read()) and rel not in allowed:
                        bad.append(rel)
    assert not bad, bad
    with open(os.path.join(REPO, "train.py"), encoding="utf-8") as f:
        assert "configure_jax()" in f.read()
