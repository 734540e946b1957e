"""The CUDA render path on a real GPU: folding holds and CUDA graphs replay the eager step.

Skipped where there is no GPU. Self-contained (no conftest fixtures), so it also runs on a
bare GPU machine: `pytest --noconftest tests/test_fv_cuda.py` (bench/gpu.sh does).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from server.stimuli.folding import full_fp32
from server.stimuli.generate import FVConfig
from server.stimuli.models import load_model
from server.stimuli.units import count_forward_hooks, sample_units
from server.stimuli.visualize import render_visualizations

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def no_tf32():
    """Full float32, so that eager and graph differ only by atomics' summation order."""
    with full_fp32():
        yield


def test_cuda_graph_render_replays_the_eager_render(no_tf32):
    model = load_model("efficientnet-lite0", "cuda")
    units = sample_units(model, ["_blocks.3", "_blocks.10"], 2, seed=0)
    # 3 eager warm-up steps, then 9 graph replays; diversity on (n_diverse 2, alpha 1).
    config = FVConfig(steps=12, image_size=64, n_diverse=2, batch_size=64, early_stop=False)
    eager_config = config.model_copy(update={"cuda_graphs": False})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graphed = render_visualizations(model, units, config)
    ours = [str(w.message) for w in caught if "fold" in str(w.message) or "graph" in str(w.message)]
    assert ours == []  # folding held under CUDA, and the capture succeeded
    eager = render_visualizations(model, units, eager_config)
    eager_again = render_visualizations(model, units, eager_config)
    assert count_forward_hooks(model.module) == 0
    assert len(graphed) == len(eager) == 2 * len(units)

    def worst(a, b, field):
        return max(float(np.abs(getattr(x, field) - getattr(y, field)).max()) for x, y in zip(a, b))

    # The graph is as close to eager as eager is to itself (grid_sample's backward sums
    # with atomics, so two eager runs can differ in the last bits).
    for field in ("images", "history", "activations"):
        noise = worst(eager, eager_again, field)
        assert worst(graphed, eager, field) <= max(1e-3, 10 * noise), field
    for g, e in zip(graphed, eager, strict=True):
        assert (g.unit, g.direction, g.steps) == (e.unit, e.direction, 12)
        assert g.history[-3:].mean() > g.history[:3].mean()  # the signed objective rose
