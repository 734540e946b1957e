"""Activation collection (files -> DataLoader -> hooks -> float16 table) vs a bare forward loop.

Both see the same images of the demo pool (192 crops at 192 px) and the same batch size;
the bare loop gets the tensors already decoded and preprocessed in memory and runs
`model(x)` under inference_mode; ours reads and decodes the files, hooks two layers and
stores the units. Last line: ratio_vs_bare_forward=X.XX (images/s ours / images/s bare).
"""

from __future__ import annotations

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


def main() -> None:
    model = load_model("efficientnet-lite0", "cpu")
    units = sample_units(model, ["_blocks.3", "_blocks.10"], 8, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        pool = build_demo_pool(Path(tmp) / "pool", per_photo=12, size=192)
        files = sorted(pool.glob("*.jpg"))
        pre = model.preprocessing.pil_to_input()
        tensors = torch.stack([pre(open_rgb(f)) for f in files])

        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(tensors), BATCH):
                model.module(tensors[i : i + BATCH])
        bare = len(files) / (time.perf_counter() - start)

        start = time.perf_counter()
        table = collect_activations(
            model,
            pool,
            units,
            cache_dir=None,
            batch_size=BATCH,
            num_workers=0,
            progress=lambda *_: None,
        )
        ours = len(table.image_ids) / (time.perf_counter() - start)
    print(f"images={len(files)} batch={BATCH} bare_img_s={bare:.1f} ours_img_s={ours:.1f}")
    print(f"ratio_vs_bare_forward={ours / bare:.2f}")


if __name__ == "__main__":
    main()
