"""Training ComCNN + RecCNN with real JPEG in the loop: both schemes of SYSTEMS.md §9 (issue 16,
Jiang et al. 2017 §3.3; the model: ``lic_jax.models.jiang2017``; docs/COMCNN.md).

Schedule (one list of phases, resumable at any step): ``init`` (optional, ours: ComCNN regressed
onto the bicubic ×2 downscale so that the first compact images are images, cheap), then
``cycles`` × [``rec``, ``com``]:

* ``rec`` — ComCNN fixed: compact = ComCNN(x) → real JPEG (Pillow, ``qf``) → bicubic ×2 = u;
  RecCNN (batch norm in training mode, ``batch_stats`` updated) minimises the MSE of x̂ = u − r(u)
  against x (equivalently of the residual r against u − x, the official loss), Eq. 4.
* ``com`` — RecCNN fixed (eval-mode batch norm), Eq. 5; ``scheme``:
  - ``'st'`` (the paper): loss = MSE(RecCNN(up(JPEG(ComCNN(x)))), x) with the codec the identity
    in the backward pass (:func:`~lic_jax.models.jiang2017.jpeg_straight_through`), gradient
    through RecCNN and the differentiable bicubic.
  - ``'approx'`` (the official code, ``ComCNN/vl_nnloss.m``): the same forward; the gradient
    w.r.t. the compact image is the bicubic-downscaled output error ``down2(∂L/∂x̂)``, back-propagated
    through ComCNN only (no back-propagation through codec or RecCNN). At every log step the
    cosine between this and the straight-through gradient of ComCNN's parameters is logged.

JPEG runs on the host inside the jitted steps as a ``jax.pure_callback`` (per image, Pillow,
4:4:4, the ExternalCoder's settings); straight-through is a ``jax.custom_vjp``. Patches: 40×40
(``patch``) grey (Pillow 'L') crops on a stride-20 grid of the training images, one of the 8
dihedral augmentations each, drawn by a ``numpy`` generator seeded by (seed, step): a resumed run
sees the same batches. Adam per network. Logs: ``log.jsonl`` (loss, PSNR, gradient global norm
per step at ``log_every``, per phase means), a tqdm bar with rate / ETA, ``ckpt.msgpack``
(params, batch_stats, optimiser states, step) every ``ckpt_every`` steps and at every phase end.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from jax.flatten_util import ravel_pytree
from PIL import Image

from ..models.jiang2017 import (ComCNN, ComCNNJpeg, RecCNN, bicubic_down2, bicubic_up2, export_variables,
                                jpeg_np, jpeg_straight_through)

__all__ = ["ComCNNTrainConfig", "load_grey_images", "PatchSampler", "schedule", "Trainer", "evaluate_grey"]


@dataclasses.dataclass
class ComCNNTrainConfig:
    scheme: str = "st"  # 'st' (paper, straight-through codec) | 'approx' (official approximate gradient)
    qf: int = 10
    N: int = 64
    depth: int = 20
    batch: int = 16
    patch: int = 40
    init_steps: int = 200
    rec_steps: int = 300
    com_steps: int = 100
    cycles: int = 4
    lr_init: float = 1e-3
    lr_rec: float = 1e-3
    lr_com: float = 1e-4
    rec_zero_init: bool = False  # RecCNN's last conv zero at init (x̂ = bicubic↑ at step 0); official: False
    seed: int = 0
    data: str = "/work/shared/data/train"
    max_images: int = 0  # 0: all
    log_every: int = 10
    ckpt_every: int = 50

    def __post_init__(self):
        if self.scheme not in ("st", "approx"):
            raise ValueError(f"scheme must be 'st' (straight-through) or 'approx' (official), got {self.scheme!r}")
        if not 1 <= self.qf <= 100:
            raise ValueError(f"qf must be 1..100, got {self.qf}")
        if self.patch % 2 or self.patch < 8:
            raise ValueError(f"patch must be even and ≥ 8, got {self.patch}")


def schedule(cfg: ComCNNTrainConfig) -> list[tuple[str, int]]:
    """The phases in order: [('init', n), ('rec', n), ('com', n), ('rec', n), …]."""
    out = [("init", cfg.init_steps)] if cfg.init_steps else []
    for _ in range(cfg.cycles):
        out += [("rec", cfg.rec_steps), ("com", cfg.com_steps)]
    return [(p, n) for p, n in out if n > 0]


def phase_at(sched, step: int):
    """(phase index, phase name, step within the phase) of a global step (None past the end)."""
    start = 0
    for i, (p, n) in enumerate(sched):
        if step < start + n:
            return i, p, step - start
        start += n
    return None


def load_grey_images(folder: str, limit: int = 0) -> list[np.ndarray]:
    """uint8 (H, W) luma (Pillow 'L') of every PNG / JPEG in ``folder`` (sorted)."""
    files = sorted(f for e in ("png", "jpg", "jpeg", "bmp", "tif") for f in glob.glob(os.path.join(folder, f"*.{e}")))
    if not files:
        raise ValueError(f"no images in {folder}")
    files = files[:limit] if limit else files
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(np.asarray(im.convert("L"), np.uint8))
    return out


class PatchSampler:
    """40×40 patches on a stride-20 grid (SYSTEMS.md §9), each with one of the 8 dihedral transforms."""

    def __init__(self, images, patch: int = 40, stride: int = 20):
        self.images, self.patch = images, patch
        self.index = np.array([(i, r, c) for i, a in enumerate(images)
                               for r in range(0, a.shape[0] - patch + 1, stride)
                               for c in range(0, a.shape[1] - patch + 1, stride)], np.int64)
        if not len(self.index):
            raise ValueError(f"no image is at least {patch}×{patch}")

    def batch(self, seed: int, step: int, n: int) -> np.ndarray:
        """float32 (n, P, P, 1) in [0, 1]; a pure function of (seed, step)."""
        rng = np.random.default_rng([seed, step])
        pick = self.index[rng.integers(0, len(self.index), n)]
        aug = rng.integers(0, 8, n)
        P = self.patch
        out = np.empty((n, P, P, 1), np.float32)
        for k, ((i, r, c), t) in enumerate(zip(pick, aug)):
            p = np.rot90(self.images[i][r:r + P, c:c + P], t % 4)
            out[k, :, :, 0] = p[:, ::-1] if t >= 4 else p
        return out / np.float32(255.0)


def _gnorm(g):
    return optax.global_norm(g)


def _mse(a, b):
    return jnp.mean(jnp.square(a - b))


class Trainer:
    """Holds the jitted steps of one configuration; state is an explicit dict (pure steps)."""

    def __init__(self, cfg: ComCNNTrainConfig):
        self.cfg = cfg
        self.com = ComCNN(cfg.N, 1, False, "batch_stats")
        self.rec = RecCNN(cfg.N, 1, cfg.depth, "batch_stats", cfg.rec_zero_init)
        self.opt_init = optax.adam(cfg.lr_init)
        self.opt_rec = optax.adam(cfg.lr_rec)
        self.opt_com = optax.adam(cfg.lr_com)
        q = int(cfg.qf)
        com, rec = self.com, self.rec

        def jpeg_cb(y):  # forward only
            return jax.pure_callback(lambda v: jpeg_np(v, q), jax.ShapeDtypeStruct(y.shape, jnp.float32), y)

        def rec_eval(pr, bs, u):
            return rec.apply({"params": pr, "batch_stats": bs}, u, train=False)

        @jax.jit
        def init_step(st, x):
            def loss_fn(pc):
                return _mse(com.apply({"params": pc}, x), bicubic_down2(x))
            loss, g = jax.value_and_grad(loss_fn)(st["pc"])
            upd, oi = self.opt_init.update(g, st["oi"], st["pc"])
            return {**st, "pc": optax.apply_updates(st["pc"], upd), "oi": oi}, {"loss": loss, "gnorm": _gnorm(g)}

        @jax.jit
        def rec_step(st, x):
            u = bicubic_up2(jpeg_cb(com.apply({"params": st["pc"]}, x)))

            def loss_fn(pr):
                out, upd = rec.apply({"params": pr, "batch_stats": st["bs"]}, u, train=True, mutable=["batch_stats"])
                return _mse(out, x), upd["batch_stats"]
            (loss, bs), g = jax.value_and_grad(loss_fn, has_aux=True)(st["pr"])
            upd, orr = self.opt_rec.update(g, st["or"], st["pr"])
            return ({**st, "pr": optax.apply_updates(st["pr"], upd), "or": orr, "bs": bs},
                    {"loss": loss, "gnorm": _gnorm(g), "jpeg_mse": _mse(u, x)})

        def st_loss(pc, pr, bs, x):
            y = com.apply({"params": pc}, x)
            return _mse(rec_eval(pr, bs, bicubic_up2(jpeg_straight_through(y, q))), x)

        def approx_grad(pc, pr, bs, x):
            y, vjp = jax.vjp(lambda p: com.apply({"params": p}, x), pc)
            out = rec_eval(pr, bs, bicubic_up2(jpeg_cb(y)))
            dl_dout = 2.0 * (out - x) / out.size  # ∂ mean((out − x)²) / ∂out
            (g,) = vjp(bicubic_down2(dl_dout))  # official: the compact image's gradient ≈ imresize(·, 0.5)
            return _mse(out, x), g

        def com_update(st, g):
            upd, oc = self.opt_com.update(g, st["oc"], st["pc"])
            return {**st, "pc": optax.apply_updates(st["pc"], upd), "oc": oc}

        @jax.jit
        def com_step_st(st, x):
            loss, g = jax.value_and_grad(st_loss)(st["pc"], st["pr"], st["bs"], x)
            return com_update(st, g), {"loss": loss, "gnorm": _gnorm(g)}

        @jax.jit
        def com_step_approx(st, x):
            loss, g = approx_grad(st["pc"], st["pr"], st["bs"], x)
            return com_update(st, g), {"loss": loss, "gnorm": _gnorm(g)}

        @jax.jit
        def both_grads(st, x):
            """Diagnostics: the straight-through and the approximate ComCNN gradients, and their cosine."""
            _, g_st = jax.value_and_grad(st_loss)(st["pc"], st["pr"], st["bs"], x)
            _, g_ap = approx_grad(st["pc"], st["pr"], st["bs"], x)
            a, b = ravel_pytree(g_st)[0], ravel_pytree(g_ap)[0]
            return {"gnorm_st": jnp.linalg.norm(a), "gnorm_approx": jnp.linalg.norm(b),
                    "cos_st_approx": jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-30)}

        self.steps = {"init": init_step, "rec": rec_step,
                      "com": com_step_st if cfg.scheme == "st" else com_step_approx}
        self.both_grads = both_grads

    def init_state(self, key):
        kc, kr = jax.random.split(key)
        P = self.cfg.patch
        pc = self.com.init(kc, jnp.zeros((1, P, P, 1)))["params"]
        vr = self.rec.init(kr, jnp.zeros((1, P, P, 1)), train=False)
        pr, bs = vr["params"], vr["batch_stats"]
        return {"pc": pc, "pr": pr, "bs": bs, "oi": self.opt_init.init(pc), "or": self.opt_rec.init(pr),
                "oc": self.opt_com.init(pc), "step": np.int64(0)}

    def variables(self, st) -> dict:
        """The training-form variables of ``ComCNNJpeg`` (``bn_collection='batch_stats'``)."""
        return {"params": {"com": st["pc"], "rec": st["pr"]}, "batch_stats": {"rec": st["bs"]}}

    # -- checkpoints --------------------------------------------------------------------------
    @staticmethod
    def save(path: str, st):
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(serialization.to_bytes(jax.device_get(st)))
        os.replace(tmp, path)

    def restore(self, path: str, key):
        template = self.init_state(key)
        with open(path, "rb") as f:
            return serialization.from_bytes(template, f.read())


def train(cfg: ComCNNTrainConfig, workdir: str, max_minutes: float | None = None, progress: bool = True,
          stop_at: int | None = None) -> dict:
    """Run (or resume) the schedule in ``workdir``; stops after ``max_minutes`` or at global step
    ``stop_at`` (checkpointed). Returns the final state."""
    from tqdm import tqdm

    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=1)
    tr = Trainer(cfg)
    key = jax.random.PRNGKey(cfg.seed)
    ckpt = os.path.join(workdir, "ckpt.msgpack")
    st = tr.restore(ckpt, key) if os.path.exists(ckpt) else tr.init_state(key)
    sampler = PatchSampler(load_grey_images(cfg.data, cfg.max_images), cfg.patch)
    sched = schedule(cfg)
    total = sum(n for _, n in sched)
    if stop_at is not None:
        total = min(total, int(stop_at))
    step = int(st["step"])
    log = open(os.path.join(workdir, "log.jsonl"), "a")
    t_end = None if max_minutes is None else time.time() + 60 * max_minutes
    bar = tqdm(total=total, initial=step, disable=not progress, dynamic_ncols=True, mininterval=5)
    acc: dict = {}
    while step < total:
        pi, phase, k = phase_at(sched, step)
        t0 = time.time()
        x = sampler.batch(cfg.seed, step, cfg.batch)
        t_data = time.time() - t0
        st, m = tr.steps[phase](st, x)
        m = {k2: float(v) for k2, v in m.items()}
        dt = time.time() - t0
        step += 1
        st["step"] = np.int64(step)
        for k2, v in m.items():
            acc.setdefault(k2, []).append(v)
        bar.update(1)
        bar.set_postfix(phase=phase, loss=f"{m['loss']:.2e}")
        end_of_phase = k + 1 == sched[pi][1]
        if step % cfg.log_every == 0 or end_of_phase:
            rec = {"step": step, "phase": phase, "phase_index": pi, "s_per_step": dt, "data_s": t_data, **m,
                   "psnr": float(-10 * np.log10(max(m["loss"], 1e-12)))}
            if phase == "com" and cfg.scheme == "approx":
                rec.update({k2: float(v) for k2, v in tr.both_grads(st, x).items()})
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if end_of_phase:
            summ = {"phase_end": phase, "phase_index": pi, "step": step,
                    **{f"mean_{k2}": float(np.mean(v)) for k2, v in acc.items()},
                    **{f"first10_{k2}": float(np.mean(v[:10])) for k2, v in acc.items()},
                    **{f"last10_{k2}": float(np.mean(v[-10:])) for k2, v in acc.items()}}
            log.write(json.dumps(summ) + "\n")
            log.flush()
            acc = {}
        if step % cfg.ckpt_every == 0 or end_of_phase or step == total:
            tr.save(ckpt, st)
        if t_end is not None and time.time() > t_end:
            tr.save(ckpt, st)
            break
    bar.close()
    log.close()
    return st


# ------------------------------------------------------------------------------------------------
def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def evaluate_grey(exported_variables, images: dict, qf: int, N: int = 64, depth: int = 20) -> dict:
    """Per grey image (uint8 H×W): ComCNN+JPEG+RecCNN through ``Codec`` (the registered
    ``comcnn-jpeg``, real ``.lic`` bytes) vs plain JPEG (Pillow, same QF, 4:4:4) of the full
    image. bpp = 8 · bytes / (H·W); ``lic`` counts the whole file, ``payload`` the JPEG only."""
    from ..coding import Codec
    from ..models.registry import ModelSpec
    from ..models.jiang2017 import jpeg_roundtrip

    hp = {"N": N, "depth": depth, "payload_quality": int(qf)}
    model = ComCNNJpeg(**hp)
    codec = Codec(model, ModelSpec("comcnn-jpeg", None, hp), exported_variables)
    rows = {}
    for name, img in images.items():
        H, W = img.shape
        enc = codec.encode(img)
        out = codec.decompress(enc.data)
        dec, nbytes = jpeg_roundtrip(img[:, :, None], qf)
        rows[name] = {"size": [H, W],
                      "comcnn_psnr": _psnr(out, img), "comcnn_bpp": 8 * len(enc.data) / (H * W),
                      "comcnn_payload_bpp": 8 * enc.payload_bytes / (H * W),
                      "jpeg_psnr": _psnr(dec[:, :, 0], img), "jpeg_bpp": 8 * nbytes / (H * W)}
    keys = list(next(iter(rows.values())).keys())[1:]
    rows["mean"] = {k: float(np.mean([r[k] for r in rows.values()])) for k in keys}
    return rows


def bicubic_jpeg_baseline(images: dict, qf: int) -> dict:
    """No CNN: Pillow bicubic ↓2 → JPEG (same QF, 4:4:4) → bicubic ↑2, per grey image (even sides)
    and the mean: what ComCNN + RecCNN start from (the ``init`` phase makes ComCNN ≈ bicubic ↓2)."""
    from ..models.jiang2017 import jpeg_roundtrip

    rows = {}
    for name, img in images.items():
        H, W = img.shape
        small = np.asarray(Image.fromarray(img).resize((W // 2, H // 2), Image.BICUBIC), np.uint8)
        dec, nbytes = jpeg_roundtrip(small[:, :, None], qf)
        up = np.asarray(Image.fromarray(dec[:, :, 0]).resize((W, H), Image.BICUBIC), np.uint8)
        rows[name] = {"bicubic_psnr": float(_psnr(up, img)), "bicubic_bpp": 8 * nbytes / (H * W)}
    rows["mean"] = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("bicubic_psnr", "bicubic_bpp")}
    return rows


def jpeg_at_bpp(img: np.ndarray, bpp: float) -> dict:
    """Plain JPEG (4:4:4) of a grey image at the largest QF whose file is ≤ ``bpp`` (QF 1 if none is):
    the equal-rate comparison."""
    from ..models.jiang2017 import jpeg_roundtrip

    H, W = img.shape
    best = None
    for qf in range(1, 101):
        dec, nbytes = jpeg_roundtrip(img[:, :, None], qf)
        if best is None or 8 * nbytes / (H * W) <= bpp:
            best = {"qf": qf, "psnr": float(_psnr(dec[:, :, 0], img)), "bpp": 8 * nbytes / (H * W)}
        else:
            break
    return best


def export(st_or_vars, trainer: Trainer | None = None) -> dict:
    """Exported ``{'params'}`` (frozen BN) of a training state or training variables."""
    v = trainer.variables(st_or_vars) if trainer is not None else st_or_vars
    return export_variables(jax.device_get(v))

