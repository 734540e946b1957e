"""Natural exemplars as IMI chose them: query percentile ranges, seeded tie-breaking, and
reading units before the ReLU (`layer_point`) on real modules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import googlenet

from server.stimuli.exemplars import NotEnoughImages, ranked_by_activation, select_exemplars
from server.stimuli.generate import GenerationConfig
from server.stimuli.layer_points import NoPreReluPoint, resolve_layer_point
from server.stimuli.models import LoadedModel
from server.stimuli.units import LayerCapture


def test_ties_are_broken_by_a_seeded_random_order_not_file_order():
    values = np.zeros(200)
    values[:20] = np.linspace(1, 2, 20)  # 180 images tie at 0, as after a ReLU
    ranked = ranked_by_activation(values, seed=1)
    assert list(ranked[:20]) == list(range(19, -1, -1))
    tied = ranked[20:]
    assert sorted(tied) == list(range(20, 200))
    assert list(tied) != list(range(20, 200)) and list(tied) != list(range(199, 19, -1))
    assert np.array_equal(ranked, ranked_by_activation(values, seed=1))
    assert not np.array_equal(ranked, ranked_by_activation(values, seed=2))
    batches = select_exemplars(values, k=9, n_batches=2, seed=1)
    lowest = {i for b in batches for i in b.reference_min}
    assert lowest != set(range(199, 181, -1))  # not the last files


@pytest.mark.parametrize("queries, percentile", [("p99", 99), ("p95", 95), ("p85", 85)])
def test_query_percentile_ranges(queries, percentile):
    n, k, n_batches = 4000, 9, 4  # the 99th percentile lies beyond the 36 references
    values = np.random.default_rng(0).normal(size=n)
    batches = select_exemplars(values, k, n_batches, seed=3, queries=queries)
    rank = {int(i): r for r, i in enumerate(ranked_by_activation(values, 3))}
    centre = round((1 - percentile / 100) * (n - 1))
    for b in batches:
        assert abs(rank[b.query_max] - centre) <= n_batches
        assert abs((n - 1 - rank[b.query_min]) - centre) <= n_batches
        assert len(set(b.all_images())) == 2 * k + 2
    extreme = select_exemplars(values, k, n_batches, seed=3)
    assert {rank[b.query_max] for b in extreme} == set(range(k * n_batches, (k + 1) * n_batches))


def test_percentile_queries_need_enough_images():
    with pytest.raises(NotEnoughImages, match="85th percentile"):
        select_exemplars(np.arange(60.0), k=9, n_batches=2, seed=0, queries="p85")
    assert GenerationConfig(layers=["a"], units_per_layer=1, queries="p95").queries == "p95"


def test_layer_point_resolution_on_real_modules(lite0):
    assert resolve_layer_point(lite0, "_blocks.4", "pre_relu") == "_blocks.4"
    assert resolve_layer_point(lite0, "_blocks.4", "output") == "_blocks.4"
    with pytest.raises(NoPreReluPoint, match="not a step of a Sequential"):
        resolve_layer_point(lite0, "_blocks.4._swish", "pre_relu")
    net = googlenet(weights=None, init_weights=False, aux_logits=False).eval()
    tv = dataclasses.replace(lite0, module=net)
    assert resolve_layer_point(tv, "conv2", "pre_relu") == "conv2.bn"
    with pytest.raises(NoPreReluPoint, match="inception4a"):
        resolve_layer_point(tv, "inception4a", "pre_relu")
    # Seeded weights: with unseeded ones every unit's mean can come out positive by chance.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layers = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU()))
    seq = LoadedModel(lite0.spec, layers.eval(), torch.device("cpu"))
    assert resolve_layer_point(seq, "1", "pre_relu") == "1.0"
    assert resolve_layer_point(seq, "1.1", "pre_relu") == "1.0"
    # Before the ReLU, units take negative values; after it they tie at 0.
    with torch.inference_mode(), LayerCapture(seq, ["1.0", "1"], stop_early=False) as capture:
        out = capture.run(torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert (out["1.0"] < 0).any() and (out["1"] >= 0).all()


def test_layer_point_config_validates_layer_names():
    config = GenerationConfig(layers=["a", "b"], units_per_layer=1, layer_point={"b": "pre_relu"})
    assert config.layer_points() == {"a": "output", "b": "pre_relu"}
    with pytest.raises(ValueError, match="layer_point names layers not in"):
        GenerationConfig(layers=["a"], units_per_layer=1, layer_point={"c": "pre_relu"})
    with pytest.raises(ValueError, match="reserved_batches"):
        GenerationConfig(layers=["a"], units_per_layer=1, n_batches=2, reserved_batches=2)
