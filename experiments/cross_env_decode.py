"""Do `.lic` files written in one Python environment decode in another? (issue 13's baseline)

    .venv/bin/python experiments/cross_env_decode.py --envs .venv,.venv-tfc [--model default] [--limit 24]

Each environment's ``lic`` compresses every Kodak image with the same model, and every other
environment's ``lic`` decompresses those files. Per direction it reports how many files decode,
how many are rejected (and the error), and for those that decode, the largest pixel difference
against the writer environment's own decode. Writes ``--out`` (JSON).

For float models a different jax/XLA can move a hyper-synthesis σ by one ulp across a table
boundary, which changes a symbol's table and so the rest of the stream (docs/FORMAT.md §7). The
integer entropy path of issue 13 is what is meant to make every direction decode.
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
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _lic(env: str) -> str:
    return str(REPO / env / "bin" / "lic")


def _version(env):
    r = subprocess.run([str(REPO / env / "bin" / "python"), "-c", "import jax, numpy, sys; print(jax.__version__, "
                        "numpy.__version__, sys.version.split()[0])"], capture_output=True, text=True)
    return r.stdout.strip()


def main():
    shared = Path(os.environ.get("LIC_JAX_SHARED", REPO.parent / "shared"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--envs", default=".venv,.venv-tfc")
    ap.add_argument("--model", default="", help="lic --model name ('' = the bundled default)")
    ap.add_argument("--checkpoint", default="", help="a model directory instead (lic --checkpoint DIR, both ways)")
    ap.add_argument("--images", default=str(shared / "data" / "kodak"))
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--out", default="out/cross_env_decode.json")
    a = ap.parse_args()
    envs = a.envs.split(",")
    images = sorted(Path(a.images).glob("*.png"))[: a.limit]
    tmp = Path(tempfile.mkdtemp())
    model = ["--model", a.model] if a.model else []
    ckpt = ["--checkpoint", a.checkpoint] if a.checkpoint else []
    model = model + ckpt
    res = {"model": a.model or a.checkpoint or "default", "envs": {e: _version(e) for e in envs}, "directions": {}}
    src_dir = tmp / "images"
    src_dir.mkdir()
    for img in images:
        os.symlink(img, src_dir / img.name)
    for e in envs:  # encode, and decode in the same environment (the reference): one process each
        d = tmp / e.strip("./")
        subprocess.run([_lic(e), "compress", str(src_dir), str(d), *model, "--quiet"], check=True, capture_output=True)
        subprocess.run([_lic(e), "decompress", str(d), str(d), *ckpt, "--quiet"], check=True, capture_output=True)
    for w in envs:
        for r in envs:
            if w == r:
                continue
            src, dst = tmp / w.strip("./"), tmp / f"{w.strip('./')}-read-by-{r.strip('./')}"
            dst.mkdir()
            ok, bad = [], {}
            diff = 0
            same_bytes = 0
            for img in images:
                # the same image compressed in both environments: are the files identical?
                same_bytes += (src / (img.stem + ".lic")).read_bytes() == (tmp / r.strip("./") / (img.stem + ".lic")).read_bytes()
                out = dst / (img.stem + ".png")
                p = subprocess.run([_lic(r), "decompress", str(src / (img.stem + ".lic")), str(out), *ckpt, "--quiet"],
                                   capture_output=True, text=True)
                if p.returncode:
                    bad[img.stem] = (p.stderr.strip().splitlines() or ["?"])[-1]
                    continue
                ok.append(img.stem)
                a_ = np.asarray(Image.open(out), np.int16)
                b_ = np.asarray(Image.open(src / (img.stem + ".png")), np.int16)
                diff = max(diff, int(np.abs(a_ - b_).max()))
            res["directions"][f"{w} -> {r}"] = {"decoded": len(ok), "rejected": len(bad), "of": len(images),
                                                "rejected_files": bad, "max_pixel_diff_vs_writer": diff,
                                                "identical_files_from_both_encoders": same_bytes}
            print(f"{w} ({res['envs'][w]}) -> {r} ({res['envs'][r]}): {len(ok)}/{len(images)} decode, "
                  f"{len(bad)} rejected {sorted(bad)}; max |Δpixel| vs the writer's decode {diff}; "
                  f"{same_bytes}/{len(images)} files byte-identical between the two encoders", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    sys.exit(main())
