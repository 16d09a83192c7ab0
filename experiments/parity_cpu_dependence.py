"""Why `test_forward_parity[mbt2018-6-trained]` depended on the CPU (issue 10), measured.

    .venv/bin/python experiments/parity_cpu_dependence.py [--arch mbt2018] [--quality 6] [--out out/parity_cpu.json]

1. **Are the torch-trained reference weights CPU-dependent?** The parity test trains each
   CompressAI model for 25 Adam steps in PyTorch. The script repeats exactly that training in
   subprocesses whose ATen kernels are pinned to other instruction-set levels
   (``ATEN_CPU_CAPABILITY=default|avx2``; AVX-512 where the CPU has it) and oneDNN's ISA
   (``ONEDNN_MAX_CPU_ISA``), i.e. what a different CPU kind runs, and compares the weights.
2. **How does one rounding flip spread?** For each weight set: lic_jax's forward against
   CompressAI's, counting (a) flips of round(y) (the context model's input) and their distance
   to a rounding tie, (b) elements whose μ differs beyond float noise, and whether each lies in
   the causal 5×5 'future' of a flip (the positions whose masked context reads it), (c) flips of
   the rated symbols round(y − μ) with lic_jax's own μ and with μ teacher-forced from the
   reference's ŷ (what the mended test checks).
Writes a JSON summary and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _train_child(arch: str, quality: int, out: str):
    """Child: train the CompressAI model exactly as the parity test does and torch.save it."""
    import torch
    import test_compressai_parity as T
    from conftest import DATA, load_rgb
    from compressai_compat import import_compressai

    import_compressai()
    torch.set_num_threads(1)  # as the test's module fixture
    files = sorted((DATA / "train").glob("train_*.png"))[:24]
    pool = np.stack([load_rgb(f) for f in files]).astype(np.float32) / 255.0
    seed = 1000 * T.ARCHS.index(arch) + 10 * quality + 1
    torch.manual_seed(seed)
    net = T._zoo_fn(arch)(quality=quality, pretrained=False)
    T._train_briefly(net, pool, seed)
    torch.save(net.state_dict(), out)
    print(torch.backends.cpu.get_cpu_capability())


def _cascade(arch, quality, path):
    """Flip statistics of lic_jax vs CompressAI for one saved weight set."""
    import torch
    import test_compressai_parity as T
    from conftest import DATA, load_rgb
    from compressai_compat import import_compressai

    from lic_jax.convert import from_compressai

    import_compressai()
    torch.set_num_threads(1)
    net = T._zoo_fn(arch)(quality=quality, pretrained=False)
    net.load_state_dict(torch.load(path))
    net.update(force=True)
    net.eval()
    x = np.stack([load_rgb(DATA / "kodak" / f, T.KODAK_CROP) for f in T.KODAK_IMAGES]).astype(np.float32) / 255.0
    model, _, variables = from_compressai(path)
    ref = T._torch_forward(net, x)
    out, _ = T._lic_forward(model, variables, x)
    forced, _ = T._lic_forward(model, variables, x, force=ref)
    y_j, y_t = np.asarray(out["y"], np.float64), ref["y"].astype(np.float64)
    tol = T._act_tol(ref["y"]) + T._act_tol(ref["means"])
    res = {"y_maxdiff": float(np.abs(y_j - y_t).max()), "tol": tol}
    # (a) flips of round(y), the context model's input
    fl = np.abs(np.asarray(out["y_hat"], np.float64) - ref["y_syn"]) > 0.5
    res["ctx_input_flips"] = int(fl.sum())
    res["ctx_input_flip_tie_distance"] = [float(abs(v - np.floor(v) - 0.5)) for v in y_t[fl]]
    # (b) μ differences and the causal future of the flips
    dmu = np.abs(np.asarray(out["means"], np.float64) - ref["means"]) > T._act_tol(ref["means"])
    res["mu_differing"] = int(dmu.sum())
    reach = np.zeros(fl.shape[:3], bool)  # positions whose masked 5×5 context reads a flipped ŷ
    for b, h, w in zip(*np.nonzero(fl.any(-1))):
        for dh in range(0, 3):
            for dw in range(-2, 3):
                if (dh == 0 and dw <= 0) or not (0 <= h + dh < reach.shape[1] and 0 <= w + dw < reach.shape[2]):
                    continue
                reach[b, h + dh, w + dw] = True
    pos = dmu.any(-1)
    res["mu_differing_positions"] = int(pos.sum())
    res["mu_differing_positions_outside_flip_future"] = int((pos & ~reach).sum())
    dmu_forced = np.abs(np.asarray(forced["means"], np.float64) - ref["means"]).max()
    res["mu_maxdiff_teacher_forced"] = float(dmu_forced)
    # (c) rated symbols with lic_jax's own μ, and with μ teacher-forced from the reference's ŷ
    for tag, o in (("own_mu", out), ("forced_mu", forced)):
        mu = np.asarray(o["means"], np.float64)
        q = np.round(y_j - mu) + mu
        bad = np.abs(q - ref["gc_q"]) > tol
        pre = (y_t - ref["means"])[bad]
        d = np.abs(pre - np.floor(pre) - 0.5)
        res[f"rate_flips[{tag}]"] = int(bad.sum())
        res[f"rate_flips_max_tie_distance[{tag}]"] = float(d.max()) if d.size else None
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="mbt2018")
    ap.add_argument("--quality", type=int, default=6)
    ap.add_argument("--out", default="out/parity_cpu.json")
    ap.add_argument("--child", default="")
    ap.add_argument("--reuse", default="", help="a folder of weights saved by an earlier run (skips training)")
    a = ap.parse_args()
    if a.child:
        return _train_child(a.arch, a.quality, a.child)
    import torch

    variants = {"native": {}, "aten=default": {"ATEN_CPU_CAPABILITY": "default"},
                "aten=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
                "aten=avx2,onednn=avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
                "onednn=sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"}}
    if "avx512" in open("/proc/cpuinfo").read():
        variants["aten=avx512"] = {"ATEN_CPU_CAPABILITY": "avx512"}
    tmp = Path(a.reuse or tempfile.mkdtemp())
    weights, summary = {}, {"cpu": torch.backends.cpu.get_cpu_capability(), "arch": a.arch, "quality": a.quality}
    for name, extra in variants.items():
        p = tmp / f"{name.replace('=', '_').replace(',', '_')}.pth"
        env = dict(os.environ, **extra)
        if a.reuse and p.exists():
            weights[name] = torch.load(p)
            summary[name] = {"capability": "(reused)", "path": str(p)}
            continue
        r = subprocess.run([sys.executable, __file__, "--arch", a.arch, "--quality", str(a.quality), "--child", str(p)],
                           env=env, capture_output=True, text=True)
        if r.returncode:
            summary[name] = {"error": r.stderr.strip().splitlines()[-1]}
            continue
        weights[name] = torch.load(p)
        summary[name] = {"capability": r.stdout.strip().splitlines()[-1], "path": str(p)}
    base = weights["native"]
    for name, sd in weights.items():
        diffs = {k: float((sd[k].double() - base[k].double()).abs().max()) for k in base if base[k].numel()}
        summary[name]["tensors_differing_from_native"] = sum(v > 0 for v in diffs.values())
        summary[name]["max_abs_weight_diff"] = max(diffs.values())
        summary[name]["flips"] = _cascade(a.arch, a.quality, summary[name]["path"])
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)
    for name in weights:
        s = summary[name]
        fl = {k: v for k, v in s["flips"].items() if k != "ctx_input_flip_tie_distance"}
        print(f"{name:24s} cap={s['capability']:8s} tensors≠native={s['tensors_differing_from_native']:3d} "
              f"max|Δw|={s['max_abs_weight_diff']:.3g}  {fl}")


if __name__ == "__main__":
    main()
