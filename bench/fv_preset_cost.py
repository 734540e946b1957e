"""What one unit costs under each FV preset: a short measured render, scaled by steps.

Measures, in the same run, the seconds per optimisation step of one unit's render (max and
min, 1 non-diverse + 8 diverse images each, the preset's canvas and transforms) under the
`imi` and the `fast` presets on EfficientNet-Lite0 `_blocks.9`, and the non-diverse
extra runs of `imi`. A unit's cost is then

    steps x (rounds x s/step of the full render + (runs - 1) x s/step of a plain run)

with `rounds` the renders the alpha search needs (IMI: up to 5 increases + 7 bisections,
13 renders; at least 8) and steps between IMI's minimum (2500) and maximum (20000).
Rendering cost is linear in steps (every step is the same work), so a short run scales.

Usage: python bench/fv_preset_cost.py [--steps 16] [--device cpu|cuda]
Last line: imi_vs_fast_per_step=X.XX
"""

from __future__ import annotations

import argparse
import time

import torch

from server.stimuli.folding import fold_for_rendering
from server.stimuli.generate import FVConfig
from server.stimuli.models import load_model
from server.stimuli.units import sample_units
from server.stimuli.visualize import render_visualizations


def seconds_per_step(model, render_model, units, config: FVConfig, steps: int) -> float:
    render_visualizations(model, units, config, steps=2, render_model=render_model)  # warm-up
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    start = time.perf_counter()
    render_visualizations(model, units, config, steps=steps, render_model=render_model)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model("efficientnet-lite0", args.device)
    layer = "_blocks.9"
    units = sample_units(model, [layer], 1, seed=0)
    render_model = fold_for_rendering(model, [layer])
    common = {"early_stop": False, "batch_size": 64}
    imi = FVConfig(preset="imi", **common)
    fast = FVConfig(preset="fast", **common)
    plain = imi.model_copy(update={"n_diverse": 0})
    s_imi = seconds_per_step(model, render_model, units, imi, args.steps)
    s_fast = seconds_per_step(model, render_model, units, fast, args.steps)
    s_plain = seconds_per_step(model, render_model, units, plain, args.steps)
    runs = imi.non_diverse_runs - 1
    print(f"device={args.device} layer={layer} measured_steps={args.steps}")
    print(f"s_per_step imi={s_imi:.4f} fast={s_fast:.4f} imi_plain_run={s_plain:.4f}")
    for rounds in (8, 13):
        for steps in (imi.plateau_min_steps, imi.steps):
            seconds = steps * (rounds * s_imi + runs * s_plain)
            print(
                f"imi_unit rounds={rounds} steps={steps} "
                f"image_steps={steps * (rounds * 18 + runs * 2)} seconds={seconds:.0f} "
                f"hours={seconds / 3600:.2f}"
            )
    fast_unit = fast.steps * s_fast
    print(f"fast_unit steps={fast.steps} seconds={fast_unit:.0f} (no search, one run)")
    print(f"imi_vs_fast_per_step={s_imi / s_fast:.2f}")


if __name__ == "__main__":
    main()
