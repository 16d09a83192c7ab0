"""The ``lic`` command: separate encoder / decoder processes, folders, input conversion, errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import test_coding_support as S
from conftest import require

from lic_jax.cli import main
from lic_jax.coding import Codec

MODEL = "mbt2018"  # autoregressive: the strictest determinism check across processes


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    d = tmp_path_factory.mktemp("art") / "model"
    S.make_artifact(d, MODEL, trained=True)
    return d


@pytest.fixture(scope="module")
def other_art(tmp_path_factory):
    d = tmp_path_factory.mktemp("art2") / "model"
    S.make_artifact(d, "bmshj2018-hyperprior")
    return d


def _lic_cmd():
    exe = Path(sys.executable).with_name("lic")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lic_jax.cli"]


def _run(args, one_core=False, extra_env=None, **kw):
    """``lic`` in a fresh process; ``extra_env``: variables to set (a value of None: to remove)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    for k, v in (extra_env or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    pre = ["taskset", "-c", "0"] if one_core and shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
    return subprocess.run(pre + _lic_cmd() + [str(a) for a in args], capture_output=True, text=True, env=env,
                          timeout=600, **kw)


def _read(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _png16_rgb(path, a):
    """A 16-bit RGB PNG (Pillow cannot write one)."""
    import struct
    import zlib

    h, w, _ = a.shape
    raw = b"".join(b"\0" + a[i].astype(">u2").tobytes() for i in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _no_temp_files(d):
    return not [n for n in os.listdir(d) if n.endswith(".tmp")]


def test_encoder_and_decoder_in_separate_processes(art, tmp_path):
    """`lic compress` and `lic decompress` in two fresh processes (nothing shared but the model
    directory; the encoder pinned to one core): the bytes equal this process's encoding and the
    image its decoding."""
    img = S.kodak_image(1)[:200, :300]
    src = S.write_png(tmp_path / "in.png", img)
    r = _run(["compress", src, tmp_path / "a.lic", "--checkpoint", art], one_core=True)
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "a.lic").read_bytes()
    codec = Codec.from_artifact(art)
    assert data == codec.compress(img)  # encoding is deterministic across processes
    bpp = 8 * len(data) / (200 * 300)
    assert f"{len(data)} bytes, {bpp:.4f} bpp" in r.stdout and "PSNR" in r.stdout
    r = _run(["decompress", tmp_path / "a.lic", tmp_path / "out.png", "--checkpoint", art, "--original", src])
    assert r.returncode == 0, r.stderr
    out = _read(tmp_path / "out.png")
    np.testing.assert_array_equal(out, codec.decompress(data))
    psnr = 10 * np.log10(255.0**2 / np.mean((out.astype(float) - img) ** 2))
    assert f"PSNR {psnr:.2f} dB" in r.stdout
    r = _run(["info", tmp_path / "a.lic", "--json"])
    assert r.returncode == 0
    info = json.loads(r.stdout)
    assert info["model"] == MODEL and info["file_bytes"] == len(data) and info["bpp"] == bpp
    # a corrupt file in a fresh process: one line, exit 1, no output file
    (tmp_path / "bad.lic").write_bytes(data[:-7])
    r = _run(["decompress", tmp_path / "bad.lic", tmp_path / "bad.png", "--checkpoint", art])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("lic: error:")
    assert not (tmp_path / "bad.png").exists() and _no_temp_files(tmp_path)


def test_xla_cache(art, tmp_path):
    """The program's persistent XLA cache (lic_jax/cli/xla_cache.py): off (LIC_JAX_XLA_CACHE=off)
    it writes nothing; on (by default in $LIC_JAX_CACHE/xla) a first decode in a fresh process
    stores the compiled decoder and a second one loads every executable from it (no new entry)
    and writes the same pixels as this process's decoder; with the entries corrupted a third one
    compiles again, says nothing and writes them too. (The suite turns it off in conftest.)"""
    img = S.kodak_image(2)[:64, :96]
    src = S.write_png(tmp_path / "in.png", img)
    cache = tmp_path / "c"
    r = _run(["compress", src, tmp_path / "a.lic", "--checkpoint", art],
             extra_env={"LIC_JAX_CACHE": str(cache), "LIC_JAX_XLA_CACHE": "off"})
    assert r.returncode == 0, r.stderr
    assert not (cache / "xla").exists()
    entries = []
    for k in range(2):
        r = _run(["decompress", tmp_path / "a.lic", tmp_path / f"out{k}.png", "--checkpoint", art],
                 extra_env={"LIC_JAX_CACHE": str(cache), "LIC_JAX_XLA_CACHE": None, "JAX_COMPILATION_CACHE_DIR": None})
        assert r.returncode == 0, r.stderr
        entries.append(sorted(p.name for p in (cache / "xla").glob("*-cache")))
    assert entries[0] and entries[1] == entries[0]  # the second run compiled nothing worth a file
    for name in entries[0]:  # corrupt entries: compiled again, silently
        (cache / "xla" / name).write_bytes(b"not a compiled program")
    r = _run(["decompress", tmp_path / "a.lic", tmp_path / "out2.png", "--checkpoint", art],
             extra_env={"LIC_JAX_CACHE": str(cache), "LIC_JAX_XLA_CACHE": None, "JAX_COMPILATION_CACHE_DIR": None})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    want = Codec.from_artifact(art).decompress((tmp_path / "a.lic").read_bytes())
    for k in range(3):
        np.testing.assert_array_equal(_read(tmp_path / f"out{k}.png"), want)


def test_folders_progress_and_summary(art, tmp_path, capsys):
    src, enc, dec = tmp_path / "src", tmp_path / "enc", tmp_path / "dec"
    src.mkdir()
    shapes = [(64, 96), (70, 50), (33, 128)]
    for i, (h, w) in enumerate(shapes):
        S.write_png(src / f"im{i}.png", S.kodak_image(10 + i)[:h, :w])
    (src / "notes.txt").write_text("not an image")
    assert main(["compress", str(src), str(enc), "--checkpoint", str(art)]) == 0
    cap = capsys.readouterr()
    assert sorted(os.listdir(enc)) == ["im0.lic", "im1.lic", "im2.lic"]
    assert "3 of 3 files" in cap.out and "img/s" in cap.out and "mean PSNR" in cap.out
    assert "%|" not in cap.err  # no progress bar when stderr is not a terminal (see test_result_lines_...)
    assert main(["decompress", str(enc), str(dec), "--checkpoint", str(art), "--original", str(src)]) == 0
    cap = capsys.readouterr()
    assert sorted(os.listdir(dec)) == ["im0.png", "im1.png", "im2.png"]
    for i, (h, w) in enumerate(shapes):
        assert _read(dec / f"im{i}.png").shape == (h, w, 3)
        size = (enc / f"im{i}.lic").stat().st_size
        assert f"{size} bytes, {8 * size / (h * w):.4f} bpp, PSNR" in cap.out
    assert main(["info", str(enc)]) == 0
    assert capsys.readouterr().out.count(".lic v1") == 3
    # a folder with one corrupt file: the others are decoded, exit status 1
    (enc / "im1.lic").write_bytes(b"LIC\x01garbage")
    shutil.rmtree(dec)
    assert main(["decompress", str(enc), str(dec), "--checkpoint", str(art)]) == 1
    assert sorted(os.listdir(dec)) == ["im0.png", "im2.png"]
    assert "im1.lic" in capsys.readouterr().err


def test_input_conversions(art, tmp_path, capsys):
    from PIL import Image

    rgb = S.kodak_image(15)[:48, :64]
    grey = rgb[..., 1].copy()
    cases = {}
    cases["grey.png"] = Image.fromarray(grey, "L")
    cases["palette.png"] = Image.fromarray(rgb).convert("P")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    cases["opaque.png"] = Image.fromarray(rgba, "RGBA")
    cases["grey16.png"] = Image.fromarray(grey.astype(np.uint16) * 257)
    cases["cmyk.tif"] = Image.fromarray(rgb).convert("CMYK")
    cases["la_opaque.png"] = Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), "LA")
    for name, im in cases.items():
        im.save(tmp_path / name)
    _png16_rgb(tmp_path / "rgb16.png", rgb.astype(np.uint16) * 257 + 100)
    cases["rgb16.png"] = None
    for name in cases:
        out = tmp_path / (name + ".lic")
        assert main(["compress", str(tmp_path / name), str(out), "--checkpoint", str(art), "--no-psnr"]) == 0, name
        info = Codec.info(out.read_bytes())
        assert info["channels"] == (1 if name.startswith(("grey", "la")) else 3), name
        assert main(["decompress", str(out), str(tmp_path / (name + ".png")), "--checkpoint", str(art)]) == 0
        dec = _read(tmp_path / (name + ".png"))
        assert dec.shape == ((48, 64) if info["channels"] == 1 else (48, 64, 3)), name
    err = capsys.readouterr().err
    assert "16-bit greyscale converted to 8 bits" in err and "CMYK image converted to RGB" in err
    assert "rgb16.png: 16-bit PNG converted to 8 bits" in err
    # alpha that matters: refused (exit 1, one line, no output) unless --drop-alpha
    rgba[5:20, 5:20, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert main(["compress", str(tmp_path / "alpha.png"), str(tmp_path / "alpha.lic"), "--checkpoint", str(art)]) == 1
    err = capsys.readouterr().err
    assert "--drop-alpha" in err and err.count("\n") == 1 and not (tmp_path / "alpha.lic").exists()
    assert main(["compress", str(tmp_path / "alpha.png"), str(tmp_path / "alpha.lic"), "--checkpoint", str(art),
                 "--drop-alpha"]) == 0
    assert Codec.info((tmp_path / "alpha.lic").read_bytes())["channels"] == 3
    np.testing.assert_array_equal(
        Codec.from_artifact(art).decompress((tmp_path / "alpha.lic").read_bytes()),
        Codec.from_artifact(art).decompress(Codec.from_artifact(art).compress(rgb)))
    assert _no_temp_files(tmp_path)


def test_errors_are_one_line_with_nonzero_exit(art, other_art, tmp_path, capsys):
    img = S.kodak_image(20)[:40, :40]
    src = S.write_png(tmp_path / "x.png", img)
    codec = Codec.from_artifact(art)
    (tmp_path / "x.lic").write_bytes(codec.compress(img))

    def fails(args, pattern, code=1):
        assert main([str(a) for a in args]) == code
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lic: error:"), err
        assert re.search(pattern, err), err

    fails(["compress", tmp_path / "missing.png", tmp_path / "o.lic", "--checkpoint", art], "missing.png")
    fails(["decompress", tmp_path / "missing.lic", tmp_path / "o.png", "--checkpoint", art], "missing.lic")
    fails(["compress", src, tmp_path / "o.lic", "--model", "mbt2018", "--quality", "3"], "no shipped weights")
    fails(["compress", src, tmp_path / "o.lic", "--model", "nonesuch", "--quality", "3"], "unknown model")
    fails(["compress", src, tmp_path / "o.lic", "--checkpoint", tmp_path / "nodir"], "not a model directory")
    fails(["compress", src, tmp_path / "o.lic", "--checkpoint", src], "is a file")
    fails(["decompress", tmp_path / "x.lic", tmp_path / "o.png", "--checkpoint", other_art],
          "encoded with other weights")
    (tmp_path / "t.lic").write_bytes((tmp_path / "x.lic").read_bytes()[:-3])
    fails(["decompress", tmp_path / "t.lic", tmp_path / "o.png", "--checkpoint", art], "truncated")
    (tmp_path / "n.lic").write_bytes(b"\x89PNG....")
    fails(["info", tmp_path / "n.lic"], "not a .lic file")
    fails(["compress", tmp_path / "n.lic", tmp_path / "o.lic", "--checkpoint", art], "not an image")
    from lic_jax.default_model import default_model_path

    if not os.path.exists(os.path.join(default_model_path(), "config.json")):
        fails(["compress", src, tmp_path / "o.lic"], "no default model")
        fails(["decompress", tmp_path / "x.lic", tmp_path / "o.png"], "no shipped model has")
    else:  # the shipped default model: no option needed on either side
        assert main(["compress", str(src), str(tmp_path / "d.lic"), "--no-psnr"]) == 0
        assert main(["decompress", str(tmp_path / "d.lic"), str(tmp_path / "d.png")]) == 0
        capsys.readouterr()
    assert not (tmp_path / "o.lic").exists() and not (tmp_path / "o.png").exists()
    assert _no_temp_files(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["compress"])
    assert e.value.code == 2
    capsys.readouterr()


def test_compressai_checkpoint(tmp_path, capsys):
    require("compressai")
    import torch

    from compressai.models import FactorizedPrior

    torch.manual_seed(0)
    net = FactorizedPrior(16, 16)
    torch.save(net.state_dict(), tmp_path / "cai.pth.tar")
    src = S.write_png(tmp_path / "x.png", S.kodak_image(21)[:64, :80])
    ck = str(tmp_path / "cai.pth.tar")
    assert main(["compress", str(src), str(tmp_path / "x.lic"), "--compressai-checkpoint", ck]) == 0
    assert Codec.info((tmp_path / "x.lic").read_bytes())["model"] == "bmshj2018-factorized"
    assert main(["decompress", str(tmp_path / "x.lic"), str(tmp_path / "x2.png"), "--compressai-checkpoint", ck,
                 "--original", str(src)]) == 0
    assert "PSNR" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# input conversion: pixel values against independent numpy conversions of the raw mode data
# ------------------------------------------------------------------------------------------
def test_input_conversion_pixel_values(art, tmp_path, capsys):
    """Each converted mode equals a conversion computed here with numpy from the raw data the
    file stores (not through Pillow's convert), and `lic compress` codes exactly that array."""
    from PIL import Image

    from lic_jax.coding.image_io import read_image

    rng = np.random.default_rng(5)
    h, w = 40, 56
    rgb = S.kodak_image(15)[:h, :w].copy()
    grey = rgb[..., 1].copy()
    expected = {}
    # greyscale 'L': the values themselves (header channels = 1)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    expected["grey.png"] = grey
    # palette 'P': RGB = palette[index], from the stored palette and index plane
    pal_im = Image.fromarray(rgb).quantize(colors=37, dither=Image.Dither.NONE)
    pal_im.save(tmp_path / "palette.png")
    with Image.open(tmp_path / "palette.png") as im:
        idx = np.asarray(im)  # raw indexes ('P' mode, no conversion)
        pal = np.asarray(im.getpalette(), np.uint8).reshape(-1, 3)
    expected["palette.png"] = pal[idx]
    # 16-bit greyscale: round(v / 257), from arbitrary 16-bit values (not multiples of 257)
    g16 = rng.integers(0, 65536, (h, w), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "grey16.png")
    expected["grey16.png"] = np.floor(g16.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    # 16-bit RGB PNG: the most significant byte of each sample
    r16 = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
    _png16_rgb(tmp_path / "rgb16.png", r16)
    expected["rgb16.png"] = (r16 >> 8).astype(np.uint8)
    # CMYK TIFF written from raw C, M, Y, K planes: R = (255 − K) · (1 − C / 255), rounded
    cmyk = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    Image.frombytes("CMYK", (w, h), cmyk.tobytes()).save(tmp_path / "cmyk.tif")
    nk = 255.0 - cmyk[..., 3:4].astype(np.float64)
    expected["cmyk.tif"] = np.round(nk - cmyk[..., :3].astype(np.float64) * nk / 255.0).astype(np.uint8)
    # LA with an opaque alpha: the L plane
    Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), "LA").save(tmp_path / "la.png")
    expected["la.png"] = grey
    codec = Codec.from_artifact(art)
    for name, want in expected.items():
        got = read_image(tmp_path / name, warn=lambda m: None)
        assert got.dtype == np.uint8 and got.shape == want.shape, name
        # measured: exact equality for every mode (Pillow's CMYK→RGB is an exact rounded product)
        np.testing.assert_array_equal(got, want, err_msg=name)
        out = tmp_path / (name + ".lic")
        assert main(["compress", str(tmp_path / name), str(out), "--checkpoint", str(art), "--no-psnr", "-q"]) == 0
        assert out.read_bytes() == codec.compress(want), name  # the CLI codes exactly this array
    capsys.readouterr()


# ------------------------------------------------------------------------------------------
# output files: permissions like `cp`, and clean lines in logs
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_output_files_get_the_umask_permissions(art, tmp_path, umask, capsys):
    import stat

    src = S.write_png(tmp_path / "x.png", S.kodak_image(3)[:40, :40])
    old = os.umask(umask)
    try:
        assert main(["compress", str(src), str(tmp_path / "x.lic"), "--checkpoint", str(art), "-q"]) == 0
        assert main(["decompress", str(tmp_path / "x.lic"), str(tmp_path / "y.png"), "--checkpoint", str(art),
                     "-q"]) == 0
        for p in ("x.lic", "y.png"):
            assert stat.S_IMODE((tmp_path / p).stat().st_mode) == 0o666 & ~umask, p
        # an existing output keeps its own mode (as cp does)
        os.chmod(tmp_path / "y.png", 0o604)
        assert main(["decompress", str(tmp_path / "x.lic"), str(tmp_path / "y.png"), "--checkpoint", str(art),
                     "-q"]) == 0
        assert stat.S_IMODE((tmp_path / "y.png").stat().st_mode) == 0o604
    finally:
        os.umask(old)
    capsys.readouterr()


_RESULT = re.compile(r"^\S+ -> \S+: \d+x\d+, \d+ bytes, \d+\.\d{4} bpp(, PSNR [\d.]+ dB)?$")
_SUMMARY = re.compile(r"^\d+ of \d+ files in [\d.]+ s \([\d.]+ img/s\)")


def test_result_lines_are_clean_in_logs_and_pipes(art, tmp_path):
    """stdout and stderr into one pipe (a log file, `2>&1 | tee`): every line is a whole result
    line or the summary — no progress-bar fragments, no carriage returns. On a terminal the bar
    is drawn on stderr and the result lines still arrive whole on stdout."""
    import pty

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        S.write_png(src / f"im{i}.png", S.kodak_image(11 + i)[:40, :48])
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run(_lic_cmd() + ["compress", str(src), str(tmp_path / "a"), "--checkpoint", str(art)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout
    lines = r.stdout.splitlines()
    assert "\r" not in r.stdout
    assert sum(bool(_RESULT.match(x)) for x in lines) == 3 and sum(bool(_SUMMARY.match(x)) for x in lines) == 1
    assert all(_RESULT.match(x) or _SUMMARY.match(x) for x in lines), lines
    # stderr on a (pseudo-)terminal: the bar is drawn there, stdout stays clean
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    try:
        p = subprocess.Popen(_lic_cmd() + ["compress", str(src), str(tmp_path / "b"), "--checkpoint", str(art)],
                             stdout=subprocess.PIPE, stderr=slave, text=True, env=env)
        os.close(slave)
        slave = None
        err = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
        out = p.stdout.read()
        assert p.wait(timeout=600) == 0
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    assert "img" in err.decode(errors="replace")  # the bar (unit img/s) on the terminal
    assert "\r" not in out and all(_RESULT.match(x) or _SUMMARY.match(x) for x in out.splitlines()), out


def test_portable_default_float_twin_and_info(other_art, tmp_path, capsys):
    """Issue 13: the shipped default writes portable files (``lic info`` says so); ``--model
    mae-hyperprior`` writes its float twin's files (same weights), which the same shipped directory
    decodes; ``--portable`` refuses a float model with a one-line error and no output. The first
    default (``--model bmshj2018-hyperprior-int --quality 4``) is still shipped: its files decode
    without options."""
    from lic_jax.coding import container

    src = tmp_path / "a.png"
    S.write_png(src, S.kodak_image(3)[:64, :96])
    p, f, o = tmp_path / "p.lic", tmp_path / "f.lic", tmp_path / "first.lic"
    assert main(["compress", str(src), str(p), "--no-psnr", "--portable"]) == 0
    assert main(["compress", str(src), str(f), "--no-psnr", "--model", "mae-hyperprior"]) == 0
    assert main(["compress", str(src), str(o), "--no-psnr", "--model", "bmshj2018-hyperprior-int", "--quality", "4"]) == 0
    hp, _ = container.unpack(p.read_bytes())
    hf, _ = container.unpack(f.read_bytes())
    ho, _ = container.unpack(o.read_bytes())
    assert (hp.model_name, hf.model_name, ho.model_name) == ("mae-hyperprior-int", "mae-hyperprior",
                                                             "bmshj2018-hyperprior-int")
    assert hp.lmbda == hf.lmbda == np.float32(0.0067)  # the default's quality 3 (its default_lmbda)
    assert hp.fingerprint == hf.fingerprint != ho.fingerprint  # one weights file serves both twins
    assert main(["decompress", str(o), str(o.with_suffix(".png")), "-q"]) == 0
    capsys.readouterr()
    assert main(["info", str(p)]) == 0 and main(["info", str(f)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert ", portable," in out[0] and "not portable" in out[1]
    for x in (p, f):
        assert main(["decompress", str(x), str(x.with_suffix(".png")), "-q"]) == 0
    np.testing.assert_array_equal(_read(p.with_suffix(".png")), _read(f.with_suffix(".png")))
    capsys.readouterr()
    assert main(["compress", str(src), str(tmp_path / "o.lic"), "--checkpoint", str(other_art), "--portable"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--portable" in err[0] and "float entropy path" in err[0], err
    assert not (tmp_path / "o.lic").exists()


def test_compress_qf_for_jpeg_payload_model(other_art, tmp_path, capsys):
    """Issue 16: ``lic compress --checkpoint <comcnn-jpeg> --qf Q`` writes its payload as a JPEG at
    quality Q (the embedded JPEG's quantisation tables equal those Pillow writes at Q — an
    independent encode), same weights and fingerprint whatever Q, smaller file at lower Q;
    ``lic decompress`` decodes it (Pillow's decode of the payload, then RecCNN, checked against a
    direct model.apply); --qf outside 1..95 or on a model without a JPEG payload: one-line error."""
    import io

    import jax
    import jax.numpy as jnp
    from PIL import Image

    from lic_jax.artifact import save_artifact
    from lic_jax.coding import container
    from lic_jax.models.jiang2017 import ComCNNJpeg, export_variables, training_model
    from lic_jax.models.registry import ModelSpec

    tiny = {"N": 8, "depth": 4, "payload_quality": 50}
    v = export_variables(training_model(**tiny).init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3))))
    d = tmp_path / "comcnn"
    save_artifact(d, ModelSpec("comcnn-jpeg", None, dict(tiny)), v)
    yy, xx = np.mgrid[0:48, 0:64]
    img = np.clip(128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
                  + np.random.default_rng(0).normal(0, 8, (48, 64)), 0, 255).astype(np.uint8)
    src = S.write_png(tmp_path / "g.png", img)
    sizes, headers = {}, {}
    for q in (10, 80):
        out = tmp_path / f"q{q}.lic"
        assert main(["compress", str(src), str(out), "--checkpoint", str(d), "--qf", str(q), "--no-psnr"]) == 0
        data = out.read_bytes()
        headers[q], streams = container.unpack(data)
        sizes[q] = len(data)
        jpg = Image.open(io.BytesIO(streams[0]))
        ref = io.BytesIO()
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(ref, "JPEG", quality=q)
        assert jpg.format == "JPEG" and jpg.quantization == Image.open(ref).quantization, q
        dec = np.asarray(jpg.convert("L"), np.float32)
        assert dec.std() > 2  # a textured compact image (else the size ordering says nothing)
        assert main(["decompress", str(out), str(tmp_path / f"q{q}.png"), "--checkpoint", str(d), "-q"]) == 0
        xs = np.asarray(ComCNNJpeg(**tiny).apply(v, jnp.asarray(dec)[None, :, :, None] / 255, method="synthesis"))[0]
        expect = np.clip(np.round(xs[:, :, 0] * 255), 0, 255).astype(int)
        got = _read(tmp_path / f"q{q}.png").astype(int)
        # rounding ties only: the existing codec test measured 0 of 792 pixels off, max 1
        assert got.shape == img.shape and np.abs(got - expect).max() <= 1 and (got != expect).mean() < 0.01
    assert headers[10].fingerprint == headers[80].fingerprint
    assert sizes[10] < sizes[80], sizes
    capsys.readouterr()
    for bad in (["--checkpoint", str(d), "--qf", "0"], ["--checkpoint", str(d), "--qf", "96"],
                ["--checkpoint", str(other_art), "--qf", "20"]):
        dst = tmp_path / "bad.lic"
        assert main(["compress", str(src), str(dst), "--no-psnr", *bad]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--qf" in err[0] and not dst.exists(), err


def test_decompress_decoder_option(tmp_path, capsys):
    """``lic decompress --decoder NAME``: one of the model's decoders (its record's ``decoders``)
    overrides the one the file asks for; a name the model does not have is an error (exit 1, one line
    naming the model's decoders, no output file). The toy family (tests/toys/jpeg_payload.py) has two."""
    import jax

    from lic_jax.artifact import load_artifact, save_artifact
    from lic_jax.models.registry import ModelSpec, registered
    from toys.jpeg_payload import RECORD, JpegPayloadToy

    rng = np.random.default_rng(5)
    img = np.clip(np.mgrid[0:37, 0:50][1][..., None] * 4 + rng.integers(0, 40, (37, 50, 3)), 0, 255).astype(np.uint8)
    src = S.write_png(tmp_path / "toy.png", img)
    with registered(RECORD):
        v = JpegPayloadToy().init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 3), np.float32))
        d = tmp_path / "toy"
        save_artifact(d, ModelSpec(RECORD.name, None, {}), {"params": v["params"]})
        codec = Codec.from_artifact(load_artifact(d))
        lic = tmp_path / "toy.lic"
        assert main(["compress", str(src), str(lic), "--checkpoint", str(d), "-q"]) == 0
        data = lic.read_bytes()
        for name in (None, "synthesis", "detail_synthesis"):
            out = tmp_path / f"{name}.png"
            opt = ["--decoder", name] if name else []
            assert main(["decompress", str(lic), str(out), "--checkpoint", str(d), "-q", *opt]) == 0
            np.testing.assert_array_equal(_read(out), codec.decompress(data, decoder=name))
        assert not np.array_equal(_read(tmp_path / "detail_synthesis.png"), _read(tmp_path / "synthesis.png"))
        capsys.readouterr()
        bad = tmp_path / "bad.png"
        assert main(["decompress", str(lic), str(bad), "--checkpoint", str(d), "--decoder", "nope"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lic: error:") and "'nope'" in err[0], err
        assert "synthesis, detail_synthesis" in err[0] and not bad.exists(), err
