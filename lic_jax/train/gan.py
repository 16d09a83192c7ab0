"""Training objective ``'gan'`` (registry ``ModelRecord.objective``): Akutsu et al. 2020 (seed 002;
SYSTEMS.md §8; docs/AKUTSU.md), alternating discriminator and generator steps.

Every train step is one D step followed by one G step (1:1 alternation [I, §8]):

* **D step** (eq. 5, r = −1): D sees the real crop x and G_m's reconstruction x̂_m of the *current*
  generator (no gradient into the generator), both conditioned on t_s;
  loss E[softplus(D(x, t_s))] + E[softplus(−D(x̂_m, t_s))], one update of D's own optax optimiser
  (``extra['disc']`` of the :class:`~lic_jax.train.state.TrainState`: parameters and optimiser
  state, so they are in the same orbax checkpoint and a resume is exact; never exported).
* **G step**: L_d + λ_e·L_e + λ_g·L_g with L_d = (1 − MS-SSIM(x, x̂_m)) + λ_p·(1 − wMS-SSIM(x, x̂, t_a))
  (eq. 3, x̂ the fused image of eq. 1), L_e the bits per pixel of both latents (y and z),
  L_g = E[softplus(D(x̂_m, t_s))] against the D just updated (eq. 5, r = +1). The codec's
  optimiser is the project's (:func:`~lic_jax.train.optim.make_optimizer`: clipping + Adam on
  the main group, the entropy bottleneck's quantiles on the aux loss).
* **MSE pre-training** (``gan.mse_steps``, default 0; not in the paper): before that step, L_d's
  MS-SSIM terms are MSEs (:func:`lic_jax.losses_gan.mse_distortion_loss`, κ = λ_e·``gan.mse_lmbda``·255²),
  as CompressAI fine-tunes its MS-SSIM models from MSE ones: trained on MS-SSIM from the start the
  CPU model's encoder drops the colour (docs/AKUTSU.md "Colour").
* **Warm-up** (``gan.warmup_steps``): before it, no GAN term and no D update: D's parameters and
  optimiser state are carried over unchanged, and D is not run at all, so its metrics (``d_loss``,
  ``d_acc_*``, ``d_grad_norm``, ``g_loss``) read 0 with ``gan_on`` 0. The generator's updates are
  those of the loss without the GAN term.

**Phases.** The step number decides three things: MSE or MS-SSIM distortion, D frozen or trained, a GAN
term or none (:func:`phase_of`). :func:`make_train_step` compiles one step per phase and picks it on the
host (:class:`PhasedStep`), so each compiled step holds only its phase's branches. The general form,
``make_phases(..., phase=None)``, decides in the graph with ``lax.cond``; XLA:CPU runs that form's GAN
step ≈ 3× slower than the phase's own step (15–16 against 5.8–6.0 CPU-s at the CPU run's shapes,
``benchmarks/akutsu_step.py``, docs/AKUTSU.md "The step"), so it is kept as the reference the tests
compare with, and for callers that trace over steps.

The generator's forward pass runs once per step (``jax.vjp``): the D step uses its x̂_m, the G
step pulls the gradient of its loss back through it. The D step does not change the generator,
so this is the same as running the generator again after the D step.

Randomness: the quantisation noise of step s is ``fold_in(noise_key, s)``; the batch of step s is
a pure function of (seed, s) (:mod:`lic_jax.train.input_pipeline`). Nothing else is random.

Labels (substitutes, documented in docs/AKUTSU.md; host-side detectors in :mod:`lic_jax.train.labels`):

* t_s (D's 5-class semantic input): :func:`colour_labels`, a deterministic colour clustering of
  the (slightly blurred) image in luma–chroma space, computed in-graph: achromatic pixels
  (chroma < 0.05) split by luma into dark / mid / light, chromatic ones into warm (Cr ≥ Cb) and
  cool; one-hot, 5 channels.
* t_a (face / text importance map of the weighted MS-SSIM): :func:`importance_map`. Uniform (all
  ones, so wMS-SSIM is plain MS-SSIM of the fused image) unless the batch carries a mask: a uint8
  batch with a 4th channel (255 = important, e.g. the face / text masks that
  ``python -m lic_jax.train.labels`` precomputes, or the user's own) is split by
  :func:`split_batch`, and the mask becomes t_a = r / mean(r), r = ε + (1 − ε)·mask per image, as
  :func:`lic_jax.train.labels.importance_weights` on the host. A 4-channel image crops and flips
  like an RGB one, so the mask stays aligned; `data.masks` makes the input pipeline append it.

Data parallelism: each phase's step is one ``jax.jit`` with replicated state and a batch sharded over the
``('data',)`` mesh (:mod:`lic_jax.train.parallel`), like every other step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..losses_gan import (LAMBDAS, discriminator_accuracy, discriminator_loss, distortion_loss, weighted_ms_ssim,
                          generator_gan_loss, mse_distortion_loss)
from ..metrics import ms_ssim
from ..models.base import total_bits
from . import parallel
from .input_pipeline import eval_batches
from .labels import IMPORTANCE_EPS
from .steps import apply_update
from .state import ParamGroup, TrainState

__all__ = ["DISC", "SETTINGS", "Phase", "PhasedStep", "phase_of", "settings", "colour_labels", "importance_map",
           "split_batch", "make_disc_optimizer", "extra_groups", "make_phases", "make_train_step", "make_eval_step", "make_validator"]

DISC = "disc"  # the name of D's parameter group in TrainState.extra
SETTINGS = {**LAMBDAS, "warmup_steps": 0, "d_lr": 8e-5, "d_b1": 0.9, "d_b2": 0.999, "d_clip_norm": 0.0,
            "mse_steps": 0, "mse_lmbda": 0.0035,  # MSE pre-training: steps, CompressAI's λ (q2) of κ = λ_e·λ·255²
            "mse_weighted": True}  # its fused term t_a-weighted (False: uniform; AKUTSU.md "The masks in the MSE phase")
CHROMA_T = 0.05  # colour_labels: chroma magnitude below which a pixel is achromatic
LUMA_T = (1.0 / 3.0, 2.0 / 3.0)  # and the luma thresholds of dark / mid / light


def settings(config) -> dict:
    """``config.gan`` over :data:`SETTINGS` (λ_p, λ_e, λ_g, warmup_steps, D's Adam)."""
    g = config.get("gan", None)
    g = g.to_dict() if hasattr(g, "to_dict") else dict(g or {})
    unknown = sorted(set(g) - set(SETTINGS))
    if unknown:
        raise ValueError(f"config.gan: unknown keys {unknown}; known: {sorted(SETTINGS)}")
    s = {**SETTINGS, **g}
    for k in ("warmup_steps", "mse_steps"):
        s[k] = int(s[k])
        if s[k] < 0:
            raise ValueError(f"gan.{k} must be ≥ 0, got {s[k]}")
    if not isinstance(s["mse_weighted"], (bool, np.bool_)):
        raise ValueError(f"gan.mse_weighted must be True or False, got {s['mse_weighted']!r}")
    s["mse_weighted"] = bool(s["mse_weighted"])
    for k in ("lambda_p", "lambda_e", "lambda_g", "d_lr", "d_clip_norm", "mse_lmbda"):
        s[k] = float(s[k])
        if not (np.isfinite(s[k]) and s[k] >= 0):
            raise ValueError(f"gan.{k} must be a finite number ≥ 0, got {s[k]}")
    return s


class Phase(NamedTuple):
    """What the step number decides (:func:`phase_of`): ``mse`` the MSE pre-training's distortion (else
    eq. 3's MS-SSIM form), ``gan`` D trained and the GAN term on (else the warm-up)."""
    mse: bool
    gan: bool


def phase_of(step: int, config) -> Phase:
    """The phase of (host) step ``step``: MSE before ``gan.mse_steps``, GAN from ``gan.warmup_steps`` on."""
    return _phase(step, settings(config))


def _phase(step: int, s: dict) -> Phase:  # phase_of on settings already read (PhasedStep: once, not per step)
    return Phase(mse=int(step) < s["mse_steps"], gan=int(step) >= s["warmup_steps"])


def _branch(fixed, pred, true_fn, false_fn, *ops):
    """``lax.cond(pred, ...)``, or, when the phase fixes the outcome at trace time (``fixed`` a bool), that
    branch alone: the compiled step then holds no conditional."""
    if fixed is None:
        return jax.lax.cond(pred, true_fn, false_fn, *ops)
    return (true_fn if fixed else false_fn)(*ops)


def colour_labels(x, classes: int = 5):
    """t_s substitute: (B, H, W, 5) one-hot colour classes of NHWC images in [0, 1] (module docstring).

    Deterministic and in-graph: a 5×5 box blur (edge-replicated), BT.601 luma / chroma, then
    class 0/1/2 = achromatic dark / mid / light, 3 = chromatic warm (Cr ≥ Cb), 4 = chromatic cool."""
    if classes != 5:
        raise ValueError(f"colour_labels makes 5 classes, got {classes}")
    x = jax.lax.stop_gradient(x.astype(jnp.float32))
    xp = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    xb = jax.lax.reduce_window(xp, 0.0, jax.lax.add, (1, 5, 5, 1), (1, 1, 1, 1), "VALID") / 25.0
    r, g, b = xb[..., 0], xb[..., 1], xb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 0.564 * (b - luma)
    cr = 0.713 * (r - luma)
    grey = jnp.where(luma < LUMA_T[0], 0, jnp.where(luma < LUMA_T[1], 1, 2))
    colour = jnp.where(cr >= cb, 3, 4)
    cls = jnp.where(jnp.sqrt(cb * cb + cr * cr) < CHROMA_T, grey, colour)
    return jax.nn.one_hot(cls, classes, dtype=jnp.float32)


def importance_map(x, mask=None, eps: float = IMPORTANCE_EPS):
    """t_a (B, H, W, 1) of the weighted MS-SSIM (Akutsu et al. 2020, seed 002, eq. 3), in-graph.

    ``mask`` None: uniform ones. Otherwise (B, H, W, 1) in [0, 1]: per image r = ε + (1 − ε)·mask
    and t_a = r / mean(r) (mean 1, background ε-floored), exactly 1 where the image's mask is
    constant, so wMS-SSIM is MS-SSIM there (:func:`lic_jax.train.labels.importance_weights`)."""
    if mask is None:
        return jnp.ones(x.shape[:3] + (1,), jnp.float32)
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"importance eps must be in (0, 1], got {eps}")
    m = jax.lax.stop_gradient(jnp.clip(mask.astype(jnp.float32), 0.0, 1.0))
    r = eps + (1.0 - eps) * m
    flat = jnp.all(m == m[:, :1, :1, :], axis=(1, 2, 3), keepdims=True)
    return jnp.where(flat, 1.0, r / jnp.mean(r, axis=(1, 2, 3), keepdims=True))


def split_batch(batch):
    """uint8 (B, H, W, 3 | 4) → (x float32 in [0, 1] (B, H, W, 3), mask in [0, 1] (B, H, W, 1) or None)."""
    c = batch.shape[-1]
    if c not in (3, 4):
        raise ValueError(f"the GAN step takes RGB or RGB + mask batches, got {c} channels")
    x = batch[..., :3].astype(jnp.float32) / 255.0
    return x, (batch[..., 3:].astype(jnp.float32) / 255.0 if c == 4 else None)


def make_disc_optimizer(config):
    """D's own Adam (``gan.d_lr``, constant; optional global-norm clipping ``gan.d_clip_norm``)."""
    s = settings(config)
    parts = [optax.clip_by_global_norm(s["d_clip_norm"])] if s["d_clip_norm"] > 0 else []
    parts.append(optax.adam(s["d_lr"], b1=float(s["d_b1"]), b2=float(s["d_b2"])))
    return optax.chain(*parts)


def _discriminator(model):
    make = getattr(model, "discriminator", None)
    if not callable(make):
        raise ValueError(f"{type(model).__name__} trains for 'gan' but has no discriminator() method")
    return make()


def extra_groups(model, config, init_size: int = 64) -> dict:
    """``create_train_state(..., extra=...)``: D's group, initialised on a zero image of
    ``init_size``² with ``label_classes`` label channels."""
    disc = _discriminator(model)
    tx_d = make_disc_optimizer(config)

    def init_fn(key):
        x = jnp.zeros((1, init_size, init_size, 3), jnp.float32)
        t = jnp.zeros((1, init_size, init_size, disc.label_classes), jnp.float32)
        return disc.init(key, x, t)["params"]

    return {DISC: (init_fn, tx_d)}


def _finite(*trees):
    ok = jnp.asarray(True)
    for t in trees:
        for leaf in jax.tree_util.tree_leaves(t):
            ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok


def make_phases(model, config, tx, schedule, noise_key, phase: Phase | None = None):
    """The unjitted pieces of a step: ``phases(state, x, mask=None) → (state after the D step, state
    after the G step, metrics)`` (``x`` float in [0, 1]; ``mask`` the optional t_a mask of
    :func:`importance_map`). :func:`make_train_step` jits this and keeps
    the last two; the tests look at the first as well.

    ``phase``: None decides the phase in the graph from the state's step (``lax.cond``, any step);
    a :class:`Phase` builds that phase's step alone, for states whose step is in it (:func:`phase_of`).
    The metrics ``mse_on`` and ``gan_on`` are always read from the state's step, so a step given a
    state of another phase shows it."""
    s = settings(config)
    if phase is not None and not isinstance(phase, Phase):
        raise TypeError(f"phase must be a gan.Phase or None, got {phase!r}")
    fix_mse, fix_gan = (None, None) if phase is None else (bool(phase.mse), bool(phase.gan))
    disc = _discriminator(model)
    tx_d = make_disc_optimizer(config)
    quant = config.quant
    small = config.get("ms_ssim_small", "error")
    use_aux = bool(config.optim.aux_loss)
    lam_p, lam_e, lam_g, warm = s["lambda_p"], s["lambda_e"], s["lambda_g"], s["warmup_steps"]
    mse_steps, kappa = s["mse_steps"], lam_e * s["mse_lmbda"] * 255.0 ** 2
    mse_weighted = s["mse_weighted"]

    def phases(st: TrainState, x, mask=None):
        if DISC not in st.extra:
            raise ValueError("the GAN step needs the discriminator's group in TrainState.extra "
                             "(create_train_state(..., extra=gan.extra_groups(model, config)))")
        step = st.step
        h, w = x.shape[1:3]
        gan_on = step >= warm
        t_s, t_a = colour_labels(x), importance_map(x, mask)
        key = jax.random.fold_in(noise_key, step)

        def forward(p):
            return model.apply({"params": p}, x, train=True, quant=quant, rngs={"noise": key})

        out, pullback = jax.vjp(forward, st.params)

        # -- D step (eq. 5, r = −1): real vs the current generator's x̂_m, one update of D --------
        dg = st.extra[DISC]
        fake = jax.lax.stop_gradient(out["x_hat_main"])
        n = x.shape[0]

        def d_loss_fn(dp):
            logits = disc.apply({"params": dp}, jnp.concatenate([x, fake]), jnp.concatenate([t_s, t_s]))
            return discriminator_loss(logits[:n], logits[n:]), (logits[:n], logits[n:])

        def d_step(dg):
            (d_loss, (real_l, fake_l)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(dg.params)
            d_upd, d_opt = tx_d.update(d_grads, dg.opt_state, dg.params)
            acc = discriminator_accuracy(real_l, fake_l)
            return (ParamGroup(params=optax.apply_updates(dg.params, d_upd), opt_state=d_opt),
                    (d_loss, acc["real"], acc["fake"], optax.global_norm(d_grads)))

        def d_frozen(dg):  # the warm-up: D neither runs nor changes
            zero = jnp.zeros((), jnp.float32)
            return dg, (zero, zero, zero, zero)

        d_group, (d_loss, acc_real, acc_fake, d_gnorm) = _branch(fix_gan, gan_on, d_step, d_frozen, dg)
        st_d = st.replace(extra={**st.extra, DISC: d_group})

        # -- G step: L_d + λ_e·bpp + λ_g·L_g against the updated D ---------------------------------
        def g_loss_fn(o):
            def ms_ssim_terms(o):  # {'loss', 'ms_ssim_main', 'wms_ssim'}
                return distortion_loss(x, o["x_hat_main"], o["x_hat"], t_a, lam_p, small=small)

            def mse_terms(o):  # MSE pre-training (losses_gan module docstring): L_d before step mse_steps;
                # the MS-SSIMs are only logged, so they get no backward pass (stop_gradient)
                # (gan.mse_weighted False: the fused term uniform, t_a only from the MS-SSIM phase on)
                d = ms_ssim_terms(jax.lax.stop_gradient(o))
                t = t_a if mse_weighted else jnp.ones_like(t_a)
                return {**d, "loss": mse_distortion_loss(x, o["x_hat_main"], o["x_hat"], t, lam_p, kappa)["loss"]}

            dist = _branch(fix_mse, step < mse_steps, mse_terms, ms_ssim_terms, o) if mse_steps else ms_ssim_terms(o)
            bpp = jnp.mean(total_bits(o["likelihoods"])) / (h * w)
            g_adv = _branch(
                fix_gan, gan_on, lambda xm: generator_gan_loss(disc.apply({"params": d_group.params}, xm, t_s)),
                lambda xm: jnp.zeros((), jnp.float32), o["x_hat_main"])
            loss = dist["loss"] + lam_e * bpp + lam_g * g_adv
            return loss, {"loss": loss, "distortion": dist["loss"], "g_loss": g_adv, "bpp": bpp,
                          "ms_ssim_main": dist["ms_ssim_main"], "ms_ssim": dist["wms_ssim"]}

        (loss, r), out_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(out)
        (grads,) = pullback(out_grads)
        new_params, opt_state, aux, gnorm = apply_update(tx, st_d.params, st_d.opt_state, grads, use_aux)
        st_g = st_d.replace(step=step + 1, params=new_params, opt_state=opt_state)

        x_main = jnp.clip(out["x_hat_main"], 0.0, 1.0)
        mse_main = jnp.mean(jnp.square(x_main - x), axis=(1, 2, 3))
        finite = (jnp.isfinite(loss) & jnp.isfinite(gnorm) & jnp.isfinite(aux) & jnp.isfinite(d_loss)
                  & _finite(new_params, d_group.params))
        metrics = dict(r)
        if mse_steps:
            metrics["mse_on"] = (step < mse_steps).astype(jnp.float32)
        metrics.update(d_loss=d_loss, d_acc_real=acc_real, d_acc_fake=acc_fake,
                       d_grad_norm=d_gnorm, gan_on=gan_on.astype(jnp.float32),
                       psnr_main=jnp.mean(10.0 * jnp.log10(1.0 / jnp.maximum(mse_main, 1e-12))),
                       mask_mean=jnp.mean(out["mask"]), aux_loss=aux, grad_norm=gnorm, lr=schedule(step),
                       finite=finite)
        return st_d, st_g, metrics

    return phases


class PhasedStep:
    """The GAN train step, one compiled function per :class:`Phase` (compiled at its first use).

    ``step.for_step(s)`` is the jitted ``(state, batch_uint8) → (state, metrics)`` for a state at host step
    ``s`` (the training loop, which knows the step); ``step(state, batch)`` reads the step from the
    state (a device-to-host copy) and calls that."""

    def __init__(self, build, config):
        self._build, self._settings, self._fns = build, settings(config), {}

    def for_step(self, step: int):
        ph = _phase(step, self._settings)
        if ph not in self._fns:
            self._fns[ph] = self._build(ph)
        return self._fns[ph]

    def __call__(self, state, batch):
        return self.for_step(int(np.asarray(state.step.addressable_data(0))))(state, batch)


def make_train_step(model, config, tx, schedule, mesh, noise_key):
    """The train step (:class:`PhasedStep`): ``step(state, batch_uint8) → (state, metrics)``, one D step,
    then one G step (a 4th batch channel is the t_a mask, :func:`split_batch`), jitted per phase."""
    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)

    def build(phase):
        phases = make_phases(model, config, tx, schedule, noise_key, phase=phase)

        def step_fn(state, batch):
            _, st, metrics = phases(state, *split_batch(batch))
            return st, metrics

        return jax.jit(step_fn, in_shardings=(rep, dat), out_shardings=(rep, rep), donate_argnums=(0,))

    return PhasedStep(build, config)


MASKED_EPS = 1e-9  # ε of the in-mask MS-SSIM: eval.py's ε = 0 up to a 1e-9/area share of weight outside the mask


def make_eval_step(model, config, mesh, crop: int):
    """``eval_step(params, batch_uint8, weights) → (weighted sums, uint8 [x̂_m | x̂])``: eval-mode
    (rounded) bpp, PSNR and MS-SSIM of G_m and of the fused image, and the selection loss
    L_d + λ_e·bpp (no GAN term; t_a uniform; the whole image scored).

    With a mask channel (``data.val_masks``) also ``psnr_{main,fused}_mask`` and
    ``ms_ssim_{main,fused}_mask``: eval.py's ``psnr-rgb@mask`` / ``ms-ssim-rgb@mask`` (the MSE over
    the masked pixels; the weighted MS-SSIM with the 0/1 mask, ε → 0), summed over the images whose
    crop holds some mask and counted by ``count_mask``: the seed's claim that G_s is better inside
    the face / text regions, followed during training."""
    s = settings(config)
    small = "shrink" if (crop and crop <= 160) or config.get("ms_ssim_small", "error") == "shrink" else "error"

    def step_fn(params, batch, weights):
        x, mask = split_batch(batch)
        out = model.apply({"params": params}, x, train=False)
        h, w = x.shape[1:3]
        vals = {"bpp": total_bits(out["likelihoods"]) / (h * w)}
        masked = {}
        if mask is not None:
            m = (mask >= 0.5).astype(jnp.float32)
            area = jnp.sum(m, axis=(1, 2, 3))
            has = (area > 0).astype(jnp.float32)
        shown = []
        for tag, xh in (("main", out["x_hat_main"]), ("fused", out["x_hat"])):
            xc = jnp.clip(xh.astype(jnp.float32), 0.0, 1.0)
            mse = jnp.mean(jnp.square(xc - x), axis=(1, 2, 3))
            vals[f"psnr_{tag}"] = 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-12))
            vals[f"ms_ssim_{tag}"] = ms_ssim(xc, x, data_range=1.0, reduce=False, small=small)
            if mask is not None:
                mse_m = jnp.sum(m * jnp.square(xc - x), axis=(1, 2, 3)) / jnp.maximum(3.0 * area, 1.0)
                masked[f"psnr_{tag}_mask"] = 10.0 * jnp.log10(1.0 / jnp.maximum(mse_m, 1e-12))
                masked[f"ms_ssim_{tag}_mask"] = weighted_ms_ssim(xc, x, m, data_range=1.0, eps=MASKED_EPS,
                                                                 reduce=False, small=small)
            shown.append(jnp.round(xc * 255.0).astype(jnp.uint8))
        vals["loss"] = (1.0 - vals["ms_ssim_main"]) + s["lambda_p"] * (1.0 - vals["ms_ssim_fused"]) + \
            s["lambda_e"] * vals["bpp"]
        sums = {k: jnp.sum(weights * v) for k, v in vals.items()}
        sums["count"] = jnp.sum(weights)
        if mask is not None:
            sums.update({k: jnp.sum(weights * jnp.where(has > 0, v, 0.0)) for k, v in masked.items()})
            sums["count_mask"] = jnp.sum(weights * has)
        return sums, jnp.concatenate(shown, axis=2)

    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(step_fn, in_shardings=(rep, dat, dat), out_shardings=(rep, dat))


def make_validator(model, config, val_src, mesh, writer, *, batch: int, crop: int, limit: int, tb_images: int):
    """``validate(params, step) → metrics`` (written to ``writer`` under 'val', images to
    TensorBoard as original | G_m | fused); {} without validation data."""
    from .validation import local_rows

    if val_src is None:
        return lambda params, step: {}
    eval_step = make_eval_step(model, config, mesh, crop)
    pidx, pcount = jax.process_index(), jax.process_count()

    def validate(params, step):
        totals, shown = None, None
        for local, wts in eval_batches(val_src, batch, crop, pidx, pcount, limit):
            sm, xh = eval_step(params, parallel.global_batch(local, mesh), parallel.global_batch(wts, mesh))
            sm = parallel.fetch(sm)
            totals = sm if totals is None else {k: totals[k] + sm[k] for k in sm}
            if shown is None and tb_images > 0 and pidx == 0:
                shown = np.concatenate([local[:tb_images, ..., :3], local_rows(xh)[:tb_images]], axis=2)
        if totals is None:
            return {}
        cnt = max(1.0, float(totals.pop("count")))
        cnt_m = totals.pop("count_mask", None)  # present with a mask channel
        res = {k: float(v) / cnt for k, v in totals.items() if not k.endswith("_mask")}
        if cnt_m is not None:
            res["images_with_mask"] = float(cnt_m)
            if cnt_m > 0:
                res.update({k: float(v) / float(cnt_m) for k, v in totals.items() if k.endswith("_mask")})
        writer.write(step, "val", res)
        if shown is not None:
            writer.images(step, "val/original|main|fused", shown)
        return res

    return validate
