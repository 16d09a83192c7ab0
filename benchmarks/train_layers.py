#!/usr/bin/env python
"""Per-layer profile of the training step: forward + backward of each transform layer, lic_jax vs torch.

``benchmarks/train_step.py`` times the whole step of bmshj2018-hyperprior q3 (N=128, M=192, batch 8 of
256² crops); this splits it by layer, so that ``docs/SPEED.md`` can say which layers lose to
CompressAI's (oneDNN's) on a given CPU. Each layer of g_a, h_a, h_s and g_s is timed at its training
shape as one program: the forward, then the gradients of its input (all but the first layer, whose
input is the data) and of its parameters for a fixed random output cotangent.

* lic_jax: the layer functions the model runs, with the CPU training levers on (``conv2d``'s Winograd
  gradient, ``conv_transpose2d(impl='auto')``; ``--with-levers-off`` adds a worker with ``LIC_JAX_CONV_GRAD=xla``
  and ``'subpixel'``), and ``GDN``; each layer one jitted ``jax.vjp``.
* torch: ``nn.Conv2d``, ``nn.ConvTranspose2d`` and CompressAI's ``GDN``, NCHW, ``backward()``, ``--threads``.

Each library runs in its own worker process; the parent interleaves them layer by layer, round by
round, and meters the CPU share of other processes over every round (``benchmarks/quiet.py``; a
single layer's interval holds too few clock ticks to meter): ratios are printed as judged only when
it stayed ≤ 20 %.

    .venv/bin/python benchmarks/train_layers.py --rounds 5 --with-levers-off --json benchmarks/results/train_layers.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quiet import THRESHOLD, Contention, cpu_info  # noqa: E402


def layers(n=128, m=192, size=256):
    """(name, kind, input side, in channels, out channels) of bmshj2018-hyperprior's transforms.
    kind: 'conv5s2', 'conv3', 'deconv' (5×5 stride 2), 'gdn', 'igdn'; the ReLUs are left out."""
    s = size
    return [("g_a.0", "conv5s2", s, 3, n), ("g_a.1", "gdn", s // 2, n, n),
            ("g_a.2", "conv5s2", s // 2, n, n), ("g_a.3", "gdn", s // 4, n, n),
            ("g_a.4", "conv5s2", s // 4, n, n), ("g_a.5", "gdn", s // 8, n, n),
            ("g_a.6", "conv5s2", s // 8, n, m),
            ("h_a.0", "conv3", s // 16, m, n), ("h_a.2", "conv5s2", s // 16, n, n), ("h_a.4", "conv5s2", s // 32, n, n),
            ("h_s.0", "deconv", s // 64, n, n), ("h_s.2", "deconv", s // 32, n, n), ("h_s.4", "conv3", s // 16, n, m),
            ("g_s.0", "deconv", s // 16, m, n), ("g_s.1", "igdn", s // 8, n, n),
            ("g_s.2", "deconv", s // 8, n, n), ("g_s.3", "igdn", s // 4, n, n),
            ("g_s.4", "deconv", s // 4, n, n), ("g_s.5", "igdn", s // 2, n, n),
            ("g_s.6", "deconv", s // 2, n, 3)]


def macs(kind, side, cin, cout, batch):
    """Multiply-accumulates of the forward, by the layer's definition (25 taps per input pixel for
    the transposed convolution, C² per pixel for GDN's channel product)."""
    if kind == "conv5s2":
        return batch * (side // 2) ** 2 * 25 * cin * cout
    if kind == "conv3":
        return batch * side ** 2 * 9 * cin * cout
    if kind == "deconv":
        return batch * side ** 2 * 25 * cin * cout
    return batch * side ** 2 * cin * cout


def _out_side(kind, side):
    return {"conv5s2": side // 2, "deconv": side * 2}.get(kind, side)


def _serve(programs, info):
    print("READY " + json.dumps(info), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "QUIT":
            break
        fn, k = programs[cmd[1]], int(cmd[2])
        times = []
        for _ in range(k):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        print("TIMES " + json.dumps(times), flush=True)


def worker_jax(args):
    if args.levers_off:
        os.environ["LIC_JAX_CONV_GRAD"] = "xla"
    sys.path.insert(0, REPO)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lic_jax.layers.conv import _fast_form, conv2d, conv_transpose2d, resolve_transpose_impl, transpose_form
    from lic_jax.layers.gdn import GDN

    impl = "subpixel" if args.levers_off else "auto"
    rng = np.random.default_rng(0)
    programs, forms = {}, {}
    for name, kind, side, cin, cout in layers(size=args.size):
        x = jnp.asarray(rng.standard_normal((args.batch, side, side, cin), np.float32))
        g = jnp.asarray(rng.standard_normal((args.batch, _out_side(kind, side), _out_side(kind, side), cout), np.float32))
        if kind in ("gdn", "igdn"):
            mod = GDN(inverse=kind == "igdn")
            params = mod.init(jax.random.key(0), x)

            def f(p, x, mod=mod):
                return mod.apply(p, x)
            forms[name] = "einsum"
        else:
            k = 5 if kind != "conv3" else 3
            params = jnp.asarray(rng.standard_normal((k, k, cin, cout), np.float32) * 0.05)
            if kind == "deconv":
                def f(w, x):
                    return conv_transpose2d(x, w, 2, impl=impl)
                forms[name] = transpose_form(resolve_transpose_impl(impl, cout), 5, 2, 2, 1)
            else:
                stride = 2 if kind == "conv5s2" else 1

                def f(w, x, stride=stride):
                    return conv2d(x, w, stride)
                fast = not args.levers_off and _fast_form((k, k, cin, cout), stride, ((k // 2, k // 2),) * 2)
                forms[name] = "xla fwd, " + ("winograd grad" if fast else "xla grad")  # conv2d's own rule
        first = name == "g_a.0"

        @jax.jit
        def step(p, x, g, f=f, first=first):
            if first:  # the data needs no gradient
                y, vjp = jax.vjp(lambda p: f(p, x), p)
            else:
                y, vjp = jax.vjp(f, p, x)
            return y, vjp(g)
        jax.block_until_ready(step(params, x, g))

        def run(step=step, params=params, x=x, g=g):
            jax.block_until_ready(step(params, x, g))
        programs[name] = run
    _serve(programs, {"backend": jax.default_backend(), "jax": jax.__version__, "forms": forms,
                      "levers": not args.levers_off})


def worker_torch(args):
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import numpy as np
    import torch

    from compressai_compat import import_compressai

    torch.set_num_threads(args.threads)
    cai = import_compressai()
    from compressai.layers import GDN as TGDN
    rng = np.random.default_rng(0)
    programs = {}
    for name, kind, side, cin, cout in layers(size=args.size):
        x = torch.from_numpy(rng.standard_normal((args.batch, cin, side, side), np.float32))
        x.requires_grad_(name != "g_a.0")
        o = _out_side(kind, side)
        g = torch.from_numpy(rng.standard_normal((args.batch, cout, o, o), np.float32))
        if kind in ("gdn", "igdn"):
            mod = TGDN(cin, inverse=kind == "igdn")
        elif kind == "deconv":
            mod = torch.nn.ConvTranspose2d(cin, cout, 5, 2, 2, output_padding=1)
        else:
            k = 5 if kind == "conv5s2" else 3
            mod = torch.nn.Conv2d(cin, cout, k, 2 if kind == "conv5s2" else 1, k // 2)

        def run(mod=mod, x=x, g=g):
            mod.zero_grad(set_to_none=True)
            x.grad = None
            mod(x).backward(g)
        run()
        programs[name] = run
    _serve(programs, {"backend": "torch-cpu", "torch": torch.__version__, "compressai": cai.__version__, "threads": torch.get_num_threads()})


class Worker:
    def __init__(self, name, argv):
        self.name = name
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        for line in self.p.stdout:
            if line.startswith("READY "):
                self.info = json.loads(line[6:])
                return
        raise RuntimeError(f"worker {name} exited with {self.p.wait()}")

    def run(self, layer, k):
        self.p.stdin.write(f"RUN {layer} {k}\n")
        self.p.stdin.flush()
        for line in self.p.stdout:
            if line.startswith("TIMES "):
                return json.loads(line[6:])
        raise RuntimeError(f"worker {self.name} died")

    def close(self):
        try:
            self.p.stdin.write("QUIT\n")
            self.p.stdin.flush()
        except OSError:
            pass
        self.p.wait(timeout=60)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (XLA uses all cores)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2, help="timed calls per layer per worker per round")
    ap.add_argument("--with-levers-off", action="store_true",
                    help="also run lic_jax without the CPU training levers (XLA's gradient, sub-pixel transposed "
                         "convolutions), interleaved in the same run: the per-layer before/after")
    ap.add_argument("--levers-off", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.worker:
        return (worker_jax if args.worker == "jax" else worker_torch)(args)

    me = [sys.executable, os.path.abspath(__file__), "--batch", str(args.batch), "--size", str(args.size),
          "--threads", str(args.threads)]
    workers = {"lic_jax": Worker("lic_jax", me + ["--worker", "jax"])}
    if args.with_levers_off:
        workers["levers_off"] = Worker("levers_off", me + ["--worker", "jax", "--levers-off"])
    workers["torch"] = Worker("torch", me + ["--worker", "torch"])
    pids = [os.getpid()] + [w.p.pid for w in workers.values()]
    spec = layers(size=args.size)
    times = {lib: {name: [] for name, *_ in spec} for lib in workers}
    worst = []
    t0 = time.time()
    try:
        for r in range(args.rounds):
            # metered per round (≈ 10 s): a layer's interval (4–500 ms) holds too few clock ticks
            c = Contention(pids).start()
            for name, *_ in spec:
                for lib, w in workers.items():
                    times[lib][name] += w.run(name, args.reps)
            worst.append(c.stop())
            print(f"round {r + 1}/{args.rounds} done, {time.time() - t0:.0f} s, other processes "
                  f"{'?' if worst[-1] is None else f'{100 * worst[-1]:.0f}%'} of the CPU", file=sys.stderr, flush=True)
    finally:
        for w in workers.values():
            w.close()
    known = [o for o in worst if o is not None]
    contention = max(known) if known else None
    judged = contention is not None and contention <= THRESHOLD

    libs = list(workers)
    rows, tot = [], {lib: 0.0 for lib in libs}
    for name, kind, side, cin, cout in spec:
        med = {lib: statistics.median(times[lib][name]) for lib in libs}
        for lib in libs:
            tot[lib] += med[lib]
        row = {"layer": name, "kind": kind, "input": [args.batch, side, side, cin], "out_channels": cout,
               "fwd_gmac": macs(kind, side, cin, cout, args.batch) / 1e9,
               **{f"{lib}_ms": 1e3 * med[lib] for lib in libs}, "ratio": med["torch"] / med["lic_jax"],
               "form": workers["lic_jax"].info["forms"][name], "runs_s": {lib: times[lib][name] for lib in libs}}
        if "levers_off" in workers:
            row["form_levers_off"] = workers["levers_off"].info["forms"][name]
        rows.append(row)
    w = max(len(r["layer"]) for r in rows)
    cols = [lib for lib in libs if lib != "torch"] + ["torch"]
    print(f"{'layer':<{w}}  {'input (NHWC)':<18} {'out':>4} {'GMAC':>6} " + " ".join(f"{c + ' ms':>13}" for c in cols)
          + f" {'torch/lic':>9}  lic_jax form")
    for r in rows:
        print(f"{r['layer']:<{w}}  {'×'.join(map(str, r['input'])):<18} {r['out_channels']:>4} {r['fwd_gmac']:>6.2f} "
              + " ".join(f"{r[c + '_ms']:>13.1f}" for c in cols) + f" {r['ratio']:>8.2f}×  {r['form']}")
    print(f"{'sum':<{w}}  {'':<18} {'':>4} {'':>6} " + " ".join(f"{1e3 * tot[c]:>13.1f}" for c in cols)
          + f" {tot['torch'] / tot['lic_jax']:>8.2f}×")
    cinfo = cpu_info()
    print(f"CPU: {cinfo['model']}, {cinfo['cores']} cores, {' '.join(cinfo['simd'])}; other processes used up to "
          f"{'?' if contention is None else f'{100 * contention:.0f}%'} of the CPU: "
          + ("quiet, the ratios stand" if judged else f"NOT quiet (> {100 * THRESHOLD:.0f}%), ratios not judged"))
    if args.json:
        out = {"benchmark": "train_layers", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "cpu": cinfo, "batch": args.batch, "size": args.size, "rounds": args.rounds, "reps": args.reps,
               "workers": {lib: w.info for lib, w in workers.items()},
               "max_other_cpu_share": contention, "other_cpu_share_per_round": worst, "judged": judged, "rows": rows,
               "sum_ms": {lib: 1e3 * t for lib, t in tot.items()}}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
