"""What docs/FORMAT.md §7 guarantees, checked with real-width models of every architecture.

Models: CompressAI's quality-3 widths (``get_model(name, 3)``; the ``mae-*`` models at their
registry widths, N = 192 / N = 128, M = 192, λ = 0.0067), seed-0 random initialisation with the
last convolution of g_a, h_a and h_s rescaled so that y, z and the hyper-synthesis output have
standard deviations of about 4, 2 and 2 on a Kodak crop (:func:`nontrivial_params`): random
init alone gives all-zero symbols and one table index at these widths (measured: 0 % non-zero
y symbols for every architecture), which would make every round trip trivially exact. The
``bmshj2018-hyperprior`` is the shipped default model (trained, N = 128, M = 192).

* ``test_round_trip_all_kodak_real_width``: every architecture × all 24 Kodak images: the decoder
  recovers the encoder's symbols, ŷ, ẑ and table indexes exactly; for two images (one per
  orientation) the decoded image equals an independent jit of the model's synthesis.
* ``test_batch_size``: analysis, hyper-analysis and synthesis of an image inside a batch of 2
  equal the batch-1 results bit for bit.
* ``test_thread_count_and_separate_processes``: two fresh processes, one with a 1-thread and one
  with a 2-thread XLA:CPU intra-op pool (``NPROC``: what sets the pool's size, checked from the
  worker's thread list; ``--xla_cpu_multi_thread_eigen=false`` does not change it), encode the
  same crop with every architecture and decode this process's files: identical bytes, identical
  images.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import test_coding_support as S  # noqa: E402

ARCHS = ("bmshj2018-factorized", "bls2017", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018", "lee2019",
         "mae-bls2017", "mae-hyperprior")
MAE_LAMBDA = 0.0067  # CompressAI's q3 λ
TARGET_STD = {"g_a": 4.0, "h_a": 2.0, "h_s": 2.0}


def _last_conv(params, prefix):
    keys = [k for k in params if re.fullmatch(prefix + r"_\d+", k) and "kernel" in params[k]]
    return max(keys, key=lambda k: int(k.rsplit("_", 1)[1])) if keys else None


def _rescaled(params, key, f):
    p = dict(params)
    p[key] = {**p[key], "kernel": np.asarray(p[key]["kernel"] * np.float32(f), np.float32),
              "bias": np.asarray(p[key]["bias"] * np.float32(f), np.float32)}
    return p


def nontrivial_params(model, params, x, lam=None):
    """Rescale the last conv of g_a, h_a, h_s so that y, z and h_s's output have about the
    standard deviations of TARGET_STD on ``x`` (two passes for g_a: bls2017 ends in a GDN)."""
    lam_args = () if lam is None else (np.float32(lam),)
    for _ in range(2):
        y = np.asarray(model.apply({"params": params}, x, *lam_args, method="analysis"))
        params = _rescaled(params, _last_conv(params, "g_a"), TARGET_STD["g_a"] / y.std())
    y = np.asarray(model.apply({"params": params}, x, *lam_args, method="analysis"))
    if _last_conv(params, "h_a") is None:
        return params
    z = np.asarray(model.apply({"params": params}, y, method="hyper_analysis"))
    params = _rescaled(params, _last_conv(params, "h_a"), TARGET_STD["h_a"] / z.std())
    z = np.rint(np.asarray(model.apply({"params": params}, y, method="hyper_analysis")))
    out = model.apply({"params": params}, z, method="hyper_synthesis")
    h = np.asarray(out.get("hyper", out.get("scales")))
    return _rescaled(params, _last_conv(params, "h_s"), TARGET_STD["h_s"] / max(h.std(), 1e-6))


@functools.lru_cache(maxsize=None)
def real_width(name: str):
    """(model, spec, variables) of the real-width model used for ``name``."""
    import jax
    import jax.numpy as jnp

    from lic_jax.models import get_model

    if name == "bmshj2018-hyperprior":
        from lic_jax.artifact import load_artifact
        from lic_jax.default_model import first_default_model_path

        from lic_jax.models.portable import float_spec

        art = load_artifact(first_default_model_path())
        spec = float_spec(art.spec)  # the first bundled default is portable (issue 13); its float twin, same weights
        assert spec.name == name and spec.hparams["N"] == 128 and spec.hparams["M"] == 192
        return spec.build(), spec, art.variables
    model, spec = get_model(name) if name.startswith("mae-") else get_model(name, 3)
    lam = MAE_LAMBDA if name.startswith("mae-") else None
    x0 = jnp.zeros((1, 64, 64, 3), jnp.float32)
    v = model.init(jax.random.PRNGKey(0), x0, *(() if lam is None else (lam,)))
    params = jax.tree_util.tree_map(np.asarray, dict(v["params"]))
    x = S.kodak_image(23)[128:256, 256:384][None].astype(np.float32) / 255.0
    return model, spec, {"params": nontrivial_params(model, params, x, lam)}


@functools.lru_cache(maxsize=None)
def codec_for(name: str):
    from lic_jax.coding import Codec

    model, spec, v = real_width(name)
    return Codec(model, spec, v, lmbda=MAE_LAMBDA if name.startswith("mae-") else None)


@functools.lru_cache(maxsize=None)
def _synthesis_fn(name: str):
    import jax

    from lic_jax.coding.programs import inference_model

    model, _, _ = real_width(name)
    model = inference_model(model)  # the decoder's forward-only form (docs/SPEED.md)
    if name.startswith("mae-"):
        return jax.jit(lambda v, y: model.apply(v, y, np.float32(MAE_LAMBDA), method="synthesis"))
    return jax.jit(lambda v, y: model.apply(v, y, method="synthesis"))


def reference_image(name, y_hat, h, w):
    """uint8 of an independent jit of ``model.apply(method='synthesis')`` + crop / clip / round."""
    from lic_jax.coding import to_uint8
    from lic_jax.models import crop_image

    _, _, v = real_width(name)
    x = np.asarray(_synthesis_fn(name)(v, y_hat[None]))
    return to_uint8(np.clip(np.asarray(crop_image(x, h, w))[0], 0, 1))


# ------------------------------------------------------------------------------------------
# CI codes six Kodak images per model (landscapes and the portraits 4 and 18); the 24-image form is
# marked 'extended' (scripts/test.sh --extended): 8 models x 24 images took ~500 s of the CI's 90 minutes.
KODAK_CI = (1, 4, 7, 12, 18, 23)


@pytest.mark.slow
@pytest.mark.parametrize("images", [pytest.param(KODAK_CI, id="6"),
                                    pytest.param(tuple(range(1, 25)), id="24", marks=pytest.mark.extended)])
@pytest.mark.parametrize("name", ARCHS)
def test_round_trip_all_kodak_real_width(name, images, kodak_dir):
    codec = codec_for(name)
    nonzero, idx_values = [], set()
    t0 = time.time()
    for i in images:
        img = S.kodak_image(i)
        enc = codec.encode(img)
        lat = codec.decompress(enc.data, output="latents")
        np.testing.assert_array_equal(lat.y_symbols, enc.latents.y_symbols)
        np.testing.assert_array_equal(lat.y_hat, enc.latents.y_hat)
        if enc.latents.z_symbols is not None:
            np.testing.assert_array_equal(lat.z_symbols, enc.latents.z_symbols)
            np.testing.assert_array_equal(lat.y_indexes, enc.latents.y_indexes)
            idx_values.update(np.unique(lat.y_indexes).tolist())
        nonzero.append(np.mean(lat.y_symbols != 0))
        if i in (1, 4):  # one landscape, one portrait: the decoded image is the model's synthesis
            h, w = img.shape[:2]
            np.testing.assert_array_equal(codec.decompress(enc.data), reference_image(name, lat.y_hat, h, w))
    # the latents are not trivial (random init alone: 0 % non-zero, one table index)
    assert np.mean(nonzero) > 0.05, np.mean(nonzero)
    if codec.kind != "factorized":
        assert len(idx_values) >= 8, sorted(idx_values)
    print(f"{name}: {len(images)} Kodak round trips in {time.time() - t0:.1f} s, {100 * np.mean(nonzero):.1f} % non-zero y "
          f"symbols, {len(idx_values)} table indexes")


@pytest.mark.parametrize("name", ARCHS)
def test_batch_size(name):
    import jax

    model, _, v = real_width(name)
    lam = (np.float32(MAE_LAMBDA),) if name.startswith("mae-") else ()
    a = S.kodak_image(1)[:128, :192][None].astype(np.float32) / 255.0
    b = S.kodak_image(2)[:128, :192][None].astype(np.float32) / 255.0
    ana = jax.jit(lambda v, x: model.apply(v, x, *lam, method="analysis"))
    syn = jax.jit(lambda v, y: model.apply(v, y, *lam, method="synthesis"))
    y1, y2 = np.asarray(ana(v, a)), np.asarray(ana(v, np.concatenate([a, b])))
    np.testing.assert_array_equal(y2[:1], y1)
    yq = np.rint(y1)
    assert np.mean(yq != 0) > 0.05  # not trivial
    x1, x2 = np.asarray(syn(v, yq)), np.asarray(syn(v, np.concatenate([yq, np.rint(y2[1:])])))
    np.testing.assert_array_equal(x2[:1], x1)
    if hasattr(model, "hyper_analysis"):
        ha = jax.jit(lambda v, y: model.apply(v, y, method="hyper_analysis"))
        np.testing.assert_array_equal(np.asarray(ha(v, y2))[:1], np.asarray(ha(v, y1)))


# ------------------------------------------------------------------------------------------
# thread count and separate processes
# ------------------------------------------------------------------------------------------
CROP = (slice(0, 192), slice(64, 320))  # kodim01, 192 × 256 (hyperprior models pad to 192 × 256)


def _worker(art_root: str, out: str):
    """(fresh process) encode the crop with every model of ``art_root``, decode the parent's files."""
    from lic_jax.coding import Codec

    res = {}
    img = S.kodak_image(1)[CROP]
    for name in ARCHS:
        codec = Codec.from_artifact(os.path.join(art_root, name), lmbda=MAE_LAMBDA if name.startswith("mae-") else None)
        res[f"{name}/file"] = np.frombuffer(codec.compress(img), np.uint8)
        parent = Path(art_root, name + ".lic").read_bytes()
        res[f"{name}/decoded"] = codec.decompress(parent)
    names = [Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")]
    res["eigen_threads"] = np.array(sum(n.endswith("XLAEigen") for n in names))
    np.savez(out, **res)


def test_thread_count_and_separate_processes(tmp_path):
    from lic_jax.artifact import save_artifact

    img = S.kodak_image(1)[CROP]
    files, images = {}, {}
    for name in ARCHS:
        model, spec, v = real_width(name)
        save_artifact(tmp_path / name, spec, v)
        codec = codec_for(name)
        files[name] = codec.compress(img)
        images[name] = codec.decompress(files[name])
        (tmp_path / f"{name}.lic").write_bytes(files[name])
    procs = {}
    for n in (1, 2):
        env = dict(os.environ, NPROC=str(n), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        procs[n] = subprocess.Popen([sys.executable, __file__, "--worker", str(tmp_path), str(tmp_path / f"w{n}.npz")],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for n, p in procs.items():
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
    for n in procs:
        r = np.load(tmp_path / f"w{n}.npz")
        assert int(r["eigen_threads"]) == n  # NPROC really sized the XLA:CPU intra-op pool
        for name in ARCHS:
            assert r[f"{name}/file"].tobytes() == files[name], (n, name)
            np.testing.assert_array_equal(r[f"{name}/decoded"], images[name], err_msg=f"NPROC={n} {name}")


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    import jax

    jax.config.update("jax_threefry_partitionable", True)
    _worker(sys.argv[2], sys.argv[3])
