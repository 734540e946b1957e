"""Activation collection (files -> DataLoader -> hooks -> float16 table) vs a bare forward loop.

Both see the same images of the demo pool (192 crops at 192 px by default) and the same batch size;
the bare loop gets the tensors already decoded and preprocessed in memory and runs
`model(x)` under inference_mode; ours reads and decodes the files, hooks two layers and
stores the units. On a GPU the bare loop copies each batch to the device, as any loader
must, and both are warmed up first. Usage: python bench/activations.py [--device cuda]
[--workers N]. Last line: ratio_vs_bare_forward=X.XX (images/s ours / images/s bare).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from server.stimuli.activations import collect_activations
from server.stimuli.demo_images import build_demo_pool
from server.stimuli.images import open_rgb
from server.stimuli.models import load_model
from server.stimuli.units import sample_units

BATCH = 32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (ours)")
    parser.add_argument("--per-photo", type=int, default=12, help="crops per demo photo")
    args = parser.parse_args()
    model = load_model("efficientnet-lite0", args.device)
    device = model.device
    units = sample_units(model, ["_blocks.3", "_blocks.10"], 8, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        pool = build_demo_pool(Path(tmp) / "pool", per_photo=args.per_photo, size=192)
        files = sorted(pool.glob("*.jpg"))
        pre = model.preprocessing.pil_to_input()
        tensors = torch.stack([pre(open_rgb(f)) for f in files])

        with torch.inference_mode():
            model.module(tensors[:BATCH].to(device))  # warm-up
            _sync(device)
            start = time.perf_counter()
            for i in range(0, len(tensors), BATCH):
                model.module(tensors[i : i + BATCH].to(device))
            _sync(device)
        bare = len(files) / (time.perf_counter() - start)

        start = time.perf_counter()
        table = collect_activations(
            model,
            pool,
            units,
            cache_dir=None,
            batch_size=BATCH,
            num_workers=args.workers,
            progress=lambda *_: None,
        )
        _sync(device)
        ours = len(table.image_ids) / (time.perf_counter() - start)
    print(
        f"images={len(files)} batch={BATCH} device={device} bare_img_s={bare:.1f} ours_img_s={ours:.1f}"
    )
    print(f"ratio_vs_bare_forward={ours / bare:.2f}")


if __name__ == "__main__":
    main()
