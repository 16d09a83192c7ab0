"""Data parallelism over every device of every process with ``jit`` + ``Mesh`` / ``NamedSharding``.

One jitted train step runs on a 1-D mesh ``('data',)`` over ``jax.devices()`` (all devices of
all processes). Parameters and optimizer state are replicated (``P()``), the batch is split
along its first axis (``P('data')``). The loss is the mean over the *global* batch, so XLA's
SPMD partitioner inserts the all-reduce of the gradients itself: no ``pmap``/``pmean``, no
``shard_map`` (whose gradient semantics changed between jax 0.4 and 0.10 — see
``shared/docs/DEPENDENCIES.md`` §3), and the same code runs on 1 CPU, 8 devices or many hosts.

Works on jax 0.4.30 … 0.11 (``jax.make_mesh`` is avoided: absent in 0.4.30).
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "make_mesh",
    "replicated",
    "data_sharded",
    "global_batch",
    "initialize_distributed",
    "replicate",
    "fetch",
    "sync",
]

log = logging.getLogger(__name__)


def make_mesh(devices=None) -> Mesh:
    """A 1-D ``('data',)`` mesh over all devices of all processes."""
    devs = jax.devices() if devices is None else devices
    return Mesh(np.array(devs), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def global_batch(local, mesh: Mesh):
    """Assemble the global array from this process's rows (the leading axis is the batch).

    Uses ``jax.make_array_from_process_local_data`` (present in jax ≥ 0.4.30); falls back to
    splitting the local rows over the local devices of the mesh in mesh order.
    """
    sharding = data_sharded(mesh)
    local = np.asarray(local)
    if hasattr(jax, "make_array_from_process_local_data"):
        return jax.make_array_from_process_local_data(sharding, local)
    # Fallback: every local device gets a contiguous block of the local rows.
    local_devs = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    n_local = len(local_devs)
    if local.shape[0] % n_local:
        raise ValueError(f"local batch {local.shape[0]} is not divisible by the {n_local} local devices")
    per = local.shape[0] // n_local
    gshape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
    idx_map = sharding.addressable_devices_indices_map(gshape)
    arrays = []
    offset = min(idx[0].start or 0 for idx in idx_map.values())
    for d in local_devs:
        sl = idx_map[d][0]
        start = (sl.start or 0) - offset
        arrays.append(jax.device_put(local[start: start + per], d))
    return jax.make_array_from_single_device_arrays(gshape, sharding, arrays)


def replicate(tree, mesh: Mesh):
    """Place a host pytree (identical on every process) replicated on every device of the mesh."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree_util.tree_map(put, tree)


def fetch(tree):
    """Host numpy copy of a (replicated or fully addressable) pytree."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            # replicated: the local shard holds the whole value
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree_util.tree_map(get, tree)


def sync(name: str):
    """Barrier across processes (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, cpu_collectives: str = "gloo",
                           local_device_ids=None) -> bool:
    """Start ``jax.distributed`` if asked to (explicit arguments or a cluster environment).

    ``coordinator_address`` / ``num_processes`` / ``process_id`` may also come from the
    environment (``LIC_JAX_COORDINATOR``, ``LIC_JAX_NUM_PROCESSES``, ``LIC_JAX_PROCESS_ID``);
    on clusters jax detects them itself (SLURM, Cloud TPU, …) when ``num_processes`` is -1.
    CPU collectives (for multi-process CPU runs and tests) use ``cpu_collectives`` (gloo).
    Returns True if jax.distributed was initialised.
    """
    coordinator_address = coordinator_address or os.environ.get("LIC_JAX_COORDINATOR") or None
    if num_processes is None and os.environ.get("LIC_JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["LIC_JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("LIC_JAX_PROCESS_ID"):
        process_id = int(os.environ["LIC_JAX_PROCESS_ID"])
    auto = num_processes == -1
    if not coordinator_address and not auto:
        return False
    if cpu_collectives:
        try:
            jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
        except Exception as e:  # option absent in some versions
            log.warning("could not select CPU collectives %r: %s", cpu_collectives, e)
    if auto:
        jax.distributed.initialize()
    else:
        kw = {}
        if local_device_ids is not None:
            kw["local_device_ids"] = local_device_ids
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id, **kw)
    return True
