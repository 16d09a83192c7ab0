#!/usr/bin/env python
"""Peak resident memory and time per megapixel of ``lic compress`` / ``lic decompress`` against
image size (1, 4, 12, 24 MP), and CompressAI's peak memory on the same images.

Every measurement is one fresh process: the parent starts it and reads its peak RSS from
``os.wait4`` (``ru_maxrss``) and its wall time (process start, imports and JIT compilation
included). lic_jax runs the real command line (``lic compress IN OUT --checkpoint DIR``, which
also reconstructs the image for its PSNR line; ``lic decompress``), with the default tiling
(``lic_jax/coding/tiling.py``: tiled above 2 MP) and, for comparison, untiled (``--tile 0``) up
to ``--untiled-upto`` MP. CompressAI 1.2.8 (torch, CPU) runs ``net.compress`` / ``net.decompress``
in two processes; a size whose peak, extrapolated linearly from the previous size, would
exceed ``--compressai-limit-gb`` is skipped and listed as such.

Models: ``bmshj2018-hyperprior`` and ``mbt2018`` at quality 3 (CompressAI's widths) with random
initialisation (seed 0; memory and time do not depend on the weights), and the shipped default
model (``default``). Test images: a mosaic of ``skimage.data`` photographs (astronaut, coffee,
chelsea, rocket), each cell upscaled with Pillow's bicubic filter, 3:2 landscape; written to
``--workdir``, never to the repository.

    nice -n 10 .venv/bin/python benchmarks/memory.py                       # everything, ~1 h on 2 cores
    .venv/bin/python benchmarks/memory.py --sizes 24 --models default      # one point
    .venv/bin/python benchmarks/memory.py --plot-only                      # redraw the plot from the JSON

Results are merged into ``--json`` (default ``docs/large_images_memory.json``) after every
measurement, so an interrupted run keeps what it measured; ``--plot`` draws peak RSS and s/MP
and CPU seconds (user + sys: less sensitive than wall time to other load on the machine) per
megapixel against megapixels; ``--plot-only --merge A.json B.json`` merges runs and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {1: (816, 1224), 4: (1632, 2448), 12: (2832, 4240), 24: (4000, 6000)}  # (H, W), 3:2
MODELS = ("bmshj2018-hyperprior", "mbt2018", "default")


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------
def make_image(h: int, w: int):
    """A deterministic h × w RGB mosaic of upscaled skimage.data photographs (uint8)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    srcs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    cell = max(256, min(h, w) // 2)
    out = np.zeros((h, w, 3), np.uint8)
    k = 0
    for r in range(0, h, cell):
        for c in range(0, w, cell):
            ch, cw = min(cell, h - r), min(cell, w - c)
            src = Image.fromarray(srcs[k % len(srcs)])
            out[r : r + ch, c : c + cw] = np.asarray(src.resize((cell, cell), Image.BICUBIC))[:ch, :cw]
            k += 1
    return out


def image_path(workdir: str, mp: int) -> str:
    h, w = SIZES[mp]
    p = os.path.join(workdir, f"mosaic_{w}x{h}.png")
    if not os.path.exists(p):
        from PIL import Image

        Image.fromarray(make_image(h, w)).save(p + ".tmp.png")
        os.replace(p + ".tmp.png", p)
    return p


def artifact_dir(workdir: str, name: str) -> str | None:
    """Random-init (seed 0) quality-3 weights as a lic_jax model directory; None for 'default'."""
    if name == "default":
        return None
    d = os.path.join(workdir, f"{name}-q3-random")
    if not os.path.exists(os.path.join(d, "config.json")):
        import jax
        import jax.numpy as jnp
        import numpy as np

        from lic_jax.artifact import save_artifact
        from lic_jax.models import get_model

        model, spec = get_model(name, 3)
        v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3), jnp.float32))
        save_artifact(d, spec, jax.tree_util.tree_map(np.asarray, {"params": v["params"]}))
    return d


# ------------------------------------------------------------------------------------------
# measuring one fresh process
# ------------------------------------------------------------------------------------------
def measured(cmd: list[str], env=None) -> dict:
    t = time.perf_counter()
    load0 = os.getloadavg()[0]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    out, err = p.stdout.read().decode(), p.stderr.read().decode()
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_s": round(wall, 2), "peak_rss_mb": round(ru.ru_maxrss / 1024.0, 1),
            "user_s": round(ru.ru_utime, 1), "sys_s": round(ru.ru_stime, 1), "load_avg_1min": round(load0, 2),
            "stdout_tail": out.strip().splitlines()[-1:] if out.strip() else [],
            "stderr_tail": err.strip().splitlines()[-2:] if p.returncode else []}


def lic_cmd() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "lic")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "lic_jax.cli"]


def run_lic(op: str, name: str, mp: int, workdir: str, tile: int | None) -> dict:
    png = image_path(workdir, mp)
    art = artifact_dir(workdir, name)
    tag = f"{name}_{mp}mp_{'auto' if tile is None else tile}"
    lic, rec = os.path.join(workdir, tag + ".lic"), os.path.join(workdir, tag + ".out.png")
    model = ["--checkpoint", art] if art else []
    tiling = [] if tile is None else ["--tile", str(tile)]
    if op == "encode":
        cmd = lic_cmd() + ["compress", png, lic] + model + tiling
    else:
        cmd = lic_cmd() + ["decompress", lic, rec] + model + tiling
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    r = measured(cmd, env)
    if op == "encode" and r["rc"] == 0:
        r["file_bytes"] = os.path.getsize(lic)
    return r


def compressai_worker(op: str, name: str, png: str, path: str):
    """(in a fresh process) CompressAI's compress or decompress of one image."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import numpy as np
    import torch
    from PIL import Image

    from compressai_compat import import_compressai

    ca = import_compressai()
    from compressai.zoo import image_models

    torch.manual_seed(0)
    net = image_models[name](quality=3, pretrained=False).eval()
    net.update(force=True)
    with torch.no_grad():
        if op == "encode":
            with Image.open(png) as im:
                a = np.asarray(im.convert("RGB"))
            x = torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255)
            h, w = x.shape[2:]
            ph, pw = (-h) % 64, (-w) % 64
            x = torch.nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            out = net.compress(x)
            with open(path, "wb") as f:
                pickle.dump({"strings": out["strings"], "shape": out["shape"]}, f)
        else:
            with open(path, "rb") as f:
                d = pickle.load(f)
            net.decompress(d["strings"], d["shape"])
    del ca


def run_compressai(op: str, name: str, mp: int, workdir: str) -> dict:
    png = image_path(workdir, mp)
    path = os.path.join(workdir, f"compressai_{name}_{mp}mp.pkl")
    cmd = [sys.executable, os.path.abspath(__file__), "--compressai-worker", op, name, png, path]
    return measured(cmd, dict(os.environ))


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------
def key(r) -> str:
    return f"{r['impl']}|{r['model']}|{r['mp']}|{r['op']}|{r['tiling']}"


def load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"results": []}


def save(path, doc, entry):
    res = {key(r): r for r in doc["results"]}
    res[key(entry)] = entry
    doc["results"] = sorted(res.values(), key=lambda r: (r["impl"], r["model"], r["op"], r["tiling"], r["mp"]))
    doc["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def plot(doc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    series = {}
    for r in doc["results"]:
        if r.get("rc") != 0:
            continue
        series.setdefault((r["impl"], r["model"], r["tiling"], r["op"]), []).append(r)
    colors = {}
    for (impl, model, tiling, op), rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["mp"])
        mps = [r["pixels"] / 1e6 for r in rs]
        label = f"{impl} {model}" + ("" if impl != "lic_jax" else f" ({'untiled' if tiling == '0' else 'tiled > 2 MP'})")
        style = "-" if op == "encode" else "--"
        color = colors.setdefault(label, f"C{len(colors)}")
        ax = axes[0] if op == "encode" else axes[1]
        ax.plot(mps, [r["peak_rss_mb"] / 1024 for r in rs], style, marker="o", label=label, color=color)
        axes[2].plot(mps, [(r["user_s"] + r["sys_s"]) / (r["pixels"] / 1e6) for r in rs], style, marker="o",
                     label=f"{label} {op}", color=color)
    for ax, title in zip(axes[:2], ("encode (lic compress, incl. PSNR reconstruction)", "decode (lic decompress)")):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("peak RSS (GB)")
        ax.axhline(6, color="grey", lw=0.8, ls=":")
    axes[2].set_title("CPU time per megapixel (user + sys, fresh process, incl. JIT)", fontsize=10)
    axes[2].set_ylabel("CPU s / MP")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("megapixels")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(doc) -> str:
    """A markdown table of the results (peak RSS in GB, wall s and s/MP, CPU s)."""
    rows = ["| impl | model | tiling | MP | op | peak RSS (GB) | wall (s) | s/MP | CPU user+sys (s) | load |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(doc["results"], key=lambda r: (r["impl"] != "lic_jax", r["model"], r["tiling"], -r["mp"], r["op"])):
        if r.get("rc") != 0:
            note = r.get("skipped") or f"failed (rc {r.get('rc')}): {' '.join(r.get('stderr_tail', []))[:80]}"
            rows.append(f"| {r['impl']} | {r['model']} | {r['tiling']} | {r['mp']} | {r['op']} | {note} | | | | |")
            continue
        rows.append(f"| {r['impl']} | {r['model']} | {r['tiling']} | {r['mp']} | {r['op']} | "
                    f"{r['peak_rss_mb'] / 1024:.2f} | {r['wall_s']:.0f} | {r['wall_s'] / (r['pixels'] / 1e6):.1f} | "
                    f"{r['user_s'] + r['sys_s']:.0f} | {r['load_avg_1min']:.0f} |")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="24,12,4,1", help="megapixels, any of 1,4,12,24 (run in this order)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--ops", default="encode,decode")
    ap.add_argument("--untiled-upto", type=int, default=4, help="also run lic untiled (--tile 0) up to this size (MP)")
    ap.add_argument("--compressai", default="bmshj2018-hyperprior", help="CompressAI models ('' for none)")
    ap.add_argument("--compressai-limit-gb", type=float, default=12.0)
    ap.add_argument("--no-lic", action="store_true")
    ap.add_argument("--workdir", default="/tmp/lic_memory_bench")
    ap.add_argument("--json", default=os.path.join(REPO, "docs", "large_images_memory.json"))
    ap.add_argument("--plot", default=os.path.join(REPO, "docs", "large_images_memory.png"))
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot and print a markdown table")
    ap.add_argument("--merge", nargs="*", metavar="JSON", help="merge results of other runs into --json first")
    ap.add_argument("--compressai-worker", nargs=4, metavar=("OP", "MODEL", "PNG", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.compressai_worker:
        compressai_worker(*args.compressai_worker)
        return 0
    doc = load(args.json)
    for extra in args.merge or []:
        for r in load(extra)["results"]:
            save(args.json, doc, r)
    if args.plot_only:
        plot(doc, args.plot)
        print(table(doc))
        return 0
    os.makedirs(args.workdir, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    ops = [o for o in args.ops.split(",") if o]

    def record(impl, model, mp, op, tiling, r):
        h, w = SIZES[mp]
        entry = {"impl": impl, "model": model, "mp": mp, "height": h, "width": w, "pixels": h * w, "op": op,
                 "tiling": tiling, **r, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        save(args.json, doc, entry)
        print(f"{impl:10s} {model:22s} {mp:3d} MP {op:6s} tiling={tiling:5s} rc={r.get('rc')} "
              f"peak {r.get('peak_rss_mb', 0) / 1024:6.2f} GB  {r.get('wall_s', 0):8.1f} s "
              f"({r.get('wall_s', 0) / (h * w / 1e6):6.1f} s/MP) load {r.get('load_avg_1min')}", flush=True)

    if not args.no_lic:
        for mp in sizes:
            for name in [m for m in args.models.split(",") if m]:
                for tile in [None] + ([0] if mp <= args.untiled_upto else []):
                    for op in ops:
                        r = run_lic(op, name, mp, args.workdir, tile)
                        record("lic_jax", name, mp, op, "auto" if tile is None else str(tile), r)
    for name in [m for m in args.compressai.split(",") if m]:
        last = None
        for mp in sorted(sizes):
            for op in ops:
                if last is not None and op in last and last[op] * mp / last["mp"] > args.compressai_limit_gb * 1024:
                    pred = last[op] * mp / last["mp"] / 1024
                    record("compressai", name, mp, op, "-", {"rc": None, "skipped": f"predicted peak {pred:.1f} GB "
                                                            f"> limit {args.compressai_limit_gb} GB"})
                    continue
                r = run_compressai(op, name, mp, args.workdir)
                record("compressai", name, mp, op, "-", r)
                if r["rc"] == 0:
                    last = dict(last or {}, mp=mp, **{op: r["peak_rss_mb"]})
    plot(doc, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
