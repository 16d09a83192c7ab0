"""Training, evaluation and export of ARCNN / ARCNN+ASPP (lic_jax.models.arcnn; docs/RESTORATION.md).

* Loss: MSE between the restored and the clean patch (ARCNN ICCV 2015 eq. 4), pixels in [0, 1].
* Optimiser: Adam; the reconstruction (last) layer at ``last_lr_mult`` (0.1) × the learning rate,
  as in the paper's SGD recipe (5e-4 / 5e-5) and the yjn870/ARCNN-pytorch port — an
  ``optax.multi_transform`` over the parameter tree.
* Data: :class:`lic_jax.restoration.data.PatchPipeline` (real JPEG in worker threads).
* State = {params, opt_state, step, rng}, checkpointed with flax msgpack every ``ckpt_every``
  steps (temporary file + rename); a run in the same directory resumes from it exactly (the data
  stream is a pure function of (seed, step)).
* Log: one JSON line per ``log_every`` steps in ``log.jsonl`` (loss, patch PSNR, s/step, input
  wait); tqdm progress bar with rate and ETA on stderr.
* Export: ``flax.serialization.to_bytes(params)`` to ``<name>.msgpack`` plus ``<name>.json`` (the
  recipe, step count, parameter count and the evaluation numbers).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

__all__ = ["Recipe", "build_model", "init_params", "make_optimizer", "make_train_step", "TrainRun",
           "restore_plane", "evaluate", "export", "load_exported", "asset_name"]


@dataclasses.dataclass
class Recipe:
    model: str = "arcnn"            # 'arcnn' | 'arcnn-aspp'
    activation: str = "relu"
    residual: bool = True
    init: str = "he"
    colour: str = "y"               # 'y' (1 channel) | 'rgb' (3, joint)
    rates: tuple = (1, 6, 12, 18)   # arcnn-aspp only
    width: int = 32
    global_pool: bool = False
    qf: int = 10
    subsampling: str = "4:4:4"
    batch: int = 32
    patch: int = 40
    crop: int = 64
    lr: float = 5e-4
    last_lr_mult: float = 0.1
    seed: int = 0
    data: str = ""

    @property
    def channels(self) -> int:
        return 1 if self.colour == "y" else 3

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["rates"] = list(self.rates)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Recipe":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if "rates" in d:
            d["rates"] = tuple(d["rates"])
        return cls(**d)


def build_model(r: Recipe):
    from ..models.arcnn import ARCNN, ARCNN_ASPP

    if r.model == "arcnn":
        return ARCNN(channels=r.channels, activation=r.activation, residual=r.residual, weight_init=r.init)
    if r.model == "arcnn-aspp":
        return ARCNN_ASPP(channels=r.channels, activation=r.activation, residual=r.residual, weight_init=r.init,
                          rates=tuple(r.rates), width=r.width, global_pool=r.global_pool)
    raise ValueError(f"unknown restoration model {r.model!r}; expected arcnn or arcnn-aspp")


def init_params(r: Recipe, key):
    import jax.numpy as jnp

    return build_model(r).init(key, jnp.zeros((1, r.patch, r.patch, r.channels), jnp.float32))["params"]


def make_optimizer(r: Recipe, params):
    import flax
    import optax

    from ..models.arcnn import LAST_LAYER

    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
    labels = flax.traverse_util.unflatten_dict({k: ("last" if k[0] == LAST_LAYER else "body") for k in flat})
    return optax.multi_transform({"body": optax.adam(r.lr), "last": optax.adam(r.lr * r.last_lr_mult)}, labels)


def make_train_step(r: Recipe, tx):
    import jax
    import jax.numpy as jnp
    import optax

    model = build_model(r)

    def loss_fn(params, x, y):
        return jnp.mean((model.apply({"params": params}, x) - y) ** 2)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def _atomic_write(path: str, data: bytes):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class TrainRun:
    """A resumable training run in ``workdir`` (recipe.json, ckpt.msgpack, log.jsonl)."""

    def __init__(self, recipe: Recipe, workdir: str, images=None, workers: int = 2, prefetch: int = 4,
                 init_from: str | None = None):
        import jax

        from .data import load_folder

        self.r, self.workdir = recipe, workdir
        os.makedirs(workdir, exist_ok=True)
        rp = os.path.join(workdir, "recipe.json")
        if os.path.exists(rp):
            with open(rp) as f:
                saved = json.load(f)
            if saved != recipe.to_json():
                raise ValueError(f"{workdir} holds a run with a different recipe ({rp}); use another directory")
        else:
            with open(rp, "w") as f:
                json.dump(recipe.to_json(), f, indent=1)
        key = jax.random.PRNGKey(recipe.seed)
        params = init_params(recipe, jax.random.fold_in(key, 0))
        self.tx = make_optimizer(recipe, params)
        self.state = {"params": params, "opt_state": self.tx.init(params), "step": 0,
                      "rng": np.asarray(jax.random.key_data(jax.random.fold_in(key, 1)))}
        self.ckpt = os.path.join(workdir, "ckpt.msgpack")
        ip = os.path.join(workdir, "init_from.json")
        if init_from and not os.path.exists(self.ckpt):
            # fine-tuning (ARCNN's easy-to-hard transfer): start from exported weights, fresh Adam state
            r0, p0, m0 = load_exported(init_from)
            arch = ("model", "activation", "residual", "colour", "rates", "width", "global_pool")
            if any(getattr(r0, k) != getattr(recipe, k) for k in arch):
                raise ValueError(f"--init-from {init_from}: a different architecture ({r0.model}, {r0.activation})")
            self.state["params"] = p0
            self.state["opt_state"] = self.tx.init(p0)
            with open(ip, "w") as f:
                json.dump({"init_from": os.path.basename(init_from), "init_from_qf": r0.qf,
                           "init_from_steps": m0.get("steps")}, f, indent=1)
        self.init_from = None
        if os.path.exists(ip):
            with open(ip) as f:
                self.init_from = json.load(f)
        elif init_from:
            raise ValueError(f"{workdir} holds a run that was not started from {init_from}; use another directory")
        if os.path.exists(self.ckpt):
            from flax import serialization

            with open(self.ckpt, "rb") as f:
                self.state = serialization.from_bytes(self.state, f.read())
            self.state["step"] = int(self.state["step"])
        self.step_fn = make_train_step(recipe, self.tx)
        self.images = images if images is not None else load_folder(recipe.data, recipe.colour)
        self.workers, self.prefetch = workers, prefetch

    @property
    def step(self) -> int:
        return int(self.state["step"])

    def save(self):
        from flax import serialization

        _atomic_write(self.ckpt, serialization.to_bytes(self.state))

    def run(self, until: int, log_every: int = 20, ckpt_every: int = 100, quiet: bool = False,
            max_seconds: float | None = None) -> dict:
        """Train to step ``until`` (or for ``max_seconds``); returns the last log record."""
        from tqdm import tqdm

        from .data import PatchPipeline

        r = self.r
        start = self.step
        if start >= until:
            return {"step": start}
        t0 = time.time()
        rec = {"step": start}
        pipe = PatchPipeline(self.images, r.qf, r.batch, r.patch, r.crop, r.seed, start=start, workers=self.workers,
                             prefetch=self.prefetch, subsampling=r.subsampling)
        bar = tqdm(total=until, initial=start, desc=f"{r.model} qf{r.qf}", unit="step", file=sys.stderr,
                   disable=quiet, dynamic_ncols=True)
        losses, jl, win_t, win_wait = [], [], time.perf_counter(), 0.0
        try:
            p, o = self.state["params"], self.state["opt_state"]
            while self.step < until:
                w0 = pipe.wait_s
                i, x, y = pipe.next()
                assert i == self.step, (i, self.step)
                win_wait += pipe.wait_s - w0
                jl.append(float(np.mean((x - y) ** 2)))
                p, o, loss = self.step_fn(p, o, x, y)
                self.state.update(params=p, opt_state=o, step=self.step + 1)
                losses.append(loss)
                bar.update(1)
                if self.step % log_every == 0 or self.step == until:
                    ls = [float(v) for v in losses]
                    now = time.perf_counter()
                    m = float(np.mean(ls))
                    mj = float(np.mean(jl))
                    rec = {"step": self.step, "loss": m, "psnr_patch": 10 * math.log10(1.0 / m) if m > 0 else None,
                           "psnr_patch_jpeg": 10 * math.log10(1.0 / mj) if mj > 0 else None,
                           "s_per_step": (now - win_t) / len(ls), "input_wait_s_per_step": win_wait / len(ls),
                           "time": time.time()}
                    with open(os.path.join(self.workdir, "log.jsonl"), "a") as f:
                        f.write(json.dumps(rec) + "\n")
                    bar.set_postfix(loss=f"{m:.2e}", wait=f"{rec['input_wait_s_per_step']:.3f}s")
                    losses, jl, win_t, win_wait = [], [], now, 0.0
                if self.step % ckpt_every == 0:
                    self.save()
                if max_seconds is not None and time.time() - t0 > max_seconds:
                    break
            self.save()
        finally:
            bar.close()
            pipe.close()
        rec["input_wait_total_s"] = pipe.wait_s
        rec["wall_s"] = time.time() - t0
        return rec


# ------------------------------------------------------------------------------------------
_APPLY_CACHE: dict = {}


def restore_plane(r: Recipe, params, img: np.ndarray) -> np.ndarray:
    """Run the network on one decoded image (uint8 or float, (H, W) or (H, W, c), values 0..255);
    returns float64 in 0..255, unclipped and unrounded."""
    import jax
    import jax.numpy as jnp

    a = np.asarray(img, np.float32) / 255.0
    squeeze = a.ndim == 2
    if squeeze:
        a = a[..., None]
    key = json.dumps(r.to_json(), sort_keys=True)
    fn = _APPLY_CACHE.get(key)
    if fn is None:
        model = build_model(r)
        fn = _APPLY_CACHE[key] = jax.jit(lambda p, x: model.apply({"params": p}, x))
    out = np.asarray(fn(params, jnp.asarray(a[None])))[0].astype(np.float64) * 255.0
    return out[..., 0] if squeeze else out


def _ssim(x, y) -> float:
    import jax.numpy as jnp

    from ..metrics import ssim

    return float(ssim(jnp.asarray(np.asarray(x, np.float32)[None, ..., None]),
                      jnp.asarray(np.asarray(y, np.float32)[None, ..., None]), data_range=255.0))


def evaluate(r: Recipe, params, folder: str, qf: int | None = None, limit: int | None = None) -> dict:
    """JPEG vs restored on the Y′ of every image of ``folder``: PSNR, SSIM, PSNR-B (dataset values
    are means of per-image values). Grey models only."""
    from ..evaluation.image_metrics import psnr
    from ..metrics_blocking import psnr_b
    from .data import load_folder
    from .jpeg import jpeg_roundtrip

    if r.colour != "y":
        raise ValueError("evaluate() rates grey (Y') models")
    qf = r.qf if qf is None else qf
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".png", ".bmp", ".tif", ".pgm", ".ppm")))
    names = names[:limit] if limit else names
    imgs = load_folder(folder, "y", min_side=8, limit=limit)
    rows = []
    for n, x in zip(names, imgs):
        j, nbytes = jpeg_roundtrip(x, qf)
        rest = np.clip(np.round(restore_plane(r, params, j)), 0, 255)
        row = {"image": n, "bpp": 8.0 * nbytes / x.size,
               "psnr_jpeg": psnr(x, j), "psnr_restored": psnr(x, rest),
               "ssim_jpeg": _ssim(x, j), "ssim_restored": _ssim(x, rest),
               "psnrb_jpeg": psnr_b(x, j), "psnrb_restored": psnr_b(x, rest)}
        rows.append(row)
    mean = {k: float(np.mean([row[k] for row in rows])) for k in rows[0] if k != "image"}
    mean["psnr_gain"] = mean["psnr_restored"] - mean["psnr_jpeg"]
    return {"folder": folder, "qf": qf, "images": rows, "mean": mean}


def asset_name(r: Recipe) -> str:
    return f"{r.model}-{r.colour}-qf{r.qf}"


def export(r: Recipe, params, out_dir: str, extra: dict | None = None) -> str:
    """Write ``<out_dir>/<model>-<colour>-qf<QF>.msgpack`` and its ``.json`` recipe; returns the stem."""
    from flax import serialization

    from ..models.arcnn import arcnn_param_count

    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, asset_name(r))
    _atomic_write(stem + ".msgpack", serialization.to_bytes(params))
    meta = {"recipe": r.to_json(), "params": arcnn_param_count(params), **(extra or {})}
    _atomic_write(stem + ".json", (json.dumps(meta, indent=1) + "\n").encode())
    return stem


def load_exported(stem: str):
    """(Recipe, params) of an exported model (path without extension)."""
    import jax

    from flax import serialization

    with open(stem + ".json") as f:
        meta = json.load(f)
    r = Recipe.from_json(meta["recipe"])
    template = init_params(r, jax.random.PRNGKey(0))
    with open(stem + ".msgpack", "rb") as f:
        params = serialization.from_bytes(template, f.read())
    return r, params, meta
