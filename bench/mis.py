"""Machine interpretability scores: units scored per minute, batched vs a naive per-task loop.

Both score EfficientNet-Lite0 units on the demo pool (192 crops at 256 px) with the
similarity observer (EfficientNet-Lite2 embeddings, N=20 tasks, K=9), from scratch (no
activation or embedding cache), and both include collecting the units' activations.
Batched (ours): every image is embedded once for the whole unit set and all tasks of all
units are scored in one einsum. Naive: each task's 2K + 2 images are read, decoded and
embedded on their own (one forward of 20 images per task), as a per-task script would.
The scores are identical (tests/test_mis.py checks it); only the work differs.
Usage: python bench/mis.py [--device cuda] [--units 16] [--naive-units 2].
Last line: ratio_vs_naive=X.X (units/min ours / units/min naive).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from server.stimuli.activations import collect_activations
from server.stimuli.demo_images import build_demo_pool
from server.stimuli.models import load_model
from server.stimuli.units import sample_units
from server.studies.observers.backends import BuiltinEmbedding
from server.studies.observers.mis import score_units, score_units_naive
from server.studies.observers.similarity import DEFAULT_ALPHA

LAYERS = ["_blocks.4", "_blocks.12"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _activations(model, pool: Path, n_units: int) -> tuple[list[Path], np.ndarray]:
    units = sample_units(model, LAYERS, n_units // len(LAYERS), seed=0)
    table = collect_activations(model, pool, units, cache_dir=None, progress=lambda *_: None)
    return table.files, np.stack([table.of(u) for u in units], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--units", type=int, default=16, help="units scored batched")
    parser.add_argument("--naive-units", type=int, default=2, help="units scored naively")
    args = parser.parse_args()
    model = load_model("efficientnet-lite0", args.device)
    backend = BuiltinEmbedding("efficientnet-lite2", args.device)
    device = model.device
    with tempfile.TemporaryDirectory() as tmp:
        pool = build_demo_pool(Path(tmp) / "pool")
        backend.embed_bytes([next(pool.glob("*.jpg")).read_bytes()])  # load + warm up both
        _activations(model, pool, len(LAYERS))

        start = time.perf_counter()
        files, activations = _activations(model, pool, args.units)
        _, embeddings = backend.embed_files(files, cache_dir=None)
        ours_scores = score_units(activations, embeddings, DEFAULT_ALPHA)
        _sync(device)
        ours_s = time.perf_counter() - start

        start = time.perf_counter()
        files, activations = _activations(model, pool, args.naive_units)

        def embed(positions):
            return backend.embed_bytes([files[i].read_bytes() for i in positions])

        naive_scores = score_units_naive(activations, embed, DEFAULT_ALPHA)
        _sync(device)
        naive_s = time.perf_counter() - start
    assert len(ours_scores) == args.units and len(naive_scores) == args.naive_units
    ours = 60 * args.units / ours_s
    naive = 60 * args.naive_units / naive_s
    print(
        f"images={len(files)} device={device} ours: {args.units} units in {ours_s:.1f} s "
        f"= {ours:.1f} units/min; naive: {args.naive_units} units in {naive_s:.1f} s "
        f"= {naive:.2f} units/min"
    )
    print(f"ratio_vs_naive={ours / naive:.1f}")


if __name__ == "__main__":
    main()
