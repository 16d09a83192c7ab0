"""Shared helpers of the coding tests (test_coding, test_container, test_cli, test_fuzz and
tests/tfc/test_tfc_coder): small models, briefly trained weights, Kodak images, artifacts.

Caches are process-wide (``functools.lru_cache``), so every test module of one pytest run
shares the same models, trained weights and JAX compilations. No tests live here.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_threefry_partitionable", True)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("LIC_JAX_SHARED", REPO.parent / "shared"))
KODAK = SHARED / "data" / "kodak"
TRAIN = SHARED / "data" / "train"

ALL_MODELS = ("bmshj2018-factorized", "bls2017", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018", "lee2019")
AR_MODELS = ("mbt2018", "lee2019")
SMALL = 16  # latent / transform width of the fast sweeps


def small_hparams(name: str, width: int = SMALL) -> dict:
    return {"N": width} if name == "bls2017" else {"N": width, "M": width}


def kodak_paths() -> list[Path]:
    return sorted(KODAK.glob("kodim*.png"))


@functools.lru_cache(maxsize=None)
def kodak_image(i: int) -> np.ndarray:
    """uint8 RGB of kodim{i:02d} (read-only)."""
    from PIL import Image

    with Image.open(KODAK / f"kodim{i:02d}.png") as im:
        a = np.asarray(im.convert("RGB"))
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=None)
def model_and_spec(name: str, width: int = SMALL, quality: int | None = None):
    from lic_jax.models import get_model

    if quality is not None:
        return get_model(name, quality)
    return get_model(name, **small_hparams(name, width))


# ------------------------------------------------------------------------------------------
# weights cache: random-init and briefly trained weights are cached in memory for the process
# and on disk across runs and environments (the TFC environment reuses what the base run
# trained). LIC_JAX_TEST_CACHE=DIR picks the folder, LIC_JAX_TEST_CACHE=0 disables the disk
# cache. Keys include the parameter tree (names, shapes) and a hash of the model source files,
# so a changed architecture never loads stale weights.
# ------------------------------------------------------------------------------------------
def _cache_dir():
    d = os.environ.get("LIC_JAX_TEST_CACHE")
    if d == "0":
        return None
    import tempfile

    return Path(d) if d else Path(tempfile.gettempdir()) / "lic_jax_test_weights"


@functools.lru_cache(maxsize=1)
def _source_hash() -> str:
    import hashlib

    import lic_jax

    root = Path(lic_jax.__file__).parent
    h = hashlib.sha256()
    for sub in ("models", "layers", "entropy_models", "losses.py", "metrics.py"):
        p = root / sub
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _cached(key: str, model, make):
    import hashlib

    from flax import serialization

    d = _cache_dir()
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3), jnp.float32)))
    tree = repr(jax.tree_util.tree_map(lambda s: (s.shape, str(s.dtype)), shapes["params"]))
    digest = hashlib.sha256(f"{key}|{tree}|{_source_hash()}".encode()).hexdigest()[:24]
    path = None if d is None else d / f"{digest}.msgpack"
    if path is not None and path.exists():
        try:
            v = serialization.msgpack_restore(path.read_bytes())
            return jax.tree_util.tree_map(np.asarray, {"params": v["params"]})
        except Exception:
            pass
    v = make()
    if path is not None:
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(serialization.to_bytes(v))
            os.replace(tmp, path)
        except OSError:
            pass
    return v


@functools.lru_cache(maxsize=None)
def random_variables(name: str, width: int = SMALL, quality: int | None = None, seed: int = 0):
    model, _ = model_and_spec(name, width, quality)

    def make():
        v = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 64, 64, 3), jnp.float32))  # eager: op caches shared
        return jax.tree_util.tree_map(np.asarray, {"params": v["params"]})

    return _cached(f"random|{name}|{width}|{quality}|{seed}", model, make)


@functools.lru_cache(maxsize=1)
def train_crops(n: int = 64, size: int = 64, seed: int = 0) -> np.ndarray:
    """n random size×size crops (float32 in [0, 1]) from shared/data/train (or Kodak if absent)."""
    from PIL import Image

    files = sorted(p for p in TRAIN.glob("**/*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        files = kodak_paths()
    rng = np.random.default_rng(seed)
    crops = []
    for k in range(n):
        with Image.open(files[int(rng.integers(len(files)))]) as im:
            a = np.asarray(im.convert("RGB"))
        h, w = a.shape[:2]
        if h < size or w < size:
            a = np.pad(a, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="edge")
            h, w = a.shape[:2]
        y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        crops.append(a[y : y + size, x : x + size])
    return np.stack(crops).astype(np.float32) / 255.0


@functools.lru_cache(maxsize=None)
def trained_variables(name: str, width: int = SMALL, steps: int = 30, lmbda: float = 0.05, batch: int = 4):
    """A few dozen Adam steps of the RD loss on 64×64 training crops, then exact EB quantiles
    (the export step of a real training run). Cached (process, and disk — see above)."""
    model, _ = model_and_spec(name, width)
    key = f"trained|{name}|{width}|{steps}|{lmbda}|{batch}"
    return _cached(key, model, lambda: _train(model, name, width, steps, lmbda, batch))


def _train(model, name, width, steps, lmbda, batch):
    import optax

    from lic_jax.entropy_models import fit_quantiles
    from lic_jax.losses import rate_distortion_loss

    params = random_variables(name, width)["params"]
    crops = train_crops()
    opt = optax.adam(2e-3)
    state = opt.init(params)

    @jax.jit
    def step(p, st, x, key):
        def loss_fn(p):
            out = model.apply({"params": p}, x, train=True, rngs={"noise": key})
            return rate_distortion_loss(out, x, lmbda)["loss"]

        loss, g = jax.value_and_grad(loss_fn)(p)
        upd, st = opt.update(g, st, p)
        return optax.apply_updates(p, upd), st, loss

    key = jax.random.PRNGKey(1)
    n = crops.shape[0]
    for i in range(steps):
        key, sub = jax.random.split(key)
        j = (i * batch) % n
        params, state, loss = step(params, state, jnp.asarray(crops[j : j + batch]), sub)
    assert np.isfinite(float(loss)), f"{name}: training diverged"
    params = jax.tree_util.tree_map(np.asarray, params)
    if "entropy_bottleneck" in params:
        eb = dict(params["entropy_bottleneck"])
        eb["quantiles"] = np.asarray(fit_quantiles(eb), np.float32)
        params = {**params, "entropy_bottleneck": eb}
    return {"params": params}


@functools.lru_cache(maxsize=None)
def codec_for(name: str, trained: bool = False, coder: str = "constriction", width: int = SMALL,
              quality: int | None = None):
    from lic_jax.coding import Codec

    model, spec = model_and_spec(name, width, quality)
    v = trained_variables(name, width) if trained else random_variables(name, width, quality)
    return Codec(model, spec, v, coder=coder)


@functools.lru_cache(maxsize=None)
def _jitted_synthesis(name: str, width: int, quality):
    from lic_jax.coding.programs import inference_model

    model, _ = model_and_spec(name, width, quality)
    # the decoder's synthesis is forward only: 'auto-inference' (layers/conv.py; its pixels differ
    # from the training form's by 1 level in ~1e-5 of the values, docs/SPEED.md)
    model = inference_model(model)
    return jax.jit(lambda v, y: model.apply(v, y, method="synthesis"))


def reference_reconstruction(codec, name, y_hat, h, w, width: int = SMALL, quality=None) -> np.ndarray:
    """uint8 image of the model's synthesis of ``y_hat`` — an independent jit of
    ``model.apply(method='synthesis')`` + the documented crop / clip / round."""
    from lic_jax.coding import to_uint8
    from lic_jax.models import crop_image

    x = _jitted_synthesis(name, width, quality)(codec._dev_vars, jnp.asarray(y_hat)[None])
    return to_uint8(np.clip(np.asarray(crop_image(np.asarray(x), h, w))[0], 0, 1))


def check_round_trip(codec, name, img, width=SMALL, quality=None):
    """Encode, decode, and assert: exact latents, bit-exact image vs. the model's synthesis of the
    hard-quantised latents, payload ≤ ideal + 1 % (or + 64 bytes), container ≤ 40 bytes."""
    import numpy as np

    enc = codec.encode(img)
    out, lat, _ = codec.decode(enc.data)  # = decompress(data) and its latents, one decode
    # the decoder recovers exactly the encoder's quantised latents
    np.testing.assert_array_equal(lat.y_symbols, enc.latents.y_symbols)
    np.testing.assert_array_equal(lat.y_hat, enc.latents.y_hat)
    if enc.latents.z_symbols is not None:
        np.testing.assert_array_equal(lat.z_symbols, enc.latents.z_symbols)
        np.testing.assert_array_equal(lat.z_hat, enc.latents.z_hat)
        np.testing.assert_array_equal(lat.y_indexes, enc.latents.y_indexes)
    # the decoded image is the model's reconstruction of the hard-quantised latents, bit-exact
    h, w = img.shape[:2]
    ref = reference_reconstruction(codec, name, enc.latents.y_hat, h, w, width, quality)
    np.testing.assert_array_equal(out, ref)
    # rate honesty and container overhead
    payload_bits = 8 * enc.payload_bytes
    assert payload_bits <= max(enc.ideal_bits * 1.01, enc.ideal_bits + 64 * 8), (payload_bits, enc.ideal_bits)
    assert len(enc.data) - enc.payload_bytes - env_field_bytes(enc.header) <= 40
    return enc, out


def env_field_bytes(header) -> int:
    """Bytes of the environment field a non-portable file carries (docs/FORMAT.md §7.1; 0 if none)."""
    return 0 if header.environment is None else 1 + len(header.environment)


def make_artifact(path, name: str, trained: bool = False, width: int = SMALL) -> str:
    from lic_jax.artifact import save_artifact

    _, spec = model_and_spec(name, width)
    v = trained_variables(name, width) if trained else random_variables(name, width)
    return save_artifact(path, spec, v)


def write_png(path, img, mode=None):
    from PIL import Image

    Image.fromarray(img, mode).save(path) if mode else Image.fromarray(img).save(path)
    return path
