"""The RD training loop: :func:`train_and_evaluate(config, workdir)` (what ``train.py`` runs).

* **Data parallelism** — one ``jax.jit`` step on a ``('data',)`` mesh over all devices of all
  processes, parameters replicated, batch sharded (:mod:`lic_jax.train.parallel`).
* **Randomness** — the noise key of step ``s`` is ``fold_in(key, s)`` and the batch of step ``s``
  is a pure function of ``(seed, s)``: a run restarted from a checkpoint continues with exactly
  the data and noise the uninterrupted run would have used.
* **λ set** — every run trains on a λ set (:func:`~lic_jax.train.setup.resolve_lambda_set`): one
  λ for a fixed-rate model, the model's set for a variable-rate one (``docs/MAE.md``); one train
  step, one eval step, one validation (:mod:`.steps`, :mod:`.validation`).
* **NaN/Inf guard** — every step reports whether its loss, gradients and new parameters are
  finite; the loop checks this before every log line, validation and checkpoint, and stops
  with :class:`NonFiniteError` without saving anything after the last finite step.

Process-wide JAX settings are the entry point's business (``lic_jax.train.jax_setup``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import parallel
from .export import export_artifact, export_metadata
from .input_pipeline import TrainBatches, WaitMeter, make_source
from .metrics_writer import MetricWriter
from .optim import make_optimizer
from .setup import build_model, objective, resolve_lambda_set, resolve_variable_rate, takes_lambda, to_dict
from .state import create_train_state
from .steps import make_eval_step, make_train_step
from .validation import make_validator

__all__ = ["NonFiniteError", "TrainResult", "train_and_evaluate"]

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """The loss, the gradients or the parameters became NaN/Inf."""


@dataclasses.dataclass
class TrainResult:
    step: int
    params: Any  # host numpy pytree (last state)
    train_metrics: dict
    val_metrics: dict
    artifact: str | None
    wall_time_s: float


class _Stop:
    """SIGTERM → checkpoint at the end of the current step and stop (preemption)."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGTERM,):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            pass
        return self

    def _handle(self, signum, _frame):
        self.requested = True
        log.warning("signal %d: stopping after this step with a checkpoint", signum)

    def __exit__(self, *exc):
        for sig, h in self._old.items():
            signal.signal(sig, h)


def _mean_metrics(ms: list[dict]) -> dict:
    keys = [k for k in ms[0] if k != "finite"]
    return {k: float(np.mean([float(m[k]) for m in ms])) for k in keys}


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Train (resuming from the newest intact checkpoint in ``workdir``), validate, export."""
    t_start = time.time()
    workdir = os.path.abspath(workdir)
    pidx, pcount = jax.process_index(), jax.process_count()
    mesh = parallel.make_mesh()
    ndev = mesh.size
    B = int(config.batch_size)
    if B % ndev:
        raise ValueError(f"batch_size {B} must be a multiple of the {ndev} devices")
    num_steps = int(config.num_steps)
    if pidx == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(to_dict(config), f, indent=2, sort_keys=True, default=str)

    model, spec = build_model(config)
    kind = objective(spec.name)  # 'rd', or e.g. 'iterative-l1' (Toderici 2017: no λ; train/iterative.py)
    for key in ("masks", "val_masks"):
        if config.data.get(key, "") and kind != "gan":
            raise ValueError(f"data.{key} (importance masks) is used by GAN training only, not by objective {kind!r}")
    vr = resolve_variable_rate(config, spec)  # None for a fixed-rate model
    lset = resolve_lambda_set(config, spec) if kind == "rd" else None
    conditioned = takes_lambda(model)
    lmbda = None if vr is not None or lset is None else lset.lmbdas[0]
    if kind == "gan":
        from . import gan

        lmbda_desc = f"objective gan {gan.settings(config)}"
    elif kind != "rd":
        lmbda_desc = f"objective {kind} over {getattr(model, 'iterations', '?')} iterations"
    else:
        lmbda_desc = (f"λ={lmbda}" if vr is None else
                      f"λ set {list(vr.lmbdas)} (weights {list(vr.weights)}, mode '{vr.mode}')")
    tx, schedule = make_optimizer(config, num_steps)
    key = jax.random.PRNGKey(int(config.seed))
    init_key, noise_key, lmbda_key = (jax.random.fold_in(key, i) for i in range(3))
    extra = gan.extra_groups(model, config) if kind == "gan" else None  # D: its own params and optimiser
    state = create_train_state(model, tx, init_key, mesh, extra=extra)
    if config.get("init_from", ""):
        from .portable import load_init_params

        p0 = jax.device_put(load_init_params(config.init_from, state.params), parallel.replicated(mesh))
        state = state.replace(params=p0, opt_state=jax.jit(tx.init, out_shardings=parallel.replicated(mesh))(p0))
    if config.get("integer_entropy", False):
        from .portable import calibrate_run

        d0 = config.data
        calib_src = make_source(d0.train, default_split="train", tfds_data_dir=d0.tfds_data_dir or None,
                                image_key=d0.image_key, manual_dir=d0.tfds_manual_dir or None)
        # from the initial parameters (init_from / the seed's init): a resumed run gets the same scales
        model, spec = calibrate_run(model, spec, state.params, calib_src, int(config.integer_calib), int(d0.crop))
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(state.params))

    ckpt = None
    start_step = 0
    if int(config.checkpoint_every) > 0 or config.keep_best:
        from .checkpoint import Checkpointer

        ckpt = Checkpointer(workdir, keep=int(config.keep_checkpoints), keep_best=bool(config.keep_best),
                            async_save=bool(config.async_checkpoint))
        restored = ckpt.restore(state)
        if restored is None and ckpt.best_step is not None:
            restored = ckpt.restore_best(state)  # every periodic checkpoint is gone or damaged
        if restored is not None:
            start_step, state, _meta = restored
            log.info("resumed from checkpoint at step %d", start_step)

    writer = MetricWriter(workdir, enabled=pidx == 0, tensorboard=bool(config.tensorboard),
                          progress=bool(config.progress_bar), total_steps=num_steps, initial_step=start_step)
    writer.truncate_after(start_step)
    writer.message(f"lic_jax train: {spec.name} q={spec.quality} {spec.hparams} {lmbda_desc} ({config.metric}), "
                   f"{n_params / 1e6:.2f}M params, {ndev} devices / {pcount} processes, global batch {B}, "
                   f"steps {start_step}→{num_steps}, workdir {workdir}")

    d = config.data
    src_kw = dict(tfds_data_dir=d.tfds_data_dir or None, image_key=d.image_key, manual_dir=d.tfds_manual_dir or None)
    masks = config.data.get("masks", "") or None
    train_src = make_source(d.train, cache=bool(d.cache), default_split="train", mask_dir=masks, **src_kw)
    batches = TrainBatches(train_src, B, int(d.crop), int(config.seed), pidx, pcount, hflip=bool(d.hflip),
                           vflip=bool(d.vflip), shuffle=bool(d.shuffle), prefetch=int(d.prefetch),
                           workers=int(d.workers), scale=d.get("scale", ""))
    loader = str(d.get("loader", "threads"))
    if loader == "grain":
        from .grain_pipeline import GrainBatches

        batches = GrainBatches(batches, threads=int(d.workers), prefetch=int(d.prefetch),
                               processes=int(d.get("grain_processes", 0)))
    elif loader != "threads":
        raise ValueError(f"data.loader must be 'threads' or 'grain', got {loader!r}")
    val_src = make_source(d.val, cache=True, default_split="validation", mask_dir=d.get("val_masks", "") or None,
                          **src_kw) if d.val else None
    vb = int(config.val_batch_size)
    vb = -(-max(vb, pcount) // ndev) * ndev
    if vb % pcount:
        vb = ndev * pcount
    train_step = make_train_step(model, config, lset, tx, schedule, mesh, noise_key, lmbda_key)
    if kind == "rd":
        eval_step = make_eval_step(model, config, lset, mesh, int(d.val_crop)) if val_src is not None else None
        validate = make_validator(eval_step, lset, conditioned, val_src, mesh, writer, batch=vb,
                                  crop=int(d.val_crop), limit=int(d.val_limit), tb_images=int(config.tb_images))
    elif kind == "gan":  # eval-mode bpp, PSNR / MS-SSIM of G_m and fused; 'loss' = L_d + λ_e·bpp
        validate = gan.make_validator(model, config, val_src, mesh, writer, batch=vb, crop=int(d.val_crop),
                                      limit=int(d.val_limit), tb_images=int(config.tb_images))
    else:  # per-iteration curve (l1_k, psnr_k); 'loss' = mean L1 over the iterations (best selection)
        from . import iterative

        validate = iterative.make_validator(model, val_src, mesh, writer, batch=vb, crop=int(d.val_crop),
                                            limit=int(d.val_limit), tb_images=int(config.tb_images))

    poison = jax.jit(lambda s: s.replace(params=jax.tree_util.tree_map(lambda p: p * jnp.nan, s.params)),
                     in_shardings=parallel.replicated(mesh), out_shardings=parallel.replicated(mesh),
                     donate_argnums=(0,))

    def ckpt_meta(step, train_m, val_m):
        return {"step": int(step), "train": train_m, "val": val_m, "time": time.time(), "lmbda": lmbda,
                "model": spec.to_dict(), **({"variable_rate": vr.to_dict()} if vr is not None else {})}

    pending: list = []
    last_train, last_val = {}, {}
    last_finite_step = start_step
    win_t, win_steps = time.time(), 0
    log_every = max(1, int(config.log_every))
    eval_every, ckpt_every = int(config.eval_every), int(config.checkpoint_every)
    done = start_step
    first_step_time = None

    def check_finite(step_now):
        """Fetch pending metrics; raise NonFiniteError at the first non-finite step."""
        nonlocal last_finite_step
        host = jax.device_get(pending)
        for i, m in enumerate(host):
            s = step_now - len(host) + i + 1
            if not bool(m["finite"]):
                bad = {k: float(v) for k, v in m.items() if k != "finite"}
                raise NonFiniteError(
                    f"non-finite training state at step {s} (loss/gradients/parameters are NaN or Inf; metrics "
                    f"{bad}). Stopped; the last good checkpoint (step ≤ {last_finite_step}) is intact in "
                    f"{os.path.join(workdir, 'checkpoints')}. Lower the learning rate, check the data, or resume "
                    f"from that checkpoint with a different seed.")
            last_finite_step = s
        return host

    if config.get("eval_at_start", False) and start_step == 0:
        last_val = validate(state.params, 0)
    sleep = float(config.get("debug_step_sleep", 0.0) or 0.0)
    try:
        with _Stop() as stopper:
            # stop_at: pause here (validate + checkpoint); the lr schedule keeps num_steps
            stop_at = int(config.get("stop_at", 0) or 0)
            end = min(num_steps, stop_at) if stop_at > 0 else num_steps
            # input wait = the loop blocked on a batch while the last dispatched step had finished
            stream = WaitMeter(batches.iterate(start_step, end),
                               idle=lambda: not pending or pending[-1]["finite"].is_ready())
            win_wait, win_cpu = 0.0, time.process_time()
            for step, local in stream:
                if step == int(config.debug_nan_step):
                    state = poison(state)
                t0 = time.time() if first_step_time is None else None
                # a step compiled per phase (gan.PhasedStep) is picked by the host's step, with no sync
                fn = train_step.for_step(step) if hasattr(train_step, "for_step") else train_step
                state, m = fn(state, parallel.global_batch(local, mesh))
                if t0 is not None:
                    jax.block_until_ready(m["loss"])
                    first_step_time = time.time() - t0
                    win_t, win_steps, win_wait, win_cpu = time.time(), -1, stream.waited, time.process_time()
                pending.append(m)
                win_steps += 1
                if sleep > 0:
                    time.sleep(sleep)
                done = step + 1
                writer.advance(1)
                is_log = done % log_every == 0 or done == end
                is_eval = (eval_every > 0 and done % eval_every == 0) or done == end
                is_ckpt = ckpt is not None and ckpt_every > 0 and (done % ckpt_every == 0 or done == end)
                stop_now = stopper.requested
                if is_log or is_eval or is_ckpt or stop_now:
                    host = check_finite(done)
                    pending = []
                    if host:
                        last_train = _mean_metrics(host)
                        now = time.time()
                        dt = now - win_t
                        if win_steps > 0 and dt > 0:
                            last_train["steps_per_s"] = win_steps / dt
                            last_train["images_per_s"] = win_steps * B / dt
                            # the loop's time blocked on the input pipeline (batches not ready)
                            last_train["input_wait_frac"] = min(1.0, (stream.waited - win_wait) / dt)
                            # CPU seconds of this process (all threads) per step: the unit of equal-compute
                            # budgets on a shared machine (experiments/recipe_sweep.py)
                            last_train["cpu_s_per_step"] = (time.process_time() - win_cpu) / win_steps
                            if vr is not None and vr.mode == "all":  # (image, λ) forward/backward passes
                                last_train["passes_per_s"] = win_steps * B * len(vr.lmbdas) / dt
                        win_t, win_steps, win_wait, win_cpu = now, 0, stream.waited, time.process_time()
                        writer.write(done, "train", last_train)
                if is_eval:
                    last_val = validate(state.params, done)
                    if ckpt is not None and last_val:
                        ckpt.save_best(done, state, last_val["loss"], ckpt_meta(done, last_train, last_val))
                if is_ckpt or (stop_now and ckpt is not None):
                    ckpt.save(done, state, ckpt_meta(done, last_train, last_val))
                if is_eval or is_ckpt:
                    # throughput excludes validation and checkpoints
                    win_t, win_wait, win_cpu = time.time(), stream.waited, time.process_time()
                if stop_now:
                    writer.message(f"stopped by signal after step {done}; checkpoint saved")
                    break
    except NonFiniteError as e:
        writer.message(f"ERROR: {e}")
        if ckpt is not None:
            ckpt.close()
        writer.close()
        raise
    if ckpt is not None:
        ckpt.wait()

    artifact_path = None
    if config.export.at_end and done >= num_steps:
        params = state.params  # the codec only: extra parameter groups are never exported
        src_step, kind = done, "last"
        if config.export.which == "best" and ckpt is not None and ckpt.best_step is not None:
            r = ckpt.restore_best(state)
            if r is not None:
                src_step, best_state, _ = r
                params = best_state.params
                kind = "best"
        host_params = parallel.fetch(params)
        artifact_path = config.export.dir or os.path.join(workdir, "artifact")
        if pidx == 0:
            meta = export_metadata(
                config, vr, exported_step=src_step, exported_from=kind, steps=int(done), global_batch=B,
                devices=ndev, processes=pcount, final_train=last_train, final_val=last_val,
                best_val_loss=ckpt.best_value if ckpt is not None else None, wall_time_s=time.time() - t_start)
            fp = export_artifact(spec, host_params, artifact_path, meta, bool(config.export.fit_quantiles))
            writer.message(f"exported artifact (step {src_step}) to {artifact_path} [{fp[:12]}]")
        parallel.sync("lic_export")
    if ckpt is not None:
        ckpt.close()
    writer.flush()
    writer.close()
    # every process leaves together: jax.distributed's shutdown barrier at exit has a timeout, and a
    # process that finished long before another (export, orbax finalisation) must not wait there alone
    parallel.sync("lic_done")
    return TrainResult(step=done, params=parallel.fetch(state.params), train_metrics=last_train,
                       val_metrics=last_val, artifact=artifact_path, wall_time_s=time.time() - t_start)
