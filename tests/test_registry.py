"""Every registered model end to end with tiny hyper-parameters (issue 11): the registry's records
are the single source of a model's identity (class, container id, coder, qualities, λ table,
CompressAI source), so each one is built, run, coded, decoded and saved from its record alone.

Also: ids unique and within 1 … 255, the tables match CompressAI where a record names a CompressAI
architecture, and ``registry.registered`` (temporary toy models) is seen by the container.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _helpers import random_variables
from conftest import require
from lic_jax.artifact import load_artifact, save_artifact
from lic_jax.coding import Codec, container
from lic_jax.models import FactorizedPrior, registry
from lic_jax.models.portable import portable_spec
from lic_jax.models.registry import REGISTRY, ModelRecord

NAMES = sorted(REGISTRY)
# records registered for training only, without a latent coder (coder 'none'): none today (akutsu2020
# was, until its coder, issue 20 increment 3). The set is pinned so a new coder-less record is a
# decision, not an accident; test_coderless_record checks the mechanism with a toy record.
CODERLESS: set = set()
CODED = [n for n in NAMES if n not in CODERLESS]
TINY = {"N": 8, "M": 12}


def tiny_hparams(rec: ModelRecord) -> dict:
    """N = 8 (and M = 12 where the class has an M)."""
    fields = {f.name for f in dataclasses.fields(rec.cls)}
    return {k: v for k, v in TINY.items() if k in fields}


def _image(h=40, w=56, seed=0):
    """A smooth uint8 RGB image whose size is no multiple of 16 or 64 (padding and cropping run)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    img = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], -1) * 100 + 128
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _build(name):
    rec = registry.record(name)
    if rec.coder == "progressive":  # toderici2017: no N/M, no likelihoods; width 1/16, 2 iterations
        model, spec = registry.get_model(name, width=1 / 16, iterations=2)
        return rec, model, spec, random_variables(model)  # numpy draws: no model.init compile
    if rec.objective == "gan":  # akutsu2020: no N/M; width 1/16, one RCAB per group, host-filled weights
        from test_akutsu2020 import TINY as AKUTSU_TINY, _host_init

        model, spec = registry.get_model(name, **AKUTSU_TINY)
        return rec, model, spec, _host_init(model, jnp.zeros((1, 64, 64, 3), jnp.float32))
    model, spec = registry.get_model(name, **tiny_hparams(rec))
    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    args = (model.lmbda_max,) if rec.variable_rate else ()
    v = model.init({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, x, *args, train=True)
    variables = {"params": v["params"]}
    if rec.portable_of:  # a portable twin codes only once its integer h_s is calibrated (issue 13)
        spec = portable_spec(spec, variables, [_image(64, 64, seed=1) / np.float32(255)])
        model = spec.build()
    return rec, model, spec, variables


@pytest.mark.parametrize("name", CODED)
def test_record_end_to_end(name, tmp_path):
    rec, model, spec, variables = _build(name)
    assert type(model) is rec.cls and registry.record_for(model) is rec and registry.record_for(spec) is rec
    progressive = rec.coder == "progressive"
    assert spec.name == name and (spec.hparams["width"] == 1 / 16 if progressive or rec.objective == "gan"
                                  else spec.hparams["N"] == 8)
    assert registry.is_variable_rate(name) == registry.is_variable_rate(model) == rec.variable_rate
    for d in rec.decoders:
        assert callable(getattr(model, d, None)), f"{name}: decoder {d!r} is not a method of {rec.cls.__name__}"

    # forward (eval mode): shapes, likelihoods in (0, 1] (progressive: one reconstruction and ±1 bits per iteration;
    # broken once: the eval binarizer returning x unsigned → the ±1 check failed)
    img = _image()
    x = jnp.asarray(img[None], jnp.float32) / 255.0
    lam = float(model.lmbda_range[0]) if rec.variable_rate else None
    if progressive:
        xp = jnp.pad(x, ((0, 0), (0, 8), (0, 8), (0, 0)), mode="edge")  # 48×64: multiples of 16
        out = model.apply(variables, xp, iterations=2)
        assert out["x_hat"].shape == (2,) + xp.shape and bool(jnp.all(jnp.isfinite(out["x_hat"])))
        assert out["bits"].shape == (2, 1, 3, 4, 32) and bool(jnp.all(jnp.abs(out["bits"]) == 1))
    else:
        out = model.apply(variables, x, *((lam,) if rec.variable_rate else ()), train=False)
        assert out["x_hat"].shape == x.shape and bool(jnp.all(jnp.isfinite(out["x_hat"])))
        for k, lik in out["likelihoods"].items():
            assert bool(jnp.all((lik > 0) & (lik <= 1))), f"{name}: likelihoods[{k}] outside (0, 1]"

    # compress / decompress: the header names the record's id, the decode is deterministic
    kw = {"lmbda": lam} if rec.variable_rate else {}
    codec = Codec(model, spec, variables, **kw)
    data = codec.compress(img)
    header, _ = container.unpack(data)
    assert header.model_id == rec.model_id and header.model_name == name
    assert Codec.info(data)["model"] == name
    rec_img = codec.decompress(data)
    assert rec_img.shape == img.shape and rec_img.dtype == np.uint8
    assert codec.compress(img) == data  # encoding is deterministic

    # artifact: save, load, the same file decodes to the same pixels
    path = tmp_path / name
    fp = save_artifact(str(path), spec, variables)
    art = load_artifact(str(path))
    assert json.dumps(art.spec.to_dict(), sort_keys=True) == json.dumps(spec.to_dict(), sort_keys=True)
    assert art.fingerprint == fp and type(art.model) is rec.cls and art.model == model
    jax.tree_util.tree_map(np.testing.assert_array_equal, art.variables["params"], jax.device_get(variables["params"]))
    codec2 = Codec(art.model, art.spec, art.variables, **kw)
    np.testing.assert_array_equal(codec2.decompress(data), rec_img)


def test_coderless_record():
    """A record without a latent coder (coder 'none') builds (tiny hparams, numpy weights), and asking
    it for a codec is one clear error naming the model, not a KeyError from the coder table. No
    registered model is coder-less today (akutsu2020 was until issue 20, increment 3): a toy subclass
    of it is registered for the check."""
    from lic_jax.models.akutsu2020 import Akutsu2020

    assert {n for n, r in REGISTRY.items() if r.coder == "none"} == CODERLESS

    class CoderlessToy(Akutsu2020):
        pass

    rec = ModelRecord("coderless-toy", CoderlessToy, 254, "none", decoders=("synthesis_main", "synthesis_fused"),
                      objective="gan", spec_fields=("width", "blocks"))
    with registry.registered(rec):
        model, spec = registry.get_model(rec.name, width=1 / 8, blocks=1)
        assert type(model) is rec.cls and spec.name == rec.name and registry.record_for(spec) is rec
        for d in rec.decoders:
            assert callable(getattr(model, d, None)), f"decoder {d!r} is not a method of {rec.cls.__name__}"
        with pytest.raises(ValueError, match=f"^{rec.name} cannot write or read .lic files yet"):
            Codec(model, spec, random_variables(model))


def test_ids_names_and_classes_are_unique():
    ids = [r.model_id for r in REGISTRY.values()]
    assert all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= 255 for i in ids), ids
    assert len(set(ids)) == len(ids), f"duplicate container ids: {sorted(ids)}"
    assert len({r.cls for r in REGISTRY.values()}) == len(REGISTRY)
    assert all(n == r.name for n, r in REGISTRY.items())
    assert dict(container.MODEL_IDS) == {n: r.model_id for n, r in REGISTRY.items()}
    assert dict(container.MODEL_NAMES) == {r.model_id: n for n, r in REGISTRY.items()}
    for n, r in REGISTRY.items():
        assert registry.model_id(n) == r.model_id and registry.name_for_id(r.model_id) == n
    assert registry.name_for_id(0) is None
    with pytest.raises(ValueError, match="unknown model"):
        registry.model_id("no-such-model")
    # derived lists
    assert sorted(registry.MODELS) == NAMES
    assert registry.model_names() == sorted(n for n, r in REGISTRY.items() if not r.variable_rate)
    assert registry.variable_rate_model_names() == sorted(registry.VARIABLE_RATE_MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_quality_and_lambda_tables(name):
    rec = REGISTRY[name]
    if rec.variable_rate:
        assert rec.qualities is None and rec.lambdas is None
        with pytest.raises(ValueError, match="variable-rate"):
            registry.get_model(name, 3)
        return
    if rec.qualities is None:  # a fixed-rate model without CompressAI's quality table (comcnn-jpeg: its QF)
        assert rec.lambdas is None
        with pytest.raises(ValueError, match="quality"):
            registry.get_model(name, 3)
        return
    assert set(rec.qualities) == set(rec.lambdas) == set(range(1, 9))
    lams = [rec.lambdas[q] for q in sorted(rec.lambdas)]
    assert lams == sorted(lams) and len(set(lams)) == len(lams)  # rate grows with the quality
    for q in rec.qualities:
        _, spec = registry.get_model(name, q)
        assert spec.hparams == rec.qualities[q] and registry.lmbda_for(q, model=name) == rec.lambdas[q]


def test_tables_match_compressai():
    """Where a record names a CompressAI architecture: the architecture exists, the (N, M) per
    quality are its ``cfgs`` and the λ table is CompressAI's (its variable-bit-rate models' list,
    the same eight values as the zoo's training λ)."""
    require("compressai")
    from compressai.models import vbr
    from compressai.zoo import image as cz

    m = re.search(r"self\.lmbda = \[([^\]]+)\]", inspect.getsource(vbr))
    compressai_lambdas = [float(v) for v in m[1].split(",")]
    from_compressai = [r for r in REGISTRY.values() if r.compressai]
    assert {r.compressai for r in from_compressai} == {"bmshj2018-factorized", "bmshj2018-hyperprior",
                                                     "mbt2018-mean", "mbt2018"}
    for r in from_compressai:
        assert r.compressai in cz.model_architectures and r.compressai in cz.cfgs
        assert {q: dict(zip("NM", cz.cfgs[r.compressai][q])) for q in range(1, 9)} == r.qualities, r.name
        assert [r.lambdas[q] for q in range(1, 9)] == pytest.approx(compressai_lambdas), r.name
    from lic_jax.convert import supported_architectures

    assert supported_architectures() == {r.compressai: r.name for r in from_compressai}


# ------------------------------------------------------------------------------------------
# register / registered: a toy model for tests only
# ------------------------------------------------------------------------------------------
class ToyFactorized(FactorizedPrior):
    """A test-only subclass (a distinct class, so it can be registered)."""


def _toy(**kw):
    return ModelRecord(**{"name": "toy-factorized", "cls": ToyFactorized, "model_id": 200, "coder": "factorized",
                          **kw})


def test_registered_adds_and_removes_a_toy_model():
    before = (dict(REGISTRY), dict(container.MODEL_IDS))
    with registry.registered(_toy()) as rec:
        assert registry.record("toy-factorized") is rec and "toy-factorized" in registry.MODELS
        assert container.MODEL_IDS["toy-factorized"] == 200 and container.MODEL_NAMES[200] == "toy-factorized"
        model, spec = registry.get_model("toy-factorized", N=8, M=12)
        assert registry.record_for(model) is rec
        variables = {"params": model.init({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)},
                                          jnp.zeros((1, 32, 32, 3)), train=True)["params"]}
        data = Codec(model, spec, variables).compress(_image(32, 32))
        assert container.unpack(data)[0].model_id == 200 and Codec.info(data)["model"] == "toy-factorized"
    assert (dict(REGISTRY), dict(container.MODEL_IDS)) == before
    assert registry.name_for_id(200) is None
    assert container.unpack(data)[0].model_name == "unknown(200)"  # the toy is gone again
    with pytest.raises(ValueError, match="not a registered"):
        registry.record_for(model)
    with pytest.raises(ValueError):
        Codec(model, spec, variables)  # an unregistered model never writes id 0


def test_registered_refuses_duplicates_and_bad_ids():
    taken = REGISTRY["mbt2018"]
    with pytest.raises(ValueError, match="already used by mbt2018"):
        with registry.registered(_toy(model_id=taken.model_id)):
            pass
    with pytest.raises(ValueError, match="already registered"):
        with registry.registered(_toy(name="mbt2018")):
            pass
    with pytest.raises(ValueError, match="already registered"):
        with registry.registered(_toy(cls=FactorizedPrior)):  # the class of bmshj2018-factorized
            pass
    for bad in (0, 256, -1, True, 3.0):
        with pytest.raises(ValueError, match="1..255"):
            with registry.registered(_toy(model_id=bad)):
                pass
    assert "toy-factorized" not in REGISTRY and REGISTRY["mbt2018"] is taken
    # removed on exit even when the body raises
    with pytest.raises(RuntimeError):
        with registry.registered(_toy()):
            raise RuntimeError("boom")
    assert "toy-factorized" not in REGISTRY


def test_portable_twins():
    """registry.portable_twin: the one lookup behind ``--portable``, ``integer_entropy`` and portable_spec."""
    from lic_jax.models.registry import portable_twin

    assert portable_twin("bmshj2018-hyperprior") == "bmshj2018-hyperprior-int"
    assert portable_twin("mbt2018-mean") == "mbt2018-mean-int"
    assert portable_twin("mbt2018") == "mbt2018-int"
    assert portable_twin("mbt2018-int") == "mbt2018-int"
    assert portable_twin("mae-hyperprior") == "mae-hyperprior-int"
    with pytest.raises(ValueError,
                       match="bls2017 has no portable .*bmshj2018-hyperprior, mae-hyperprior, mbt2018, mbt2018-mean"):
        portable_twin("bls2017")
