"""Generation wall time: the local runner vs the Ray runner (issue 24).

The same small study (EfficientNet-Lite0, feature visualizations on, SQLite, a fresh data
dir) is generated in this process (the local runner) and with its feature-visualization
chunks on a local Ray cluster of `--ray-cpus` CPUs, alternating `--rounds` times (the
development machine is shared and its load moves, so the two are timed side by side; the
medians are compared). Every chunk renders with `fv.cpu_threads` torch threads
(`--cpu-threads`, default 1 here; the renderer's default is the process's count) wherever it runs, so both must give
the same stimulus hashes, and each Ray actor reserves that many CPUs (2 CPUs, 1 thread: 2
actors, no oversubscription).

Ray's start-up is timed apart: `ray.init` and starting the actors (`warm_up`) come before
the timed runs and are reported as `ray_startup_s`; the actors stay up across rounds and
each loads the models once. Natural-image activations are collected once beforehand (a
warm-up generation without visualizations), so every timed run does the same work.
Prints the times, units per minute and the median ratio (goal on a 2-core machine with 2
Ray workers: >= 1.6x), and the load average before and after.

    python bench/scale.py [--units 4] [--steps 64] [--ray-cpus 2] [--device cpu|cuda]
        [--cpu-threads 1] [--threads N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select


def study_config(units: int, steps: int, device: str) -> dict:
    return {
        "model": "efficientnet-lite0",
        "layers": ["_blocks.3", "_blocks.6"],
        "units_per_layer": units,
        "seed": 3,
        "images": "demo",
        "demo_pool_per_photo": 4,
        "demo_pool_size": 96,
        "k_references": 9,
        "n_batches": 1,
        "fv": {
            "enabled": True,
            "steps": steps,
            "image_size": 64,
            "render_size": 96,
            "n_diverse": 1,
            "batch_size": 4,
            "early_stop": False,
        },
    }


def hashes(db, stimulus_set_id: str) -> list[str]:
    from server.db.models import Stimulus

    return sorted(
        db.scalars(select(Stimulus.image_sha256).where(Stimulus.stimulus_set_id == stimulus_set_id))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=4, help="units per layer (2 layers)")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cpu-threads", type=int, default=1, help="fv.cpu_threads")
    parser.add_argument("--threads", type=int, default=None, help="this process's threads")
    parser.add_argument("--rounds", type=int, default=3, help="local/Ray alternations")
    args = parser.parse_args()

    import ray
    import torch

    from server.config import Settings
    from server.db.migrate import upgrade_database
    from server.db.session import make_engine, make_session_factory, session_scope
    from server.jobs.ray_runner import RayChunkExecutor
    from server.stimuli.generate import GenerationConfig, generate_stimuli
    from server.stimuli.visualize import chunk_executor

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    url = f"sqlite:///{workdir / 'bench.db'}"
    settings = Settings(database_url=url, data_dir=workdir / "data", device=args.device)
    upgrade_database(url)
    factory = make_session_factory(make_engine(url))
    raw = study_config(args.units, args.steps, args.device)
    raw["fv"]["cpu_threads"] = args.cpu_threads
    config = GenerationConfig.model_validate(raw)
    natural = config.model_copy(update={"fv": config.fv.model_copy(update={"enabled": False})})
    with session_scope(factory) as db:  # warm-up: demo pool + activation cache
        generate_stimuli(db, settings, natural)
    n_units = len(config.layers) * args.units

    def timed(executor) -> tuple[float, list[str]]:
        began = time.perf_counter()
        with session_scope(factory) as db, chunk_executor(executor):
            stimulus_set = generate_stimuli(db, settings, config)
            found = hashes(db, stimulus_set.id)
        return time.perf_counter() - began, found

    def rate(seconds: float) -> float:
        return n_units / seconds * 60

    began = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    executor = RayChunkExecutor(address="local", device=args.device)
    actors = executor.warm_up(10_000, config.fv)
    startup_s = time.perf_counter() - began
    local_times, ray_times, found = [], [], set()
    try:
        for round_ in range(1, args.rounds + 1):
            local_s, local_hashes = timed(None)
            ray_s, ray_hashes = timed(executor)
            local_times.append(local_s)
            ray_times.append(ray_s)
            found |= {tuple(local_hashes), tuple(ray_hashes)}
            print(
                f"round {round_}: local_s={local_s:.1f} ray_s={ray_s:.1f} "
                f"ratio={local_s / ray_s:.2f}x load={os.getloadavg()[0]:.1f}",
                file=sys.stderr,
            )
        executor.shutdown()
    finally:
        ray.shutdown()
    same = len(found) == 1
    local_s, ray_s = statistics.median(local_times), statistics.median(ray_times)
    ratios = sorted(a / b for a, b in zip(local_times, ray_times, strict=True))
    print(
        f"units={n_units} steps={args.steps} device={args.device} "
        f"cpu_threads={args.cpu_threads} process_threads={torch.get_num_threads()} "
        f"ray_cpus={args.ray_cpus} ray_actors={actors} rounds={args.rounds} "
        f"load_after={os.getloadavg()}\n"
        f"median local_s={local_s:.1f} ray_s={ray_s:.1f} "
        f"ray_startup_s={startup_s:.1f} (apart, once)\n"
        f"units_per_min local={rate(local_s):.1f} ray={rate(ray_s):.1f}\n"
        f"round ratios {', '.join(f'{r:.2f}' for r in ratios)}\n"
        f"ratio={statistics.median(ratios):.2f}x (median; goal >= 1.6x) same_hashes={same}"
    )
    if not same:
        raise SystemExit("the Ray runner's stimulus hashes differ from the local runner's")


if __name__ == "__main__":
    main()
