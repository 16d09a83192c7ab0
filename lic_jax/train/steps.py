"""The jitted train step and eval step: one of each, for every model, over a λ set.

A fixed-rate model trains on a one-λ set; only a model that takes λ (:func:`takes_lambda`)
receives it in its forward pass. The RD loss of a fixed-rate model is CompressAI's batch loss
(``lic_jax.losses.rate_distortion_loss``); a λ-conditioned model's is
Σ_λ w_λ·(bpp_λ + λ·255²·MSE_λ) from per-image terms:

* mode ``'all'``: the batch is replicated once per λ (K·B images in one forward pass, per-image
  λ), each λ's terms are batch means; its metrics are logged as ``bpp@λ``, ``psnr@λ``, ``loss@λ``;
* mode ``'sample'``: one λ per step, λ_k drawn with probability w_k/Σw from
  ``fold_in(lmbda_key, step)`` (a pure function of the step: resumes are exact), loss
  ``Σw · (bpp + λ_k·255²·MSE)`` — an unbiased estimate of the 'all' objective.

Every train step reports whether its loss, gradients and new parameters are finite (``finite``).
The steps take a :class:`~lic_jax.train.state.TrainState` (or the plain dict state of earlier
versions, returned in the same form); extra parameter groups pass through unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ..losses import rate_distortion_loss
from ..models.base import total_bits
from . import parallel
from .optim import aux_loss, param_labels
from .setup import as_lambda_set, objective, takes_lambda
from .state import TrainState

__all__ = ["make_train_step", "make_eval_step", "per_image_rd", "apply_update"]


def per_image_rd(out, x, lam, metric, small, clip_for_distortion=False):
    """Per-image bpp, mse, psnr (of x̂ clipped), [ms_ssim] and RD loss with per-image λ ``lam`` (B,)."""
    from ..metrics import ms_ssim

    h, w = x.shape[1:3]
    x_hat = out["x_hat"].astype(jnp.float32)
    bpp = total_bits(out["likelihoods"]) / (h * w)
    mse = jnp.mean(jnp.square(x_hat - x), axis=(1, 2, 3))
    x_c = jnp.clip(x_hat, 0.0, 1.0)
    psnr = 10.0 * jnp.log10(1.0 / jnp.maximum(jnp.mean(jnp.square(x_c - x), axis=(1, 2, 3)), 1e-12))
    vals = {"bpp": bpp, "mse": mse, "psnr": psnr}
    if metric == "ms-ssim":
        s = ms_ssim(x_c if clip_for_distortion else x_hat, x, data_range=1.0, reduce=False, small=small)
        vals["ms_ssim"] = s
        vals["loss"] = bpp + lam * (1.0 - s)
    else:
        vals["loss"] = bpp + lam * 255.0**2 * mse
    return vals


def _forward(model, conditioned, params, x, lam, **kw):
    """The model's forward pass; λ is an argument only of a λ-conditioned model."""
    if conditioned:
        return model.apply({"params": params}, x, lam, **kw)
    return model.apply({"params": params}, x, **kw)


def make_train_step(model, config, lmbdas, tx, schedule, mesh, noise_key, lmbda_key=None):
    """A jitted ``step(state, batch_uint8) → (state, metrics)`` training on the λ set ``lmbdas``.

    ``lmbdas``: a :class:`~lic_jax.train.setup.LambdaSet`, or one λ (a number). RD gradients
    update the 'main' group, aux-loss gradients (every entropy bottleneck) the quantiles, in one
    optax update. ``lmbda_key`` draws λ in mode 'sample'.

    A model whose registry record has another objective (:func:`~lic_jax.train.setup.objective`;
    ``'iterative-l1'``: Toderici 2017, :mod:`lic_jax.train.iterative`; ``'gan'``: Akutsu 2020,
    :mod:`lic_jax.train.gan`, its own step) gets that loss instead; ``lmbdas`` must then be None.
    For the iterative loss the update, finiteness check and state handling are shared."""
    kind = objective(model)
    if kind != "rd":
        if lmbdas is not None:
            raise ValueError(f"{type(model).__name__} trains for {kind!r}: it takes no λ, got {lmbdas}")
        if kind == "gan":  # Akutsu 2020: alternating D / G steps, D in TrainState.extra (train/gan.py)
            from . import gan

            return gan.make_train_step(model, config, tx, schedule, mesh, noise_key)
        from . import iterative

        return _jit_step(iterative.make_loss_fn(model, noise_key), tx, schedule, mesh, use_aux=False)
    lset = as_lambda_set(lmbdas)
    conditioned = takes_lambda(model)
    K = len(lset.lmbdas)
    if not conditioned and K != 1:
        raise ValueError(f"{type(model).__name__} is a fixed-rate model: it trains on one λ, got {lset.lmbdas}")
    if lset.mode not in ("all", "sample"):
        raise ValueError(f"mode must be 'all' or 'sample', got {lset.mode!r}")
    sample = lset.mode == "sample" and conditioned
    if sample and lmbda_key is None:
        raise ValueError("mode 'sample' needs lmbda_key")
    metric, quant = config.metric, config.quant
    small = config.get("ms_ssim_small", "error")
    use_aux = bool(config.optim.aux_loss)
    lm = jnp.asarray(lset.lmbdas, jnp.float32)
    w = jnp.asarray(lset.weights, jnp.float32)
    logp = jnp.log(jnp.asarray(lset.probs, jnp.float32))
    wsum = float(sum(lset.weights))

    def loss_fn(params, x, step):
        rng = jax.random.fold_in(noise_key, step)
        B = x.shape[0]
        # the λ of every image: the set's one λ (a constant), every λ ('all') or one drawn λ ('sample')
        if not conditioned:
            xs, lam = x, lset.lmbdas[0]
        elif sample:
            k = jax.random.categorical(jax.random.fold_in(lmbda_key, step), logp)
            xs, lam = x, jnp.full((B,), lm[k])
        else:
            xs, lam = jnp.tile(x, (K, 1, 1, 1)), jnp.repeat(lm, B)
        out = _forward(model, conditioned, params, xs, lam, train=True, quant=quant, rngs={"noise": rng})
        if not conditioned:  # CompressAI's batch RD loss
            r = rate_distortion_loss(out, x, lam, metric, ms_ssim_small=small)
            return r["loss"], r
        v = per_image_rd(out, xs, lam, metric, small)
        if sample:
            loss = wsum * jnp.mean(v["loss"])
            r = {"loss": loss, "bpp": jnp.mean(v["bpp"]), "mse": jnp.mean(v["mse"]), "psnr": jnp.mean(v["psnr"]),
                 "lmbda": lm[k]}
        else:
            per = {key: jnp.mean(val.reshape(K, B), axis=1) for key, val in v.items()}  # (K,) each
            loss = jnp.sum(w * per["loss"])
            r = {"loss": loss, "bpp": jnp.mean(per["bpp"]), "mse": jnp.mean(per["mse"]), "psnr": jnp.mean(per["psnr"])}
            for i in range(K):
                for key in ("loss", "bpp", "psnr"):
                    r[f"{key}{lset.tag(i)}"] = per[key][i]
        if "ms_ssim" in v:
            r["ms_ssim"] = jnp.mean(v["ms_ssim"])
        return loss, r

    return _jit_step(loss_fn, tx, schedule, mesh, use_aux)


def _jit_step(loss_fn, tx, schedule, mesh, use_aux: bool):
    """The jitted train step around ``loss_fn(params, x, step) → (loss, metrics)``: gradients,
    the aux loss of the entropy bottlenecks (``use_aux``), one optax update, the finite flag."""

    def step_fn(state, batch):
        legacy = not isinstance(state, TrainState)
        st = TrainState.from_checkpoint(state) if legacy else state
        params = st.params
        x = batch.astype(jnp.float32) / 255.0
        (loss, r), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, st.step)
        new_params, opt_state, aux, gnorm = apply_update(tx, params, st.opt_state, grads, use_aux)
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm) & jnp.isfinite(aux)
        for leaf in jax.tree_util.tree_leaves(new_params):
            finite = finite & jnp.all(jnp.isfinite(leaf))
        metrics = dict(r)
        metrics.update(aux_loss=aux, grad_norm=gnorm, lr=schedule(st.step), finite=finite)
        new = st.replace(step=st.step + 1, params=new_params, opt_state=opt_state)
        return (new.to_checkpoint() if legacy else new), metrics

    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(step_fn, in_shardings=(rep, dat), out_shardings=(rep, rep), donate_argnums=(0,))


def apply_update(tx, params, opt_state, grads, use_aux):
    """One optax update of the codec's parameters from the loss gradients ``grads``: with ``use_aux``
    the aux-loss gradients (every entropy bottleneck's quantiles) replace those of the 'aux' group.
    Returns (new params, new opt state, aux loss, global norm of the 'main' group's gradients).
    Shared by the RD / iterative step (:func:`_jit_step`) and the GAN generator step (train/gan.py)."""
    labels = param_labels(params)
    if use_aux:
        aux, aux_grads = jax.value_and_grad(aux_loss)(params)
        grads = jax.tree_util.tree_map(lambda l, g, ga: ga if l == "aux" else g, labels, grads, aux_grads)
    else:
        aux = jnp.zeros((), jnp.float32)
    main_grads = jax.tree_util.tree_map(lambda l, g: g if l == "main" else jnp.zeros_like(g), labels, grads)
    gnorm = optax.global_norm(main_grads)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, aux, gnorm


def _eval_sums(out, x, lam, weights, metric, small, with_msssim):
    """Eval-mode metrics as weighted sums over the global batch (MS-SSIM of the clipped x̂), and the uint8 x̂."""
    from ..metrics import ms_ssim

    vals = per_image_rd(out, x, lam, "mse", small)
    x_c = jnp.clip(out["x_hat"].astype(jnp.float32), 0.0, 1.0)
    if with_msssim:
        vals["ms_ssim"] = ms_ssim(x_c, x, data_range=1.0, reduce=False, small=small if small == "shrink" else "error")
    if metric == "ms-ssim":
        vals["loss"] = vals["bpp"] + lam * (1.0 - vals["ms_ssim"])
    sums = {k: jnp.sum(weights * v) for k, v in vals.items()}
    sums["count"] = jnp.sum(weights)
    return sums, jnp.round(x_c * 255.0).astype(jnp.uint8)


def make_eval_step(model, config, lmbdas, mesh, crop: int):
    """Eval-mode (rounding) RD metrics at one λ of the set: ``eval_step(params, batch, weights,
    lmbda=None) → (weighted sums over the global batch, uint8 x̂)``; ``lmbda=None``: the set's first.

    For a λ-conditioned model λ is a traced argument (one compilation serves every λ); a
    fixed-rate model's one λ is a constant of the compiled step."""
    lset = as_lambda_set(lmbdas)
    conditioned = takes_lambda(model)
    metric = config.metric
    small = config.get("ms_ssim_small", "error")
    with_msssim = metric == "ms-ssim" or crop > 160 or small == "shrink"

    def step_fn(params, batch, weights, lmbda):
        x = batch.astype(jnp.float32) / 255.0
        lam = jnp.full((x.shape[0],), lmbda, jnp.float32) if conditioned else lmbda
        out = _forward(model, conditioned, params, x, lam, train=False)
        return _eval_sums(out, x, lam, weights, metric, small, with_msssim)

    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    if conditioned:
        jitted = jax.jit(step_fn, in_shardings=(rep, dat, dat, rep), out_shardings=(rep, dat))

        def eval_step(params, batch, weights, lmbda=None):
            lam = lset.lmbdas[0] if lmbda is None else lmbda
            if not isinstance(lam, jax.Array):
                lam = jax.device_put(jnp.asarray(lam, jnp.float32), rep)
            return jitted(params, batch, weights, lam)
    else:
        lam0 = lset.lmbdas[0]
        jitted = jax.jit(lambda p, b, w: step_fn(p, b, w, lam0), in_shardings=(rep, dat, dat),
                         out_shardings=(rep, dat))

        def eval_step(params, batch, weights, lmbda=None):
            if lmbda is not None and float(lmbda) != lam0:
                raise ValueError(f"this fixed-rate model was trained for λ={lam0}, not {lmbda}")
            return jitted(params, batch, weights)

    eval_step.lmbdas = lset
    return eval_step
