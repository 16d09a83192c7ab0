"""CompressAI's pretrained zoo by name (lic_jax.zoo), tested without the internet (issue 14, items 1–2).

A loopback HTTP server (``http.server`` in a thread, 127.0.0.1, port 0; started and stopped by
the ``server`` fixture) serves CompressAI-format files made here: ``torch.save`` of CompressAI's
``bmshj2018_hyperprior(quality=1, pretrained=False)`` — carrying the shipped default model's
trained weights (same N=128, M=192), nudged so its fingerprint is its own, and ``update()``d so
the file holds CompressAI's CDF buffers as the published files do — named, as CompressAI names
its files, with the first 8 hex digits of its own SHA-256. Nothing here reaches any address but
127.0.0.1.

Covered: the URL table equals the installed compressai's; download + conversion + cache layout;
cache reuse (no second request; no network at all once converted); hash mismatch (download and a
manually placed file: deleted, said so); truncated transfer; HTTP 404 / 500; offline (nothing
listening) with the manual-download path, which is then picked up; two processes racing for the
same file; ``lic compress/decompress --pretrained`` and ``eval.py --pretrained``; and that the
converted weights reproduce CompressAI's own ``compress``/``decompress`` on a Kodak crop.
Every failure is a one-line :class:`lic_jax.zoo.ZooError` and leaves no file in the cache
(only the lock files under ``locks/``).

Agreement with CompressAI (``test_matches_compressai_compress``; CI: kodim01, top-left
128×128). Measured with ``LIC_JAX_ZOO_PARITY_ALL=1`` (all 24 Kodak images, top-left 128×128 and
256×256 crops, these weights: 0.15–0.92 bpp, 20–36 dB): the entropy-coded payload (the .lic
streams) is 4–12 bytes *shorter* than CompressAI's strings (same symbols; the two range coders
flush differently and the CDF tables are quantised by different rules, docs/FORMAT.md), the
whole .lic file 16–25 bytes *longer* (the container: header, stream lengths, CRC-32); the 8-bit
reconstructions differ in at most 6 of 49,152 (128²) / 18 of 196,608 (256²) values (≤ 0.012 %),
by one level (ŷ rounding ties in float32), |ΔPSNR| ≤ 1.4e-4 dB. Tolerances: payload 8 ± 12 bytes
shorter (measured 8 ± 4), file − CompressAI bytes in [0, 50] (twice the measured 16 … 25),
|ΔPSNR| ≤ 1e-3 dB and ≤ 0.05 % of the values off (~7× / ~4× the measured), by at most one level.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
from conftest import REPO, load_rgb, require

from lic_jax import zoo

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest.py

ARCH, QUALITY = "bmshj2018-hyperprior", 1
STEM = zoo.PRETRAINED[(ARCH, "mse")][0]


# ------------------------------------------------------------------------------------------
# the loopback server
# ------------------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        srv = self.server
        name = self.path.lstrip("/")
        with srv.lock:
            srv.requests.append(name)
        route = srv.routes.get(name)
        if route is None:
            self.send_error(404)
            return
        kind, arg = route
        if kind == "status":
            self.send_error(arg)
            return
        data, keep, delay = (arg, len(arg), 0.0) if kind == "ok" else arg
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):
            for i in range(0, keep, 1 << 18):
                self.wfile.write(data[i:min(i + (1 << 18), keep)])
                if delay:
                    time.sleep(delay)
        self.close_connection = True

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.routes: dict = {}
        self.url = f"http://127.0.0.1:{self.server_address[1]}/models"

    def count(self, name: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r == f"models/{name}")

    def serve(self, name: str, data: bytes, delay: float = 0.0):
        self.routes[f"models/{name}"] = ("slow", (data, len(data), delay)) if delay else ("ok", data)

    def truncate(self, name: str, data: bytes, keep: int):
        self.routes[f"models/{name}"] = ("cut", (data, keep, 0.0))

    def refuse(self, name: str, status: int):
        self.routes[f"models/{name}"] = ("status", status)


@pytest.fixture(scope="module")
def server():
    srv = _Server()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(10)


def _dead_url() -> str:
    """A loopback URL with nothing listening (a port just released by the OS)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/models"


# ------------------------------------------------------------------------------------------
# the CompressAI-format file
# ------------------------------------------------------------------------------------------
def _to_compressai(variables, model, sd):
    """lic_jax variables → CompressAI state_dict tensors (the converter's layouts, inverted)."""
    import jax
    import torch

    from lic_jax.convert import _layer_kinds, _torch_key
    from lic_jax.layers import ConvTranspose

    kinds = _layer_kinds(model, variables)
    for kp, v in jax.tree_util.tree_flatten_with_path(variables["params"])[0]:
        path = tuple(k.key for k in kp)
        v = np.asarray(v, np.float32)
        if path[-1] == "kernel":
            v = v.transpose(2, 3, 0, 1) if kinds.get(path[0]) is ConvTranspose else v.transpose(3, 2, 0, 1)
        key = _torch_key(path)
        assert tuple(sd[key].shape) == v.shape, key
        sd[key] = torch.from_numpy(np.array(v))
    return sd


@pytest.fixture(scope="module")
def zoo_file():
    """(file name with its own SHA-256 prefix, bytes) of a CompressAI bmshj2018-hyperprior q1 file."""
    require("compressai")
    import torch
    from compressai.zoo import image as cz

    from lic_jax.artifact import load_artifact
    from lic_jax.default_model import first_default_model_path

    from lic_jax.models.portable import float_spec

    art = load_artifact(first_default_model_path())
    spec = float_spec(art.spec)  # the first bundled default is portable (issue 13); its float twin, same weights
    assert spec.name == ARCH and spec.hparams == {"N": 128, "M": 192}
    torch.manual_seed(0)
    net = cz.bmshj2018_hyperprior(quality=QUALITY, pretrained=False)
    sd = _to_compressai(art.variables, spec.build(), net.state_dict())
    sd["g_s.6.bias"] = sd["g_s.6.bias"] + 1e-3  # its own weights: not the shipped model's fingerprint
    net.load_state_dict(sd)
    net.update(force=True)  # CDF buffers in the file, as in CompressAI's published files
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    data = buf.getvalue()
    return f"{STEM}-{QUALITY}-{hashlib.sha256(data).hexdigest()[:8]}.pth.tar", data


@pytest.fixture(scope="module")
def served(server, zoo_file):
    name, data = zoo_file
    server.serve(name, data)
    return name


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory, server, served):
    """A cache holding the converted test model (downloaded once for the module)."""
    cache = tmp_path_factory.mktemp("zoo_cache")
    zoo.load_pretrained_artifact(ARCH, QUALITY, cache=cache, base_url=server.url, filename=served, progress=False)
    return cache


def _files(cache) -> list[str]:
    """Every file in the cache except the lock files (relative paths)."""
    cache = Path(cache)
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and p.parts[-2] != "locks")


def _one_line(e) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


def _load(cache, base_url, filename, **kw):
    return zoo.load_pretrained_artifact(ARCH, QUALITY, cache=cache, base_url=base_url, filename=filename,
                                        progress=False, **kw)


# ------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------
def test_table_equals_compressai():
    require("compressai")
    from compressai.zoo import image as cz

    from lic_jax.models import MODELS

    shared = sorted(set(cz.model_urls) & set(MODELS))
    assert shared == zoo.pretrained_names() == sorted(["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean",
                                                       "mbt2018"])
    assert zoo.ROOT_URL == cz.root_url
    n = 0
    for name in shared:
        assert set(cz.model_urls[name]) == set(zoo.METRICS)
        for metric in zoo.METRICS:
            assert sorted(cz.model_urls[name][metric]) == list(range(1, 9))
            assert len(zoo.PRETRAINED[(name, metric)][1]) == 8
            for q, url in cz.model_urls[name][metric].items():
                assert zoo.zoo_url(zoo.zoo_filename(name, q, metric), zoo.ROOT_URL) == url
                n += 1
        assert {q: dict(zip("NM", cz.cfgs[name][q])) for q in range(1, 9)} == zoo.PRETRAINED_HPARAMS[name]
    assert n == len(zoo.PRETRAINED) * 8 == 64


def test_paths_urls_and_bad_names(monkeypatch, tmp_path):
    for var in ("LIC_JAX_CACHE", "XDG_CACHE_HOME", "LIC_JAX_ZOO_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert zoo.cache_dir() == str(tmp_path / ".cache" / "lic_jax")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.cache_dir() == str(tmp_path / "xdg" / "lic_jax")
    monkeypatch.setenv("LIC_JAX_CACHE", str(tmp_path / "c"))
    assert zoo.cache_dir() == str(tmp_path / "c") and zoo.cache_dir(tmp_path / "d") == str(tmp_path / "d")
    f = zoo.zoo_filename("mbt2018", 3)
    assert f == "mbt2018-3-22901978.pth.tar" and zoo.zoo_url(f) == f"{zoo.ROOT_URL}/{f}"
    monkeypatch.setenv("LIC_JAX_ZOO_URL", "http://127.0.0.1:9/mirror/")
    assert zoo.zoo_url(f) == f"http://127.0.0.1:9/mirror/{f}"
    assert zoo.zoo_filename("mbt2018-mean", 8, "ms-ssim") == "mbt2018-mean-ms-ssim-8-0cc7b94f.pth.tar"
    for args, word in ((("bls2017", 1), "bls2017"), (("mbt2018", 9), "quality"), (("mbt2018", 0), "quality"),
                       (("mbt2018", True), "quality"), (("mbt2018", 3, "psnr"), "metric")):
        with pytest.raises(zoo.ZooError) as e:
            zoo.get_pretrained(*args, base_url=_dead_url())
        assert word in _one_line(e)
    with pytest.raises(zoo.ZooError, match="SHA-256") as e:
        zoo.fetch_weights(ARCH, 1, filename="weights.pth.tar", base_url=_dead_url())
    _one_line(e)
    assert _files(tmp_path / "c") == []
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(zoo.ZooError, match="cannot use the cache directory") as e:
        zoo.fetch_weights(ARCH, 1, cache=tmp_path / "file", base_url=_dead_url())
    _one_line(e)


# ------------------------------------------------------------------------------------------
# download, conversion, reuse
# ------------------------------------------------------------------------------------------
def test_download_convert_and_reuse(server, served, zoo_file, tmp_path):
    import jax

    from lic_jax.convert import from_compressai

    cache = tmp_path / "cache"
    before = server.count(served)
    model, spec, variables = zoo.get_pretrained(ARCH, QUALITY, cache=cache, base_url=server.url, filename=served,
                                                progress=False)
    assert server.count(served) == before + 1
    stem = served[: -len(".pth.tar")]
    assert _files(cache) == [f"compressai/{served}", f"models/{stem}/config.json", f"models/{stem}/params.msgpack",
                             f"models/{stem}/tables.npz"]
    assert (cache / "compressai" / served).read_bytes() == zoo_file[1]
    assert spec.name == ARCH and spec.quality == QUALITY and spec.hparams == {"N": 128, "M": 192}
    _, _, ref = from_compressai(cache / "compressai" / served)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), variables, ref)
    cfg = json.loads((cache / "models" / stem / "config.json").read_text())
    assert cfg["metadata"]["sha256"] == hashlib.sha256(zoo_file[1]).hexdigest()
    assert cfg["metadata"]["file"] == served and cfg["model"]["quality"] == QUALITY

    # reuse: no second request; once converted, no network at all (not even the weight file)
    art = _load(cache, server.url, served)
    assert server.count(served) == before + 1 and art.fingerprint == cfg["fingerprint"]
    (cache / "compressai" / served).unlink()
    art = _load(cache, _dead_url(), served)
    assert art.fingerprint == cfg["fingerprint"]
    assert zoo.find_cached_artifact(bytes.fromhex(art.fingerprint)[:8], cache) == str(cache / "models" / stem)
    assert zoo.find_cached_artifact(b"\0" * 8, cache) is None

    # a damaged artifact is rebuilt (here: downloaded again, as its weight file was removed)
    (cache / "models" / stem / "params.msgpack").write_bytes(b"garbage")
    art = _load(cache, server.url, served)
    assert art.fingerprint == cfg["fingerprint"] and server.count(served) == before + 2


# ------------------------------------------------------------------------------------------
# failure modes: one line, nothing left in the cache
# ------------------------------------------------------------------------------------------
def test_hash_mismatch_on_download(server, zoo_file, tmp_path):
    wrong = f"{STEM}-{QUALITY}-00000000.pth.tar"
    server.serve(wrong, zoo_file[1])
    with pytest.raises(zoo.HashMismatchError) as e:
        _load(tmp_path, server.url, wrong)
    msg = _one_line(e)
    assert f"{server.url}/{wrong}" in msg and "not 00000000" in msg and "deleted" in msg
    assert _files(tmp_path) == []


def test_truncated_transfer(server, zoo_file, tmp_path):
    name, data = zoo_file
    cut = name.replace(f"-{QUALITY}-", f"-{QUALITY}-cut-")  # same hash prefix, another route
    server.truncate(cut, data, len(data) // 2)
    with pytest.raises(zoo.DownloadError) as e:
        _load(tmp_path, server.url, cut)
    msg = _one_line(e)
    assert f"{len(data) // 2} of {len(data)} bytes" in msg and "nothing was cached" in msg
    assert _files(tmp_path) == []


@pytest.mark.parametrize("status", [404, 500])
def test_server_refusal(server, served, tmp_path, status):
    name = served.replace(f"-{QUALITY}-", f"-{QUALITY}-http{status}-")
    server.refuse(name, status)
    with pytest.raises(zoo.DownloadError) as e:
        _load(tmp_path, server.url, name)
    msg = _one_line(e)
    assert f"HTTP {status}" in msg and f"{server.url}/{name}" in msg
    assert str(tmp_path / "compressai" / name) in msg
    assert _files(tmp_path) == []


def test_offline_message_and_manual_download(served, zoo_file, tmp_path):
    dead = _dead_url()
    with pytest.raises(zoo.DownloadError) as e:
        _load(tmp_path, dead, served)
    msg = _one_line(e)
    dest = tmp_path / "compressai" / served
    assert f"{dead}/{served}" in msg and f"save it as {dest} " in msg
    assert _files(tmp_path) == []

    # a manually downloaded file that is damaged: deleted, and said so
    bad = bytearray(zoo_file[1])
    bad[len(bad) // 2] ^= 0xFF
    dest.write_bytes(bytes(bad))
    with pytest.raises(zoo.HashMismatchError) as e:
        _load(tmp_path, dead, served)
    assert f"{dest}: SHA-256 starts with" in _one_line(e) and "deleted it" in str(e.value)
    assert _files(tmp_path) == []

    # the intact file at exactly the path the message names is picked up, with no network
    dest.write_bytes(zoo_file[1])
    art = _load(tmp_path, dead, served)
    assert art.spec.name == ARCH and art.metadata["sha256"].startswith(served.rsplit("-", 1)[1][:8])


_RACER = """
import json, os, sys, time
from lic_jax import zoo
cache, url, name, go = sys.argv[1:5]
open(go + "." + str(os.getpid()), "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
t0 = time.time()
art = zoo.load_pretrained_artifact("bmshj2018-hyperprior", 1, cache=cache, base_url=url, filename=name, progress=False)
print(json.dumps({"t0": t0, "t1": time.time(), "fingerprint": art.fingerprint}))
"""


def test_two_processes_race(server, zoo_file, tmp_path, monkeypatch):
    """Two processes start the same download at the same moment (a slow server: ~1.5 s per
    transfer): one downloads and converts, the other waits on the lock (POSIX flock) and then uses
    the cache. Meanwhile two threads of this process race without the lock (as on a system without
    flock): both download and convert, the atomic renames let the later one win. Either way all
    succeed with the same model, the file is intact and nothing else is left in the cache."""
    name, data = zoo_file
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    go = tmp_path / "go"
    slow = {mode: name.replace(f"-{QUALITY}-", f"-{QUALITY}-{mode}-") for mode in ("lock", "nolock")}
    for f in slow.values():
        server.serve(f, data, delay=0.02)
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(tmp_path / "lock"), server.url, slow["lock"],
                               str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    deadline = time.time() + 180
    while len(list(tmp_path.glob("go.*"))) < 2 and time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.02)
    go.touch()

    monkeypatch.setattr(zoo, "_fcntl", lambda: None)
    barrier, res_t, errs = threading.Barrier(2), [], []

    def racer():
        try:
            barrier.wait()
            t0 = time.time()
            art = _load(tmp_path / "nolock", server.url, slow["nolock"])
            res_t.append({"t0": t0, "t1": time.time(), "fingerprint": art.fingerprint})
        except BaseException as e:  # noqa: BLE001 - reported below
            errs.append(e)

    threads = [threading.Thread(target=racer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errs, errs
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    res_p = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    for mode, res in (("lock", res_p), ("nolock", res_t)):
        assert res[0]["t0"] < res[1]["t1"] and res[1]["t0"] < res[0]["t1"], mode  # they overlapped
        assert res[0]["fingerprint"] == res[1]["fingerprint"], mode
        assert server.count(slow[mode]) == (1 if mode == "lock" else 2), mode
        cache = tmp_path / mode
        assert (cache / "compressai" / slow[mode]).read_bytes() == data
        stem = slow[mode][: -len(".pth.tar")]
        assert _files(cache) == [f"compressai/{slow[mode]}", f"models/{stem}/config.json",
                                 f"models/{stem}/params.msgpack", f"models/{stem}/tables.npz"], mode
        assert _load(cache, _dead_url(), slow[mode]).fingerprint == res[0]["fingerprint"]


def test_concurrent_winner_without_lock(served, module_cache, tmp_path, monkeypatch):
    """Without flock the final rename of an artifact can lose to a concurrent process's identical
    one (save_artifact raises OSError): the winner's artifact is used. With the lock that cannot
    happen, so there the error is not swallowed."""
    import shutil

    import lic_jax.artifact as artifact

    real = artifact.save_artifact

    def lose(path, *args, **kw):
        real(path, *args, **kw)  # the concurrent winner's rename lands first …
        raise OSError(39, "Directory not empty")  # … and ours fails

    monkeypatch.setattr(artifact, "save_artifact", lose)
    for mode in ("nolock", "lock"):
        (tmp_path / mode / "compressai").mkdir(parents=True)
        shutil.copy(module_cache / "compressai" / served, tmp_path / mode / "compressai" / served)
    with monkeypatch.context() as m:
        m.setattr(zoo, "_fcntl", lambda: None)
        assert _load(tmp_path / "nolock", _dead_url(), served).spec.name == ARCH
    with pytest.raises(OSError, match="not empty"):
        _load(tmp_path / "lock", _dead_url(), served)


# ------------------------------------------------------------------------------------------
# the converted model reproduces CompressAI's compress / decompress
# ------------------------------------------------------------------------------------------
def _psnr(a, b) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return 10 * np.log10(255.0**2 / np.mean(d * d))


def _parity_cases(kodak_dir):
    if os.environ.get("LIC_JAX_ZOO_PARITY_ALL") == "1":  # the measurement behind the tolerances
        return [(p, c) for c in (128, 256) for p in sorted(kodak_dir.glob("kodim*.png"))]
    return [(kodak_dir / "kodim01.png", 128)]


def test_matches_compressai_compress(module_cache, served, zoo_file, kodak_dir):
    import torch
    from compressai.zoo import image as cz
    from compressai.zoo.pretrained import load_pretrained

    from lic_jax.coding import Codec, container

    art = _load(module_cache, _dead_url(), served)
    codec = Codec.from_artifact(art)
    # CompressAI's side: the same file, loaded as compressai.zoo loads a published one
    sd = torch.load(module_cache / "compressai" / served, map_location="cpu")
    net = cz.model_architectures[ARCH].from_state_dict(load_pretrained(sd)).eval()
    worst = {"payload": 0, "file": [], "dpsnr": 0.0, "values": 0.0}
    for path, crop in _parity_cases(kodak_dir):
        img = load_rgb(path, (crop, crop))
        data = codec.compress(img)
        rec = codec.decompress(data)
        header, _ = container.unpack(data)
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()[None] / 255
            out = net.compress(x)
            ref = net.decompress(out["strings"], out["shape"])["x_hat"]
        ref = (ref.clamp(0, 1)[0].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
        cai = sum(len(s[0]) for s in out["strings"])  # CompressAI's bpp: 8 * these bytes / pixels
        diff = np.abs(rec.astype(np.int16) - ref.astype(np.int16))
        dpsnr = _psnr(img, rec) - _psnr(img, ref)
        case = f"{path.name} {crop}: streams {header.stream_lengths} file {len(data)} B, compressai {cai} B, " \
               f"ΔPSNR {dpsnr:.2e} dB, {int((diff > 0).sum())} values off by ≤ {diff.max()}"
        print(case)
        assert abs(cai - sum(header.stream_lengths) - 8) <= 12, case  # measured 4 … 12 bytes shorter
        assert 0 <= len(data) - cai <= 50, case
        assert abs(dpsnr) <= 1e-3, case
        assert diff.max() <= 1 and np.mean(diff > 0) <= 5e-4, case
        assert _psnr(img, rec) > 20, case  # a trained model, not a constant image
        worst = {"payload": max(worst["payload"], abs(sum(header.stream_lengths) - cai)),
                 "file": sorted({*worst["file"], len(data) - cai}), "dpsnr": max(worst["dpsnr"], abs(dpsnr)),
                 "values": max(worst["values"], float(np.mean(diff > 0)))}
    print("worst:", worst)


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------
def _patched_table(monkeypatch, served):
    """The zoo table with (bmshj2018-hyperprior, mse, q1) pointing at the test file's hash."""
    stem, hashes = zoo.PRETRAINED[(ARCH, "mse")]
    h = served[: -len(".pth.tar")].rsplit("-", 1)[1]
    monkeypatch.setattr(zoo, "PRETRAINED", MappingProxyType(
        {**zoo.PRETRAINED, (ARCH, "mse"): (stem, MappingProxyType({**hashes, QUALITY: h}))}))
    assert zoo.zoo_filename(ARCH, QUALITY) == served


def test_cli_pretrained(server, served, kodak_dir, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from lic_jax.cli import main

    _patched_table(monkeypatch, served)
    monkeypatch.setenv("LIC_JAX_ZOO_URL", server.url)
    monkeypatch.setenv("LIC_JAX_CACHE", str(tmp_path / "cache"))
    png = tmp_path / "crop.png"
    Image.fromarray(load_rgb(kodak_dir / "kodim01.png", (128, 128))).save(png)  # the shape compiled above
    n0 = server.count(served)

    # no --pretrained: nothing is downloaded
    assert main(["compress", str(png), str(tmp_path / "a.lic"), "--model", ARCH, "--quality", "1"]) == 1
    assert "--pretrained" in capsys.readouterr().err and server.count(served) == n0
    assert main(["compress", str(png), str(tmp_path / "a.lic"), "--metric", "ms-ssim"]) == 1
    assert "--metric needs --pretrained" in capsys.readouterr().err
    assert main(["compress", str(png), str(tmp_path / "a.lic"), "--pretrained"]) == 1
    assert "--pretrained needs --model NAME and --quality Q" in capsys.readouterr().err

    assert main(["compress", str(png), str(tmp_path / "a.lic"), "--model", ARCH, "--quality", "1", "--pretrained"]) == 0
    assert server.count(served) == n0 + 1 and "PSNR" in capsys.readouterr().out
    # decompress: found in the cache by the header's fingerprint, no option, no network
    monkeypatch.setenv("LIC_JAX_ZOO_URL", _dead_url())
    assert main(["decompress", str(tmp_path / "a.lic"), str(tmp_path / "a.png"), "--original", str(png)]) == 0
    assert "PSNR" in capsys.readouterr().out

    # an empty cache: the error names --pretrained; with it, the weights the header names are fetched
    monkeypatch.setenv("LIC_JAX_CACHE", str(tmp_path / "cache2"))
    assert main(["decompress", str(tmp_path / "a.lic"), str(tmp_path / "b.png")]) == 1
    err = capsys.readouterr().err
    assert "--pretrained" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "b.png").exists()
    assert main(["decompress", str(tmp_path / "a.lic"), str(tmp_path / "b.png"), "--pretrained"]) == 1
    err = capsys.readouterr().err
    assert "cannot download http://127.0.0.1:" in err and "save it as" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("LIC_JAX_ZOO_URL", server.url)
    assert main(["decompress", str(tmp_path / "a.lic"), str(tmp_path / "b.png"), "--pretrained"]) == 0
    assert server.count(served) == n0 + 2
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


def test_eval_pretrained(server, served, module_cache, kodak_dir, tmp_path, monkeypatch):
    from PIL import Image

    from lic_jax.evaluation.cli import main

    _patched_table(monkeypatch, served)
    monkeypatch.setenv("LIC_JAX_CACHE", str(module_cache))
    monkeypatch.setenv("LIC_JAX_ZOO_URL", _dead_url())  # converted already: no network needed
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(load_rgb(kodak_dir / "kodim01.png", (128, 128))).save(data / "a.png")
    out = tmp_path / "r.json"
    assert main(["--model", ARCH, "--pretrained", "--quality", "1", "--dataset", str(data), "--out", str(out),
                 "--metrics", "psnr-rgb", "--no-progress", "--no-warmup"]) == 0
    r = json.loads(out.read_text())
    assert r["results"]["psnr-rgb"][0] > 20 and r["results"]["bpp"][0] > 0
    with pytest.raises(SystemExit):
        main(["--model", ARCH, "--pretrained", "ms-ssim", "--quality", "1", "--dataset", str(data), "--out", str(out)])
