"""RD evaluation of progressive codecs (toderici2017, registry coder ``progressive``).

Each image is encoded **once** to a real progressive ``.lic`` file (all K iterations); the file is
then decoded segment by segment **from its bytes** (:func:`decode_prefixes`: the same steps as
``ProgressiveCodec.decode``, which a prefix cut after iteration k runs for its k segments — the
segments of a prefix are byte-identical to the first k segments of the whole file), giving the
k-iteration reconstruction for k = 1 … K. Per image and k:

* ``bpp``: 8 · (bytes of the file cut after iteration k, header included) / (H·W) — real bytes;
* ``raw-bpp``: k · 32 bits per 16×16 block of the padded image / (H·W) (the binary code without
  the bit context model; 0.125·k on Kodak);
* the metrics of :mod:`lic_jax.evaluation.image_metrics` on the 8-bit reconstruction.

The curve's point k is the mean over images at **fixed iteration count** k (SYSTEMS.md §12.5),
for the rate as well as the metrics. ``check_prefixes`` (default: k = 1) additionally
decodes those prefixes with ``codec.decode(enc.prefix(k))`` and requires the identical image
(the separate-process check over all k is ``experiments/toderici_kodak_prefix.py``).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Iterator, Sequence

import numpy as np

from .image_metrics import DEFAULT_METRICS, compute_metrics
from .results import CURVE_KEYS, RDCurve
from .runner import aggregate

__all__ = ["curve_from_rows", "decode_prefixes", "evaluate_progressive", "is_progressive", "merge_results",
           "per_iteration_means"]


def is_progressive(codec_or_spec) -> bool:
    from lic_jax.models.registry import record_for

    try:
        rec = record_for(codec_or_spec.build() if hasattr(codec_or_spec, "build") else codec_or_spec)
    except Exception:  # noqa: BLE001 - not a registered model
        return False
    return getattr(rec, "coder", None) == "progressive"


def decode_prefixes(codec, data: bytes, output: str = "uint8", stats: dict | None = None
                    ) -> Iterator[tuple[int, int, np.ndarray, float]]:
    """Decode a progressive file segment by segment: yields ``(k, prefix_bytes, image_k, seconds)``
    for k = 1 … (iterations in the file); ``seconds`` is the time of iteration k alone (entropy
    decoding of segment k + one decoder step + cropping)."""
    from lic_jax.coding import container
    from lic_jax.coding.progressive import _programs
    from lic_jax.models import toderici2017 as T

    stats = {"coder_s": 0.0, "symbols": 0} if stats is None else stats
    stats.setdefault("coder_s", 0.0)
    stats.setdefault("symbols", 0)
    data = bytes(data)
    header, pos = container.read_header(data)
    header, segments = container.unpack_progressive(data, header, pos)
    codec._check_model(header)
    ds = codec.downsampling
    Hp, Wp = (-(-n // ds) * ds for n in (header.height, header.width))
    _, step = _programs(codec.model)
    carry = T.initial_carry(codec.model, 1, Hp, Wp)[1]
    prev = np.zeros((Hp // ds, Wp // ds, container.PROGRESSIVE_BITS), np.float32)
    offsets = header.segment_offsets
    for t, seg in enumerate(segments):
        t0 = time.perf_counter()
        b = codec.latent_coder.decode_iteration(t, seg, prev, stats)
        prev = b
        x_hat, carry = step(codec._cpu_vars, b[None], carry)
        img = codec._finish(np.asarray(x_hat), header.height, header.width, header.channels, output)
        yield t + 1, int(offsets[t]), img, time.perf_counter() - t0


def _progress(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)
    except Exception:  # noqa: BLE001
        return None


def per_iteration_means(rows: Sequence[dict], keys=None) -> list[dict]:
    """Mean over images at each iteration count k (rows carry ``iteration``): list indexed k-1."""
    ks = sorted({int(r["iteration"]) for r in rows})
    out = []
    for k in ks:
        sel = [r for r in rows if int(r["iteration"]) == k]
        agg = aggregate(sel, keys)
        if keys is None:
            agg["raw-bpp"] = float(np.mean([r["raw-bpp"] for r in sel]))
        agg["iteration"] = k
        agg["images"] = len(sel)
        out.append(agg)
    return out


def curve_from_rows(rows: Sequence[dict], name: str, dataset_name: str = "", dataset_source: str = "") -> RDCurve:
    """The per-iteration curve (means over images at fixed k) of per-image rows."""
    means = per_iteration_means(rows)
    K = max(a["iteration"] for a in means)
    keys = [k for k in CURVE_KEYS if any(k in a for a in means)]
    metrics_lists = {k: [a.get(k, math.nan) for a in means] for k in keys if k != "bpp"}
    metrics_lists["raw-bpp"] = [a["raw-bpp"] for a in means]
    metrics_lists["quality"] = [a["iteration"] for a in means]
    for t in ("encoding_time", "decoding_time"):
        metrics_lists[t] = [float(np.mean([r[t] for r in rows if r["iteration"] == a["iteration"]])) for a in means]
    n_img = len({r["image"] for r in rows})
    return RDCurve(
        name, [a["bpp"] for a in means], metrics_lists,
        f"{name}: one real progressive .lic file per image, prefixes cut at iteration boundaries k = 1 … {K}",
        None,
        {"dataset": dataset_name, "dataset_source": dataset_source, "num_images": n_img, "iterations": K,
         "points": [f"k={a['iteration']}" for a in means],
         "aggregation": "mean over images at fixed iteration count k (rate and metrics); "
                        "ms-ssim-db-rgb = -10*log10(1 - mean ms-ssim-rgb)",
         "bpp": "8 * bytes of the file cut after iteration k (header included) / (H*W)",
         "raw-bpp": "k * 32 bits per 16x16 block of the padded image / (H*W) (no bit context model)"},
    )


def merge_results(csv_paths: Sequence[str], name: str, dataset_name: str = "") -> tuple[RDCurve, list[dict]]:
    """Rebuild one curve from the per-image CSVs of several ``evaluate_progressive`` runs of the
    same model (e.g. a data set evaluated in parts); an image may appear only once."""
    import csv

    rows = []
    for p in csv_paths:
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                out = {}
                for k, v in r.items():
                    try:
                        out[k] = int(v) if k in ("iteration", "quality", "height", "width", "bytes",
                                                   "segment_bytes") else float(v)
                    except (TypeError, ValueError):
                        out[k] = v
                rows.append(out)
    seen = {}
    for r in rows:
        key = (r["image"], r["iteration"])
        if key in seen:
            raise ValueError(f"image {r['image']} iteration {r['iteration']} appears twice")
        seen[key] = True
    return curve_from_rows(rows, name, dataset_name), rows


def evaluate_progressive(codec, dataset, iterations: int | None = None, metrics=DEFAULT_METRICS,
                         progress: bool = True, name: str | None = None, check_prefixes: Sequence[int] | None = None,
                         warmup: bool = True) -> tuple[RDCurve, list[dict]]:
    """Encode every image of ``dataset`` once (``iterations``, default the model's) and evaluate
    every iteration-boundary prefix. Returns ``(curve, rows)``: one curve point per iteration
    count (quality = k), rows = one per (image, k) with ``encoding_time`` (the whole file, on
    every row of the image) and ``decoding_time`` (cumulative: iterations 1 … k, what decoding
    the k-prefix costs)."""
    n_img = len(dataset)
    if n_img == 0:
        raise ValueError("the data set is empty")
    K = codec._iterations(iterations)
    checks = sorted({1} if check_prefixes is None else {int(k) for k in check_prefixes})
    bar = _progress(n_img, progress)
    rows: list[dict] = []
    warmed = set()
    try:
        for i in range(n_img):
            img = dataset.loaders[i]()
            H, W = img.shape[:2]
            mask = None if getattr(dataset, "masks", None) is None else dataset.masks[i](img.shape)
            if warmup and img.shape not in warmed:  # compile unroll / step for this shape untimed
                e = codec.encode(img, iterations=1)
                list(decode_prefixes(codec, e.data))
                warmed.add(img.shape)
            t0 = time.perf_counter()
            enc = codec.encode(img, iterations=K)
            enc_s = time.perf_counter() - t0
            raw_per_it = 32.0 * enc.bits.shape[1] * enc.bits.shape[2] / (H * W)
            cum = 0.0
            recs = {}
            for k, nbytes, rec, sec in decode_prefixes(codec, enc.data):
                cum += sec
                if nbytes != len(enc.prefix(k)):
                    raise AssertionError(f"prefix {k}: decoder offset {nbytes} != encoder offset {len(enc.prefix(k))}")
                if k in checks:
                    recs[k] = rec
                r = {"point": f"k={k}", "quality": k, "iteration": k, "image": dataset.names[i], "height": H,
                     "width": W, "bytes": nbytes, "bpp": 8.0 * nbytes / (H * W), "raw-bpp": k * raw_per_it,
                     "segment_bytes": int(enc.header.stream_lengths[k - 1])}
                if mask is not None:
                    r["mask-fraction"] = float(np.mean(mask))
                r.update(compute_metrics(img, rec, metrics, mask))
                r["encoding_time"] = enc_s
                r["decoding_time"] = cum
                r["iteration_decoding_time"] = sec
                rows.append(r)
            for k in checks:
                if k > K:
                    continue
                alone = codec.decompress(enc.prefix(k))
                if not np.array_equal(alone, recs[k]):
                    raise AssertionError(f"{dataset.names[i]}: decoding the {k}-iteration prefix alone differs "
                                         "from the segment-by-segment decode")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    curve = curve_from_rows(rows, name or getattr(codec, "_name", lambda: "progressive")(),
                            getattr(dataset, "name", ""), getattr(dataset, "source", ""))
    curve.meta["prefix_checks"] = f"prefixes k in {checks} decoded alone = the segment-by-segment images"
    return curve, rows
