"""Write the committed codec fixtures (tests/data/codec_fixtures/, issue 11).

For every registered model: a small artifact (random initialisation, seed 0, narrow N / M so
that it weighs a few kB), one or two ``.lic`` files of a generated 45×38 image (odd sides, so
the padding rule is exercised; one grey file) and what the decoder returned when they were
written: the integer symbols and the uint8 image (``expected.npz``). ``tests/test_codec_fixtures.py``
decodes the files with the current code and requires the very same symbols and pixels, so a
refactoring of the coding path that changes a single decoded bit fails.

    .venv/bin/python scripts/make_codec_fixtures.py      # rewrites the fixtures: only on purpose

The fixtures were written by the code before the issue-11 redesign: the commit recorded as
``written_by`` in index.json, plus this script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lic_jax.artifact import save_artifact  # noqa: E402
from lic_jax.coding import Codec  # noqa: E402
from lic_jax.models import get_model, registry  # noqa: E402
from lic_jax.models.portable import portable_spec  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "codec_fixtures")

CASES = {  # name: (hparams, [λ or None per file])
    "bmshj2018-factorized": ({"N": 8, "M": 12}, [None]),
    "bmshj2018-hyperprior": ({"N": 8, "M": 12}, [None]),
    "mbt2018-mean": ({"N": 8, "M": 12}, [None]),
    "mbt2018": ({"N": 8, "M": 12}, [None]),
    "bls2017": ({"N": 8}, [None]),
    "lee2019": ({"N": 8, "M": 12}, [None]),
    "mae-bls2017": ({"N": 8}, [0.0035, 0.025]),
    "mae-hyperprior": ({"N": 8, "M": 12}, [0.0035, 0.025]),
    # issue 13 (portable twins: calibrated on the fixture image) and seed 004's JPEG-payload model
    "bmshj2018-hyperprior-int": ({"N": 8, "M": 12}, [None]),
    "mbt2018-mean-int": ({"N": 8, "M": 12}, [None]),
    "mbt2018-int": ({"N": 8, "M": 12}, [None]),
    # issue 18: the bundled default's architecture (portable variable-rate hyperprior)
    "mae-hyperprior-int": ({"N": 8, "M": 12}, [0.0035, 0.025]),
    "comcnn-jpeg": ({}, [None]),
    # issue 15: progressive files (format version 2), a 3-iteration tiny recurrent codec and a seeded
    # (untrained) bit context model in the artifact's bitcoder.npz
    "toderici2017": ({"cell": "gru", "mode": "additive", "width": 0.0625, "iterations": 3}, [None]),
    # issue 20: the attention-context coder (raster order), main decoder; 1 RCAB per group, width 1/16
    "akutsu2020": ({"width": 0.0625, "blocks": 1}, [None]),
}


def image(grey: bool) -> np.ndarray:
    """A generated 45×38 test image: smooth gradients + a disc + texture (seeded)."""
    h, w = 45, 38
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(7)
    r = 0.5 + 0.4 * np.sin(xx / 6.0) * np.cos(yy / 9.0)
    g = (xx + yy) / (h + w)
    b = ((xx - 19) ** 2 + (yy - 22) ** 2 < 150).astype(np.float32) * 0.7 + 0.1
    x = np.stack([r, g, b], -1) + rng.normal(0, 0.05, (h, w, 3))
    x = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    return x.mean(-1).round().astype(np.uint8) if grey else x


def energise(params):
    """Random initialisation codes almost every latent as 0: scale the last analysis and
    hyper-analysis convolutions (and the context model) so that y and z span many symbols."""
    params = jax.tree_util.tree_map(np.asarray, dict(params))
    for prefix, gain in (("g_a_", 40.0), ("h_a_", 8.0)):
        convs = [k for k in params if k.startswith(prefix) and "kernel" in params[k]]
        if not convs:
            continue
        last = max(convs, key=lambda k: int(k[4:]))
        params[last] = {**params[last], "kernel": params[last]["kernel"] * np.float32(gain)}
    for k in ("context_prediction", "window"):
        if k in params:
            params[k] = jax.tree_util.tree_map(lambda a: a * np.float32(4.0), params[k])
    return params


def main(argv=None):
    """No arguments: rewrite every case. ``--add NAME …``: write only these cases and keep the others (files
    written by earlier versions must stay as they were: that is what the fixtures pin)."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--add", nargs="*", default=None, help="only (re)write these cases")
    args_ = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if args_.add is None:
        shutil.rmtree(OUT, ignore_errors=True)
        os.makedirs(OUT)
        index = {"written_by": commit, "jax": jax.__version__, "cases": {}}
    else:
        with open(os.path.join(OUT, "index.json")) as f:
            index = json.load(f)
    for name, (hp, lams) in CASES.items():
        if args_.add is not None and name not in args_.add:
            continue
        model, spec = get_model(name, **hp)
        x0 = np.zeros((1, 64, 64, 3), np.float32)
        args = (x0, np.float32(lams[0])) if lams[0] is not None else (x0,)
        variables = {"params": energise(model.init(jax.random.PRNGKey(0), *args)["params"])}
        if registry.record(name).portable_of:
            spec = portable_spec(spec, variables, [image(False).astype(np.float32) / np.float32(255)])
        d = os.path.join(OUT, name)
        save_artifact(os.path.join(d, "artifact"), spec, variables, tables=False)  # tables rebuilt on load
        progressive = registry.record(name).coder == "progressive"
        if progressive:  # the bit context model (lic_jax.entropy_models.binary), fitted briefly to the model's
            # codes of the (edge-padded) fixture image (explicit keys), so that the files use the coded method
            from lic_jax.entropy_models import binary

            iters = int(hp.get("iterations", 16))
            x = np.pad(image(False).astype(np.float32) / 255.0, ((1, 2), (5, 5), (0, 0)), mode="edge")  # 48×48
            bits = binary.collect_bits(model, variables, [x], iters, jax.random.key(1), crop=48, count=2)
            ctx = binary.fit(bits, jax.random.key(2), steps=150)[1]
            np.savez(os.path.join(d, "artifact", "bitcoder.npz"), **binary.params_to_arrays(ctx))
        codec = Codec.from_artifact(os.path.join(d, "artifact"))
        codec.record_environment = False  # no environment field (flags bit 6): the test re-encodes without it
        expected, files = {}, []
        for i, lam in enumerate(lams):
            for grey in ((False, True) if i == 0 else (False,)):
                tag = f"{i}{'_grey' if grey else ''}"
                data = codec.compress(image(grey), lmbda=lam)
                img, lat, _ = codec.decode(data)
                with open(os.path.join(d, f"{tag}.lic"), "wb") as f:
                    f.write(data)
                expected[f"{tag}_image"] = img
                if progressive:  # Decoded[1]: the bits (k, h, w, 32)
                    expected[f"{tag}_bits"] = lat
                    files.append({"file": f"{tag}.lic", "lmbda": lam, "grey": grey, "bytes": len(data)})
                    continue
                expected[f"{tag}_y_symbols"] = lat.y_symbols
                if lat.z_symbols is not None:
                    expected[f"{tag}_z_symbols"] = lat.z_symbols
                files.append({"file": f"{tag}.lic", "lmbda": lam, "grey": grey, "bytes": len(data)})
        np.savez_compressed(os.path.join(d, "expected.npz"), **expected)
        index["cases"][name] = {"hparams": hp, "files": files,
                                **({"written_by": commit} if args_.add is not None else {})}
        if progressive:
            from lic_jax.coding import container

            methods = [seg[0] for f in files
                       for seg in container.unpack(open(os.path.join(d, f["file"]), "rb").read())[1]]
            print(name, [f["bytes"] for f in files], "bits +1 fraction", float(np.mean(expected["0_bits"] > 0)),
                  "segment methods (0 coded, 1 raw)", methods)
            continue
        print(name, [f["bytes"] for f in files], "max |y symbol|", int(np.abs(expected["0_y_symbols"]).max()),
              "nonzero", float(np.mean(expected["0_y_symbols"] != 0)))
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


if __name__ == "__main__":
    main()
