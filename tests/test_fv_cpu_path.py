"""Issue 24: the CPU path of the feature-visualization renderer (server/stimuli/cpu_threads.py).

On CPU each chunk renders with `fv.cpu_threads` torch threads when set, whatever the
process's count. Checked on the real EfficientNet-Lite0 on a tiny render:
- the 1-thread path against the 2-thread fp32 render of the process's default (what the
  renderer did before on this machine): the same validity decision per unit, images close
  (mean absolute pixel difference) and final activations close;
- the result follows the setting, not the process: a process on 2 threads renders with
  `cpu_threads: 1` bit for bit what a process on 1 thread does, and keeps its 2 threads.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.stimuli.folding import fold_for_rendering
from server.stimuli.generate import FVConfig
from server.stimuli.units import UnitRef
from server.stimuli.visualize import measure_units, render_visualizations

LAYERS = ["_blocks.1", "_blocks.4"]


def _config(**overrides) -> FVConfig:
    base = {
        "steps": 8,
        "image_size": 32,
        "render_size": 64,
        "n_diverse": 0,
        "batch_size": 2,
        "early_stop": False,
        "pad": 4,
        "jitter": 2,
        "jitter_after": 1,
    }
    return FVConfig(**(base | overrides))


@pytest.fixture(scope="module")
def setup(lite0):
    units = [UnitRef(lite0.spec.name, layer, i) for layer in LAYERS for i in (3, 7)]
    return lite0, fold_for_rendering(lite0, LAYERS), units


def _render(setup, **overrides):
    model, folded, units = setup
    return render_visualizations(model, units, _config(**overrides), seed=5, render_model=folded)


def _images(visualizations) -> np.ndarray:
    return np.stack([v.images for v in visualizations])


def _activations(visualizations) -> np.ndarray:
    return np.concatenate([v.activations for v in visualizations])


def test_the_setting_not_the_process_decides_the_threads(setup) -> None:
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        on_one = _render(setup, cpu_threads=1)
        torch.set_num_threads(2)
        on_two = _render(setup, cpu_threads=1)
        assert torch.get_num_threads() == 2  # restored after the render
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(_images(on_one), _images(on_two))
    assert np.array_equal(_activations(on_one), _activations(on_two))


def test_one_thread_path_is_faithful_to_the_two_thread_render(setup) -> None:
    model, _, units = setup
    fast = _render(setup, cpu_threads=1)
    reference = _render(setup, cpu_threads=2)
    # Same trajectories up to the last bits of the convolutions.
    pixel_diff = float(np.abs(_images(fast) - _images(reference)).mean())
    assert pixel_diff < 1e-3, pixel_diff  # measured: ~1e-8 at this size
    a, b = _activations(fast), _activations(reference)
    assert np.allclose(a, b, rtol=1e-3, atol=1e-3 * float(np.abs(b).max())), (a, b)
    # The validity rule (max FV above the natural range, min FV below it) decides alike;
    # the natural range here: the units on a few seeded smooth images.
    generator = torch.Generator().manual_seed(0)
    natural = torch.nn.functional.interpolate(
        torch.rand(6, 3, 8, 8, generator=generator), size=64, mode="bilinear"
    )
    ranges = {u: measure_units(model, natural, [u] * len(natural), size=64) for u in units}

    def decisions(visualizations) -> list[bool]:
        by_key = {(v.unit, v.direction): v.activations[0] for v in visualizations}
        return [
            bool(by_key[(u, "max")] > ranges[u].max() and by_key[(u, "min")] < ranges[u].min())
            for u in units
        ]

    assert decisions(fast) == decisions(reference)
    assert any(decisions(reference)), "no unit valid: the comparison would not test anything"


def test_bad_cpu_settings_say_what_is_wrong() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cpu_threads"):
        FVConfig(cpu_threads=0)
    with pytest.raises(ValidationError, match="cpu_threads"):
        FVConfig(cpu_threads=1.5)
