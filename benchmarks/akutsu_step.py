"""The cost of one akutsu2020 training step (lic_jax.train.gan) in the warm-up (D not run) and with
the GAN term on, at the CPU run's shapes (configs/akutsu2020.py:cpu: width 1/4, 1 RCAB, batch 4,
176² crops): one compiled step, random batches, interleaved rounds.

    python benchmarks/akutsu_step.py [--rounds 3] [--steps 3] [--json OUT]
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--config", default="cpu", help="configs/akutsu2020.py argument")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    from configs import akutsu2020
    from test_akutsu2020 import _host_init

    from lic_jax.train import gan
    from lic_jax.train.optim import make_optimizer
    from lic_jax.train.setup import build_model
    from lic_jax.train.state import ParamGroup, TrainState

    cfg = akutsu2020.get_config(a.config)
    model, _ = build_model(cfg)
    tx, sched = make_optimizer(cfg, int(cfg.num_steps))
    disc, tx_d = model.discriminator(), gan.make_disc_optimizer(cfg)
    b, c = int(cfg.batch_size), int(cfg.data.crop)
    x0 = jnp.zeros((1, 64, 64, 3), jnp.float32)
    p = _host_init(model, x0, seed=0)["params"]
    dp = _host_init(disc, x0, jnp.zeros((1, 64, 64, 5), jnp.float32), seed=1)["params"]
    warm = int(gan.settings(cfg)["warmup_steps"])
    st0 = TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p),
                     extra={gan.DISC: ParamGroup.create(dp, tx_d)})
    phases = gan.make_phases(model, cfg, tx, sched, jax.random.PRNGKey(1))
    step = jax.jit(lambda st, x: phases(st, x)[1:])
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((b, c, c, 3), np.float32))
    t0 = time.perf_counter()
    jax.block_until_ready(step(st0, x))
    compile_s = time.perf_counter() - t0
    times = {"warm-up": [], "gan": []}
    for _ in range(a.rounds):
        for name, s0 in (("warm-up", 0), ("gan", max(warm, 1))):
            st = st0.replace(step=jnp.asarray(s0, jnp.int32))
            jax.block_until_ready(step(st, x))  # the first call of this branch
            t0 = time.perf_counter()
            for _ in range(a.steps):
                st, m = step(st, x)
            jax.block_until_ready(st)
            times[name].append((time.perf_counter() - t0) / a.steps)
            assert float(m["gan_on"]) == (1.0 if name == "gan" else 0.0)
    res = {k: float(np.median(v)) for k, v in times.items()}
    out = {"config": a.config, "batch": b, "crop": c, "compile_s": compile_s, "s_per_step": res,
           "warmup_over_gan": res["warm-up"] / res["gan"], "rounds": times,
           "cpu": os.popen("lscpu | sed -n 's/^Model name: *//p'").read().strip(), "load": os.getloadavg()}
    print(json.dumps({k: out[k] for k in ("config", "compile_s", "s_per_step", "warmup_over_gan", "load")}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
