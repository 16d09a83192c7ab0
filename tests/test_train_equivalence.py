"""Training equivalence with CompressAI (issue 14, item 3): 20 optimiser steps of lic_jax's own train
step (``lic_jax.train.trainer``: ``make_optimizer`` + ``make_train_step``, the code ``train.py``
runs) against 20 steps of CompressAI's ``examples/train.py`` recipe in PyTorch, from the same
weights, on the same batches, with the same quantisation noise.

* Weights: a CompressAI model at its own initialisation (``torch.manual_seed``), ``torch.save``d
  and converted with :func:`lic_jax.convert.from_compressai`.
* Batches: the global batches of lic_jax's input pipeline (``TrainBatches``, 2 × 64² crops of
  ``shared/data/train``), fed to both sides as the same uint8 arrays.
* Noise: lic_jax draws its uniform noise inside the jitted step from ``fold_in(noise_key, step)``;
  the test replays the model's forward with that key to read the noise (ŷ − y, ẑ − z) and
  injects it into CompressAI through ``EntropyModel.quantize(mode='noise')``.
* Optimiser: CompressAI's ``examples/train.py`` — Adam (lr 1e-4) on every parameter but the
  ``quantiles``, ``clip_grad_norm_(net.parameters(), 1.0)`` before its step, then the auxiliary
  loss evaluated *after* the main step and its own Adam (lr 1e-3) on the quantiles.

After 20 steps every parameter tensor is compared. The natural scale is how far training moved
it: err = ‖θ_jax − θ_torch‖ / ‖θ_torch − θ_0‖ per tensor. With everything equal, what remains is
float32 noise of two convolution libraries (forward parity ~1e-6 relative), which Adam's
normalised steps amplify where a gradient component is near zero, most of all at the GDN γ
entries sitting on their lower bound, whose bound gradient passes only when the tiny gradient
is negative. Measured on a 2-core AMD EPYC (AVX2), 2026-11-30, q1 (N=128, M=192), λ = 0.013,
losses 197 → 36 in 20 steps:

==========================  ==============================  ========  ============  ===============
model                       worst err (tensor)              median    quantiles     per-step loss
==========================  ==============================  ========  ============  ===============
bmshj2018-hyperprior        6.1e-3 (g_s_1 γ)                1.7e-5    4.4e-3        2.1e-5
mbt2018-mean                6.6e-3 (g_s_1 γ)                1.8e-5    —             2.1e-5
==========================  ==============================  ========  ============  ===============

Tolerances are 3× the larger measurement: err ≤ 0.02, loss ≤ 6.5e-5 relative. Broken on purpose
(bmshj2018-hyperprior, 2026-11-30), each fails by orders of magnitude:

* clipping off on the lic_jax side (``optim.clip_norm=0``): worst err 5.2 (median 0.32), per-step
  loss difference 0.99;
* the aux learning rate 1e-2 instead of CompressAI's 1e-3: quantiles err 9.0.

One difference is known and measured to be inside the float noise at this scale: lic_jax takes
the aux-loss gradient at the parameters before the main update, CompressAI after
``optimizer.step()``; the quantiles still agree to 4.4e-3 of their travel after 20 steps.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compressai_compat import noise_injecting_quantize, train_step
from conftest import require

from lic_jax.convert import from_compressai
from lic_jax.train import parallel, trainer
from lic_jax.train.config import get_default_config
from lic_jax.train.input_pipeline import FolderSource, TrainBatches

STEPS, BATCH, CROP, LMBDA, QUALITY = 20, 2, 64, 0.0130, 1
PARAM_TOL = 0.02  # 3 × 6.6e-3, the worst ‖θ_jax − θ_torch‖ / ‖θ_torch − θ_0‖ measured (docstring table)
LOSS_RTOL = 6.5e-5  # 3 × 2.13e-5, the worst per-step RD-loss difference measured


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest.py


def _flat(tree):
    return {jax.tree_util.keystr(k): np.asarray(v, np.float64) for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def run_both(arch: str, tmp_path, train_dir, optim_overrides=None):
    """Train ``arch`` 20 steps in both frameworks; returns (per-tensor errors, loss pairs)."""
    torch = require("torch")
    require("compressai")
    from compressai.entropy_models import EntropyModel
    from compressai.losses import RateDistortionLoss
    from compressai.zoo import image as zoo

    torch.manual_seed(2026)
    net = {"bmshj2018-hyperprior": zoo.bmshj2018_hyperprior, "mbt2018-mean": zoo.mbt2018_mean}[arch](
        quality=QUALITY, pretrained=False)
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    model, spec, variables = from_compressai(path)
    assert spec.name == arch

    c = get_default_config()
    c.model, c.quality, c.lmbda = arch, QUALITY, LMBDA
    c.optim.schedule = "constant"
    for k, v in (optim_overrides or {}).items():
        setattr(c.optim, k, v)
    mesh = parallel.make_mesh(jax.devices()[:1])
    tx, schedule = trainer.make_optimizer(c, STEPS)
    noise_key = jax.random.key(11)
    step_fn = trainer.make_train_step(model, c, LMBDA, tx, schedule, mesh, noise_key)
    params0 = jax.tree_util.tree_map(lambda a: np.array(a, copy=True), variables["params"])  # the step donates
    p_init = jax.tree_util.tree_map(jnp.asarray, params0)
    state = parallel.replicate({"step": jnp.zeros((), jnp.int32), "params": p_init, "opt_state": tx.init(p_init)},
                               mesh)
    batches = TrainBatches(FolderSource(str(train_dir), cache=True), BATCH, CROP, seed=5, prefetch=0)

    main = [p for n, p in sorted(net.named_parameters()) if not n.endswith(".quantiles")]
    aux = [p for n, p in sorted(net.named_parameters()) if n.endswith(".quantiles")]
    opt, aux_opt = torch.optim.Adam(main, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
    crit = RateDistortionLoss(lmbda=LMBDA)
    noise: dict = {}
    orig = EntropyModel.quantize
    quantize = noise_injecting_quantize(orig, noise)

    forward = jax.jit(lambda p, x, k: model.apply({"params": p}, x, train=True, rngs={"noise": k}))
    losses = []
    EntropyModel.quantize = quantize
    try:
        net.train()
        for s in range(STEPS):
            xb = batches.batch(s)
            x = jnp.asarray(xb, jnp.float32) / 255.0
            # the noise lic_jax's step s draws (it depends on the key and the shapes only)
            o = forward(state["params"], x, jax.random.fold_in(noise_key, s))
            ny, nz = np.asarray(o["y_hat"] - o["y"]), np.asarray(o["z_hat"] - o["z"])
            noise["GaussianConditional"] = torch.from_numpy(np.ascontiguousarray(ny.transpose(0, 3, 1, 2)))
            noise["EntropyBottleneck"] = torch.from_numpy(
                np.ascontiguousarray(nz.transpose(3, 0, 1, 2).reshape(nz.shape[-1], 1, -1)))
            xt = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))
            lt = train_step(net, opt, aux_opt, crit, xt)
            state, m = step_fn(state, parallel.global_batch(xb, mesh))
            losses.append((float(m["loss"]), lt))
    finally:
        EntropyModel.quantize = orig
    _, _, vt = from_compressai(copy.deepcopy(net.state_dict()), name=arch)
    pj, pt, p0 = _flat(parallel.fetch(state["params"])), _flat(vt["params"]), _flat(params0)
    assert pj.keys() == pt.keys()
    errs = {}
    for k in pt:
        moved = np.linalg.norm(pt[k] - p0[k])
        if moved == 0.0:
            assert np.array_equal(pj[k], p0[k]), f"{k}: torch did not move it, lic_jax did"
            continue
        errs[k] = float(np.linalg.norm(pj[k] - pt[k]) / moved)
    return errs, losses


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean"])
def test_twenty_steps_equal_compressai(arch, tmp_path, train_dir):
    errs, losses = run_both(arch, tmp_path, train_dir)
    worst = max(errs, key=errs.get)
    loss_err = max(abs(a - b) / abs(b) for a, b in losses)
    print(f"\n{arch}: {len(errs)} tensors moved; worst ‖Δθ‖/‖θ−θ0‖ = {errs[worst]:.3g} ({worst}); "
          f"median {np.median(list(errs.values())):.3g}; worst per-step loss difference {loss_err:.3g}; "
          f"losses {losses[0][1]:.4f} → {losses[-1][1]:.4f}")
    assert losses[-1][1] < losses[0][1]  # it trained
    assert loss_err <= LOSS_RTOL, (loss_err, losses)
    assert errs[worst] <= PARAM_TOL, (worst, errs[worst])
