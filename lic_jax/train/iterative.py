"""Training objective ``'iterative-l1'`` (registry ``ModelRecord.objective``): Toderici et al. 2017.

The recurrent codec (``lic_jax.models.toderici2017``) has no rate term: every iteration adds a
fixed 1/8 bpp. Its loss is the port's (SYSTEMS.md §7): the mean |r_t| of the residual after each
iteration, summed over the ``iterations`` unrolled steps, divided by their number
(:func:`~lic_jax.models.toderici2017.l1_loss`). Training uses the stochastic binarizer with the
explicit key ``fold_in(noise_key, step)`` — a pure function of the step, so a resumed run draws
exactly the bits the uninterrupted one would have drawn.

Validation is a per-iteration curve with the deterministic (sign) binarizer: mean L1 and PSNR
(of the clipped reconstruction, per image, then averaged) after iterations 1..k, written into
``metrics.jsonl`` as ``l1_1 … l1_k`` and ``psnr_1 … psnr_k`` (``bpp`` = k/8 of the last), with
``loss`` = the mean L1 over the iterations (the training loss in eval mode: what the best
checkpoint is selected on), ``l1`` / ``psnr`` the values after the last iteration.

:mod:`lic_jax.train.steps` and :mod:`lic_jax.train.loop` dispatch here on the objective; the RD
path is untouched.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..models import toderici2017 as T
from . import parallel
from .input_pipeline import eval_batches

__all__ = ["iterations_of", "make_loss_fn", "make_eval_step", "make_validator", "curve"]


def iterations_of(model) -> int:
    """The number of iterations the model trains / codes with (its ``iterations`` field)."""
    k = int(getattr(model, "iterations", 16))
    if k < 1:
        raise ValueError(f"iterations must be ≥ 1, got {k}")
    return k


def make_loss_fn(model, noise_key):
    """``loss_fn(params, x, step) → (loss, metrics)``: L1 over the unrolled iterations, stochastic
    binarizer keyed by ``fold_in(noise_key, step)``. Metrics: ``loss``, ``l1`` (after the last
    iteration), ``l1_first`` (after iteration 1), ``psnr`` (last iteration, clipped, batch mean)."""
    k = iterations_of(model)

    def loss_fn(params, x, step):
        key = jax.random.fold_in(noise_key, step)
        out = T.unroll(model, {"params": params}, x, k, train=True, key=key)
        loss = T.l1_loss(out)
        x_last = jnp.clip(out["x_hat"][-1], 0.0, 1.0)
        mse = jnp.mean(jnp.square(x_last - x), axis=(1, 2, 3))
        psnr = jnp.mean(10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-12)))
        return loss, {"loss": loss, "l1": out["l1"][-1], "l1_first": out["l1"][0], "psnr": psnr}

    return loss_fn


def make_eval_step(model, mesh):
    """``eval_step(params, batch_uint8, weights) → (sums, uint8 last reconstruction)``; sums are
    weighted over the global batch: ``l1`` (k,), ``psnr`` (k,), ``count``. Sign binarizer."""
    k = iterations_of(model)

    def step_fn(params, batch, weights):
        x = batch.astype(jnp.float32) / 255.0
        out = T.unroll(model, {"params": params}, x, k)
        x_hat = out["x_hat"]  # (k, B, H, W, 3)
        l1 = jnp.mean(jnp.abs(x_hat - x[None]), axis=(2, 3, 4))  # (k, B): the residual, unclipped
        x_c = jnp.clip(x_hat, 0.0, 1.0)
        mse = jnp.mean(jnp.square(x_c - x[None]), axis=(2, 3, 4))
        psnr = 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-12))
        sums = {"l1": jnp.sum(l1 * weights, axis=1), "psnr": jnp.sum(psnr * weights, axis=1),
                "count": jnp.sum(weights)}
        return sums, jnp.round(x_c[-1] * 255.0).astype(jnp.uint8)

    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(step_fn, in_shardings=(rep, dat, dat), out_shardings=(rep, dat))


def curve(res: dict) -> dict:
    """{'iteration', 'bpp', 'l1', 'psnr'} lists from a validation record (``metrics.jsonl`` 'val')."""
    ks = sorted(int(key[3:]) for key in res if key.startswith("l1_") and key[3:].isdigit())
    return {"iteration": ks, "bpp": [k / 8 for k in ks],
            "l1": [res[f"l1_{k}"] for k in ks], "psnr": [res[f"psnr_{k}"] for k in ks]}


def make_validator(model, val_src, mesh, writer, *, batch: int, crop: int, limit: int, tb_images: int):
    """``validate(params, step) → metrics`` (written to ``writer`` under 'val'); {} without data."""
    from .validation import local_rows

    if val_src is None:
        return lambda params, step: {}
    if crop % T.DOWNSAMPLING:
        raise ValueError(f"{type(model).__name__} validates on centre crops that are multiples of "
                         f"{T.DOWNSAMPLING}; data.val_crop = {crop}")
    eval_step = make_eval_step(model, mesh)
    pidx, pcount = jax.process_index(), jax.process_count()

    def validate(params, step):
        totals, shown = None, None
        for local, w in eval_batches(val_src, batch, crop, pidx, pcount, limit):
            s, xh = eval_step(params, parallel.global_batch(local, mesh), parallel.global_batch(w, mesh))
            s = parallel.fetch(s)
            totals = s if totals is None else {kk: totals[kk] + s[kk] for kk in s}
            if shown is None and tb_images > 0 and pidx == 0:
                shown = np.concatenate([local[:tb_images], local_rows(xh)[:tb_images]], axis=2)
        if totals is None:
            return {}
        n = max(1.0, float(totals["count"]))
        l1 = np.asarray(totals["l1"], np.float64) / n
        psnr = np.asarray(totals["psnr"], np.float64) / n
        res = {"loss": float(np.mean(l1)), "l1": float(l1[-1]), "psnr": float(psnr[-1]),
               "bpp": len(l1) / 8.0}
        for i in range(len(l1)):
            res[f"l1_{i + 1}"] = float(l1[i])
            res[f"psnr_{i + 1}"] = float(psnr[i])
        writer.write(step, "val", res)
        if shown is not None:
            writer.images(step, f"val/original|reconstruction ({len(l1)} iterations)", shown)
        return res

    return validate
