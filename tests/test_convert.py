"""CompressAI weight import: torch-free reading of ``torch.save`` files (zip and legacy formats),
training checkpoints, key variants, architecture inference and one-line errors (issue 2,
"CompressAI weight import")."""

from __future__ import annotations

import collections
import io
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import require

from lic_jax.convert import (
    CompressAIImportError,
    from_compressai,
    infer_compressai_architecture,
    load_compressai_state_dict,
)
from lic_jax.utils.torchfile import TorchFileError, load_torch_file

N, M = 8, 12  # small widths: the converter reads N, M from the weights
ARCHS = {
    "bmshj2018-factorized": "FactorizedPrior",
    "bmshj2018-hyperprior": "ScaleHyperprior",
    "mbt2018-mean": "MeanScaleHyperprior",
    "mbt2018": "JointAutoregressiveHierarchicalPriors",
}

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest.py


@pytest.fixture(scope="module")
def nets():
    """One small CompressAI model per architecture (seeded), weights moved off their init."""
    require("compressai")
    import compressai.models as cm
    import torch

    out = {}
    for i, (name, cls) in enumerate(ARCHS.items()):
        torch.manual_seed(i)
        net = getattr(cm, cls)(N, M)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        net.eval()
        out[name] = net
    return out


def _sd_numpy(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def _outputs_match(net, model, variables):
    import torch

    x = np.random.default_rng(0).uniform(size=(1, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    out = model.apply(variables, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out["x_hat"]), ref["x_hat"].numpy().transpose(0, 2, 3, 1), atol=1e-5)
    for k, v in ref["likelihoods"].items():
        np.testing.assert_allclose(np.asarray(out["likelihoods"][k]), v.numpy().transpose(0, 2, 3, 1), rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# the torch-free reader
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_torchfile_round_trip_tensor_kinds(tmp_path, fmt):
    torch = require("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = collections.OrderedDict(
        f32=torch.randn(3, 4, 5),
        f64=torch.randn(7, dtype=torch.float64),
        f16=torch.randn(2, 3).half(),
        bf16=torch.randn(5).bfloat16(),
        i64=torch.arange(-3, 9),
        i32=torch.tensor([1, -2, 3], dtype=torch.int32),
        u8=torch.tensor([0, 7, 255], dtype=torch.uint8),
        b=torch.tensor([True, False, True]),
        scalar=torch.tensor(3.5),
        transposed=base.t(),  # non-contiguous view of a shared storage
        sliced=base[1:3, 2:],  # storage offset
        base=base,
        param=torch.nn.Parameter(torch.ones(2, 2)),
        plain={"epoch": 7, "lr": 1e-4, "name": "x", "flags": [True, None], "t": (1, 2.5), "s": {1, 2}},
    )
    path = tmp_path / f"t.{fmt}"
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))
    assert zipfile.is_zipfile(path) == (fmt == "zip")
    got = load_torch_file(path)
    assert list(got) == list(obj)
    for k, v in obj.items():
        if k == "plain":
            assert got[k] == v
            continue
        want = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
        assert isinstance(got[k], np.ndarray)
        assert got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k].astype(want.dtype) if k == "bf16" else got[k], want)
        if k != "bf16":
            assert got[k].dtype == want.dtype, k


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_state_dict_file_round_trip(tmp_path, nets, arch, fmt):
    import torch

    net = nets[arch]
    path = tmp_path / f"{arch}.pth.tar"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=(fmt == "zip"))
    sd = load_torch_file(path)
    ref = _sd_numpy(net)
    assert sd.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(sd[k], ref[k])
    model, spec, variables = from_compressai(path, quality=3)
    assert spec.name == arch and spec.quality == 3 and spec.hparams == {"N": N, "M": M}
    # the same variables as converting the in-memory state_dict
    _, _, v2 = from_compressai(net.state_dict())
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), variables, v2)
    _outputs_match(net, model, variables)


def test_training_checkpoint(tmp_path, nets):
    """A checkpoint as CompressAI's ``examples/train.py`` saves it (with optimiser/scheduler state)."""
    import torch

    net = nets["mbt2018-mean"]
    params = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    opt, aux_opt = torch.optim.Adam(params, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
    x = torch.rand(1, 3, 64, 64)
    out = net.train()(x)
    (sum(torch.log(v).sum() for v in out["likelihoods"].values()) * -1e-3 + ((out["x_hat"] - x) ** 2).mean()).backward()
    net.aux_loss().backward()
    # step with lr 0 so the weights stay those of `nets` (Adam state is populated all the same)
    for g in opt.param_groups + aux_opt.param_groups:
        g["lr"] = 0.0
    opt.step()
    aux_opt.step()
    net.eval()
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "min")
    sched.step(1.0)
    ckpt = {"epoch": 12, "state_dict": net.state_dict(), "loss": torch.tensor(0.5), "optimizer": opt.state_dict(),
            "aux_optimizer": aux_opt.state_dict(), "lr_scheduler": sched.state_dict()}
    for fmt in ("zip", "legacy"):
        path = tmp_path / f"checkpoint_{fmt}.pth.tar"
        torch.save(ckpt, path, _use_new_zipfile_serialization=(fmt == "zip"))
        raw = load_torch_file(path)
        assert raw["epoch"] == 12 and set(raw) == set(ckpt)
        assert isinstance(raw["optimizer"]["state"][0]["exp_avg"], np.ndarray)
        model, spec, variables = from_compressai(path)
        assert spec.name == "mbt2018-mean"
        _outputs_match(net, model, variables)


def test_module_prefix_and_old_eb_keys(nets):
    net = nets["bmshj2018-hyperprior"]
    sd = _sd_numpy(net)
    _, _, ref = from_compressai(sd)
    # nn.DataParallel prefix
    _, _, v = from_compressai({f"module.{k}": a for k, a in sd.items()})
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), v, ref)
    # CompressAI < 1.1 entropy-bottleneck keys: entropy_bottleneck._matrix0 / _bias0 / _factor0
    old = {}
    for k, a in sd.items():
        for new_name, old_name in (("matrices", "_matrix"), ("biases", "_bias"), ("factors", "_factor")):
            prefix = f"entropy_bottleneck.{new_name}."
            if k.startswith(prefix):
                k = f"entropy_bottleneck.{old_name}{k[len(prefix):]}"
        old[k] = a
    assert "entropy_bottleneck._matrix0" in old and "entropy_bottleneck.matrices.0" not in old
    _, _, v = from_compressai(old)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), v, ref)
    # buffers CompressAI derives (cdfs, offsets, scale table, masks) are ignored
    assert "entropy_bottleneck._quantized_cdf" in sd and "gaussian_conditional.scale_table" in sd
    assert "entropy_bottleneck._quantized_cdf" not in load_compressai_state_dict(sd)


def test_kernel_layouts(nets):
    """Conv2d (out, in, kh, kw) → (kh, kw, in, out); ConvTranspose2d (in, out, kh, kw) → (kh, kw, in, out)."""
    net = nets["mbt2018"]
    sd = _sd_numpy(net)
    _, _, v = from_compressai(sd)
    p = v["params"]
    np.testing.assert_array_equal(np.asarray(p["g_a_0"]["kernel"]), sd["g_a.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(np.asarray(p["g_s_0"]["kernel"]), sd["g_s.0.weight"].transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(np.asarray(p["h_s_2"]["kernel"]), sd["h_s.2.weight"].transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(np.asarray(p["context_prediction"]["kernel"]),
                                  sd["context_prediction.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(np.asarray(p["g_a_1"]["gamma"]), sd["g_a.1.gamma"])
    np.testing.assert_array_equal(np.asarray(p["entropy_bottleneck"]["matrix_2"]), sd["entropy_bottleneck.matrices.2"])
    np.testing.assert_array_equal(np.asarray(p["entropy_bottleneck"]["quantiles"]), sd["entropy_bottleneck.quantiles"])


def test_architecture_inference(nets):
    for name, net in nets.items():
        assert infer_compressai_architecture(load_compressai_state_dict(net.state_dict())) == (name, {"N": N, "M": M})
    # CompressAI's own quality → (N, M) table, as the zoo builds the models
    from compressai.zoo import image as zoo

    for name, fn, q, hp in (("bmshj2018-factorized", zoo.bmshj2018_factorized, 6, (192, 320)),
                            ("mbt2018", zoo.mbt2018, 2, (192, 192)),
                            ("mbt2018-mean", zoo.mbt2018_mean, 1, (128, 192))):
        sd = {k: np.zeros(tuple(v.shape), np.float32) for k, v in fn(quality=q, pretrained=False).state_dict().items()}
        assert infer_compressai_architecture(load_compressai_state_dict(sd)) == (name, {"N": hp[0], "M": hp[1]})


# ------------------------------------------------------------------------------------------------
# errors: one line, the right type
# ------------------------------------------------------------------------------------------------
def _one_line(excinfo):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    return msg


def test_errors_on_mismatched_state_dicts(nets):
    sd = _sd_numpy(nets["bmshj2018-hyperprior"])
    with pytest.raises(CompressAIImportError) as e:
        from_compressai(sd, name="mbt2018-mean")
    assert "bmshj2018-hyperprior" in _one_line(e)
    with pytest.raises(CompressAIImportError) as e:
        from_compressai(sd, name="bls2017")
    assert "bls2017" in _one_line(e)
    missing = dict(sd)
    del missing["h_s.2.weight"]
    with pytest.raises(CompressAIImportError) as e:
        from_compressai(missing)
    assert "h_s.2.weight" in _one_line(e)
    wrong = dict(sd)
    wrong["g_s.2.bias"] = np.zeros(N + 1, np.float32)
    with pytest.raises(CompressAIImportError) as e:
        from_compressai(wrong)
    assert "g_s.2.bias" in _one_line(e)
    wrong = dict(sd)
    wrong["g_a.1.gamma"] = np.zeros((N, N + 1), np.float32)
    with pytest.raises(CompressAIImportError) as e:
        from_compressai(wrong)
    assert "g_a.1.gamma" in _one_line(e)
    extra = dict(sd)
    extra["g_a.9.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CompressAIImportError) as e:
        from_compressai(extra)
    assert "g_a.9.weight" in _one_line(e)
    with pytest.raises(CompressAIImportError) as e:
        from_compressai({"conv.weight": np.zeros((3, 3, 1, 1), np.float32)})
    _one_line(e)
    with pytest.raises(CompressAIImportError) as e:
        from_compressai([1, 2, 3])
    _one_line(e)


def test_errors_on_bad_files(tmp_path, nets):
    import torch

    with pytest.raises(FileNotFoundError) as e:
        from_compressai(tmp_path / "nope.pth")
    _one_line(e)
    for fmt in ("zip", "legacy"):
        buf = io.BytesIO()
        torch.save(nets["bmshj2018-factorized"].state_dict(), buf, _use_new_zipfile_serialization=(fmt == "zip"))
        data = buf.getvalue()
        for cut in (0, 1, 10, 100, len(data) // 3, len(data) // 2, len(data) - 200, len(data) - 1):
            p = tmp_path / f"trunc_{fmt}_{cut}.pth"
            p.write_bytes(data[:cut])
            with pytest.raises(TorchFileError) as e:
                from_compressai(p)
            _one_line(e)
        # corrupted bytes (deterministic positions), garbage, and a text file
        rng = np.random.default_rng(0)
        for i in range(6):
            bad = bytearray(data)
            pos = rng.integers(0, len(bad), size=64)
            for q in pos:
                bad[q] ^= 0xFF
            p = tmp_path / f"corrupt_{fmt}_{i}.pth"
            p.write_bytes(bytes(bad))
            try:
                from_compressai(p)  # a flip inside tensor data is undetectable by design
            except (TorchFileError, CompressAIImportError) as err:
                assert "\n" not in str(err)
    p = tmp_path / "garbage.pth"
    p.write_bytes(os.urandom(0) + bytes(range(256)) * 8)
    with pytest.raises(TorchFileError) as e:
        from_compressai(p)
    _one_line(e)
    p = tmp_path / "text.pth"
    p.write_text("not a checkpoint\n")
    with pytest.raises(TorchFileError) as e:
        from_compressai(p)
    _one_line(e)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo lic_jax-pwned > /dev/null",))


class _Custom:
    def __init__(self):
        self.a = 1


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_refuses_non_tensor_objects(tmp_path, nets, fmt):
    import torch

    sd = nets["bmshj2018-factorized"].state_dict()
    for i, obj in enumerate(({"state_dict": sd, "evil": _Evil()}, {"state_dict": sd, "custom": _Custom()},
                             {"model": nets["bmshj2018-factorized"]}, {"fn": np.save})):
        p = tmp_path / f"obj{i}_{fmt}.pth"
        torch.save(obj, p, _use_new_zipfile_serialization=(fmt == "zip"))
        with pytest.raises(TorchFileError, match="refusing") as e:
            from_compressai(p)
        _one_line(e)
