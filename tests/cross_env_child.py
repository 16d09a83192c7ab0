"""Child process of tests/test_portable.py: encode or decode .lic files in *this* Python environment.

    python tests/cross_env_child.py encode|decode JOBS.json

JOBS.json: [{"model": MODEL_DIR, "out": OUT_DIR, "paths": [...]}, …] (one process, several models:
each child pays jax's start-up and compilation once).
encode (a variable-rate model: image i at the ((i mod n) + 1)-th of its n trained λ): writes OUT_DIR/<stem>.lic and OUT_DIR/<stem>.enc.npz (the encoder's y and z symbols).
decode: decodes the latents of each file (no synthesis) and writes OUT_DIR/<stem>.dec.npz, or
records the one-line error. Prints one JSON line: {"jax": version, "results": [{stem: "ok" | error}, …]}
(one dict per job).
"""

from __future__ import annotations

import json
import os
import sys


def main(argv):
    mode, jobs = argv
    with open(jobs) as f:
        jobs = json.load(f)
    import jax

    print(json.dumps({"jax": jax.__version__, "results": [run(mode, j["model"], j["out"], j["paths"]) for j in jobs]}))


def run(mode, model_dir, out_dir, paths):
    import numpy as np

    from lic_jax.artifact import load_artifact
    from lic_jax.coding import Codec
    from lic_jax.coding.image_io import read_image

    codec = Codec.from_artifact(load_artifact(model_dir))
    results = {}
    # a variable-rate model (the bundled default) codes image i at its ((i mod n) + 1)-th trained λ
    lams = sorted(float(v) for v in codec.model.lmbdas) if codec.variable_rate else [None]
    for i, p in enumerate(paths):
        stem = os.path.splitext(os.path.basename(p))[0]
        if mode == "encode":
            enc = codec.encode(read_image(p), lams[i % len(lams)])
            with open(os.path.join(out_dir, stem + ".lic"), "wb") as f:
                f.write(enc.data)
            lat = enc.latents
            np.savez(os.path.join(out_dir, stem + ".enc.npz"), y=lat.y_symbols, z=lat.z_symbols)
            results[stem] = "ok"
        else:
            with open(p, "rb") as f:
                data = f.read()
            try:
                lat = codec.decode(data, output="latents").latents
            except Exception as e:  # what a user would see: the one-line error
                results[stem] = f"{type(e).__name__}: {e}".splitlines()[0]
                continue
            np.savez(os.path.join(out_dir, stem + ".dec.npz"), y=lat.y_symbols, z=lat.z_symbols)
            results[stem] = "ok"
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
