"""Generation wall time: the local runner vs the Ray runner (issue 24).

The same small study (EfficientNet-Lite0, feature visualizations on, SQLite, a fresh data
dir) is generated twice: once in this process (the local runner) and once with its
feature-visualization chunks on a local Ray cluster of `--ray-cpus` CPUs. Both render with
`--threads` torch threads (default 1; Ray actors take the driver's count, so each asks for
that many CPUs): CPU convolutions give other bits with another thread count, and the
runners must give the same stimulus hashes. Natural-image activations are collected once beforehand (a
warm-up generation without visualizations), so both timed runs do the same work. Both
runs must give the same stimulus hashes. Prints both times, units per minute and the
ratio (goal on a 2-core machine with 2 Ray workers: >= 1.6x).

    python bench/scale.py [--units 4] [--steps 64] [--ray-cpus 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--threads", type=int, default=1, help="torch threads per renderer")
    args = parser.parse_args()

    import ray
    import torch

    from server.config import Settings
    from server.db.migrate import upgrade_database
    from server.db.session import make_engine, make_session_factory, session_scope
    from server.jobs.ray_runner import RayChunkExecutor
    from server.stimuli.generate import GenerationConfig, generate_stimuli
    from server.stimuli.visualize import chunk_executor

    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    url = f"sqlite:///{workdir / 'bench.db'}"
    settings = Settings(database_url=url, data_dir=workdir / "data", device=args.device)
    upgrade_database(url)
    factory = make_session_factory(make_engine(url))
    config = GenerationConfig.model_validate(study_config(args.units, args.steps, args.device))
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

    local_s, local_hashes = timed(None)
    print(f"local: {local_s:.1f} s, {n_units / local_s * 60:.1f} units/min", file=sys.stderr)
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayChunkExecutor(address="local", device=args.device)
        ray_s, ray_hashes = timed(executor)
        executor.shutdown()
    finally:
        ray.shutdown()
    same = local_hashes == ray_hashes
    print(
        f"units={n_units} steps={args.steps} device={args.device} threads={args.threads} "
        f"ray_cpus={args.ray_cpus}\n"
        f"local_s={local_s:.1f} ray_s={ray_s:.1f} "
        f"local_units_per_min={n_units / local_s * 60:.1f} "
        f"ray_units_per_min={n_units / ray_s * 60:.1f}\n"
        f"ratio={local_s / ray_s:.2f}x (goal >= 1.6x) same_hashes={same}"
    )
    if not same:
        raise SystemExit("the Ray runner's stimulus hashes differ from the local runner's")


if __name__ == "__main__":
    main()
