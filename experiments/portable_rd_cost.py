"""What the integer entropy path costs on Kodak (issue 13): a portable model against its float twin.

    .venv/bin/python experiments/portable_rd_cost.py [--model DIR] [--limit 24]

Both codecs use the same weights (a portable artifact and ``float_spec`` of it, e.g. the bundled
default). Per image: real file bytes, PSNR of the decoded image, the fraction of y positions whose
table index differs and the largest difference. For a scale-only hyperprior (μ = 0) the y symbols
and so the reconstruction are identical, and the BD-rate is exactly the relative change in bytes
at equal PSNR; for a mean-scale model μ changes slightly, and both bpp and PSNR are reported.
Writes benchmarks/results/portable_rd_cost.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("LIC_JAX_SHARED", ROOT.parent / "shared"))


def _psnr(a, b):
    d = a.astype(np.float64) - b.astype(np.float64)
    return 10 * math.log10(255.0**2 / float(np.mean(d * d)))


def main(argv=None):
    import jax

    from lic_jax.artifact import load_artifact
    from lic_jax.coding import Codec
    from lic_jax.coding.image_io import read_image
    from lic_jax.default_model import default_model_path
    from lic_jax.models.portable import float_spec

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=default_model_path())
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "portable_rd_cost.json"))
    args = ap.parse_args(argv)
    t0 = time.time()
    art = load_artifact(args.model)
    pc = Codec.from_artifact(art)
    fs = float_spec(art.spec)
    fc = Codec(fs.build(), fs, art.variables, fingerprint=art.fingerprint)
    rows = []
    from tqdm import tqdm

    for p in tqdm(sorted((SHARED / "data" / "kodak").glob("kodim*.png"))[: args.limit], desc="kodak", unit="img"):
        img = read_image(p)
        e_i, e_f = pc.encode(img), fc.encode(img)
        x_i, x_f = pc.decompress(e_i.data), fc.decompress(e_f.data)
        a, b = e_i.latents.y_indexes.astype(int), e_f.latents.y_indexes.astype(int)
        px = img.shape[0] * img.shape[1]
        rows.append({"image": p.stem, "bytes_float": len(e_f.data), "bytes_int": len(e_i.data),
                     "bpp_float": 8 * len(e_f.data) / px, "bpp_int": 8 * len(e_i.data) / px,
                     "psnr_float": _psnr(img, x_f), "psnr_int": _psnr(img, x_i),
                     "index_mismatch": float(np.mean(a != b)), "index_max_diff": int(np.abs(a - b).max()),
                     "same_y_symbols": bool(np.array_equal(e_i.latents.y_symbols, e_f.latents.y_symbols))})
    bf, bi = sum(r["bytes_float"] for r in rows), sum(r["bytes_int"] for r in rows)
    summary = {
        "images": len(rows),
        "bytes_float": bf, "bytes_int": bi, "rate_change_pct": 100.0 * (bi / bf - 1),
        "mean_bpp_float": float(np.mean([r["bpp_float"] for r in rows])),
        "mean_bpp_int": float(np.mean([r["bpp_int"] for r in rows])),
        "mean_psnr_float": float(np.mean([r["psnr_float"] for r in rows])),
        "mean_psnr_int": float(np.mean([r["psnr_int"] for r in rows])),
        "mean_index_mismatch_pct": 100.0 * float(np.mean([r["index_mismatch"] for r in rows])),
        "max_index_diff": max(r["index_max_diff"] for r in rows),
        "all_y_symbols_equal": all(r["same_y_symbols"] for r in rows),
    }
    out = {"what": __doc__.split("\n\n")[0], "model": art.spec.to_dict(), "float_model": fs.name,
           "fingerprint": art.fingerprint, "summary": summary, "per_image": rows,
           "versions": {"jax": jax.__version__, "python": platform.python_version(), "machine": platform.machine()},
           "command": "python experiments/portable_rd_cost.py " + " ".join(argv or sys.argv[1:]),
           "wall_s": time.time() - t0}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
