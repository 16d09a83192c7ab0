"""Round trips of an akutsu2020 model on a whole dataset, encoder and decoder in separate processes
(issue 20, "Round trips on all 24 Kodak images with and without --detail, in a separate process").

    python experiments/akutsu_roundtrips.py --model MODEL --dataset kodak --out RESULT.json

Three fresh Python processes share nothing but the model directory and the files: the first encodes
every image of the data set (``lic_jax.evaluation.datasets.resolve_dataset``, as eval.py) to ``.lic`` files and saves the encoder's latents (ŷ,
the y and z symbols); the second decodes every file with the main decoder (``lic decompress``) and
the third with the fused decoder (``lic decompress --detail``). For each image and decoder the row
says whether the decoded z symbols, y symbols and ŷ (float32, bit for bit) equal the encoder's and
whether the image has the input's shape, plus whether the fused image differs from the main one.
The JSON holds the rows, the bytes and bpp of every file, and the wall time of each process.
Exit status 1 when any round trip is not exact. ``tests/test_akutsu_coding.py``
(``test_kodak_round_trips_in_separate_processes``) runs this script on a tiny model.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dataset(spec: str):
    from lic_jax.evaluation.datasets import DatasetNotFound, resolve_dataset

    try:
        return resolve_dataset(spec)
    except DatasetNotFound as e:
        raise SystemExit(f"akutsu_roundtrips.py: error: {e}") from None


def encode_all(model: str, dataset: str, work: str):
    import numpy as np

    from lic_jax.coding import Codec

    codec = Codec.from_artifact(model)
    for name, img in _dataset(dataset):
        enc = codec.encode(img)
        stem = os.path.join(work, os.path.splitext(name)[0].replace(os.sep, "_"))
        with open(stem + ".lic", "wb") as fh:
            fh.write(enc.data)
        np.savez(stem + ".npz", y_hat=enc.latents.y_hat, y=enc.latents.y_symbols, z=enc.latents.z_symbols,
                 shape=np.asarray(img.shape))


def decode_all(model: str, work: str, decoder: str):
    import numpy as np

    from lic_jax.coding import Codec

    codec = Codec.from_artifact(model)
    rows = []
    for f in sorted(glob.glob(os.path.join(work, "*.lic"))):
        with open(f, "rb") as fh:
            data = fh.read()
        ref = np.load(f[:-4] + ".npz")
        img, lat, _ = codec.decode(data, decoder=decoder)
        exact = bool(np.array_equal(lat.z_symbols, ref["z"]) and np.array_equal(lat.y_symbols, ref["y"])
                     and lat.y_hat.dtype == np.float32 and lat.y_hat.tobytes() == ref["y_hat"].tobytes()
                     and img.dtype == np.uint8 and img.shape == tuple(ref["shape"]))
        np.save(f[:-4] + f".{decoder}.npy", img)
        rows.append({"image": os.path.basename(f)[:-4], "exact": exact})
    return rows


def _child(args, env):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, os.path.abspath(__file__)] + args, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"akutsu_roundtrips.py: error: {args[0]} failed: {r.stderr.strip()[-2000:]}")
    return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "", time.perf_counter() - t0


def run(model: str, dataset: str, work: str) -> dict:
    import numpy as np

    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    _, t_enc = _child(["_encode", model, dataset, work], env)
    out = {"model": os.path.abspath(model), "images": dataset, "seconds": {"encode": round(t_enc, 2)}}
    per = {}
    for dec in ("synthesis_main", "synthesis_fused"):
        line, t = _child(["_decode", model, work, dec], env)
        out["seconds"][dec] = round(t, 2)
        for row in json.loads(line):
            per.setdefault(row["image"], {})[dec] = row["exact"]
    rows = []
    for name, r in sorted(per.items()):
        stem = os.path.join(work, name)
        size = os.path.getsize(stem + ".lic")
        shape = np.load(stem + ".npz")["shape"]
        main, fused = np.load(stem + ".synthesis_main.npy"), np.load(stem + ".synthesis_fused.npy")
        rows.append({"image": name, "bytes": size, "bpp": 8 * size / float(shape[0] * shape[1]),
                     "main_exact": r.get("synthesis_main", False), "fused_exact": r.get("synthesis_fused", False),
                     "detail_differs": bool(np.abs(main.astype(int) - fused).max() > 0)})
    out["rows"] = rows
    out["n"] = len(rows)
    out["all_exact"] = bool(rows) and all(x["main_exact"] and x["fused_exact"] for x in rows)
    out["mean_bpp"] = float(np.mean([x["bpp"] for x in rows])) if rows else None
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_encode":
        encode_all(*argv[1:4])
        return 0
    if argv and argv[0] == "_decode":
        print(json.dumps(decode_all(*argv[1:4])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="an akutsu2020 model directory")
    p.add_argument("--dataset", default="kodak", help="kodak, clic[:split] or a directory (eval.py's data sets)")
    p.add_argument("--out", help="write the result JSON here")
    p.add_argument("--workdir", help="keep the .lic files and latents here (default: a temporary folder)")
    a = p.parse_args(argv)
    _dataset(a.dataset)  # a clear error here rather than from the encoding process
    if a.workdir:
        os.makedirs(a.workdir, exist_ok=True)
        res = run(a.model, a.dataset, a.workdir)
    else:
        with tempfile.TemporaryDirectory() as work:
            res = run(a.model, a.dataset, work)
    text = json.dumps(res, indent=1)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as fh:
            fh.write(text + "\n")
    print(f"{res['n']} images, mean {res['mean_bpp']:.4f} bpp, all exact: {res['all_exact']}, "
          f"fused differs from main in {sum(x['detail_differs'] for x in res['rows'])}; seconds {res['seconds']}")
    return 0 if res["all_exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
