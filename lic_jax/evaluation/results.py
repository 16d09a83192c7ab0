"""Rate-distortion result files: CompressAI's JSON format, TFC's text format, per-image CSV.

CompressAI's format (``compressai.utils.eval_model`` / ``compressai.utils.bench``)::

    {"name": str, "description": str,
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                 "encoding_time": [...], "decoding_time": [...]}}

one entry per quality point, each the mean over the images of the data set. lic_jax writes the
same keys (so CompressAI's plotting scripts read its files) plus optional extra lists:
``quality``, ``psnr-y`` (BT.601 Y′), ``ms-ssim-db-rgb`` (−10·log10(1 − mean MS-SSIM), the key
CompressAI's ``paper-*.json`` use), ``psnr-hvs``, ``psnr-hvs-m``, ``bpp-payload`` (container excluded), ``bpp-estimate``; and a
top-level ``"meta"`` object (data set, number of images, how the rate was measured, versions).

TFC's format (``results/image_compression/kodak/*/*.txt``): ``#`` comment lines, then
``bpp, value`` rows; the header says which metric (``PSNR/...`` or ``MS-SSIM/...``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = [
    "RDCurve",
    "load_curve",
    "save_json",
    "write_csv",
    "METRIC_ALIASES",
    "resolve_metric",
    "CURVE_KEYS",
]

# Keys of the per-point lists, in the order lic_jax writes them.
CURVE_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time", "psnr-y", "ms-ssim-db-rgb",
              "psnr-hvs", "psnr-hvs-m", "bpp-payload", "bpp-estimate", "psnr-rgb@mask", "ms-ssim-rgb@mask",
              "ms-ssim-db-rgb@mask", "mask-fraction")

METRIC_ALIASES = {
    "psnr": "psnr-rgb",
    "psnr-rgb": "psnr-rgb",
    "psnr-y": "psnr-y",
    "ms-ssim": "ms-ssim-rgb",
    "ms-ssim-rgb": "ms-ssim-rgb",
    "ms-ssim-db": "ms-ssim-db-rgb",
    "ms-ssim-db-rgb": "ms-ssim-db-rgb",
    "psnr-hvs": "psnr-hvs",
    "psnr-hvs-m": "psnr-hvs-m",
}


def resolve_metric(name: str) -> str:
    key = METRIC_ALIASES.get(name.lower())
    if key is None:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(METRIC_ALIASES))}")
    return key


@dataclasses.dataclass
class RDCurve:
    """A rate-distortion curve: ``bpp`` plus one list per metric (same length)."""

    name: str
    bpp: list[float]
    metrics: dict[str, list[float]]
    description: str = ""
    source: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def has(self, metric: str) -> bool:
        key = resolve_metric(metric)
        if key == "ms-ssim-db-rgb":
            return key in self.metrics or "ms-ssim-rgb" in self.metrics
        if key == "ms-ssim-rgb":
            return key in self.metrics or "ms-ssim-db-rgb" in self.metrics
        return key in self.metrics

    def values(self, metric: str) -> np.ndarray:
        """The metric's values; MS-SSIM and MS-SSIM dB are derived from each other when one is missing."""
        key = resolve_metric(metric)
        if key in self.metrics:
            return np.asarray(self.metrics[key], np.float64)
        if key == "ms-ssim-db-rgb" and "ms-ssim-rgb" in self.metrics:
            v = np.asarray(self.metrics["ms-ssim-rgb"], np.float64)
            return -10.0 * np.log10(1.0 - v)
        if key == "ms-ssim-rgb" and "ms-ssim-db-rgb" in self.metrics:
            return 1.0 - 10.0 ** (-np.asarray(self.metrics["ms-ssim-db-rgb"], np.float64) / 10.0)
        raise KeyError(f"{self.name}: no {key!r} values (has {', '.join(sorted(self.metrics))})")

    def points(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(bpp, metric) for the points where both are finite."""
        b = np.asarray(self.bpp, np.float64)
        v = self.values(metric)
        ok = np.isfinite(b) & np.isfinite(v)
        return b[ok], v[ok]

    def to_json(self) -> dict:
        results = {"bpp": list(map(float, self.bpp))}
        for k in CURVE_KEYS[1:]:
            if k in self.metrics:
                results[k] = [_num(v) for v in self.metrics[k]]
        for k, v in self.metrics.items():
            if k not in results:
                results[k] = [_num(x) for x in v]
        out = {"name": self.name, "description": self.description, "results": results}
        if self.meta:
            out["meta"] = self.meta
        return out


def _num(v):
    if v is None:
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


def _from_json(path: str, data: Mapping) -> RDCurve:
    if "results" not in data or "bpp" not in data["results"]:
        raise ValueError(f"{path}: not a CompressAI-style result file (no results.bpp)")
    res = data["results"]
    n = len(res["bpp"])
    metrics = {}
    for k, v in res.items():
        if k == "bpp" or not isinstance(v, list) or len(v) != n:
            continue
        metrics[k] = [np.nan if x is None else x for x in v]
    name = data.get("name") or os.path.splitext(os.path.basename(path))[0]
    return RDCurve(name, [float(x) for x in res["bpp"]], metrics, data.get("description", ""), path,
                   dict(data.get("meta", {})))


def _from_tfc_txt(path: str, text: str) -> RDCurve:
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    head = "\n".join(header)
    key = "ms-ssim-rgb" if "MS-SSIM" in head else "psnr-rgb"
    name = os.path.splitext(os.path.basename(path))[0]
    for ln in header:
        if "rate-distortion data for" in ln and '"' in ln:
            name = ln.split('"')[1]
            break
    rows = []
    for ln in text.splitlines():
        s = ln.strip()
        if not s or s.startswith("#"):
            continue
        parts = [p for p in s.replace(",", " ").split() if p]
        if len(parts) < 2:
            raise ValueError(f"{path}: cannot parse data line {ln!r}")
        rows.append((float(parts[0]), float(parts[1])))
    if not rows:
        raise ValueError(f"{path}: no data lines")
    arr = np.asarray(rows)
    return RDCurve(name, arr[:, 0].tolist(), {key: arr[:, 1].tolist()}, "TFC aggregate RD data", path)


def load_curve(path) -> RDCurve:
    """Load a CompressAI-style JSON (incl. lic_jax's) or a TFC ``.txt`` result file."""
    path = os.fspath(path)
    with open(path) as f:
        text = f.read()
    s = text.lstrip()
    if s.startswith("{"):
        return _from_json(path, json.loads(text))
    return _from_tfc_txt(path, text)


def save_json(curve: RDCurve, path) -> None:
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(curve.to_json(), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def write_csv(rows: Iterable[Mapping[str, Any]], path, fields: list[str] | None = None) -> None:
    """Per-image rows → CSV (fields: the given list, else the union of keys in first-seen order)."""
    rows = list(rows)
    if fields is None:
        fields = []
        for r in rows:
            for k in r:
                if k not in fields:
                    fields.append(k)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in fields})


def _fmt(v):
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    return "" if v is None else v
