"""Does a long lic_jax training run end where CompressAI's does? (issue 14, item 3, statistical half)

    .venv/bin/python experiments/compressai_training_equivalence.py --steps 2000 --seeds 0,1 --out out/train_equiv

For each seed s and each framework, ``bmshj2018-hyperprior`` (quality 3: N=128, M=192, λ=0.0067,
MSE) is trained for ``--steps`` steps with CompressAI's ``examples/train.py`` recipe (Adam 1e-4,
global-norm clipping 1.0, aux Adam 1e-3 on the quantiles), batch ``--batch`` × ``--crop``² from
``shared/data/train``:

* both frameworks start seed s from the *same* weights (CompressAI's initialisation under
  ``torch.manual_seed(s)``, converted for lic_jax) and see the *same* batches (lic_jax's input
  pipeline with seed s);
* each draws its own quantisation noise (the exact, shared-noise comparison is
  ``tests/test_train_equivalence.py``); the seed-to-seed spread measures how much the final
  numbers move for reasons that are not the framework;
* lic_jax trains with its own ``make_optimizer`` / ``make_train_step`` (what ``train.py`` runs),
  CompressAI with the body of ``train_one_epoch``.

Every ``--eval-every`` steps the validation RD loss (eval mode, estimated rate) on
``shared/data/val`` is logged for both. At the end both models are evaluated on Kodak with
**real bitstreams**: lic_jax's ``Codec`` (``.lic`` bytes), CompressAI's ``compress`` /
``decompress`` (its strings), mean bpp and PSNR over the 24 images.

Writes ``OUT/results.json`` (curves, final numbers, the verdict), ``OUT/curves.csv`` and
``OUT/rd_loss_curves.png`` (overlaid validation RD-loss curves).

Resuming. A finished (seed, framework) unit is recorded in ``OUT/<framework>-s<seed>.done.json``
and skipped by a later run. Inside a unit, every ``--ckpt-every`` steps (and after the last step)
the unit writes ``OUT/<framework>-s<seed>.ckpt`` (temporary file + ``os.replace``: a kill never
leaves a half-written checkpoint); a unit that finds one continues from it, and the result is
**exactly** the one of an uninterrupted run (``tests/test_equivalence_resume.py``):

* lic_jax: the whole train state (params, optimizer state, step; flax msgpack bytes). The
  quantisation noise of step s is ``fold_in(key(1000 + seed), s)`` and the batch of step s a pure
  function of (seed, s) (``TrainBatches``), so the step is the only noise / data-order position
  there is (the key is stored and checked);
* CompressAI: the net's and both optimizers' ``state_dict``s, torch's CPU RNG state (its
  quantisation noise), numpy's and Python's global RNG states, the step (the data-order position);
* both: the validation curve logged up to the checkpoint's step and the training seconds so far
  (``train_s`` counts every session). Points logged after the last checkpoint are lost with the
  kill and logged again, once, when the steps are redone.

A checkpoint records the options that shape the unit (steps, batch, crop, eval interval, number of
validation images); resuming with different ones is refused. It is deleted once the unit's
``.done.json`` is written (``--keep-ckpt`` keeps it). ``--stop-after K`` (for tests) abandons every
unit right after its step K as if the process had been killed there, and the run exits with
status 3 without writing results.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pickle
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
SHARED = Path(os.environ.get("LIC_JAX_SHARED", REPO.parent / "shared"))
ARCH, QUALITY, LMBDA = "bmshj2018-hyperprior", 3, 0.0067


def _progress(total, desc):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, mininterval=5)


def _init_weights(seed, path):
    import torch
    from compressai_compat import import_compressai

    import_compressai()
    from compressai.zoo import bmshj2018_hyperprior

    torch.manual_seed(seed)
    net = bmshj2018_hyperprior(quality=QUALITY, pretrained=False)
    torch.save(net.state_dict(), path)
    return net


def _val_images():
    from conftest import load_rgb

    files = sorted((SHARED / "data" / "val").glob("*.png"))
    return np.stack([load_rgb(f) for f in files]).astype(np.float32) / 255.0


def _kodak():
    from conftest import load_rgb

    return [load_rgb(f) for f in sorted((SHARED / "data" / "kodak").glob("kodim*.png"))]


class _Stopped(Exception):
    """A unit abandoned by ``--stop-after`` (a simulated kill)."""


def _ckpt_path(out, fw, seed):
    return Path(out) / f"{fw}-s{seed}.ckpt"


def _atomic_write(path, write):
    """``write(f)`` into a temporary file beside ``path``, fsync, then ``os.replace`` it onto ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _unit_config(fw, seed, a, n_val):
    """What a checkpoint must agree on to be resumed (changing ``--ckpt-every`` is fine)."""
    return {"framework": fw, "seed": seed, "steps": a.steps, "batch": a.batch, "crop": a.crop,
            "eval_every": a.eval_every, "val_images": int(n_val)}


def _check_config(path, ck, cfg):
    if ck.get("config") != cfg:
        raise SystemExit(f"{path} was written with {ck.get('config')}, this run has {cfg}: "
                         "rerun with the same options, or delete the checkpoint to restart this unit")


def _expected_curve_steps(a):
    return [k for k in range(1, a.steps + 1) if k % a.eval_every == 0 or k == a.steps]


def _check_curve(curve, a, who):
    got = [p["step"] for p in curve]
    if got != _expected_curve_steps(a):
        raise RuntimeError(f"{who}: validation curve has steps {got}, expected {_expected_curve_steps(a)}")


def _sha256_arrays(items):
    """SHA-256 over (name, dtype, shape, bytes) of named arrays, in name order: equal ⇔ bit-identical."""
    import hashlib

    h = hashlib.sha256()
    for name, arr in sorted(items, key=lambda kv: kv[0]):
        arr = np.ascontiguousarray(arr)
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def train_lic(seed, a, init_path, val, ckpt):
    import jax
    import jax.numpy as jnp
    from flax import serialization
    from flax.traverse_util import flatten_dict

    from lic_jax.convert import from_compressai
    from lic_jax.losses import rate_distortion_loss
    from lic_jax.train import parallel, trainer
    from lic_jax.train.config import get_default_config
    from lic_jax.train.input_pipeline import FolderSource, TrainBatches

    model, spec, variables = from_compressai(init_path)
    c = get_default_config()
    c.model, c.quality, c.lmbda, c.optim.schedule = ARCH, QUALITY, LMBDA, "constant"
    mesh = parallel.make_mesh(jax.devices()[:1])
    tx, schedule = trainer.make_optimizer(c, a.steps)
    noise_key = jax.random.key(1000 + seed)
    key_data = np.asarray(jax.random.key_data(noise_key)).tolist()
    step_fn = trainer.make_train_step(model, c, LMBDA, tx, schedule, mesh, noise_key)
    p0 = jax.tree_util.tree_map(jnp.asarray, variables["params"])
    host = parallel.fetch({"step": jnp.zeros((), jnp.int32), "params": p0, "opt_state": tx.init(p0)})
    cfg = _unit_config("lic_jax", seed, a, len(val))
    curve, elapsed, start, resumes = [], 0.0, 0, []
    if ckpt.exists():
        with open(ckpt, "rb") as f:
            ck = pickle.load(f)
        _check_config(ckpt, ck, cfg)
        if ck["noise_key"] != key_data:
            raise SystemExit(f"{ckpt}: noise key {ck['noise_key']} differs from this run's {key_data}")
        host = serialization.from_bytes(host, ck["state"])  # structure-checked against a fresh state
        start, curve, elapsed, resumes = int(ck["step"]), list(ck["curve"]), float(ck["train_s"]), list(ck["resumes"])
        if int(np.asarray(host["step"])) != start:
            raise SystemExit(f"{ckpt}: state step {int(np.asarray(host['step']))} != recorded step {start}")
        resumes.append(start)
        print(f"lic_jax s{seed}: resuming at step {start} from {ckpt}", flush=True)
    state = parallel.replicate(host, mesh)
    batches = TrainBatches(FolderSource(str(SHARED / "data" / "train"), cache=True), a.batch, a.crop, seed=seed,
                           prefetch=2)

    @jax.jit
    def val_loss(params, x):
        out = model.apply({"params": params}, x)
        return rate_distortion_loss(out, x, LMBDA)["loss"]

    def save(step, train_s):
        ck = {"format": 1, "framework": "lic_jax", "config": cfg, "step": step, "noise_key": key_data,
              "data_position": {"seed": seed, "next_step": step},  # TrainBatches: batch(s) is a function of (seed, s)
              "state": serialization.to_bytes(parallel.fetch(state)), "curve": curve, "train_s": train_s,
              "resumes": resumes}
        _atomic_write(ckpt, lambda f: pickle.dump(ck, f, protocol=pickle.HIGHEST_PROTOCOL))

    t0 = time.time()
    bar = _progress(a.steps, f"lic_jax s{seed}")
    bar.update(start)
    for s, xb in batches.iterate(start, a.steps):
        state, m = step_fn(state, parallel.global_batch(xb, mesh))
        bar.update(1)
        if (s + 1) % a.eval_every == 0 or s + 1 == a.steps:
            params = parallel.fetch(state["params"])
            v = float(np.mean([float(val_loss(params, jnp.asarray(val[i:i + 8]))) for i in range(0, len(val), 8)]))
            curve.append({"step": s + 1, "train_loss": float(m["loss"]), "val_loss": v})
            bar.set_postfix(val=f"{v:.3f}")
        if (s + 1) % a.ckpt_every == 0 or s + 1 == a.steps:
            save(s + 1, elapsed + time.time() - t0)
        if s + 1 == a.stop_after:
            bar.close()
            raise _Stopped(f"lic_jax s{seed} after step {s + 1}")
    bar.close()
    _check_curve(curve, a, f"lic_jax s{seed}")
    params = parallel.fetch(state["params"])
    sha = _sha256_arrays(("/".join(k), v) for k, v in flatten_dict(params).items())
    rec = {"curve": curve, "train_s": elapsed + time.time() - t0, "resumed_at": resumes, "params_sha256": sha}
    return rec, (model, spec, {"params": params})


def train_cai(seed, a, net, val, ckpt):
    import torch
    from compressai.losses import RateDistortionLoss
    from compressai_compat import train_step

    from lic_jax.train.input_pipeline import FolderSource, TrainBatches

    torch.manual_seed(10_000 + seed)  # its own noise stream
    main = [p for n, p in sorted(net.named_parameters()) if not n.endswith(".quantiles")]
    aux = [p for n, p in sorted(net.named_parameters()) if n.endswith(".quantiles")]
    opt, aux_opt = torch.optim.Adam(main, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
    crit = RateDistortionLoss(lmbda=LMBDA)
    cfg = _unit_config("compressai", seed, a, len(val))
    curve, elapsed, start, resumes = [], 0.0, 0, []
    if ckpt.exists():
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own file: RNG states are not tensors
        _check_config(ckpt, ck, cfg)
        net.load_state_dict(ck["net"])  # in place: the optimizers keep their parameter objects
        opt.load_state_dict(ck["opt"])
        aux_opt.load_state_dict(ck["aux_opt"])
        torch.set_rng_state(ck["torch_rng"])
        np.random.set_state(ck["numpy_rng"])
        random.setstate(ck["python_rng"])
        start, curve, elapsed, resumes = int(ck["step"]), list(ck["curve"]), float(ck["train_s"]), list(ck["resumes"])
        resumes.append(start)
        print(f"compressai s{seed}: resuming at step {start} from {ckpt}", flush=True)

    def save(step, train_s):
        ck = {"format": 1, "framework": "compressai", "config": cfg, "step": step,
              "data_position": {"seed": seed, "next_step": step},
              "net": net.state_dict(), "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(),
              "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
              "curve": curve, "train_s": train_s, "resumes": resumes}
        _atomic_write(ckpt, lambda f: torch.save(ck, f))

    batches = TrainBatches(FolderSource(str(SHARED / "data" / "train"), cache=True), a.batch, a.crop, seed=seed,
                           prefetch=2)
    vt = torch.from_numpy(np.ascontiguousarray(val.transpose(0, 3, 1, 2)))
    t0 = time.time()
    bar = _progress(a.steps, f"compressai s{seed}")
    bar.update(start)
    for s, xb in batches.iterate(start, a.steps):
        net.train()
        x = torch.from_numpy(np.ascontiguousarray(xb.transpose(0, 3, 1, 2))).float() / 255.0
        loss = train_step(net, opt, aux_opt, crit, x)
        bar.update(1)
        if (s + 1) % a.eval_every == 0 or s + 1 == a.steps:
            net.eval()
            with torch.no_grad():
                v = float(np.mean([float(crit(net(vt[i:i + 8]), vt[i:i + 8])["loss"]) for i in range(0, len(vt), 8)]))
            curve.append({"step": s + 1, "train_loss": loss, "val_loss": v})
            bar.set_postfix(val=f"{v:.3f}")
        if (s + 1) % a.ckpt_every == 0 or s + 1 == a.steps:
            save(s + 1, elapsed + time.time() - t0)
        if s + 1 == a.stop_after:
            bar.close()
            raise _Stopped(f"compressai s{seed} after step {s + 1}")
    bar.close()
    net.eval()
    _check_curve(curve, a, f"compressai s{seed}")
    sha = _sha256_arrays((k, v.detach().cpu().numpy()) for k, v in net.state_dict().items())
    return {"curve": curve, "train_s": elapsed + time.time() - t0, "resumed_at": resumes, "params_sha256": sha}


def kodak_lic(model, spec, variables, images):
    from lic_jax.coding import Codec

    codec = Codec(model, spec, variables)
    bpp, psnr = [], []
    for img in images:
        data = codec.compress(img)
        rec = codec.decompress(data)
        bpp.append(8 * len(data) / (img.shape[0] * img.shape[1]))
        psnr.append(_psnr(rec, img))
    return {"bpp": statistics.mean(bpp), "psnr": statistics.mean(psnr)}


def kodak_cai(net, images):
    import torch

    net.update(force=True)
    bpp, psnr = [], []
    with torch.no_grad():
        for img in images:
            h, w = img.shape[:2]
            ph, pw = -(-h // 64) * 64, -(-w // 64) * 64
            x = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
            xp = torch.nn.functional.pad(x, ((pw - w) // 2, pw - w - (pw - w) // 2, (ph - h) // 2, ph - h - (ph - h) // 2))
            enc = net.compress(xp)
            out = net.decompress(enc["strings"], enc["shape"])["x_hat"]
            out = out[:, :, (ph - h) // 2:(ph - h) // 2 + h, (pw - w) // 2:(pw - w) // 2 + w]
            rec = np.clip(np.round(out[0].numpy().transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
            bpp.append(8 * sum(len(s[0]) for s in enc["strings"]) / (h * w))
            psnr.append(_psnr(rec, img))
    return {"bpp": statistics.mean(bpp), "psnr": statistics.mean(psnr)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--kodak-limit", type=int, default=24, help="Kodak images for the final evaluation")
    ap.add_argument("--val-limit", type=int, default=0, help="validation images (0: all of shared/data/val)")
    ap.add_argument("--ckpt-every", type=int, default=100, help="checkpoint every unit every this many steps")
    ap.add_argument("--keep-ckpt", action="store_true", help="keep a unit's last checkpoint once it is done")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="(tests) abandon every unit right after its step K, as if killed; exit 3 without results")
    ap.add_argument("--out", default="out/train_equiv")
    a = ap.parse_args()
    if a.ckpt_every < 1:
        ap.error("--ckpt-every must be >= 1")
    import torch

    # LIC_EQUIV_TORCH_THREADS: fewer intra-op threads when the machine is shared (torch's spinning
    # OpenMP threads slow down ~5x when other processes hold the cores); float summation order only
    torch.set_num_threads(int(os.environ.get("LIC_EQUIV_TORCH_THREADS", 0)) or max(1, os.cpu_count() or 1))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    val, kodak = _val_images(), _kodak()[: a.kodak_limit]
    if a.val_limit > 0:
        val = val[: a.val_limit]
    runs, stopped = {}, []
    for seed in [int(v) for v in a.seeds.split(",")]:
        init = out / f"init-s{seed}.pth"
        for fw in ("lic_jax", "compressai"):
            done = out / f"{fw}-s{seed}.done.json"
            if done.exists():
                runs[(fw, seed)] = json.loads(done.read_text())
                continue
            ckpt = _ckpt_path(out, fw, seed)
            net = _init_weights(seed, init)
            try:
                if fw == "lic_jax":
                    rec, (model, spec, variables) = train_lic(seed, a, init, val, ckpt)
                    rec["kodak"] = kodak_lic(model, spec, variables, kodak)
                else:
                    rec = train_cai(seed, a, net, val, ckpt)
                    rec["kodak"] = kodak_cai(net, kodak)
            except _Stopped as e:
                print(f"--stop-after: abandoned {e}", flush=True)
                stopped.append(str(e))
                continue
            rec.update(framework=fw, seed=seed, steps=a.steps)
            _atomic_write(done, lambda f: f.write(json.dumps(rec, indent=1).encode()))
            if not a.keep_ckpt:
                ckpt.unlink(missing_ok=True)
            runs[(fw, seed)] = rec
            print(f"{fw} seed {seed}: val RD loss {rec['curve'][-1]['val_loss']:.4f}, Kodak {rec['kodak']['bpp']:.4f} bpp "
                  f"{rec['kodak']['psnr']:.3f} dB, {rec['train_s']:.0f} s", flush=True)

    if stopped:
        print(f"stopped units ({', '.join(stopped)}): no results written", flush=True)
        sys.exit(3)
    seeds = sorted({s for _, s in runs})
    fin = {fw: {k: [runs[(fw, s)]["kodak"][k] for s in seeds] for k in ("bpp", "psnr")} for fw in ("lic_jax", "compressai")}
    summary = {"steps": a.steps, "batch": a.batch, "crop": a.crop, "seeds": seeds, "final": fin}
    for k in ("bpp", "psnr"):
        gap = statistics.mean(fin["lic_jax"][k]) - statistics.mean(fin["compressai"][k])
        # seed spread: the largest within-framework range across seeds
        spread = max(max(v) - min(v) for v in (fin["lic_jax"][k], fin["compressai"][k])) if len(seeds) > 1 else float("nan")
        summary[f"gap_{k}"] = gap
        summary[f"seed_spread_{k}"] = spread
        summary[f"verdict_{k}"] = ("no verdict: needs at least 2 seeds" if len(seeds) < 2 else
                                   "inside the seed spread" if abs(gap) <= spread else "outside the seed spread")
        print(f"lic_jax − CompressAI final {k}: {gap:+.4f} (seed spread {spread:.4f}): {summary[f'verdict_{k}']}")
    summary["runs"] = {f"{fw}-s{s}": r for (fw, s), r in runs.items()}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    with open(out / "curves.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["framework", "seed", "step", "train_loss", "val_loss"])
        for (fw, s), r in sorted(runs.items()):
            for p in r["curve"]:
                wr.writerow([fw, s, p["step"], p["train_loss"], p["val_loss"]])
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (fw, s), r in sorted(runs.items()):
            st = [p["step"] for p in r["curve"]]
            ax.plot(st, [p["val_loss"] for p in r["curve"]], ("-" if fw == "lic_jax" else "--"),
                    color=f"C{s}", label=f"{fw} seed {s}")
        ax.set_xlabel("step")
        ax.set_ylabel(f"validation RD loss (bpp + λ·255²·MSE, λ={LMBDA})")
        ax.set_yscale("log")
        ax.set_title(f"{ARCH} q{QUALITY}: lic_jax vs CompressAI, same init and batches")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "rd_loss_curves.png", dpi=120)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
