"""CompressAI's pretrained weights by name: download once, verify, convert once, then offline.

    from lic_jax.zoo import get_pretrained, load_pretrained_artifact
    model, spec, variables = get_pretrained("mbt2018", 3)                  # (module, spec, variables)
    codec = Codec.from_artifact(load_pretrained_artifact("mbt2018", 3, "ms-ssim"))

Every architecture lic_jax shares with CompressAI (``bmshj2018-factorized``,
``bmshj2018-hyperprior``, ``mbt2018-mean``, ``mbt2018``), qualities 1–8, metrics ``mse`` and
``ms-ssim``. The file names, and the SHA-256 prefixes in them, are CompressAI 1.2.8's published
table (``compressai/zoo/image.py``; ``tests/test_zoo.py`` asserts equality with the installed
compressai). Guide: docs/ZOO.md.

Cache (``$LIC_JAX_CACHE``, else ``$XDG_CACHE_HOME/lic_jax``, else ``~/.cache/lic_jax``)::

    compressai/<file>.pth.tar      the downloaded (or manually placed) CompressAI file
    models/<file stem>/            the converted lic_jax artifact (lic_jax.artifact: params + tables)
    locks/<file stem>.lock         advisory lock files (POSIX flock), never removed

A download goes to a temporary file in ``compressai/``, is fsync'ed, checked (length and
SHA-256 prefix) and only then renamed to its final name; every failure removes the temporary
file. Two processes asking for the same file serialise on its lock: one downloads and converts,
the other then finds both in the cache. Nothing is ever downloaded except by an explicit call of
this module (``lic … --pretrained``, ``eval.py --pretrained``). ``$LIC_JAX_ZOO_URL`` replaces the
base URL (mirrors, proxies, tests).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import json
import os
import re
import sys
import tempfile
import time
import types
import urllib.error
import urllib.request

from .coding.errors import LicError
from .models import registry as _registry

__all__ = ["ZooError", "DownloadError", "HashMismatchError", "ROOT_URL", "PRETRAINED", "PRETRAINED_HPARAMS", "METRICS",
           "pretrained_names", "zoo_filename", "zoo_url", "cache_dir", "download", "fetch_weights",
           "load_pretrained_artifact", "get_pretrained", "cached_artifacts", "find_cached_artifact"]

ROOT_URL = "https://compressai.s3.amazonaws.com/models/v1"
METRICS = ("mse", "ms-ssim")
_CHUNK = 1 << 16


def _table(stem: str, hashes: str):
    """(file stem, {quality: 8 hex digits of the file's SHA-256}) for qualities 1..8."""
    return stem, types.MappingProxyType(dict(zip(range(1, 9), hashes.split())))


# (architecture, metric) → (file stem, quality → SHA-256 prefix); file = f"{stem}-{q}-{prefix}.pth.tar".
# Facts from CompressAI 1.2.8's compressai/zoo/image.py (model_urls); tests/test_zoo.py checks them.
PRETRAINED = types.MappingProxyType({
    ("bmshj2018-factorized", "mse"): _table(
        "bmshj2018-factorized-prior", "446d5c7f 87279a02 5c6f152b 1ed4405a 866ba797 9b02ea3a 6dfd6734 5232faa3"),
    ("bmshj2018-factorized", "ms-ssim"): _table(
        "bmshj2018-factorized-ms-ssim", "9781d705 4a584386 5352f123 4f91b847 b3a88897 ee028763 8c265a29 8811bd14"),
    ("bmshj2018-hyperprior", "mse"): _table(
        "bmshj2018-hyperprior", "7eb97409 93677231 6d87be32 de1b779c f8b614e1 1ab9c41e 3804dcbd a583f0cf"),
    ("bmshj2018-hyperprior", "ms-ssim"): _table(
        "bmshj2018-hyperprior-ms-ssim", "5cf249be 1ff60d1f 92dd7878 4377354e c34afc8d 3a6d8229 8747d3bc cc15b5f3"),
    ("mbt2018-mean", "mse"): _table(
        "mbt2018-mean", "e522738d e54a039d 723404a8 6dba02a3 d504e8eb a19628ab d5d441d1 8089ae3e"),
    ("mbt2018-mean", "ms-ssim"): _table(
        "mbt2018-mean-ms-ssim", "5bf9c0b6 e2a1bf3f 640ce819 12626c13 1be7f059 b83bf379 ddf9644c 0cc7b94f"),
    ("mbt2018", "mse"): _table(
        "mbt2018", "3f36cd77 43b70cdd 22901978 456e2af9 b4a046dd 7052e5ea 8ba2bf82 dd0097aa"),
    ("mbt2018", "ms-ssim"): _table(
        "mbt2018-ms-ssim", "2878436b c41cb208 d0dd64e8 a120e037 9b30e3b7 f8b3626f 16e6ff50 0cb49d43"),
})


# (N, M) of each published file: the registry's quality tables (``ModelRecord.qualities``) of the
# models converted from CompressAI (``ModelRecord.compressai``) — CompressAI 1.2.8's ``cfgs``
# (compressai/zoo/image.py), checked by tests/test_zoo.py. Note mbt2018-mean switches to (192, 320)
# at quality 5, one quality earlier than the factorized and scale-hyperprior models.
PRETRAINED_HPARAMS = types.MappingProxyType({
    r.name: types.MappingProxyType({q: dict(hp) for q, hp in r.qualities.items()})
    for r in _registry.REGISTRY.values() if r.compressai and r.qualities
})

_FILE_RE = re.compile(r"^[A-Za-z0-9_.-]+-([0-9a-f]{8,64})\.pth(?:\.tar)?$")


class ZooError(LicError):
    """No such pretrained model, or its weights cannot be obtained / converted (one line)."""


class DownloadError(ZooError):
    """The download failed (no network, HTTP error, truncated transfer); nothing was cached."""


class HashMismatchError(ZooError):
    """A weight file's SHA-256 does not start with the prefix in its name; the file was deleted."""


# ------------------------------------------------------------------------------------------
# names, URLs, paths (pure)
# ------------------------------------------------------------------------------------------
def pretrained_names() -> list[str]:
    """Architectures with published weights (lic_jax registry names)."""
    return sorted({name for name, _ in PRETRAINED})


def zoo_filename(name: str, quality: int, metric: str = "mse", table=None) -> str:
    """CompressAI's file name for (architecture, quality, metric), e.g. ``mbt2018-3-22901978.pth.tar``."""
    table = PRETRAINED if table is None else table
    if metric not in METRICS:
        raise ZooError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if (name, metric) not in table:
        raise ZooError(f"no CompressAI pretrained weights for {name!r} ({metric}); available: "
                       f"{', '.join(sorted({n for n, _ in table}))}")
    stem, hashes = table[(name, metric)]
    if isinstance(quality, bool) or not isinstance(quality, int) or quality not in hashes:
        raise ZooError(f"quality must be one of {', '.join(map(str, sorted(hashes)))} for pretrained {name} "
                       f"({metric}), got {quality!r}")
    return f"{stem}-{quality}-{hashes[quality]}.pth.tar"


def _hash_prefix(filename: str) -> str:
    m = _FILE_RE.match(filename)
    if not m:
        raise ZooError(f"{filename!r}: a zoo file name must end in -<8+ hex digits of its SHA-256>.pth.tar")
    return m[1]


def zoo_url(filename: str, base_url: str | None = None) -> str:
    """``base_url`` (else ``$LIC_JAX_ZOO_URL``, else CompressAI's S3 bucket) + ``/`` + file name."""
    base = base_url or os.environ.get("LIC_JAX_ZOO_URL") or ROOT_URL
    return base.rstrip("/") + "/" + filename


def cache_dir(root=None) -> str:
    """``root``, else ``$LIC_JAX_CACHE``, else ``$XDG_CACHE_HOME/lic_jax``, else ``~/.cache/lic_jax``."""
    if root:
        return os.path.abspath(os.fspath(root))
    if os.environ.get("LIC_JAX_CACHE"):
        return os.path.abspath(os.environ["LIC_JAX_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lic_jax")


def _stem(filename: str) -> str:
    return re.sub(r"\.pth(?:\.tar)?$", "", filename)


def _weights_path(cache: str, filename: str) -> str:
    return os.path.join(cache, "compressai", filename)


def _artifact_path(cache: str, filename: str) -> str:
    return os.path.join(cache, "models", _stem(filename))


# ------------------------------------------------------------------------------------------
# download
# ------------------------------------------------------------------------------------------
def _fcntl():
    """The POSIX locking module, or None (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    return fcntl


@contextlib.contextmanager
def _locked(cache: str, filename: str):
    """An exclusive advisory lock per zoo file; yields whether it is held. POSIX ``flock``;
    without it (Windows) no lock: the atomic renames alone keep the cache consistent, and two
    processes may then both download and convert (the later rename wins, with identical content)."""
    d = os.path.join(cache, "locks")
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise ZooError(f"cannot use the cache directory {cache} ({e.strerror or e}); set LIC_JAX_CACHE to a "
                       f"writable directory") from None
    fcntl = _fcntl()
    if fcntl is None:
        yield False
        return
    with open(os.path.join(d, _stem(filename) + ".lock"), "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manual_hint(dest: str) -> str:
    return f"without network access, download it elsewhere and save it as {dest} (it is picked up from there)"


def download(url: str, dest: str, sha256_prefix: str, progress: bool = True, timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` atomically: a temporary file beside ``dest``, fsync, length and
    SHA-256-prefix check, then rename. On any failure the temporary file is removed and ``dest``
    is untouched. Raises :class:`DownloadError` / :class:`HashMismatchError`; returns ``dest``."""
    d = os.path.dirname(os.path.abspath(dest))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(dest) + ".", suffix=".part", dir=d)
    try:
        h = hashlib.sha256()
        got = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    from tqdm import tqdm

                    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=os.path.basename(dest),
                              file=sys.stderr, disable=None if progress else True,  # None: only on a terminal
                              leave=False, dynamic_ncols=True) as bar:
                        while True:
                            try:
                                chunk = resp.read(_CHUNK)
                            except http.client.IncompleteRead as e:
                                chunk = e.partial
                                if chunk:
                                    h.update(chunk)
                                    out.write(chunk)
                                    got += len(chunk)
                                break
                            if not chunk:
                                break
                            h.update(chunk)
                            out.write(chunk)
                            got += len(chunk)
                            bar.update(len(chunk))
            except urllib.error.HTTPError as e:
                raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}; {_manual_hint(dest)}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", None) or e
                raise DownloadError(f"cannot download {url}: {reason}; {_manual_hint(dest)}") from None
            if total is not None and got != total:
                raise DownloadError(f"incomplete download of {url}: {got} of {total} bytes (connection closed "
                                    f"early); nothing was cached; retry, or {_manual_hint(dest)}")
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if not digest.startswith(sha256_prefix):
            raise HashMismatchError(f"{url}: the downloaded file's SHA-256 starts with {digest[:len(sha256_prefix)]}, "
                                    f"not {sha256_prefix} (corrupt transfer or wrong mirror); deleted it, nothing "
                                    f"was cached")
        os.replace(tmp, dest)
        with contextlib.suppress(OSError):  # make the rename durable
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest


def _check_file(path: str, prefix: str, url: str) -> None:
    """A weight file already in the cache (downloaded earlier or placed by hand) must match its
    name's hash prefix; a mismatching one is deleted."""
    digest = _sha256(path)
    if not digest.startswith(prefix):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise HashMismatchError(f"{path}: SHA-256 starts with {digest[:len(prefix)]}, not {prefix} (corrupt or wrong "
                                f"file); deleted it; download {url} again")


def _fetch_locked(filename: str, cache: str, base_url, progress: bool, held: bool) -> str:
    """The verified weight file (downloading it if absent); ``held``: the caller holds the file's lock."""
    prefix = _hash_prefix(filename)
    dest = _weights_path(cache, filename)
    url = zoo_url(filename, base_url)
    # temporary files of a process killed mid-download: only under the lock is nobody writing them
    for stale in [] if not held else glob.glob(os.path.join(glob.escape(os.path.dirname(dest)), "." + glob.escape(filename) + ".*.part")):
        with contextlib.suppress(OSError):
            os.unlink(stale)
    if os.path.isfile(dest):
        _check_file(dest, prefix, url)
        return dest
    return download(url, dest, prefix, progress=progress)


def fetch_weights(name: str, quality: int, metric: str = "mse", *, cache=None, base_url=None, progress: bool = True,
                  filename: str | None = None) -> str:
    """Path of the verified CompressAI weight file in the cache, downloaded if absent.

    ``filename`` replaces the table's file name (a mirror's own CompressAI-format file; its name
    must end in ``-<SHA-256 prefix>.pth.tar``)."""
    default = zoo_filename(name, quality, metric)
    filename = filename or default
    cache = cache_dir(cache)
    with _locked(cache, filename) as held:
        return _fetch_locked(filename, cache, base_url, progress, held)


# ------------------------------------------------------------------------------------------
# conversion and the artifact cache
# ------------------------------------------------------------------------------------------
_EB_LIST = re.compile(r"^(module\.)?entropy_bottleneck\._(matrices|biases|factors)\.(\d+)$")


def _convert(path: str, name: str, quality: int):
    """(spec, variables) of a CompressAI zoo file; the architecture and (N, M) must be the zoo's."""
    from .convert import CompressAIImportError, from_compressai, load_compressai_state_dict

    try:
        sd = load_compressai_state_dict(path)
        # the ParameterList spelling of older CompressAI files (entropy_bottleneck._matrices.0)
        sd = {(_EB_LIST.sub(r"entropy_bottleneck.\2.\3", k)): v for k, v in sd.items()}
        _, spec, variables = from_compressai(sd, name=name, quality=quality)
    except (CompressAIImportError, ValueError) as e:
        raise ZooError(f"{path}: not a CompressAI {name} quality {quality} file ({e})") from None
    want = dict(PRETRAINED_HPARAMS[name][quality])
    if {k: spec.hparams[k] for k in want} != want:
        raise ZooError(f"{path}: holds {name} with {spec.hparams}, but CompressAI's quality {quality} is {want}")
    return spec, variables


def _load_cached(path: str, name: str, quality: int, prefix: str):
    """The cached artifact if it is complete, consistent and made from this exact file; else None."""
    from .artifact import ArtifactError, load_artifact

    if not os.path.isdir(path):
        return None
    try:
        art = load_artifact(path)
    except ArtifactError:
        return None
    md = art.metadata or {}
    if art.spec.name != name or art.spec.quality != quality or not str(md.get("sha256", "")).startswith(prefix):
        return None
    return art


def load_pretrained_artifact(name: str, quality: int, metric: str = "mse", *, cache=None, base_url=None,
                             progress: bool = True, filename: str | None = None):
    """The converted pretrained model as a :class:`lic_jax.artifact.Artifact` (``Codec.from_artifact``
    takes it). From the cache when there; otherwise the weight file is taken from the cache or
    downloaded, verified, converted (params + coding tables) and cached. Raises :class:`ZooError`
    (one line) on every failure; a failed call leaves no partial file in the cache."""
    from .artifact import save_artifact

    default = zoo_filename(name, quality, metric)  # validates name, quality, metric
    filename = filename or default
    prefix = _hash_prefix(filename)
    cache = cache_dir(cache)
    apath = _artifact_path(cache, filename)
    art = _load_cached(apath, name, quality, prefix)
    if art is not None:
        return art
    with _locked(cache, filename) as held:
        art = _load_cached(apath, name, quality, prefix)  # another process may have made it meanwhile
        if art is not None:
            return art
        wpath = _fetch_locked(filename, cache, base_url, progress, held)
        spec, variables = _convert(wpath, name, quality)
        md = {"source": "compressai-zoo", "file": filename, "url": zoo_url(filename, base_url), "sha256": _sha256(wpath),
              "architecture": name, "quality": quality, "metric": metric}
        try:  # atomic; replaces a stale or damaged artifact
            save_artifact(apath, spec, variables, metadata=md)
        except OSError:
            if held:
                raise
            # no lock: a concurrent process renamed its (identical) artifact into place first
        for _ in range(1 if held else 50):
            art = _load_cached(apath, name, quality, prefix)
            if art is not None:
                return art
            time.sleep(0.1)  # no lock: a concurrent process may be swapping its copy in
    raise ZooError(f"{apath}: the converted model could not be read back")


def get_pretrained(name: str, quality: int, metric: str = "mse", *, cache=None, base_url=None,
                   progress: bool = True, filename: str | None = None):
    """``(module, spec, variables)`` of CompressAI's pretrained ``name`` at ``quality`` trained for
    ``metric`` (``"mse"`` or ``"ms-ssim"``), as ``compressai.zoo.<name>(quality, metric,
    pretrained=True)``. See :func:`load_pretrained_artifact` for the cache and the errors."""
    art = load_pretrained_artifact(name, quality, metric, cache=cache, base_url=base_url, progress=progress,
                                   filename=filename)
    return art.model, art.spec, art.variables


def cached_artifacts(cache=None) -> list[str]:
    """Paths of the converted models in the cache (no network)."""
    root = os.path.join(cache_dir(cache), "models")
    if not os.path.isdir(root):
        return []
    return [os.path.join(root, n) for n in sorted(os.listdir(root))
            if not n.startswith(".") and os.path.isfile(os.path.join(root, n, "config.json"))]


def find_cached_artifact(fingerprint8: bytes, cache=None) -> str | None:
    """The cached converted model whose weights' fingerprint starts with these 8 bytes (the ``.lic``
    header's), or None. Reads only the cache: never downloads."""
    want = bytes(fingerprint8).hex()
    for p in cached_artifacts(cache):
        try:
            with open(os.path.join(p, "config.json")) as f:
                fp = json.load(f).get("fingerprint", "")
        except (OSError, ValueError):
            continue
        if isinstance(fp, str) and fp[:16] == want:
            return p
    return None

