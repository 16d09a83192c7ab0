"""Helpers shared by several test modules (plain functions; the fixtures live in conftest.py).

* :func:`pattern_image` — a generated uint8 test image (test_progressive, test_progressive_eval);
* :func:`random_variables` — a model's variables drawn with numpy at the shapes ``jax.eval_shape``
  gives (test_registry, test_progressive);
* :func:`same_batch_script` / :func:`with_devices` / :func:`script_result` — the "8 virtual CPU devices
  == 1 device" training subprocess (test_parallel, test_toderici_train, test_akutsu_train);
* :func:`nchw` / :func:`nhwc` — NHWC numpy ↔ NCHW torch tensors for the comparisons with CompressAI and torch
  (test_compressai_parity, test_entropy_models, test_layers).
"""

from __future__ import annotations

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np


def random_variables(model, seed: int = 0, shape=(1, 32, 32, 3)):
    """LeCun-normal weights of the model's variable shapes (every collection ``model.init`` returns),
    drawn with numpy: ``model.init`` of a toderici2017 model compiles for ~35 s on a 2-core machine,
    ``jax.eval_shape`` of it takes none of that."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda s: rng.normal(0.0, 1.0 / np.sqrt(max(1, int(np.prod(s.shape[:-1])))), s.shape).astype(np.float32),
        shapes)


def nchw(a):
    """An NHWC array as a float32 NCHW torch tensor."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32).transpose(0, 3, 1, 2)))


def nhwc(t):
    """An NCHW torch tensor as an NHWC numpy array."""
    return t.detach().cpu().numpy().transpose(0, 2, 3, 1)


def pattern_image(h: int, w: int, seed: int) -> np.ndarray:
    """A generated (h, w, 3) uint8 test image: a sinusoid, a ramp and a disc, with seeded noise
    (test_progressive, test_progressive_eval)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    x = np.stack([0.5 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 7.0), (xx + yy) / (h + w),
                  ((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < h * w / 6).astype(np.float32) * 0.6 + 0.2], -1)
    return np.clip(np.round((x + rng.normal(0, 0.04, x.shape)) * 255), 0, 255).astype(np.uint8)


def with_devices(env: dict, n: int, xla_flags: str = "") -> dict:
    """``env`` with ``n`` simulated CPU devices (fixed by XLA_FLAGS before jax is imported, hence a
    subprocess); ``xla_flags``: further XLA flags (the previous XLA_FLAGS are replaced)."""
    e = dict(env)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n} {xla_flags}".rstrip()
    return e


_SAME_BATCH_SCRIPT = """
    import json, sys
    import jax, numpy as np
    jax.config.update("jax_threefry_partitionable", True)
    sys.path.insert(0, {repo!r})
    from lic_jax.train import parallel, trainer
    from lic_jax.train.input_pipeline import FolderSource, TrainBatches
    from lic_jax.train.setup import objective

{setup}
    steps = {steps}
    batches = TrainBatches(FolderSource({train!r}, cache=True), cfg.batch_size, cfg.data.crop, seed=0, prefetch=0)
    out = {{"devices": len(jax.devices())}}
    params = {{}}
    for n in (8, 1):
        mesh = parallel.make_mesh(jax.devices()[:n])
        model, _ = trainer.build_model(cfg)
        tx, sched = trainer.make_optimizer(cfg, steps)
        extra = None
        if objective(model) == "gan":  # D: its own parameter group (TrainState.extra, as loop.py makes it)
            from lic_jax.train import gan
            extra = gan.extra_groups(model, cfg)
        state = trainer.create_train_state(model, tx, jax.random.PRNGKey(0), mesh, extra=extra)
        step = trainer.make_train_step(model, cfg, {lmbda!r}, tx, sched, mesh, jax.random.PRNGKey(1))
        losses = []
        for s in range(steps):
            x = parallel.global_batch(batches.batch(s), mesh)
            if s == 0:
                out[f"batch_shards_{{n}}"] = len({{d for d in x.sharding.device_set}})
            state, m = step(state, x)
            losses.append(float(m["loss"]))
        out[f"param_devices_{{n}}"] = len(jax.tree_util.tree_leaves(state["params"])[0].sharding.device_set)
        out[f"losses_{{n}}"] = losses
        groups = {{"": state["params"], **{{k: g.params for k, g in state["extra"].items()}}}}
        params[n] = {{k: jax.tree_util.tree_leaves(parallel.fetch(v)) for k, v in groups.items()}}


    def compare(a, b):
        r = {{"max_abs": max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))}}
        rel = [np.abs(x - y) / np.maximum(np.abs(y), 1e-30) for x, y in zip(a, b)]
        k = int(np.argmax([q.max() for q in rel]))
        i = int(np.argmax(rel[k]))
        r["max_rel"] = float(rel[k].flat[i])
        r["max_rel_at"] = [float(a[k].flat[i]), float(b[k].flat[i]), list(a[k].shape)]
        r["max_leaf_rel"] = max(float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30)) for x, y in zip(a, b))
        r["allclose"] = all(np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(a, b))
        r["frac_rel_gt_1e-5"] = float(sum(int((q > 1e-5).sum()) for q in rel) / sum(q.size for q in rel))
        return r


    out.update(compare(params[8][""], params[1][""]))  # the codec's parameters: top-level keys
    out["extra"] = {{k: compare(params[8][k], params[1][k]) for k in params[8] if k}}  # e.g. {{'disc': …}}
    print("RESULT" + json.dumps(out))
"""


def same_batch_script(setup: str, *, repo: str, train: str, steps: int, lmbda) -> str:
    """``python -c`` source: ``steps`` training steps of the same batches on a mesh of 8 devices, then
    of 1 device, from the same initial state and keys; prints ``RESULT{json}`` (losses per mesh, batch
    and parameter shards, and how far apart the final parameters are: the codec's at the top level,
    each extra parameter group's — a GAN's discriminator, created as ``loop.py`` does — under
    ``extra[name]``). ``setup``: Python lines that
    import the config module (``repo`` is on sys.path) and define ``cfg``; ``lmbda``: the λ given to
    ``trainer.make_train_step`` (None for models without one)."""
    setup = textwrap.indent(textwrap.dedent(setup).strip(), "    ")
    return textwrap.dedent(_SAME_BATCH_SCRIPT.format(setup=setup, repo=repo, train=train, steps=steps, lmbda=lmbda))


def script_result(proc) -> dict:
    """The ``RESULT{json}`` line of a finished script subprocess (which must have exited 0)."""
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])
