"""Units, activations, natural exemplars and feature visualizations on the real Lite0."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from server.errors import AppError
from server.stimuli.activations import collect_activations
from server.stimuli.exemplars import NotEnoughImages, select_exemplars
from server.stimuli.generate import FVConfig
from server.stimuli.images import open_rgb
from server.stimuli.models import UnknownLayer
from server.stimuli.units import (
    LayerCapture,
    UnitOutOfRange,
    UnitRef,
    check_units,
    count_forward_hooks,
    layer_depths,
    sample_units,
)
from server.stimuli.visualize import (
    FourierImages,
    draw_transforms,
    measure_units,
    render_visualizations,
    transform_batch,
)

LAYERS = ["_blocks.3", "_blocks.10"]


@pytest.fixture(scope="module")
def units(lite0) -> list[UnitRef]:
    return sample_units(lite0, LAYERS, 3, seed=1)


@pytest.fixture(scope="module")
def pool_with_corrupt_file(demo_pool: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pool-corrupt")
    for path in sorted(demo_pool.glob("*.jpg")):
        shutil.copy(path, folder / path.name)
    (folder / "zz_truncated.jpg").write_bytes((demo_pool / path.name).read_bytes()[:200])
    return folder


@pytest.fixture(scope="module")
def table(lite0, units, pool_with_corrupt_file, tmp_path_factory):
    cache = tmp_path_factory.mktemp("activation-cache")
    return collect_activations(lite0, pool_with_corrupt_file, units, cache, batch_size=16)


# --- units -------------------------------------------------------------------------------------


def test_units_are_seeded_distinct_and_in_range(lite0, units):
    assert units == sample_units(lite0, LAYERS, 3, seed=1)
    assert units != sample_units(lite0, LAYERS, 3, seed=2)
    assert [u.layer for u in units] == ["_blocks.3"] * 3 + ["_blocks.10"] * 3
    assert all(0 <= u.index < 40 for u in units[:3]) and all(0 <= u.index < 112 for u in units[3:])
    assert len(set(units)) == 6
    # Adding a layer leaves the other layers' units unchanged.
    assert sample_units(lite0, ["_blocks.3"], 3, seed=1) == units[:3]
    depths = layer_depths(lite0, LAYERS)
    assert 0 < depths["_blocks.3"] < depths["_blocks.10"] < 1


def test_bad_layer_and_unit_errors(lite0):
    with pytest.raises(UnknownLayer, match="_blocks.3.*psychinterp models layers"):
        sample_units(lite0, ["_blocks.99"], 2, seed=0)
    with pytest.raises(UnitOutOfRange, match="has 40 units"):
        sample_units(lite0, ["_blocks.3"], 41, seed=0)
    with pytest.raises(UnitOutOfRange, match=r"valid: 0\.\.39"):
        check_units(lite0, [UnitRef("efficientnet-lite0", "_blocks.3", 40)])


def test_capture_removes_hooks_even_after_an_error(lite0):
    with pytest.raises(RuntimeError), LayerCapture(lite0, LAYERS) as capture:
        assert count_forward_hooks(lite0.module) == 2
        capture.run(torch.zeros(1, 5, 64, 64))  # wrong channel count
    assert count_forward_hooks(lite0.module) == 0


# --- activations -------------------------------------------------------------------------------


def test_activations_match_a_plain_forward_and_skip_corrupt_files(lite0, units, table):
    assert table.skipped == ["zz_truncated.jpg"]
    assert len(table.image_ids) == 96 and "zz_truncated.jpg" not in table.image_ids
    assert table.values["_blocks.3"].dtype == np.float16
    assert table.values["_blocks.3"].shape == (96, 3)
    pre = lite0.preprocessing.pil_to_input()
    x = torch.stack([pre(open_rgb(table.files[i])) for i in (0, 50)])
    outputs = {}
    handle = lite0.get_layer("_blocks.10").register_forward_hook(
        lambda _m, _i, out: outputs.setdefault("out", out)
    )
    with torch.inference_mode():
        lite0.module(x)
    handle.remove()
    expected = outputs["out"].mean(dim=(2, 3))[:, units[4].index].numpy()
    np.testing.assert_allclose(table.of(units[4])[[0, 50]], expected, rtol=2e-3, atol=2e-3)
    assert count_forward_hooks(lite0.module) == 0


def test_activations_resume_after_interruption(lite0, units, pool_with_corrupt_file, tmp_path):
    first = collect_activations(lite0, pool_with_corrupt_file, units, tmp_path, batch_size=32)
    chunks = sorted(tmp_path.rglob("chunk-*.npz"))
    assert len(chunks) == 4  # 97 files in batches of 32
    chunks[1].unlink()  # as if killed during the second batch
    calls = []
    resumed = collect_activations(
        lite0,
        pool_with_corrupt_file,
        units,
        tmp_path,
        batch_size=32,
        progress=lambda *args: calls.append(args),
    )
    assert calls == [("activations", 97, 97)]  # only the missing batch was computed
    for layer in first.values:
        np.testing.assert_array_equal(first.values[layer], resumed.values[layer])


# --- exemplars ---------------------------------------------------------------------------------


def test_exemplar_selection_invariants(units, table):
    k, n_batches = 4, 3
    for i, unit in enumerate(units):
        acts = table.of(unit)
        batches = select_exemplars(acts, k, n_batches, seed=i)
        assert batches == select_exemplars(acts, k, n_batches, seed=i)
        seen: set[int] = set()
        for batch in batches:
            images = batch.all_images()
            assert len(images) == len(set(images)) == 2 * k + 2
            assert not seen & (set(batch.reference_max) | set(batch.reference_min))
            seen |= set(batch.reference_max) | set(batch.reference_min)
            ref_max, ref_min = acts[batch.reference_max], acts[batch.reference_min]
            assert list(ref_max) == sorted(ref_max, reverse=True)
            assert list(ref_min) == sorted(ref_min)
            assert ref_max.min() >= acts[batch.query_max] >= acts[batch.query_min]
            assert acts[batch.query_min] >= ref_min.max()
        order = np.argsort(-acts, kind="stable")
        # References are exactly the extremes; queries the next band on each side.
        assert {j for b in batches for j in b.reference_max} == set(order[: k * n_batches])
        assert {b.query_max for b in batches} == set(order[k * n_batches : (k + 1) * n_batches])
        assert {j for b in batches for j in b.reference_min} == set(order[-k * n_batches :])
    other_seed = select_exemplars(table.of(units[0]), k, n_batches, seed=99)
    assert other_seed != select_exemplars(table.of(units[0]), k, n_batches, seed=0)


def test_exemplars_need_enough_images():
    with pytest.raises(NotEnoughImages, match="need 40 distinct images"):
        select_exemplars(np.arange(39.0), k=9, n_batches=2, seed=0)


# --- feature visualizations --------------------------------------------------------------------


def _fv_config(**overrides) -> FVConfig:
    values = {"steps": 24, "image_size": 64, "render_size": 96, "n_diverse": 0, "early_stop": False}
    return FVConfig(**{**values, **overrides})


def test_fourier_parameterization_is_lucents():
    from lucent.optvis import param

    params, image_f = param.image(32, batch=2)
    ours = FourierImages(params[0].detach().clone(), 32)
    torch.testing.assert_close(ours(), image_f())


def test_per_sample_transforms_differ_within_a_batch_and_identity_is_exact():
    config = _fv_config()
    images = torch.rand(4, 3, 32, 32)
    draws = draw_transforms(config, 4, seed=0, step=1)
    out = transform_batch(images.expand(4, -1, -1, -1).clone()[:1].repeat(4, 1, 1, 1), draws, 8, 48)
    assert out.shape == (4, 3, 48, 48)
    assert not torch.allclose(out[0], out[1])
    identity = draw_transforms(
        _fv_config(jitter=0, jitter_after=0, scales=[1], angles=[0]), 4, 0, 1
    )
    torch.testing.assert_close(transform_batch(images, identity, 0, 32), images, atol=1e-5, rtol=0)


def test_max_visualization_beats_noise_and_min_and_leaks_no_hooks(lite0, units):
    chosen = [units[0], units[4]]
    results = render_visualizations(lite0, chosen, _fv_config(n_diverse=2, diversity_weight=1.0))
    assert count_forward_hooks(lite0.module) == 0
    by_key = {(v.unit, v.direction): v for v in results}
    noise = measure_units(
        lite0,
        torch.rand(len(chosen), 3, 64, 64, generator=torch.Generator().manual_seed(0)),
        chosen,
    )
    for unit, noise_act in zip(chosen, noise, strict=True):
        vmax, vmin = by_key[(unit, "max")], by_key[(unit, "min")]
        assert vmax.images.shape == (3, 64, 64, 3)
        assert 0 <= vmax.images.min() and vmax.images.max() <= 1
        assert vmax.activations.min() > noise_act
        assert vmax.activations.min() > vmin.activations.max()
        # the objective rises over the steps
        assert vmax.history[-5:].mean() > vmax.history[:5].mean()


def test_batch_size_does_not_change_the_trajectories(lite0, units):
    chosen = [units[1], units[5]]
    one = render_visualizations(lite0, chosen, _fv_config(batch_size=1), seed=3)
    eight = render_visualizations(lite0, chosen, _fv_config(batch_size=8), seed=3)
    assert [(v.unit, v.direction) for v in one] == [(v.unit, v.direction) for v in eight]
    for a, b in zip(one, eight, strict=True):
        np.testing.assert_allclose(a.history, b.history, rtol=1e-2, atol=1e-2)
        assert a.history[-1] > a.history[0] and b.history[-1] > b.history[0]
    assert count_forward_hooks(lite0.module) == 0


def test_unknown_direction_is_rejected(lite0, units):
    with pytest.raises(AppError, match="max or min"):
        render_visualizations(lite0, units[:1], _fv_config(), directions=("up",))


def test_batches_hold_one_layer_on_cpu_and_share_layers_on_gpu():
    from server.stimuli.visualize import _chunks, plan_groups

    units = [UnitRef("m", layer, i) for layer in ("a", "b") for i in range(3)]
    groups = plan_groups(units, n_diverse=1, directions=("max", "min"), alpha=1.0)  # 2 each
    by_layer = _chunks(groups, batch_size=8)  # 12 entries per layer
    assert [[g.unit.layer for g in c] for c in by_layer] == [
        ["a"] * 4,
        ["a"] * 2,
        ["b"] * 4,
        ["b"] * 2,
    ]
    shared = _chunks(groups, batch_size=8, split_layers=False)
    assert [sum(g.size for g in c) for c in shared] == [8, 8, 8]
    assert {g.unit.layer for g in shared[1]} == {"a", "b"}
    # Every group is rendered exactly once either way.
    for chunks in (by_layer, shared):
        assert sorted(g.first_entry for c in chunks for g in c) == [g.first_entry for g in groups]
