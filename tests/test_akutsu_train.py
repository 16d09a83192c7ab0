"""Akutsu 2020 GAN training (issue 20, increment 2): registry entry, config, and the alternating
D / G step of ``lic_jax.train.gan``.

One compiled step function per phase (``gan.make_phases(..., phase=gan.phase_of(step))``: the exact
functions ``gan.make_train_step`` jits, compiled here with XLA:CPU's fast-compile options) returns the
state after the D step, the state after the G step and the metrics. A tiny model (width 1/16, 1 RCAB per group; D the same), random
64×64 crops from ``data/train`` (batch 2, a pure function of (seed, step)), warm-up of 1 step:

* step 0 (warm-up): D's parameters and optimiser state are untouched, the loss has no GAN term,
  and D is not run (its metrics are 0);
* step 1: the D step changes D (parameters and its Adam state) and nothing else; the G step
  changes the generator (parameters, its optimiser state, the step) and nothing else;
* exact resume: 4 steps straight == 2 steps, orbax checkpoint (D's group included), restore into
  a freshly initialised state, 2 more steps: bit-identical losses, D losses and parameters of
  both networks.

Each property was broken once on purpose (in a copy of the tree, the named test run) and its test failed:

* the G step also applying D's update once more (``st_g``'s D params ← optax.apply_updates(D, d_upd)):
  test_d_step_changes_only_d_and_g_step_only_g failed (D's params differ after the G step);
* the D step touching the generator's optimiser state (float leaves × (1 + 1e-3)):
  test_d_step_changes_only_d_and_g_step_only_g failed (G's opt state differs after the D step);
* D's group left out of the checkpoint (``TrainState.to_checkpoint`` without 'extra'): the restored D
  was the template's and test_resume_is_bit_identical failed (step 3: d_loss 1.38617 vs 1.38403);
* the warm-up ignored (``gan_on = step >= 0``): test_warmup_leaves_d_untouched failed (D's params
  changed at step 0);
* D's loss taken on one device's shard of the global batch on a multi-device mesh (``make_phases``
  given ``mesh.size``: D's real/fake logits ``[:n // mesh.size]``, as a missing all-reduce of D's
  gradient would): test_8_devices_equal_1_device's measures were D ‖Δp‖/‖p‖ 1.3e-2 (bound 2e-6),
  generator 2.1e-4 (bound 3e-6), losses 2.2e-6 relative apart (bound 6e-7).

Data parallelism (test_8_devices_equal_1_device; the 2-process test is in tests/test_parallel.py)
runs a subprocess with 8 simulated devices.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import DATA
from test_akutsu2020 import FAST, _host_init

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, HALF = 4, 2


def _config():
    sys.path.insert(0, REPO)
    try:
        from configs import akutsu2020 as cfgmod
    finally:
        sys.path.remove(REPO)
    c = cfgmod.get_config("small,warmup=1")
    c.data.train = str(DATA / "train")
    return c, cfgmod


def _leaves(tree):
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(jax.device_get(tree))]


def _same(a, b):
    la, lb = _leaves(a), _leaves(b)
    return len(la) == len(lb) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(la, lb))


def _changed_fraction(a, b):
    la, lb = _leaves(a), _leaves(b)
    return np.mean([not np.array_equal(x, y) for x, y in zip(la, lb)])


@pytest.fixture(scope="module")
def rig():
    from lic_jax.train import gan
    from lic_jax.train.input_pipeline import FolderSource, TrainBatches
    from lic_jax.train.optim import make_optimizer
    from lic_jax.train.setup import build_model
    from lic_jax.train.state import ParamGroup, TrainState

    if not (DATA / "train").is_dir():
        pytest.skip("data/train missing")
    cfg, _ = _config()
    model, spec = build_model(cfg)
    tx, sched = make_optimizer(cfg, int(cfg.num_steps))
    disc = model.discriminator()
    tx_d = gan.make_disc_optimizer(cfg)
    x0 = jnp.zeros((1, 64, 64, 3), jnp.float32)

    def fresh(seed):
        p = _host_init(model, x0, seed=seed)["params"]
        dp = _host_init(disc, x0, jnp.zeros((1, 64, 64, 5), jnp.float32), seed=seed + 1)["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p),
                          extra={gan.DISC: ParamGroup.create(dp, tx_d)})

    batches = TrainBatches(FolderSource(str(DATA / "train"), cache=True), int(cfg.batch_size),
                           int(cfg.data.crop), seed=0, prefetch=0)
    batch = lambda s: jnp.asarray(batches.batch(s), jnp.float32) / 255.0  # noqa: E731
    st = fresh(0)
    opts = FAST if jax.default_backend() == "cpu" else None
    key = jax.random.PRNGKey(1)
    # the training loop's form: one compiled step per phase (gan.PhasedStep), picked by the state's step
    built, template = [], fresh(0)

    def build(ph):
        built.append(ph)
        return jax.jit(gan.make_phases(model, cfg, tx, sched, key, phase=ph)).lower(
            template, batch(0)).compile(compiler_options=opts)

    run = gan.PhasedStep(build, cfg)

    # the straight run: every step's (state before, state after D, state after G, metrics) on the host
    records = []
    for s in range(STEPS):
        st_d, st_g, m = run(st, batch(s))
        records.append(jax.device_get((st, st_d, st_g, m)))
        st = st_g
    return {"cfg": cfg, "spec": spec, "fresh": fresh, "run": run, "batch": batch, "records": records,
            "settings": gan.settings(cfg), "phases": built, "model": model, "tx": tx, "sched": sched,
            "key": key, "opts": opts}


def test_registry_and_config():
    from lic_jax.models import get_model, registry
    from lic_jax.models.akutsu2020 import Akutsu2020
    from lic_jax.train.setup import objective

    rec = registry.record("akutsu2020")
    assert (rec.cls, rec.objective, rec.qualities, rec.variable_rate) == (Akutsu2020, "gan", None, False)
    assert objective("akutsu2020") == "gan"
    model, spec = get_model("akutsu2020")
    assert spec.hparams == {"width": 1.0, "blocks": 6, "detail_ca": "local", "decoder_norm": "gdn", "mean_shift": True,
                            "latent": 64}
    assert (model.width, model.blocks) == (1.0, 6)
    model, spec = get_model("akutsu2020", width=1 / 16, blocks=1)
    # G_s's CA: AKUTSU.md ambiguity 11; the decoder bodies' GDN: ambiguity 3
    assert spec.hparams == {"width": 1 / 16, "blocks": 1, "detail_ca": "local", "decoder_norm": "gdn",
                            "mean_shift": True, "latent": 64}
    d = model.discriminator()
    assert (d.width, d.blocks) == (1 / 16, 1)
    for bad in ({"width": 0}, {"width": -1.0}, {"width": float("nan")}, {"blocks": 0}, {"blocks": 1.5},
                {"latent": 0}):
        with pytest.raises(ValueError, match="akutsu|Akutsu|width|blocks|latent"):
            get_model("akutsu2020", **bad)
    with pytest.raises(ValueError):
        get_model("akutsu2020", quality=3)
    c, cfgmod = _config()
    assert (c.model, c.quality, c.model_hparams.width, c.model_hparams.blocks, c.data.crop, c.batch_size,
            c.gan.warmup_steps) == ("akutsu2020", 0, 0.0625, 1, 64, 2, 1)
    full = cfgmod.get_config()
    assert (full.batch_size, full.num_steps, full.optim.lr, full.gan.d_lr, full.data.crop) == \
        (8, 800_000, 8e-5, 8e-5, 256)
    assert (full.gan.lambda_p, full.gan.lambda_e, full.gan.lambda_g) == (5.0, 0.18, 0.01)
    cpu = cfgmod.get_config("cpu,masks=/m/photos,val_masks=/m/val")
    assert (cpu.model_hparams.width, cpu.model_hparams.blocks, cpu.data.crop, cpu.batch_size, cpu.gan.warmup_steps,
            cpu.gan.mse_steps, cpu.data.masks, cpu.data.val_masks) == (0.25, 1, 256, 4, 4000, 2000, "/m/photos",
                                                                      "/m/val")
    assert cpu.data.train.endswith("photos") and cpu.data.val_crop == 256
    # the MSE phase's fused term uniform in the cpu recipe (docs/AKUTSU.md "The masks in the MSE phase"), weighted
    # by default and where asked
    assert (cpu.gan.mse_weighted, full.gan.mse_weighted, cfgmod.get_config("cpu,mse_weighted=true").gan.mse_weighted) \
        == (False, True, True)
    # the lr drops from 5e-4 to 1e-4 where the MSE phase ends (docs/AKUTSU.md "The batch, not the loss weights")
    from lic_jax.train.optim import make_schedule

    for arg, end in (("cpu", 2000), ("cpu,mse=500", 500), ("cpu,mse=3000,steps=10000", 3000)):
        cc = cfgmod.get_config(arg)
        lr = make_schedule(cc.optim, int(cc.num_steps))
        assert (float(lr(end - 1)), float(lr(end))) == pytest.approx((5e-4, 1e-4), rel=1e-6), arg
    ab = cfgmod.get_config("cpu,ablation_b,steps=3000")  # ablation (b): no detail term, never a GAN step
    assert (ab.gan.lambda_p, ab.gan.warmup_steps, ab.gan.lambda_e, ab.model_hparams.width) == (0.0, 3000, 0.18, 0.25)
    assert cpu.model_hparams.mean_shift is True  # the default (docs/AKUTSU.md ambiguity 8)
    assert cfgmod.get_config("cpu,mean_shift=false").model_hparams.mean_shift is False
    # the capacity probe's latent (docs/AKUTSU.md "Colour"): 256 at width 1/4 is 64 channels, the paper's count
    wide = cfgmod.get_config("cpu,latent=256").model_hparams
    m, spec = get_model("akutsu2020", **dict(wide))
    assert spec.hparams["latent"] == 256
    y = jax.eval_shape(lambda: m.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)),
                                                  method=m.analysis)[0])
    assert y.shape == (1, 4, 4, 64)
    enc = cfgmod.get_config("cpu,encoder=32:64:256:384").model_hparams.encoder_channels
    assert get_model("akutsu2020", **dict(cfgmod.get_config("cpu,encoder=32:64:256:384").model_hparams))[1] \
        .hparams["encoder_channels"] == enc == (32, 64, 256, 384)
    for bad in ("big", "depth=3", "mean_shift=yes", "latent=wide"):
        with pytest.raises(ValueError):
            cfgmod.get_config(bad)


def test_colour_labels_deterministic_one_hot():
    from lic_jax.train.gan import colour_labels

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((2, 32, 32, 3)), jnp.float32)
    t = np.asarray(colour_labels(x))
    assert t.shape == (2, 32, 32, 5) and np.all(t.sum(-1) == 1) and set(np.unique(t)) == {0.0, 1.0}
    np.testing.assert_array_equal(t, np.asarray(colour_labels(x)))
    flat = lambda v: jnp.full((1, 8, 8, 3), v, jnp.float32)  # noqa: E731
    cls = lambda img: int(np.argmax(np.asarray(colour_labels(img))[0, 4, 4]))  # noqa: E731
    assert [cls(flat(0.1)), cls(flat(0.5)), cls(flat(0.9))] == [0, 1, 2]
    assert cls(flat(jnp.array([0.9, 0.2, 0.1]))) == 3 and cls(flat(jnp.array([0.1, 0.2, 0.9]))) == 4


def test_warmup_leaves_d_untouched(rig):
    st0, st_d, st_g, m = rig["records"][0]
    assert int(st0.step) == 0
    assert _same(st_g.extra["disc"].params, st0.extra["disc"].params)
    assert _same(st_g.extra["disc"].opt_state, st0.extra["disc"].opt_state)
    assert float(m["gan_on"]) == 0.0
    # no GAN term in the loss before warmup_steps, and D is not run (lax.cond): its metrics read 0
    s = rig["settings"]
    np.testing.assert_allclose(float(m["loss"]), float(m["distortion"]) + s["lambda_e"] * float(m["bpp"]),
                               rtol=1e-6)
    assert [float(m[k]) for k in ("g_loss", "d_loss", "d_acc_real", "d_acc_fake", "d_grad_norm")] == [0.0] * 5
    assert _changed_fraction(st_g.params, st0.params) > 0.5  # the generator trains during the warm-up
    # after it, D does train
    st1, _, st1_g, m1 = rig["records"][1]
    assert float(m1["gan_on"]) == 1.0 and _changed_fraction(st1_g.extra["disc"].params, st1.extra["disc"].params) > 0.5


def test_mse_pretraining_then_ms_ssim(rig):
    """gan.mse_steps (docs/AKUTSU.md "Colour"): before it L_d = κ·(MSE(x̂_m) + λ_p·MSE(x̂)) with κ =
    λ_e·mse_lmbda·255² (uniform t_a), recomputed here in numpy from an independent forward pass; from it
    on, eq. 3's MS-SSIM form. weighted_mse against a direct numpy mean over a mask's pixels."""
    from lic_jax.losses_gan import WEIGHT_EPS, weighted_mse
    from lic_jax.train import gan
    from lic_jax.train.optim import make_optimizer, param_labels
    from lic_jax.train.setup import build_model

    cfg = rig["cfg"].copy_and_resolve_references()
    cfg.gan.mse_steps = 1
    model, _ = build_model(cfg)
    tx, sched = make_optimizer(cfg, int(cfg.num_steps))
    key = jax.random.PRNGKey(1)
    run = jax.jit(gan.make_phases(model, cfg, tx, sched, key))
    s = gan.settings(cfg)
    kappa = s["lambda_e"] * s["mse_lmbda"] * 255.0 ** 2
    st, x = rig["fresh"](0), rig["batch"](0)
    for step in (0, 1):
        st_s = st.replace(step=jnp.asarray(step, jnp.int32))
        m = jax.device_get(run(st_s, x)[2])
        out = model.apply({"params": st.params}, x, train=True, quant=cfg.quant,
                          rngs={"noise": jax.random.fold_in(key, step)})
        xn = np.asarray(x, np.float64)
        mse_m = np.mean((np.asarray(out["x_hat_main"], np.float64) - xn) ** 2)
        mse_f = np.mean((np.asarray(out["x_hat"], np.float64) - xn) ** 2)
        if step == 0:
            assert float(m["mse_on"]) == 1.0
            np.testing.assert_allclose(float(m["distortion"]), kappa * (mse_m + s["lambda_p"] * mse_f), rtol=1e-4)
            # and the generator's gradient is that of the MSE loss (+ λ_e·bpp; no GAN term before the warm-up's
            # end): its global norm against jax.grad of the loss written out here
            def ref_loss(p):
                o = model.apply({"params": p}, x, train=True, quant=cfg.quant, rngs={"noise": jax.random.fold_in(key, 0)})
                mse = lambda u: jnp.mean(jnp.square(u - x))  # noqa: E731
                bits = sum(-jnp.sum(jnp.log2(v)) for v in o["likelihoods"].values()) / x.shape[0]
                return kappa * (mse(o["x_hat_main"]) + s["lambda_p"] * mse(o["x_hat"])) + \
                    s["lambda_e"] * bits / (x.shape[1] * x.shape[2])

            g = jax.grad(ref_loss)(st.params)
            labels = param_labels(st.params)
            g = jax.tree_util.tree_map(lambda l, v: v if l == "main" else jnp.zeros_like(v), labels, g)
            # relative difference 6e-8 measured (a few float32 ulps); it is 1.0 with the MSE term's gradient cut
            np.testing.assert_allclose(float(m["grad_norm"]), float(optax.global_norm(g)), rtol=1e-6)
        else:
            assert float(m["mse_on"]) == 0.0
            ms = (1 - float(m["ms_ssim_main"])) + s["lambda_p"] * (1 - float(m["ms_ssim"]))
            np.testing.assert_allclose(float(m["distortion"]), ms, rtol=1e-5)
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 16, 16, 3)), rng.random((2, 16, 16, 3))
    mask = np.zeros((2, 16, 16)); mask[:, 4:9, 2:12] = 1.0  # noqa: E702
    err = ((a - b) ** 2).mean(-1)
    want = [(err[i] * (mask[i] + WEIGHT_EPS)).sum() / (mask[i] + WEIGHT_EPS).sum() for i in range(2)]
    np.testing.assert_allclose(weighted_mse(a, b, mask, reduce=False), want, rtol=1e-5)
    np.testing.assert_allclose(weighted_mse(a, b, np.ones((2, 16, 16))), ((a - b) ** 2).mean(), rtol=1e-5)


def test_mse_phase_mask_weighting(rig):
    """gan.mse_weighted (docs/AKUTSU.md "The masks in the MSE phase"): with a mask in the batch, the MSE phase's
    fused term is the t_a-weighted MSE (True, the default) or the plain MSE (False, the cpu recipe). Reference:
    numpy from an independent forward pass, t_a = r / mean(r), r = ε + (1 − ε)·mask written out here (image 0
    has a marked rectangle, image 1 none: its t_a is uniform)."""
    from lic_jax.losses_gan import WEIGHT_EPS
    from lic_jax.train import gan
    from lic_jax.train.labels import IMPORTANCE_EPS
    from lic_jax.train.optim import make_optimizer
    from lic_jax.train.setup import build_model

    x = rig["batch"](0)
    mask = np.zeros(x.shape[:3] + (1,), np.float32)
    mask[0, 8:24, 4:20] = 1.0
    key = jax.random.PRNGKey(1)
    st = rig["fresh"](0)
    xn = np.asarray(x, np.float64)
    seen = {}
    for weighted in (True, False):
        cfg = rig["cfg"].copy_and_resolve_references()
        cfg.gan.mse_steps, cfg.gan.mse_weighted = 1, weighted
        model, _ = build_model(cfg)
        tx, sched = make_optimizer(cfg, int(cfg.num_steps))
        m = jax.device_get(jax.jit(gan.make_phases(model, cfg, tx, sched, key))(st, x, jnp.asarray(mask))[2])
        out = model.apply({"params": st.params}, x, train=True, quant=cfg.quant, rngs={"noise": jax.random.fold_in(key, 0)})
        err_m = (np.asarray(out["x_hat_main"], np.float64) - xn) ** 2
        err_f = ((np.asarray(out["x_hat"], np.float64) - xn) ** 2).mean(-1)
        if weighted:
            r = IMPORTANCE_EPS + (1 - IMPORTANCE_EPS) * mask[..., 0].astype(np.float64)
            t_a = np.stack([r[0] / r[0].mean(), np.ones_like(r[1])])
            w = t_a + WEIGHT_EPS
            fused = np.mean([(err_f[i] * w[i]).sum() / w[i].sum() for i in range(2)])
        else:
            fused = err_f.mean()
        s = gan.settings(cfg)
        want = s["lambda_e"] * s["mse_lmbda"] * 255.0 ** 2 * (err_m.mean() + s["lambda_p"] * fused)
        np.testing.assert_allclose(float(m["distortion"]), want, rtol=1e-4)
        seen[weighted] = float(m["distortion"])
    assert abs(seen[True] / seen[False] - 1) > 0.05  # the mask matters (the two would agree with it ignored)
    with pytest.raises(ValueError, match="mse_weighted"):
        gan.settings({"gan": {"mse_weighted": "no"}})


def test_d_step_changes_only_d_and_g_step_only_g(rig):
    st, st_d, st_g, m = rig["records"][1]
    d0, dd, dg = st.extra["disc"], st_d.extra["disc"], st_g.extra["disc"]
    # D step: D's parameters and Adam state change, the generator's parameters / optimiser state / step do not
    assert _same(st_d.params, st.params) and _same(st_d.opt_state, st.opt_state) and int(st_d.step) == int(st.step)
    assert _changed_fraction(dd.params, d0.params) > 0.9 and not _same(dd.opt_state, d0.opt_state)
    # G step: the generator changes (parameters, its optimiser state, step + 1), D does not
    assert _same(dg.params, dd.params) and _same(dg.opt_state, dd.opt_state)
    assert _changed_fraction(st_g.params, st_d.params) > 0.9 and not _same(st_g.opt_state, st_d.opt_state)
    assert int(st_g.step) == int(st.step) + 1
    for k in ("loss", "g_loss", "d_loss", "d_acc_real", "d_acc_fake", "bpp", "ms_ssim_main", "ms_ssim", "finite"):
        assert np.isfinite(float(m[k])), k
    assert 0 <= float(m["d_acc_real"]) <= 1 and 0 <= float(m["d_acc_fake"]) <= 1 and bool(m["finite"])
    print({k: round(float(v), 5) for k, v in m.items()})


def test_phase_steps_equal_the_in_graph_form(rig):
    """The loop's step is compiled per phase (gan.PhasedStep: the phase's branches alone, picked on the host);
    the general form decides in the graph (lax.cond on the state's step). Both, from the same state and batch,
    at a warm-up step and a GAN step: the same D step, G step and metrics, to rounding (XLA fuses the two
    programs differently). Measured on XLA:CPU (Intel Xeon, 2026-12-06): the warm-up step bit-identical; the GAN
    step's metrics 2.4e-7 relative apart, D's parameters leaf-relative ‖Δp‖/‖p‖ 6.9e-7, the generator's 2.8e-8.
    Tolerances ≈ 3× those."""
    from lic_jax.train import gan

    assert rig["phases"] == [gan.Phase(False, False), gan.Phase(False, True)]
    general = jax.jit(gan.make_phases(rig["model"], rig["cfg"], rig["tx"], rig["sched"], rig["key"])).lower(
        rig["fresh"](0), rig["batch"](0)).compile(compiler_options=rig["opts"])
    seen = {}
    for s in (0, 1):
        st, st_d, st_g, m = rig["records"][s]
        g_d, g_g, g_m = jax.device_get(general(st, rig["batch"](s)))
        assert float(m["gan_on"]) == float(g_m["gan_on"]) == float(s >= 1)
        seen[f"metrics_rel_{s}"] = max(abs(float(m[k]) - float(g_m[k])) / max(abs(float(g_m[k])), 1e-30)
                                       for k in m if float(g_m[k]) != 0 or float(m[k]) != 0)
        for name, a, b in (("d", st_d.extra["disc"].params, g_d.extra["disc"].params), ("g", st_g.params, g_g.params)):
            la, lb = _leaves(a), _leaves(b)
            assert len(la) == len(lb)
            seen[f"{name}_leaf_rel_{s}"] = max(float(np.linalg.norm(u.astype(np.float64) - v) / max(np.linalg.norm(v), 1e-30))
                                               for u, v in zip(la, lb))
    print("phase steps against the lax.cond form:", {k: f"{v:.2g}" for k, v in seen.items()})
    tol = {"metrics": 1e-6, "d": 2e-6, "g": 1e-7}
    assert all(v < tol[k.split("_")[0]] for k, v in seen.items()), seen


def test_phased_step_dispatch():
    """gan.PhasedStep builds one function per phase at its first use and picks it by the step: the host's
    (``for_step``) or the state's. MSE before gan.mse_steps, the GAN term from gan.warmup_steps on."""
    from types import SimpleNamespace

    from lic_jax.train import gan

    cfg = {"gan": {"mse_steps": 2, "warmup_steps": 5}}
    built = []
    step = gan.PhasedStep(lambda ph: built.append(ph) or (lambda st, b: ph), cfg)
    want = {0: (True, False), 1: (True, False), 2: (False, False), 4: (False, False), 5: (False, True), 9: (False, True)}
    for s, (mse, on) in want.items():
        assert step.for_step(s) is step.for_step(s) and step.for_step(s)(None, None) == gan.Phase(mse, on), s
        assert step(SimpleNamespace(step=jnp.asarray(s, jnp.int32)), None) == gan.Phase(mse, on), s
    assert built == [gan.Phase(True, False), gan.Phase(False, False), gan.Phase(False, True)]
    with pytest.raises(TypeError, match="Phase"):
        gan.make_phases(None, {"gan": {}}, None, None, None, phase=(False, True))


def test_resume_is_bit_identical(rig, tmp_path):
    from lic_jax.train.checkpoint import Checkpointer

    run, batch, recs = rig["run"], rig["batch"], rig["records"]
    st = rig["fresh"](0)
    losses = []
    for s in range(HALF):
        _, st, m = run(st, batch(s))
        losses.append((float(m["loss"]), float(m["d_loss"])))
    ck = Checkpointer(str(tmp_path), keep=2, keep_best=False, async_save=False)
    ck.save(HALF, st, {"note": "half"})
    ck.wait()
    ck.close()
    del st
    template = rig["fresh"](7)  # different initial values: everything must come from the checkpoint
    ck = Checkpointer(str(tmp_path), keep=2, keep_best=False, async_save=False)
    step, st, _ = ck.restore(template)
    ck.close()
    assert step == HALF and int(st.step) == HALF
    for s in range(HALF, STEPS):
        _, st, m = run(st, batch(s))
        losses.append((float(m["loss"]), float(m["d_loss"])))
    want = [(float(r[3]["loss"]), float(r[3]["d_loss"])) for r in recs]
    assert losses == want
    end = recs[-1][2]
    assert _same(st.params, end.params) and _same(st.opt_state, end.opt_state)
    assert _same(st.extra["disc"].params, end.extra["disc"].params)
    assert _same(st.extra["disc"].opt_state, end.extra["disc"].opt_state)


# -- data parallelism: 8 devices == 1 device (subprocess: the device count is fixed before jax starts) ----

AKUTSU_SETUP = """
    from configs import akutsu2020
    cfg = akutsu2020.get_config("small,warmup=0")  # D trains from step 0
    cfg.batch_size = 8  # 1 crop (64²) per device
"""
FAST_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"  # FAST, as XLA_FLAGS


@pytest.mark.extended  # ~6 CPU-minutes (15 min wall under load): outside the 90-minute CI, scripts/test.sh --extended
def test_8_devices_equal_1_device(env):
    """3 D+G steps on 8 virtual CPU devices (batch 8 sharded 1 crop per device) vs 1 device, from the
    same state, keys and batches: the generator's parameters and D's (TrainState.extra['disc']) agree
    to rounding (the all-reduce sums in another order). Measured: losses ≤ 2e-7 relative apart;
    G max |Δp| 2.3e-6, leaf-relative ‖Δp‖/‖p‖ 1.0e-6; D max |Δp| 1.6e-6, leaf-relative 5.8e-7
    (elementwise, the largest relative differences, 1e-3, are at weights of ~1e-8). Tolerances ≈ 3× those.
    Takes ≈ 6 min on a loaded 2-core machine (compiling the step and the initialisation for both meshes)."""
    import json
    import subprocess

    from _helpers import same_batch_script, script_result, with_devices

    steps = 3
    code = same_batch_script(AKUTSU_SETUP, repo=REPO, train=str(DATA / "train"), steps=steps, lmbda=None)
    r = script_result(subprocess.run([sys.executable, "-c", code], env=with_devices(env, 8, FAST_FLAGS),
                                     capture_output=True, text=True, timeout=1800, cwd=REPO))
    print(f"akutsu2020 8 vs 1 device after {steps} steps: {json.dumps(r)}")
    assert r["devices"] == 8 and r["batch_shards_8"] == 8 and r["batch_shards_1"] == 1
    assert r["param_devices_8"] == 8
    np.testing.assert_allclose(r["losses_8"], r["losses_1"], rtol=6e-7)
    d = r["extra"]["disc"]
    assert r["max_abs"] < 7e-6 and r["max_leaf_rel"] < 3e-6, r
    assert d["max_abs"] < 5e-6 and d["max_leaf_rel"] < 2e-6, d


def test_validation_inside_masks():
    """Validation with a mask channel (``data.val_masks``) adds PSNR and MS-SSIM inside the masks for
    G_m and the fused image, equal to eval.py's numpy ``psnr-rgb@mask`` / ``ms-ssim-rgb@mask``
    (float64, ε = 0: an independent implementation) on the same reconstructions, averaged over the
    images whose crop holds some mask only (an empty mask is left out and counted out)."""
    from _helpers import pattern_image

    from lic_jax.evaluation.image_metrics import ms_ssim_255, psnr_masked
    from lic_jax.train import gan, parallel

    cfg, _ = _config()
    from lic_jax.train.setup import build_model

    model, _ = build_model(cfg)
    crop = 176  # > 160: MS-SSIM's five scales without shrinking, as the numpy reference computes them
    params = _host_init(model, jnp.zeros((1, 64, 64, 3), jnp.float32), seed=3)["params"]
    imgs, masks = [pattern_image(crop, crop, s) for s in (0, 1, 2)], []
    for k in range(3):
        m = np.zeros((crop, crop), np.uint8)
        if k == 0:
            m[40:100, 30:150] = 255
        elif k == 2:
            m[120:170, 100:160] = 255
        masks.append(m)
    src = [np.concatenate([i, m[..., None]], axis=-1) for i, m in zip(imgs, masks)]  # image 1: empty mask

    class Writer:
        def write(self, step, split, res):
            self.res = res

        def images(self, *a):
            pass

    w = Writer()
    validate = gan.make_validator(model, cfg, src, parallel.make_mesh(), w, batch=2, crop=crop, limit=-1, tb_images=1)
    res = validate(params, 0)
    out = model.apply({"params": params}, jnp.asarray(np.stack(imgs), jnp.float32) / 255.0, train=False)
    ref = {}
    for tag, key in (("main", "x_hat_main"), ("fused", "x_hat")):
        rec = np.clip(np.asarray(out[key], np.float64), 0, 1) * 255.0
        x = np.stack(imgs).astype(np.float64)
        ref[f"psnr_{tag}_mask"] = np.mean([psnr_masked(x[k], rec[k], masks[k] > 0) for k in (0, 2)])
        ref[f"ms_ssim_{tag}_mask"] = np.mean([ms_ssim_255(x[k], rec[k], mask=masks[k] > 0) for k in (0, 2)])
        ref[f"psnr_{tag}"] = np.mean([psnr_masked(x[k], rec[k], np.ones((crop, crop), bool)) for k in range(3)])
    assert res["images_with_mask"] == 2.0
    # 3 × the largest measured difference: PSNR 1.6e-7 dB (AVX2 EPYC, 2026-12-02) and 6.9e-7 dB (psnr_fused on an
    # AVX-512 EPYC, 2026-12-03: XLA's float32 reductions differ by CPU); MS-SSIM 6.0e-6
    diffs = {k: abs(res[k] - v) for k, v in ref.items()}
    print("measured |Δ|:", diffs)
    for k, v in ref.items():
        tol = 2.1e-6 if k.startswith("psnr") else 2e-5
        assert diffs[k] <= tol, (k, res[k], v, diffs)
