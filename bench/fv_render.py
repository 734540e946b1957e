"""Batched feature visualization vs lucent's `render_vis` called unit by unit (same run).

Same model (EfficientNet-Lite0), units (4 of _blocks.3 + 4 of _blocks.10), 128 px FFT +
decorrelated parameterization, lucid's standard transforms, Adam lr 0.05, max direction,
no diversity, network input 224 (lucent upsamples small images to 224; we render at the
model's input size). Usage: python bench/fv_render.py [STEPS]. Last line:
speedup_vs_lucent=X.XX
"""

from __future__ import annotations

import sys
import time

import torch
from lucent.optvis import objectives, param, render, transform

from server.stimuli.generate import FVConfig
from server.stimuli.models import load_model
from server.stimuli.units import sample_units
from server.stimuli.visualize import render_visualizations

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 32


def main() -> None:
    model = load_model("efficientnet-lite0", "cpu")
    units = sample_units(model, ["_blocks.3", "_blocks.10"], 4, seed=0)
    config = FVConfig(steps=STEPS, image_size=128, n_diverse=0, batch_size=8, early_stop=False)

    start = time.perf_counter()
    ours = render_visualizations(model, units, config, directions=("max",))
    ours_s = time.perf_counter() - start

    # lucent's module-level device is cpu here; normalisation must be the model's own.
    transforms = [*transform.standard_transforms, model.normalizer()]
    start = time.perf_counter()
    for unit in units:
        render.render_vis(
            model.module,
            objectives.channel(unit.layer.replace(".", "_"), unit.index),
            param_f=lambda: param.image(128),
            transforms=transforms,
            thresholds=(STEPS,),
            preprocess=False,
            progress=False,
            show_image=False,
        )
    lucent_s = time.perf_counter() - start
    gains = [float(v.history[-4:].mean() - v.history[:4].mean()) for v in ours]
    print(f"units={len(units)} steps={STEPS} size=128 threads={torch.get_num_threads()}")
    print(f"ours_s={ours_s:.2f} lucent_s={lucent_s:.2f} ours_objective_gain_min={min(gains):.2f}")
    print(f"speedup_vs_lucent={lucent_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
