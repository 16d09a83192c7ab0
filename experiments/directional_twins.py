"""MSE and MS-SSIM twins of four architectures for the directional-distortion study (issue 17, seed 000).

Seed 000 (Abbas & Kwon) compares bls2017, bmshj2018-hyperprior, mbt2018 and lee2019 trained for
MSE and for MS-SSIM at low rates (< 0.5 bpp). This script trains those twins with ``train.py`` at
three rates each (CompressAI qualities 1–3: λ_MSE = 0.0018, 0.0035, 0.0067; λ_MS-SSIM = 2.40,
4.58, 8.73), CPU-sized, resumably:

* **MSE twin**: from the first bundled default model's (bmshj2018-hyperprior q4) transforms where the architecture shares them
  (bmshj2018-hyperprior: everything; mbt2018 and lee2019 at N=128, M=192: g_a, g_s, h_a and — for
  mbt2018 — the z density, matched by module name and shape); bls2017 (N=64) from the bundled
  variable-rate ``mae-bls2017`` with the quality's λ folded into its convolutions
  (``lic_jax.models.mae.fixed_rate``); trained ``MSE_STEPS[arch]`` steps at the quality's λ.
* **MS-SSIM twin**: fine-tuned from the MSE twin of the same quality for ``MSSSIM_STEPS`` steps
  (CompressAI's practice for its MS-SSIM zoo models), λ·(1 − MS-SSIM).

Both twins of an architecture see the same data (shared/data/photos, downscaled by a random factor
in [0.6, 0.8] as the photos' README advises, random 176² crops — MS-SSIM's five scales need > 160
px — batch 8) and the same optimiser (Adam 1e-4, constant then cosine to 0.1× over the last half).
Kodak and the stripe images are never seen.

    python experiments/directional_twins.py plan            # the runs, their budget and state
    python experiments/directional_twins.py train [--only bmshj2018-hyperprior]   # resumable
    python experiments/directional_twins.py status          # steps done per run, exported artifacts

Runs live in ``$LIC_RUNS/twins`` (default ~/lic_runs/twins): one train.py workdir per run
(``<arch>-q<q>-<metric>``) with its checkpoints, metrics.jsonl and the exported ``artifact``; a
stopped ``train`` resumes every unfinished run exactly where it stopped. After each run the study's
record of it (``directional_distortion.py --record``: every stripe image through real files, ROI
crops) goes to ``$LIC_RUNS/twins/records``; committed into benchmarks/results/directional/runs, it
keeps the run for the study when the machine and its ~/lic_runs go, and ``train`` skips it. Run it from a frozen code
snapshot (``git clone``), niced, as the long run does::

    git clone -q . ~/lic_runs/code-twins && cd ~/lic_runs/code-twins && \\
      nohup nice -n 19 /work/main/.venv/bin/python experiments/directional_twins.py train \\
      >> ~/lic_runs/twins/train.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ARCHS = ("bmshj2018-hyperprior", "mbt2018", "lee2019", "bls2017")  # training order
QUALITIES = (1, 2, 3)
HPARAMS = {  # CPU-sized: N=128, M=192 (CompressAI's small qualities for the first two)
    "bmshj2018-hyperprior": {},
    "mbt2018": {"N": 128, "M": 192},
    "lee2019": {"N": 128, "M": 192},
    "bls2017": {"N": 64},  # the width of the bundled mae-bls2017 it is baked from
}
GRAFT = {"bmshj2018-hyperprior", "mbt2018", "lee2019"}  # share module names/shapes with the first bundled default
# bls2017 starts from the bundled variable-rate mae-bls2017 with the quality's λ folded into its weights
# (lic_jax.models.mae.fixed_rate): from the initialiser, 1,000 steps left it at 2.3 bpp on Barbara at q1
BAKE = {"bls2017": "mae-bls2017"}
MSE_STEPS = {"bmshj2018-hyperprior": 300, "mbt2018": 300, "lee2019": 300, "bls2017": 300}
MSSSIM_STEPS = 200
CROP, BATCH, LR = 176, 8, 1e-4


def runs_dir() -> str:
    return os.path.join(os.path.expanduser(os.environ.get("LIC_RUNS", "~/lic_runs")), "twins")


def plan():
    """Every run in training order: (name, arch, quality, metric, steps, init)."""
    out = []
    for arch in ARCHS:
        for q in QUALITIES:
            mse = f"{arch}-q{q}-mse"
            out.append({"name": mse, "arch": arch, "quality": q, "metric": "mse", "steps": MSE_STEPS[arch],
                        "init": f"graft:{arch}" if arch in GRAFT else f"bake:{BAKE[arch]}" if arch in BAKE else ""})
            out.append({"name": f"{arch}-q{q}-ms-ssim", "arch": arch, "quality": q, "metric": "ms-ssim",
                        "steps": MSSSIM_STEPS, "init": os.path.join(runs_dir(), mse, "artifact")})
    return out


def graft_init(arch: str, quality: int, out: str) -> str:
    """A lic_jax model directory: ``arch`` at ``quality`` (HPARAMS) initialised with seed 0, every
    module whose name and parameter shapes equal the first bundled default's replaced by its weights."""
    if os.path.isdir(out):
        return out
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lic_jax.artifact import load_artifact, save_artifact
    from lic_jax.default_model import first_default_model_path
    from lic_jax.models import get_model

    src = load_artifact(first_default_model_path())
    model, spec = get_model(arch, quality, **HPARAMS[arch])
    params = dict(jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3), jnp.float32))["params"]))
    sp = src.variables["params"]
    shapes = lambda t: jax.tree_util.tree_map(np.shape, t)  # noqa: E731
    grafted = sorted(k for k in params if k in sp and shapes(params[k]) == shapes(sp[k]))
    for k in grafted:
        params[k] = jax.tree_util.tree_map(np.asarray, sp[k])
    save_artifact(out, spec, {"params": params},
                  metadata={"init": f"{', '.join(grafted)} from the first bundled default ({src.fingerprint[:12]}); "
                                    f"the rest seed 0"})
    print(f"[twins] graft init {out}: {len(grafted)} modules from the first bundled default", flush=True)
    return out


def bake_init(arch: str, quality: int, source: str, out: str) -> str:
    """A lic_jax model directory: the bundled variable-rate ``source`` model at the quality's MSE λ, folded
    into the fixed-rate ``arch`` (``lic_jax.models.mae.fixed_rate``: the same function up to float rounding)."""
    if os.path.isdir(out):
        return out
    from lic_jax.artifact import load_artifact, save_artifact
    from lic_jax.models import get_model
    from lic_jax.models.mae import fixed_rate
    from lic_jax.models.registry import LAMBDAS

    src = load_artifact(os.path.join(REPO, "lic_jax", "assets", "models", source))
    lam = LAMBDAS["mse"][quality]
    name, hp, variables = fixed_rate(src.model, src.variables, lam)
    if name != arch or any(hp.get(k) != v for k, v in HPARAMS[arch].items()):
        raise SystemExit(f"{source} folds into {name} {hp}, not {arch} {HPARAMS[arch]}")
    _, spec = get_model(arch, quality, **HPARAMS[arch])
    save_artifact(out, spec, variables, metadata={"init": f"{source} ({src.fingerprint[:12]}) at λ {lam}, "
                                                          "modulation folded into the convolutions"})
    print(f"[twins] baked init {out}: {source} at λ {lam}", flush=True)
    return out


CONFIG_TEMPLATE = '''# generated by experiments/directional_twins.py — the config of run {name}
import sys
sys.path.insert(0, {repo!r})
from configs import model as _model
from lic_jax.train.config import set_recipe


def get_config():
    c = _model.get_config({arg!r})
    for k, v in {hparams!r}.items():
        c.model_hparams[k] = v
    c.init_from = {init!r}
    c.data.train = {train!r}
    c.data.val = {val!r}
    c.data.scale = "0.6,0.8"
    c.data.val_limit = 16
    set_recipe(c, steps={steps}, lr={lr}, batch={batch}, crop={crop}, val_crop=256,
               schedule="constant_then_cosine", decay_start=0.5, final_lr_factor=0.1, log_every=25,
               eval_every=max(100, {steps} // 4), checkpoint_every=50, cache=False)
    c.export.which = "last"
    return c
'''


def write_config(run: dict, init: str) -> str:
    from lic_jax.utils.paths import shared_data

    wd = os.path.join(runs_dir(), run["name"])
    os.makedirs(wd, exist_ok=True)
    path = os.path.join(wd, "config.py")
    text = CONFIG_TEMPLATE.format(name=run["name"], repo=REPO, arg=f"{run['arch']},{run['quality']},{run['metric']}",
                                  hparams=HPARAMS[run["arch"]], init=init, train=shared_data("photos"),
                                  val=shared_data("val"), steps=run["steps"], lr=LR, batch=BATCH, crop=CROP)
    if not os.path.exists(path):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return path


def steps_done(wd: str) -> int:
    try:
        with open(os.path.join(wd, "metrics.jsonl")) as f:
            return max((json.loads(line).get("step", 0) for line in f if line.strip()), default=0)
    except OSError:
        return 0


def committed_records() -> set[str]:
    """Runs whose study record is committed (benchmarks/results/directional/runs): their weights are
    no longer needed for the study."""
    d = os.path.join(REPO, "benchmarks", "results", "directional", "runs")
    return {f[:-5] for f in os.listdir(d) if f.endswith(".json")} if os.path.isdir(d) else set()


def record(run: dict):
    """The study's record of an exported run (every stripe image through real files, its ROI crops),
    in ``runs_dir()/records``: copy it into benchmarks/results/directional/runs and commit it, so that
    the study keeps the run when the machine (and ~/lic_runs) goes."""
    wd = os.path.join(runs_dir(), run["name"])
    records = os.path.join(runs_dir(), "records")
    if os.path.isfile(os.path.join(records, run["name"] + ".json")):
        return
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    subprocess.run([sys.executable, os.path.join(REPO, "experiments", "directional_distortion.py"),
                    f"--record={run['name']}={os.path.join(wd, 'artifact')}", f"--records={records}"],
                   check=True, env=env)


def train(only: str | None):
    todo = [r for r in plan() if only in (None, r["arch"])]
    kept = committed_records()
    t0 = time.time()
    for i, run in enumerate(todo):
        wd = os.path.join(runs_dir(), run["name"])
        if os.path.isfile(os.path.join(wd, "artifact", "config.json")):
            record(run)
            continue
        twin = run["name"].replace("-mse", "-ms-ssim")
        if run["name"] in kept and (run["metric"] == "ms-ssim" or twin in kept):
            print(f"[twins] {run['name']}: its study record is committed, not retrained", flush=True)
            continue
        init = run["init"]
        if init.startswith("graft:"):
            init = graft_init(run["arch"], run["quality"], os.path.join(runs_dir(), "init", f"{run['arch']}-q{run['quality']}"))
        elif init.startswith("bake:"):
            init = bake_init(run["arch"], run["quality"], init[5:],
                             os.path.join(runs_dir(), "init", f"{run['arch']}-q{run['quality']}"))
        elif init and not os.path.isdir(init):
            raise SystemExit(f"{run['name']}: its MSE twin {init} is not exported")
        cfg = write_config(run, init)
        el = time.time() - t0
        print(f"[twins] run {i + 1}/{len(todo)} {run['name']}: {run['steps']} steps from "
              f"{init or 'the initialiser'} (elapsed {el / 3600:.2f} h)", flush=True)
        env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
        subprocess.run([sys.executable, os.path.join(REPO, "train.py"), f"--config={cfg}", f"--workdir={wd}"],
                       check=True, env=env)
        record(run)


def status():
    rows = []
    for run in plan():
        wd = os.path.join(runs_dir(), run["name"])
        done = os.path.isfile(os.path.join(wd, "artifact", "config.json"))
        rows.append((run["name"], steps_done(wd), run["steps"], "exported" if done else ""))
        print(f"{run['name']:34s} {rows[-1][1]:5d}/{run['steps']:<5d} {rows[-1][3]}")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["plan", "train", "status"])
    ap.add_argument("--only", choices=ARCHS, default=None, help="train one architecture's twins only")
    a = ap.parse_args(argv)
    if a.cmd == "plan":
        for r in plan():
            print(f"{r['name']:34s} {r['steps']:5d} steps  init {r['init'] or 'initialiser'}")
        print(f"total {sum(r['steps'] for r in plan())} steps at batch {BATCH}, {CROP}² crops")
    elif a.cmd == "train":
        train(a.only)
    else:
        status()


if __name__ == "__main__":
    main()
