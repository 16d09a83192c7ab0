"""The cost of one akutsu2020 training step (lic_jax.train.gan) in each phase of a config (MSE pre-training,
MS-SSIM warm-up with D not run, GAN), at the CPU run's shapes by default (configs/akutsu2020.py:cpu: width 1/4,
1 RCAB, batch 4 of 256² crops), in two forms, interleaved in rounds with the contention metered per round:

* ``in-graph``: one compiled step deciding the phase with ``lax.cond`` on the state's step (the training
  loop's form before 2026-12-06);
* ``phased``: one compiled step per phase (``gan.PhasedStep``, the loop's form since).

    python benchmarks/akutsu_step.py [--rounds 3] [--steps 3] [--config cpu] [--json OUT]
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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


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
    from quiet import Contention, cpu_info

    def make_step(phases):
        return jax.jit(lambda st, x: phases(st, x)[1:])

    cfg = akutsu2020.get_config(a.config)
    model, _ = build_model(cfg)
    tx, sched = make_optimizer(cfg, int(cfg.num_steps))
    disc, tx_d = model.discriminator(), gan.make_disc_optimizer(cfg)
    b, c = int(cfg.batch_size), int(cfg.data.crop)
    x0 = jnp.zeros((1, 64, 64, 3), jnp.float32)
    p = _host_init(model, x0, seed=0)["params"]
    dp = _host_init(disc, x0, jnp.zeros((1, 64, 64, 5), jnp.float32), seed=1)["params"]
    sets = gan.settings(cfg)
    st0 = TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p),
                     extra={gan.DISC: ParamGroup.create(dp, tx_d)})
    # one step number per phase of this config: MSE pre-training (if any), MS-SSIM warm-up (if any), GAN
    starts = {"mse": 0} if sets["mse_steps"] else {}
    if sets["warmup_steps"] > sets["mse_steps"]:
        starts["warm-up"] = sets["mse_steps"]
    starts["gan"] = max(sets["warmup_steps"], sets["mse_steps"])
    key = jax.random.PRNGKey(1)
    general = make_step(gan.make_phases(model, cfg, tx, sched, key))  # lax.cond on the step, any phase
    forms = {"in-graph": {name: general for name in starts},  # the form before 2026-12-06
             "phased": {name: make_step(gan.make_phases(model, cfg, tx, sched, key, phase=gan.phase_of(s, cfg)))
                        for name, s in starts.items()}}  # gan.PhasedStep: the training loop's form since
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((b, c, c, 3), np.float32))
    compile_s = {}
    for form, fns in forms.items():
        for name, s0 in starts.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fns[name](st0.replace(step=jnp.asarray(s0, jnp.int32)), x))
            compile_s[f"{form}/{name}"] = time.perf_counter() - t0  # compile (once per function) + 1 step
    times = {f"{form}/{name}": [] for form in forms for name in starts}
    cpu = {k: [] for k in times}
    meter = Contention()
    others = []
    for _ in range(a.rounds):
        meter.start()
        for form, fns in forms.items():
            for name, s0 in starts.items():
                st = st0.replace(step=jnp.asarray(s0, jnp.int32))
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(a.steps):
                    st, m = fns[name](st, x)
                jax.block_until_ready(st)
                times[f"{form}/{name}"].append((time.perf_counter() - t0) / a.steps)
                cpu[f"{form}/{name}"].append((time.process_time() - c0) / a.steps)
                assert float(m["gan_on"]) == (1.0 if name == "gan" else 0.0)
        others.append(meter.stop())
    res = {k: float(np.median(v)) for k, v in times.items()}
    res_cpu = {k: float(np.median(v)) for k, v in cpu.items()}
    out = {"config": a.config, "batch": b, "crop": c, "phase_steps": starts, "compile_s": compile_s,
           "s_per_step": res, "cpu_s_per_step": res_cpu,
           "phased_over_in_graph": {n: res[f"phased/{n}"] / res[f"in-graph/{n}"] for n in starts},
           "rounds": times, "other_cpu_per_round": others, "cpu": cpu_info(), "load": os.getloadavg()}
    print(json.dumps({k: out[k] for k in ("config", "s_per_step", "cpu_s_per_step", "phased_over_in_graph",
                                          "other_cpu_per_round")}, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
