"""The long structure-aware fuzz run (docs/FORMAT.md §6, "Fuzzing"): ≥ 20,000 forged ``.lic``
files (valid header and CRC; ``lic_jax.coding.fuzz``) through the decoder of every model kind,
on small crops and on Kodak-size (768 × 512) files, with one coder. Writes a JSON summary:
outcome counts per mutation, cases that reached an entropy decoder (per model), the slowest case
(and the slowest first-of-its-size case, which includes XLA compilation), peak memory.

    nice -n 10 .venv/bin/python benchmarks/fuzz_long.py --cases 20000 --out benchmarks/fuzz_long_constriction.json
    nice -n 10 .venv-tfc/bin/python benchmarks/fuzz_long.py --coder tfc --out benchmarks/fuzz_long_tfc.json

The models are the test suite's width-16 models (trained briefly, cached; variable-rate ones
random at λ = 0.013): tests/test_limits.py ``kind_codec``. Every case must end in an image of
the header's size or a documented LicError within 2 s (first decodes of a new size excepted:
compilation); the script exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


LANDSCAPE = (1, 2, 3, 5, 6, 7, 8, 11)  # Kodak images in landscape orientation (768 wide, 512 high)


def _merge(total: dict, part: dict) -> dict:
    if not total:
        return part
    out = dict(total)
    for k in ("cases", "reached_decoder", "n_failures", "cold_cases"):
        out[k] = total[k] + part[k]
    for k in ("reached_decoder_by_model", "outcomes"):
        d = dict(total[k])
        for kk, v in part[k].items():
            d[kk] = d.get(kk, 0) + v
        out[k] = dict(sorted(d.items()))
    for k in ("slowest_case", "slowest_cold_case"):
        out[k] = max(total[k], part[k], key=lambda x: x["seconds"])
    out["seconds"] = round(total["seconds"] + part["seconds"], 1)
    out["peak_rss_mb"] = max(total["peak_rss_mb"], part["peak_rss_mb"])
    out["failures"] = (total["failures"] + part["failures"])[:20]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=20000)
    p.add_argument("--coder", default="constriction", choices=("constriction", "tfc"))
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--chunk", type=int, default=2000, help="write the summary every CHUNK cases")
    p.add_argument("--small-per-kodak", type=int, default=6,
                   help="small-crop cases per Kodak-size case (round robin)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import jax
    import numpy as np

    import test_coding_support as S
    import test_limits as L

    from lic_jax.coding import fuzz

    t0 = time.time()
    small, kodak = [], []
    for i, name in enumerate(L.KINDS):
        c = L.kind_codec(name, args.coder)
        small.append((name, c, c.compress(S.kodak_image(5 + i)[: 64 - 2 * i, : 49 + 2 * i])))
        small.append((name, c, c.compress(S.kodak_image(5 + i)[:56, :60, 1])))
        kodak.append((name + "@kodak", c, c.compress(S.kodak_image(LANDSCAPE[i]))))  # one shape: 768×512
    files = []
    for j in range(len(kodak)):  # interleave: small-per-kodak small cases, one Kodak-size case
        for k in range(args.small_per_kodak):
            files.append(small[(j * args.small_per_kodak + k) % len(small)])
        files.append(kodak[j])
    setup_s = time.time() - t0
    rng = np.random.default_rng(args.seed)
    seen: set = set()
    summary: dict = {}
    while not summary or summary["cases"] < args.cases:
        n = min(args.chunk, args.cases - summary.get("cases", 0))
        # round robin continues where the last chunk stopped: rotate the file list
        k = summary.get("cases", 0) % len(files)
        part = fuzz.campaign(files[k:] + files[:k], n, rng, time_limit=2.0, seen=seen)
        summary = _merge(summary, part)
        summary["setup_seconds"] = round(setup_s, 1)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(summary, f, indent=1)
        print(f"{summary['cases']} cases, {summary['reached_decoder']} reached a decoder, "
              f"{summary['n_failures']} failures", file=sys.stderr, flush=True)
    summary.update({
        "coder": args.coder,
        "seed": args.seed,
        "files": {"small": "sides 49…64 (RGB) and 56×60 (grey), every model kind", "kodak": "768×512 / 512×768"},
        "models": list(L.KINDS),
        "setup_seconds": round(setup_s, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    })
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0 if summary["n_failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
