"""The training input stream on Grain (``data.loader='grain'``), batch for batch equal to :class:`TrainBatches`.

Grain (the ``grain`` package, JAX's data loader) runs the example function of
:class:`~.input_pipeline.TrainBatches` as a ``MapDataset``: local example ``i`` of this process is
slot ``p·B/P + i mod (B/P)`` of step ``i div (B/P)``, so element ``i`` is a pure function of
``(seed, i)`` like every batch of the threaded loader. Grain adds:

* per-example parallelism (``data.workers`` threads build the examples of a batch side by side;
  the threaded loader builds one batch per thread);
* **multi-process workers** (``data.grain_processes`` > 0: ``IterDataset.mp_prefetch``), which
  decode outside the training process and its GIL;
* a checkpointable iterator (``get_state``/``set_state``). The training loop does not need it: the
  step number is the whole state, as for the threaded loader.

Decoding, cropping, downscaling and flips are the threaded loader's functions, so both loaders
produce the same bytes for every step (``tests/test_input_pipeline.py::test_grain_stream_equals_threaded_batches``),
and the 1 × 8 / 2 × 4 device equality and exact resume hold for either. Which one is faster
where is measured by ``benchmarks/input_pipeline.py`` (``docs/TRAINING.md``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .input_pipeline import TrainBatches

__all__ = ["GrainBatches", "grain_available"]

_FAR = 1 << 40  # the last step of an open-ended stream (MapDataset needs a length)


def grain_available() -> bool:
    try:
        import grain  # noqa: F401
    except ImportError:
        return False
    return True


class _Example:
    """Picklable example function (Grain's worker processes receive it by pickle)."""

    def __init__(self, batches: TrainBatches, first: int):
        self.batches, self.first = batches, first

    def __call__(self, i) -> np.ndarray:
        b = self.batches
        step, j = divmod(int(i), b.local_batch)
        return b.example(step, self.first + j)


class GrainBatches:
    """``iterate(start_step, stop_step)`` yields ``(step, local_batch)`` as :meth:`TrainBatches.iterate` does.

    ``threads``: Grain read threads (per process); ``prefetch``: batches buffered ahead;
    ``processes``: worker processes (0 = none, the threads run in the training process).
    """

    def __init__(self, batches: TrainBatches, threads: int = 2, prefetch: int = 2, processes: int = 0):
        try:
            import grain  # noqa: F401
        except ImportError as e:
            raise ImportError("data.loader='grain' needs the grain package (pip install 'lic_jax[data]' or "
                              "pip install grain); data.loader='threads' needs nothing") from e
        self.batches = batches
        self.threads = max(1, int(threads))
        self.prefetch = max(1, int(prefetch))
        self.processes = max(0, int(processes))

    def dataset(self, start_step: int = 0, stop_step: int | None = None):
        """The ``IterDataset`` of local batches ``start_step … stop_step − 1``."""
        import grain

        b = self.batches
        lb = b.local_batch
        stop = _FAR if stop_step is None else int(stop_step)
        first = b.slots().start
        ds = grain.MapDataset.range(int(start_step) * lb, max(int(start_step), stop) * lb).map(_Example(b, first))
        if self.processes == 0:  # threads build the examples of a batch side by side
            ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=self.threads,
                                                      prefetch_buffer_size=self.prefetch * lb))
            return ds.batch(lb, batch_fn=np.stack)
        # mp_prefetch deals the elements of its parent out to the workers, so the elements must be
        # whole batches (batching after it would mix the examples of different steps)
        from absl import flags

        if not flags.FLAGS.is_parsed():  # Grain's worker set-up reads absl flags (train.py parses them)
            flags.FLAGS.mark_as_parsed()
        ds = ds.batch(lb, batch_fn=np.stack).to_iter_dataset(
            grain.ReadOptions(num_threads=self.threads, prefetch_buffer_size=self.prefetch))
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.processes,
                                                         per_worker_buffer_size=self.prefetch))
        return ds

    def iterate(self, start_step: int = 0, stop_step: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        step = int(start_step)
        copy = self.processes > 0  # out of Grain's shared memory, so that no block outlives its iterator
        for batch in self.dataset(start_step, stop_step):
            yield step, (np.array(batch, copy=True) if copy else batch)
            step += 1
