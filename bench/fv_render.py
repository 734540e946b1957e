"""Batched feature visualization vs lucent's `render_vis` called unit by unit (same run).

Same model (EfficientNet-Lite0), units (4 of _blocks.3 + 4 of _blocks.10), 128 px FFT +
decorrelated parameterization, lucid's standard transforms, Adam lr 0.05, max direction,
no diversity, network input 224 (lucent upsamples small images to 224; we render at the
model's input size). Both renderers are warmed up (a 2-step render each) before timing,
so one-off costs (CUDA context, cuDNN handles, module loading) stay out of both figures.

Usage: python bench/fv_render.py [--steps 32] [--device cpu|cuda|cuda:1] [--runs 3]
    [--threads N] [--cpu-threads N]
On CUDA it also times our renderer without CUDA graphs (`ours_eager_s`). It prints the
network FLOP ratio too (what skipped work alone would give).

`--runs`: ours and lucent alternate that many times (on a shared machine the load moves,
so the two are timed side by side, run by run); the last line is the median ratio:
speedup_vs_lucent=X.XX. `--threads`: the process's torch threads, used by lucent and by
ours at the default settings. `--cpu-threads`: ours with `fv.cpu_threads: N` instead of
the default (unset: the process's threads), e.g. `--threads 1` alone is both on one
thread (like for like), `--cpu-threads 1` is ours on one thread against lucent on all.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from lucent.optvis import objectives, param, render, transform
from torch.utils.flop_counter import FlopCounterMode

from server.stimuli.folding import fold_for_rendering
from server.stimuli.generate import FVConfig
from server.stimuli.models import load_model
from server.stimuli.units import LayerCapture, sample_units
from server.stimuli.visualize import render_visualizations


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(
    model, units, steps: int, cuda_graphs: bool = True, cpu_threads: int | None = None
) -> tuple[float, list]:
    config = FVConfig(
        steps=steps,
        image_size=128,
        n_diverse=0,
        batch_size=8,
        early_stop=False,
        cuda_graphs=cuda_graphs,
        cpu_threads=cpu_threads,
    )
    _sync(model.device)
    start = time.perf_counter()
    result = render_visualizations(model, units, config, directions=("max",))
    _sync(model.device)
    return time.perf_counter() - start, result


def time_lucent(model, units, steps: int) -> float:
    # lucent puts its image parameters on its module-level device (cuda:0 if available);
    # normalisation must be the model's own.
    transforms = [*transform.standard_transforms, model.normalizer()]
    _sync(model.device)
    start = time.perf_counter()
    for unit in units:
        render.render_vis(
            model.module,
            objectives.channel(unit.layer.replace(".", "_"), unit.index),
            param_f=lambda: param.image(128),
            transforms=transforms,
            thresholds=(steps,),
            preprocess=False,
            progress=False,
            show_image=False,
        )
    _sync(model.device)
    return time.perf_counter() - start


def network_flop_ratio(model, units) -> float:
    """Network FLOPs per unit-step, lucent's over ours (torch's FlopCounterMode).

    lucent runs the whole network forward, then backward to the unit's layer; ours stops
    at the layer and runs a folded copy. This is the speedup the same arithmetic
    efficiency would give; a measured speedup above it is efficiency (batching, fewer
    launches), not skipped work.
    """
    folded = fold_for_rendering(model, list(dict.fromkeys(u.layer for u in units)))

    def flops(net, layer: str, stop_early: bool) -> int:
        x = torch.rand(1, 3, 224, 224, device=model.device, requires_grad=True)
        capture = LayerCapture(net, [layer], reduce=False, stop_early=stop_early)
        with FlopCounterMode(display=False) as counter, capture:
            capture.run(x)[layer][:, 0].mean().backward()
        return counter.get_total_flops()

    lucent = sum(flops(model, u.layer, stop_early=False) for u in units)
    ours = sum(flops(folded, u.layer, stop_early=True) for u in units)
    return lucent / ours


def _pixel_diff(a: list, b: list) -> float:
    return max(float(abs(x.images - y.images).max()) for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="process torch threads")
    parser.add_argument(
        "--cpu-threads", type=int, default=None, help="ours: fv.cpu_threads (default unset)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model("efficientnet-lite0", args.device)
    # lucent leaves its hooks (holding graph tensors) on the model it renders: own copy.
    lucent_model = load_model("efficientnet-lite0", args.device)
    units = sample_units(model, ["_blocks.3", "_blocks.10"], 4, seed=0)

    time_ours(model, units, 2, cpu_threads=args.cpu_threads)  # warm-up
    time_lucent(lucent_model, units[:1], 2)
    print(
        f"units={len(units)} steps={args.steps} size=128 device={model.device} "
        f"threads={torch.get_num_threads()} fv.cpu_threads={args.cpu_threads or 'unset'}"
    )
    ratios = []
    for run in range(1, args.runs + 1):
        ours_s, ours = time_ours(model, units, args.steps, cpu_threads=args.cpu_threads)
        lucent_s = time_lucent(lucent_model, units, args.steps)
        ratios.append(lucent_s / ours_s)
        print(
            f"run {run}: ours_s={ours_s:.2f} lucent_s={lucent_s:.2f} ratio={ratios[-1]:.2f}",
            flush=True,
        )
    gains = [float(v.history[-4:].mean() - v.history[:4].mean()) for v in ours]
    if model.device.type == "cuda":
        eager_s, eager = time_ours(model, units, args.steps, cuda_graphs=False)
        _, eager_again = time_ours(model, units, args.steps, cuda_graphs=False)
        print(
            f"ours_eager_s={eager_s:.2f} "
            f"max_pixel_diff graph_vs_eager={_pixel_diff(ours, eager):.4f} "
            f"eager_vs_eager={_pixel_diff(eager_again, eager):.4f}"
        )
    print(f"ours_s={ours_s:.2f} lucent_s={lucent_s:.2f} ours_objective_gain_min={min(gains):.2f}")
    print(f"network_flop_ratio={network_flop_ratio(model, units):.2f}")
    print(f"speedup_vs_lucent={statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
