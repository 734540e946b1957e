"""The CPU path of the feature-visualization renderer: few torch threads per chunk, chunks
side by side.

A chunk is a small batch (one layer's units, at most `fv.batch_size` images), and its
convolutions gain little from intra-op threads. Worse, on a machine busier than its cores
OpenMP's threads wait for each other at every operation: on the 2-core development machine
under a load of 6-9, a render with 2 torch threads took 3-9x as long as with 1 (bench
figures in the README). So on CPU each chunk renders with `fv.cpu_threads` torch threads
(default 1), and the process's cores are used by rendering several chunks at once, each in
its own Python thread with its own copy of the network (a `LayerCapture` hooks its model,
so two chunks cannot share one). torch releases the GIL inside its operations, and a
chunk's pixels do not depend on what runs beside it (checked bitwise in
tests/test_fv_cpu_path.py).

The count of torch threads is part of the result: CPU convolutions split differently over
1 or 2 threads give other last bits, hence other stimulus hashes. Taking it from the study
(`fv.cpu_threads`) rather than from the process makes the hashes the same on every machine
and in every runner (the Ray runner's actors render with the same setting).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from server.stimuli.generate import FVConfig
    from server.stimuli.models import LoadedModel
    from server.stimuli.visualize import Group, Visualization

_threads_lock = threading.Lock()


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` torch intra-op threads (None or the current count: as is).

    torch's thread count is process-wide, so it is set once around a whole parallel render
    (`CpuChunkExecutor`), whose workers then find it already right and leave it alone.
    """
    if count is None or torch.get_num_threads() == count:
        yield
        return
    with _threads_lock:
        previous = torch.get_num_threads()
        torch.set_num_threads(count)
    try:
        yield
    finally:
        with _threads_lock:
            torch.set_num_threads(previous)


def cpu_worker_count(config: FVConfig, n_chunks: int) -> int:
    """Chunks to render at once: `fv.cpu_workers`, else the process's torch threads divided
    by `fv.cpu_threads`; never more than there are chunks."""
    workers = config.cpu_workers or max(1, torch.get_num_threads() // config.cpu_threads)
    return max(1, min(workers, n_chunks))


class CpuChunkExecutor:
    """`ChunkExecutor` (visualize.py) that renders chunks in a pool of threads on this CPU."""

    def __init__(self, workers: int):
        self.workers = workers

    def render_chunks(
        self,
        render_model: LoadedModel,
        measure_model: LoadedModel,
        tasks: list[tuple[list[Group], FVConfig, int, int, int]],
        done: Callable[[int], None],
    ) -> list[list[Visualization]]:
        from server.stimuli.visualize import _render_chunk

        local = threading.local()

        def render(task: tuple) -> list[Visualization]:
            if not hasattr(local, "models"):  # one copy of each network per worker thread
                local.models = tuple(
                    dataclasses.replace(m, module=copy.deepcopy(m.module))
                    for m in (render_model, measure_model)
                )
            return _render_chunk(*local.models, *task)

        threads = tasks[0][1].cpu_threads if tasks else None
        with torch_threads(threads), ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(render, task) for task in tasks]
            # Progress from this thread: `done` may write to the caller's database session.
            for n, _ in enumerate(as_completed(futures), start=1):
                done(n)
            return [future.result() for future in futures]
