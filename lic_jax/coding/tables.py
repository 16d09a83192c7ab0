"""Coding tables: quantised CDFs as a pure, deterministic function of a model's parameters.

Everything here runs on the host in numpy (float64, no BLAS, no JAX), so the same parameters
give the same integer tables in every process. The layout follows CompressAI's ``update()``
(``compressai/entropy_models/entropy_models.py``) and TFC's range-coder lookup:

* a :class:`CdfTable` holds ``n`` distributions; row ``i`` has ``L_i`` *regular* symbols (the
  integer values ``offset_i … offset_i + L_i − 1``) plus one **escape** symbol (index ``L_i``)
  that carries the tail mass; ``cdf[i, :L_i + 2]`` is its cumulative frequency table
  ``0 = c_0 < c_1 < … < c_{L_i+1} = 2**precision`` (every symbol has frequency ≥ 1, so every
  value — in range or escaped — is codable: never a crash, never a clip);
* **precision = 16 bits** (CompressAI's ``entropy_coder_precision`` and TFC v1's range-coder
  precision): the largest table (σ = 256: 3 129 symbols + escape) needs ≥ 12 bits, 16 bits
  keep the quantisation loss far below 0.1 % of the rate; TFC's range coder uses them exactly,
  constriction re-quantises them deterministically to its 24-bit precision;
* factorized density (entropy bottleneck): per channel ``c`` the support is
  ``median_c + [−ceil(median − lower), ceil(upper − median)]`` from the learned
  ``quantiles`` (CompressAI ``update()``), the pmf is c(x+½) − c(x−½) of the density, the
  escape carries the mass of both tails; symbols are ``round(y − median_c)``;
* Gaussian conditional: the 64-entry scale table exp(linspace(log .11, log 256, 64)) (float32),
  support ``±ceil(σ_k · 6.109…)`` where 6.109 = −Φ⁻¹(1e-9 / 2) (CompressAI's tail 1e-9 rule),
  pmf Φ((½ − |v|)/σ) − Φ((−½ − |v|)/σ), escape = both tails; symbols ``round(y − μ)``;
* Lee 2019's zero-mean Gaussian z with a learned per-channel scale (``z_model='gaussian'``):
  the same Gaussian rule with ``max(|z_scale_c|, 0.11)`` — one table per channel.

Quantisation of a pmf (:func:`quantize_pmf`): frequencies ``max(1, round(p / Σp · 2**precision))``;
the rounding excess is taken from (or the deficit given to) the most probable symbols, in a
fixed order — integer arithmetic after one float64 rounding. The half-support is capped at
:data:`MAX_HALF_SUPPORT` (values beyond are escaped, which is exact, only slightly costlier).

Portability: the tables are integers. They depend on the parameters only through float64
``exp``/``log1p``/``tanh``/``erfc``; a frequency could differ between machines only if
``p · 2**16`` fell within ~1e-12 of a rounding boundary. Artifacts store the tables
(``tables.npz``) and :func:`verify_tables` compares them with a rebuild on load.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np
import scipy.special

from ..entropy_models.gaussian import SCALES_MIN, scale_table as _scale_table
from .errors import TableError

__all__ = [
    "PRECISION",
    "TAIL_MASS",
    "TABLES_VERSION",
    "MAX_HALF_SUPPORT",
    "CdfTable",
    "quantize_pmf",
    "factorized_table",
    "gaussian_table",
    "gaussian_scale_tables",
    "build_tables",
    "tables_to_arrays",
    "tables_from_arrays",
    "tables_equal",
    "verify_tables",
    "model_kind",
]

PRECISION = 16
TAIL_MASS = 1e-9
TABLES_VERSION = 1
MAX_HALF_SUPPORT = 1 << 12  # cap on each side of a support (escape beyond)


# ------------------------------------------------------------------------------------------
# the table object
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class CdfTable:
    """``n`` quantised distributions with an escape symbol each.

    Attributes:
      cdf: (n, max_len) int32; row i uses its first ``cdf_length[i]`` entries (rest 0-padded).
      cdf_length: (n,) int32 = L_i + 2 (L_i regular symbols, the escape, the leading 0).
      offset: (n,) int32, the integer value coded by regular symbol 0.
      precision: bits of the frequencies (sum = 2**precision).
    """

    cdf: np.ndarray
    cdf_length: np.ndarray
    offset: np.ndarray
    precision: int = PRECISION

    def __post_init__(self):
        self.cdf = np.ascontiguousarray(self.cdf, np.int32)
        self.cdf_length = np.ascontiguousarray(self.cdf_length, np.int32)
        self.offset = np.ascontiguousarray(self.offset, np.int32)
        self._cache: dict = {}

    @property
    def size(self) -> int:
        return int(self.cdf.shape[0])

    @property
    def num_regular(self) -> np.ndarray:
        """(n,) number of regular symbols L_i (the escape symbol has index L_i)."""
        return self.cdf_length - 2

    def frequencies(self, i: int) -> np.ndarray:
        """Integer frequencies of row i: L_i + 1 values (last = escape), sum 2**precision."""
        return np.diff(self.cdf[i, : self.cdf_length[i]]).astype(np.int64)

    def log2_probs(self) -> np.ndarray:
        """(n, max_len − 1) float64 −log2 p of each symbol (inf where unused)."""
        key = "log2"
        if key not in self._cache:
            f = np.diff(self.cdf.astype(np.int64), axis=1).astype(np.float64)
            used = np.arange(f.shape[1])[None, :] < (self.cdf_length[:, None] - 1)
            f = np.where(used, f, 0.0)
            with np.errstate(divide="ignore"):
                self._cache[key] = self.precision - np.log2(f)
        return self._cache[key]

    def tfc_lookup(self) -> np.ndarray:
        """TFC range-coder lookup: per row ``[-precision, cdf_0 … cdf_{L+1}]`` concatenated
        (negative precision = overflow/escape coding on)."""
        key = "tfc"
        if key not in self._cache:
            blocks = [np.concatenate([[-self.precision], self.cdf[i, : self.cdf_length[i]]]) for i in range(self.size)]
            self._cache[key] = np.concatenate(blocks).astype(np.int32)
        return self._cache[key]

    def to_arrays(self, prefix: str) -> dict:
        return {f"{prefix}_cdf": self.cdf, f"{prefix}_cdf_length": self.cdf_length, f"{prefix}_offset": self.offset}

    def equals(self, other: "CdfTable") -> bool:
        return (
            self.precision == other.precision
            and self.cdf.shape == other.cdf.shape
            and np.array_equal(self.cdf, other.cdf)
            and np.array_equal(self.cdf_length, other.cdf_length)
            and np.array_equal(self.offset, other.offset)
        )

    def ideal_bits(self, values: np.ndarray, indexes: np.ndarray, overflow_bits=None) -> float:
        """Σ −log2 p of coding ``values`` with rows ``indexes`` (escape symbol for out-of-range
        values, plus ``overflow_bits(g)`` bypass bits per escape if given)."""
        values = np.asarray(values, np.int64).ravel()
        indexes = np.asarray(indexes, np.int64).ravel()
        u = values - self.offset[indexes]
        L = self.num_regular[indexes].astype(np.int64)
        esc = (u < 0) | (u >= L)
        sym = np.where(esc, L, u)
        bits = float(self.log2_probs()[indexes, sym].sum())
        if overflow_bits is not None and esc.any():
            bits += float(np.sum(overflow_bits(escape_magnitudes(u[esc], L[esc]))))
        return bits


def escape_magnitudes(u: np.ndarray, L: np.ndarray) -> np.ndarray:
    """TFC's overflow magnitude g ≥ 1 of escaped values: −u below the support, u − L + 1 above."""
    u = np.asarray(u, np.int64)
    return np.where(u < 0, -u, u - np.asarray(L, np.int64) + 1)


def _pack_rows(cdfs: list[np.ndarray], offsets) -> CdfTable:
    n = len(cdfs)
    max_len = max(len(c) for c in cdfs)
    cdf = np.zeros((n, max_len), np.int32)
    for i, c in enumerate(cdfs):
        cdf[i, : len(c)] = c
    return CdfTable(cdf, np.array([len(c) for c in cdfs], np.int32), np.asarray(offsets, np.int32))


# ------------------------------------------------------------------------------------------
# pmf → quantised cdf
# ------------------------------------------------------------------------------------------
def quantize_pmf(pmf, precision: int = PRECISION) -> np.ndarray:
    """Integer CDF (len(pmf)+1 entries, 0 … 2**precision) with every frequency ≥ 1.

    ``pmf`` includes the escape (tail) mass as its last element; it need not sum to 1.
    """
    p = np.asarray(pmf, np.float64)
    if p.ndim != 1 or p.size == 0:
        raise TableError("pmf must be a non-empty vector")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise TableError("cannot build coding tables: the density has non-finite or negative values (NaN weights?)")
    total = float(p.sum())
    scale = 1 << precision
    if p.size > scale:
        raise TableError(f"a table with {p.size} symbols does not fit {precision}-bit precision")
    if not total > 0:
        raise TableError("cannot build coding tables: the density has no mass on its support")
    f = np.maximum(np.floor(p / total * scale + 0.5), 1.0).astype(np.int64)
    diff = scale - int(f.sum())
    if diff > 0:
        f[int(np.argmax(p))] += diff
    while diff < 0:
        # take one unit from each of the largest frequencies (ties: lower index first)
        order = np.lexsort((np.arange(f.size), -f))
        room = f[order] - 1
        take = order[room > 0][: -diff]
        if take.size == 0:  # cannot happen: size <= scale guarantees room
            raise TableError("pmf quantisation failed")
        f[take] -= 1
        diff += take.size
    cdf = np.zeros(f.size + 1, np.int64)
    np.cumsum(f, out=cdf[1:])
    assert cdf[-1] == scale
    return cdf.astype(np.int32)


# ------------------------------------------------------------------------------------------
# densities (float64 numpy, fixed evaluation order)
# ------------------------------------------------------------------------------------------
def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return scipy.special.expit(x)


def _eb_logits_cumulative(eb: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Ballé 2018 App. 6.1 density network, numpy float64; x: (C, 1, N) → (C, 1, N)."""
    n_layers = sum(1 for k in eb if k.startswith("matrix_"))
    logits = np.asarray(x, np.float64)
    for i in range(n_layers):
        m = _softplus(np.asarray(eb[f"matrix_{i}"], np.float64))  # (C, out, in)
        # explicit sum over the (≤ 3-wide) input axis: a fixed order, no BLAS
        acc = m[:, :, 0:1] * logits[:, 0:1, :]
        for k in range(1, m.shape[2]):
            acc = acc + m[:, :, k : k + 1] * logits[:, k : k + 1, :]
        logits = acc + np.asarray(eb[f"bias_{i}"], np.float64)
        if i < n_layers - 1:
            logits = logits + np.tanh(np.asarray(eb[f"factor_{i}"], np.float64)) * np.tanh(logits)
    return logits


def factorized_table(eb: Mapping[str, np.ndarray], precision: int = PRECISION) -> CdfTable:
    """Per-channel tables of an entropy bottleneck (CompressAI ``EntropyBottleneck.update``)."""
    eb = {k: np.asarray(v) for k, v in eb.items()}
    q = np.asarray(eb["quantiles"], np.float32).astype(np.float64)  # (C, 1, 3)
    if not np.all(np.isfinite(q)):
        raise TableError("cannot build coding tables: non-finite entropy-bottleneck quantiles")
    lower, median, upper = q[:, 0, 0], q[:, 0, 1], q[:, 0, 2]
    minima = np.clip(np.ceil(median - lower), 0, MAX_HALF_SUPPORT).astype(np.int64)
    maxima = np.clip(np.ceil(upper - median), 0, MAX_HALF_SUPPORT).astype(np.int64)
    lengths = minima + maxima + 1
    C = q.shape[0]
    cdfs = []
    for c in range(C):
        samples = median[c] + (np.arange(lengths[c], dtype=np.float64) - minima[c])
        x = samples[None, None, :]
        one = {k: v[c : c + 1] for k, v in eb.items() if k != "quantiles"}
        lo = _eb_logits_cumulative(one, x - 0.5)[0, 0]
        up = _eb_logits_cumulative(one, x + 0.5)[0, 0]
        sign = -np.sign(lo + up)
        sign = np.where(sign == 0, 1.0, sign)
        pmf = np.abs(_sigmoid(sign * up) - _sigmoid(sign * lo))
        tail = _sigmoid(lo[0]) + _sigmoid(-up[-1])
        cdfs.append(quantize_pmf(np.concatenate([pmf, [tail]]), precision))
    return _pack_rows(cdfs, -minima)


def _gaussian_multiplier(tail_mass: float) -> float:
    return float(-scipy.special.ndtri(tail_mass / 2))


def gaussian_table(scales, tail_mass: float = TAIL_MASS, precision: int = PRECISION) -> CdfTable:
    """One zero-mean Gaussian table per scale (CompressAI ``GaussianConditional.update``)."""
    scales = np.asarray(scales, np.float32).astype(np.float64).ravel()
    if not np.all(np.isfinite(scales)):
        raise TableError("cannot build coding tables: non-finite Gaussian scale")
    scales = np.maximum(scales, np.float64(np.float32(SCALES_MIN)))
    mult = _gaussian_multiplier(tail_mass)
    centers = np.minimum(np.ceil(scales * mult), MAX_HALF_SUPPORT).astype(np.int64)
    cdfs = []
    for s, k in zip(scales, centers):
        v = np.abs(np.arange(2 * k + 1, dtype=np.float64) - k)
        upper = 0.5 * scipy.special.erfc(-((0.5 - v) / s) / math.sqrt(2.0))
        lower = 0.5 * scipy.special.erfc(-((-0.5 - v) / s) / math.sqrt(2.0))
        pmf = upper - lower
        tail = 2.0 * lower[0]
        cdfs.append(quantize_pmf(np.concatenate([pmf, [tail]]), precision))
    return _pack_rows(cdfs, -centers)


def gaussian_scale_tables(precision: int = PRECISION) -> CdfTable:
    """The 64 tables of the scale table exp(linspace(log .11, log 256, 64)) — shared by all models."""
    return gaussian_table(_scale_table(), TAIL_MASS, precision)


# ------------------------------------------------------------------------------------------
# per model
# ------------------------------------------------------------------------------------------
def model_kind(model) -> str:
    """The kind of latent coder a registered model declares ('factorized', 'hyperprior',
    'autoregressive', 'external'): its record's ``coder`` (``lic_jax.models.registry``)."""
    from .latent_coders import coder_class

    return coder_class(model).kind


def _np_tree(x):
    if isinstance(x, Mapping):
        return {k: _np_tree(v) for k, v in x.items()}
    return np.asarray(x)


def build_tables(model, variables) -> dict[str, CdfTable]:
    """All coding tables of a model (``{'y': …}``, ``{'z': …, 'y': …}``, or ``{}`` for an
    external payload), built by its latent coder. Pure function of the parameters (and of
    :data:`PRECISION` / :data:`TABLES_VERSION`)."""
    from .latent_coders import coder_class

    params = _np_tree(variables["params"] if "params" in variables else variables)
    return coder_class(model).build_tables(model, params)


def tables_to_arrays(tables: Mapping[str, CdfTable]) -> dict[str, np.ndarray]:
    """Flat dict of arrays for ``tables.npz``."""
    out = {"tables_version": np.array(TABLES_VERSION, np.int32)}
    precisions = {t.precision for t in tables.values()}
    out["precision"] = np.array(precisions.pop() if len(precisions) == 1 else PRECISION, np.int32)
    for name, t in tables.items():
        out.update(t.to_arrays(name))
    return out


def tables_from_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, CdfTable]:
    try:
        version = int(arrays["tables_version"])
        precision = int(arrays["precision"])
    except KeyError as e:
        raise TableError(f"tables.npz lacks {e.args[0]!r}") from None
    if version != TABLES_VERSION:
        raise TableError(f"tables.npz has table version {version}, this lic_jax builds version {TABLES_VERSION}")
    names = sorted({k[: -len("_cdf")] for k in arrays if k.endswith("_cdf")})
    return {
        n: CdfTable(arrays[f"{n}_cdf"], arrays[f"{n}_cdf_length"], arrays[f"{n}_offset"], precision) for n in names
    }


def tables_equal(a: Mapping[str, CdfTable], b: Mapping[str, CdfTable]) -> bool:
    return set(a) == set(b) and all(a[k].equals(b[k]) for k in a)


def verify_tables(model, variables, stored: Mapping[str, CdfTable]) -> dict[str, CdfTable]:
    """Rebuild the tables and check that ``stored`` equals the rebuild; returns the tables."""
    rebuilt = build_tables(model, variables)
    if not tables_equal(rebuilt, stored):
        raise TableError(
            "stored coding tables (tables.npz) differ from the tables rebuilt from the weights "
            "(stale tables, or written by another lic_jax table version)"
        )
    return rebuilt
