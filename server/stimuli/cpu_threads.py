"""The CPU path of the feature-visualization renderer: a fixed, small torch thread count.

A chunk is a small batch (one layer's units, at most `fv.batch_size` images), and its
convolutions gain little from intra-op threads. Worse, on a machine busier than its cores
OpenMP's threads wait for each other at every operation: on the 2-core development machine
under a load of 5-9, a render with 2 torch threads took 2.5-9x as long as with 1 (bench
figures in the README). So on CPU each chunk can render and be measured with
`fv.cpu_threads` torch threads. The default (None) keeps the process's count: on an idle
2-core machine 2 threads were 1.7x faster than 1 (bench/fv_render.py with and without
--cpu-threads 1), so 1 is a setting for busy machines and for Ray workers, not a default.
More cores are used by rendering chunks in several processes (the Ray runner,
server/jobs/ray_runner.py), not threads: chunks side by side in threads
of one process (each with its own copy of the network) gave the same pixels but were
slower under that load (GIL hand-offs), so they were not kept.

The count of torch threads is part of the result: CPU convolutions split differently over
1 or 2 threads give other last bits, hence other stimulus hashes. Taking it from the study
rather than from the process makes the hashes the same on every machine and in every
runner.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

_threads_lock = threading.Lock()


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` torch intra-op threads (None or the current count: as is),
    then restore the process's count (torch's thread count is process-wide)."""
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
