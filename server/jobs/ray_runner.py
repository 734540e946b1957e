"""The Ray runner of generation jobs: feature-visualization chunks rendered across a cluster.

A generation job whose params say `runner: ray` runs as usual in the job worker that
claimed it (the driver): it samples units, collects activations, selects exemplars, and
in the end writes the images to the store and the rows to the database, reporting
progress to the job's row. Only the expensive part, the feature-visualization chunks (one
chunk = one model, one layer's units on CPU, at most `fv.batch_size` images), is sent to
Ray actors through `server.stimuli.visualize.chunk_executor`.

- One model load per actor: the driver puts its render model (the folded copy) and its
  measure model in Ray's object store once per generation; each actor takes them once and
  keeps them while the key is the same. Shipping the driver's own models, rather than
  loading by name on the worker, makes the chunks bit-identical to the local runner's
  (same folded weights, same code, same device type), so stimulus hashes match.
- Resources: an actor asks `num_gpus=1` when the device is CUDA, else as many CPUs as the
  torch threads it renders with; there is one actor per GPU or per that many CPUs the
  cluster offers, at most one per chunk.
- Threads: on CPU, a convolution's result depends on how many threads split it (measured:
  Lite0's input gradient differs by up to 0.03 between 1 and 2 threads), so every chunk
  renders with the study's `fv.cpu_threads` torch threads, in an actor as in the local
  runner (server/stimuli/cpu_threads.py), and an actor reserves that many CPUs: the same
  study, seeds and device type give the same stimulus hashes on any machine.
- Scheduling: chunks go to whichever actor is free (`ray.util.ActorPool`), so cheap
  early-layer chunks and dear deep ones keep every actor busy; `warm_up` starts the actors
  (and lets a benchmark time their start-up apart from rendering).
- Worker loss: actors restart (`max_restarts`) and their pending calls are retried
  (`max_task_retries`); a restarted actor loads the models again.

Ray is an optional extra: without it, `runner: ray` fails with how to install it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from server.errors import AppError

if TYPE_CHECKING:
    from server.stimuli.generate import FVConfig
    from server.stimuli.models import LoadedModel
    from server.stimuli.visualize import Group, Visualization

RUNNERS = ("local", "ray")
INSTALL_HINT = 'the ray runner needs Ray: pip install -e ".[ray]" (or choose runner local)'


def import_ray():
    try:
        import ray
    except ImportError:
        raise AppError(INSTALL_HINT) from None
    return ray


def connect(address: str | None) -> None:
    """Join the cluster at `address` (auto, local, ray://HOST:10001) unless connected."""
    ray = import_ray()
    if ray.is_initialized():
        return
    try:
        if address in (None, "", "local"):
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        raise AppError(
            f"cannot reach the Ray cluster at {address!r} ({exc}): start it with `ray start "
            "--head` or give --address ray://HOST:10001"
        ) from None


class _ChunkRenderer:
    """A Ray actor: keeps one (render, measure) model pair and renders chunks with it."""

    def __init__(self, device: str, threads: int):
        import torch

        # Chunks set their own count (fv.cpu_threads); this one covers loading the models.
        torch.set_num_threads(max(1, threads))
        self.device = device
        self.key: str | None = None
        self.models: tuple[LoadedModel, LoadedModel] | None = None
        self.loads = 0

    def pid(self) -> int:
        return os.getpid()

    def _models(self, key: str, refs: list) -> tuple[LoadedModel, LoadedModel]:
        if self.key != key:
            import dataclasses

            import ray
            import torch

            device = torch.device(self.device)
            render, measure = ray.get(refs[0])
            self.models = tuple(
                dataclasses.replace(m, module=m.module.to(device), device=device)
                for m in (render, measure)
            )
            self.key = key
            self.loads += 1
        return self.models

    def render(self, key: str, refs: list, task: tuple) -> list[Visualization]:
        from server.stimuli.visualize import _render_chunk

        render, measure = self._models(key, refs)
        chunk, config, seed, max_steps, n_entries = task
        return _render_chunk(render, measure, chunk, config, seed, max_steps, n_entries)

    def render_indexed(
        self, key: str, refs: list, index: int, task: tuple
    ) -> tuple[int, list[Visualization]]:
        """`render`, tagged with the chunk's place (results arrive in finishing order)."""
        return index, self.render(key, refs, task)


class RayChunkExecutor:
    """`ChunkExecutor` on a Ray cluster (see the module docstring)."""

    def __init__(
        self,
        address: str | None = "auto",
        device: str | None = None,
        threads: int | None = None,
        max_actors: int | None = None,
        max_retries: int = 3,
    ):
        self.ray = import_ray()
        connect(address)
        self.device = device
        self.threads = threads
        self.max_actors = max_actors
        self.max_retries = max_retries
        self.actors: list[Any] = []
        self.pids: list[int] = []  # each actor's first process (a restart gets another)
        self.completed = 0  # chunks finished in the current call (tests watch it)
        self._key: str | None = None
        self._refs: list | None = None

    def _threads(self, config: FVConfig | None = None) -> int:
        """CPUs an actor reserves on a CPU cluster: the torch threads a chunk renders with."""
        if self.threads:
            return self.threads
        if config is not None and config.cpu_threads is not None:
            return config.cpu_threads
        # None: the driver's own count, so actors render as the local runner would here.
        import torch

        return torch.get_num_threads()

    def _actor_count(self, n_tasks: int, gpu: bool, threads: int) -> int:
        resources = self.ray.cluster_resources()
        offered = int(resources.get("GPU", 0)) if gpu else int(resources.get("CPU", 1))
        if gpu and offered == 0:
            raise AppError(
                "device is cuda but the Ray cluster has no GPU: start workers with GPUs "
                "(ray start --num-gpus N) or set PSYCHINTERP_DEVICE=cpu"
            )
        count = max(1, offered // (1 if gpu else threads))
        return min(count, n_tasks, self.max_actors or count)

    def _ensure_actors(self, count: int, device: str, threads: int) -> None:
        gpu = device.startswith("cuda")
        options = {
            "num_gpus": 1 if gpu else 0,
            "num_cpus": 1 if gpu else threads,
            "max_restarts": self.max_retries,
            "max_task_retries": self.max_retries,
        }
        actor_class = self.ray.remote(_ChunkRenderer)
        new = [
            actor_class.options(**options).remote(device, threads)
            for _ in range(count - len(self.actors))
        ]
        self.pids += self.ray.get([actor.pid.remote() for actor in new])
        self.actors += new

    def warm_up(self, n_tasks: int, config: FVConfig | None = None) -> int:
        """Start the actors `n_tasks` chunks would use now (job start, or a benchmark timing
        start-up apart); returns how many there are."""
        device = self.device or "cpu"
        threads = self._threads(config)
        gpu = device.startswith("cuda")
        self._ensure_actors(self._actor_count(n_tasks, gpu, threads), device, threads)
        return len(self.actors)

    def actor_pids(self) -> list[int]:
        return self.ray.get([actor.pid.remote() for actor in self.actors])

    def render_chunks(
        self,
        render_model: LoadedModel,
        measure_model: LoadedModel,
        tasks: list[tuple[list[Group], FVConfig, int, int, int]],
        done: Callable[[int, list[Visualization]], None],
    ) -> list[list[Visualization]]:
        from ray.util import ActorPool

        device = self.device or measure_model.device.type
        threads = self._threads(tasks[0][1] if tasks else None)
        count = self._actor_count(len(tasks), device.startswith("cuda"), threads)
        self._ensure_actors(count, device, threads)
        key = f"{id(render_model)}:{id(measure_model)}"
        if key != self._key:  # one put per model pair, shared by every actor
            cpu = [_on_cpu(render_model), _on_cpu(measure_model)]
            self._refs, self._key = [self.ray.put(tuple(cpu))], key
        pool = ActorPool(self.actors)
        refs = self._refs
        results: list[list[Visualization]] = [[] for _ in tasks]
        self.completed = 0
        try:
            # A free actor takes the next chunk; results come back as chunks finish.
            for index, rendered in pool.map_unordered(
                lambda actor, item: actor.render_indexed.remote(key, refs, *item),
                list(enumerate(tasks)),
            ):
                results[index] = rendered
                self.completed += 1
                done(index, rendered)
        except self.ray.exceptions.RayError as exc:
            raise AppError(f"a Ray worker failed rendering feature visualizations: {exc}") from exc
        return results

    def shutdown(self) -> None:
        """Free the actors' CPUs/GPUs (the next job starts its own)."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors, self.pids, self._refs, self._key = [], [], None, None


def _on_cpu(model: LoadedModel) -> LoadedModel:
    """A CPU copy to ship (`Module.to` moves in place: the driver keeps its own)."""
    import copy
    import dataclasses

    import torch

    if model.device.type == "cpu":
        return model
    module = copy.deepcopy(model.module).to("cpu")
    return dataclasses.replace(model, module=module, device=torch.device("cpu"))
