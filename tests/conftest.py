"""Shared test fixtures: data locations, peer-library imports, deterministic JAX settings."""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
from pathlib import Path

import jax
import numpy as np
import pytest

# Same random draws on jax 0.4.x and >= 0.5 (shared/docs/DEPENDENCIES.md §3, PRNG).
jax.config.update("jax_threefry_partitionable", True)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LIC_JAX_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
ANCHORS = SHARED / "anchors"
REQUIRE_PEERS = os.environ.get("LIC_JAX_REQUIRE_PEERS") == "1"
# `lic` processes started by tests keep no compiled code on disk (lic_jax/cli/xla_cache.py); the
# cache's own test turns it on in a temporary directory
os.environ.setdefault("LIC_JAX_XLA_CACHE", "off")


def _rss_mb() -> tuple[int, int]:
    """(current, peak) resident set size of this process in MB, from /proc (0, 0 where absent)."""
    try:
        f = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return int(f["VmRSS"].split()[0]) // 1024, int(f["VmHWM"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        return 0, 0


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_code(request):
    """Drop every jit-compiled executable after each test module. Without this a pytest process keeps
    all of the suite's executables: its RSS grew to 11.9 GB by the end of a serial run (2026-12-02),
    too much for two xdist workers on a 24 GB machine. LIC_TEST_CLEAR_CACHES=0 keeps them;
    LIC_TEST_RSS_LOG=FILE appends 'module rss_mb peak_mb' after each module."""
    yield
    if os.environ.get("LIC_TEST_CLEAR_CACHES", "1") != "0":
        jax.clear_caches()
        gc.collect()
        try:  # hand the freed heap back to the OS (glibc keeps it otherwise)
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
    if log := os.environ.get("LIC_TEST_RSS_LOG"):
        rss, peak = _rss_mb()
        with open(log, "a") as f:
            f.write(f"{request.module.__name__} {rss} {peak}\n")


@pytest.fixture(scope="module")
def torch_one_thread():
    """PyTorch at one intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("torch_one_thread")``):
    its threads spin-wait, and on a small, shared CPU one thread is several times faster. Without torch it
    does nothing, so a module's torch-free tests still run."""
    try:
        import torch
    except Exception:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def require(module: str):
    """Import a peer library; in CI (LIC_JAX_REQUIRE_PEERS=1) its absence fails the test instead of skipping."""
    try:
        if module == "compressai":
            from compressai_compat import import_compressai

            return import_compressai()
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken binary wheel
        if REQUIRE_PEERS:
            pytest.fail(f"peer library {module!r} is required here but cannot be imported: {e}")
        pytest.skip(f"{module} not available: {e}")


def require_data(path: Path) -> Path:
    if not path.exists():
        if REQUIRE_PEERS:
            pytest.fail(f"test data missing: {path}")
        pytest.skip(f"test data missing: {path}")
    return path


def load_rgb(path, crop=None) -> np.ndarray:
    """uint8 RGB array of an image file, optionally cropped to (h, w) from the top-left."""
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"))
    if crop is not None:
        a = a[: crop[0], : crop[1]]
    return np.ascontiguousarray(a)


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    return require_data(DATA / "kodak")


@pytest.fixture(scope="session")
def train_dir() -> Path:
    return require_data(DATA / "train")


@pytest.fixture(scope="session")
def val_dir() -> Path:
    return require_data(DATA / "val")


@pytest.fixture(scope="session")
def anchors_dir() -> Path:
    return require_data(ANCHORS)


# -- train.py / worker subprocesses ---------------------------------------------------------------
FAST_COMPILE = "--xla_backend_optimization_level=0"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Environment of the train.py / worker subprocesses: CPU, the repo on PYTHONPATH, a persistent
    compilation cache shared by the whole pytest run, and XLA:CPU's lower LLVM optimisation level
    (halves compile time, which dominates these short runs)."""
    for d in (DATA / "train", DATA / "val"):
        if not d.is_dir():
            if REQUIRE_PEERS:
                pytest.fail(f"test data missing: {d}")
            pytest.skip(f"{d} missing")
    e = dict(os.environ)
    e.update(PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", PYTHONHASHSEED="0",
             JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "lic_jax_jit_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
             XLA_FLAGS=FAST_COMPILE)
    return e
