"""IMI's diversity-weight search: the control flow, and a real generation that uses it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from server.db.migrate import upgrade_database
from server.db.session import make_engine, make_session_factory, session_scope
from server.stimuli.diversity import AlphaSearch
from server.stimuli.generate import FVConfig, GenerationConfig, generate_stimuli
from server.stimuli.units import sample_units
from server.stimuli.visualize import render_visualizations


def _run(search: AlphaSearch, good) -> AlphaSearch:
    while not search.done:
        search.record(good(search.alpha))
    return search


def test_grows_tenfold_then_bisects_to_the_largest_good_alpha():
    threshold = 37.0
    search = _run(AlphaSearch(1.0, 10.0, 6, 7), lambda a: a <= threshold)
    alphas = [a for a, _ in search.tried]
    assert alphas[:3] == [1.0, 10.0, 100.0]
    assert len(alphas) == 3 + 7
    assert search.best is not None and search.best <= threshold
    assert threshold - search.best < 90 / 2**7
    assert search.too_strong is not None and search.too_strong > threshold


def test_always_good_stops_at_the_last_increase_and_never_good_bisects_towards_zero():
    always = _run(AlphaSearch(1.0, 10.0, 3, 7), lambda a: True)
    assert [a for a, _ in always.tried] == [1.0, 10.0, 100.0, 1000.0]
    assert always.best == 1000.0
    never = _run(AlphaSearch(1.0, 10.0, 3, 4), lambda a: False)
    assert [a for a, _ in never.tried] == [1.0, 0.5, 0.25, 0.125, 0.0625]
    assert never.best is None


def test_a_group_renders_the_same_alone_or_with_others(lite0):
    units = sample_units(lite0, ["_blocks.3"], 2, seed=4)
    config = FVConfig(
        steps=8, image_size=48, render_size=64, n_diverse=2, early_stop=False, diversity_weight=3
    )
    everything = render_visualizations(lite0, units, config, seed=2)
    alone = render_visualizations(
        lite0, units, config, seed=2, diversity_weights={(units[1], "min"): 3.0}
    )
    assert [(v.unit, v.direction) for v in alone] == [(units[1], "min")]
    same = next(v for v in everything if (v.unit, v.direction) == (units[1], "min"))
    np.testing.assert_allclose(alone[0].history, same.history, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(alone[0].images, same.images, rtol=1e-4, atol=1e-4)


# The search happens in the renderer; generation's database writes are tested on both
# backends in tests/test_stimuli_generate.py, so one backend here keeps CI short.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_generation_searches_alpha_per_unit_and_direction_and_records_it(settings):
    upgrade_database(settings.database_url)
    factory = make_session_factory(make_engine(settings.database_url))
    config = GenerationConfig.model_validate(
        {
            "model": "efficientnet-lite0",
            "layers": ["_blocks.3"],
            "units_per_layer": 1,
            "images": "demo",
            "demo_pool_per_photo": 6,
            "demo_pool_size": 160,
            "k_references": 9,
            "fv": {
                "steps": 32,
                "image_size": 64,
                "render_size": 128,
                "n_diverse": 2,
                "early_stop": False,
                "diversity_search": {"enabled": True, "max_increases": 1, "bisect_steps": 1},
            },
        }
    )
    with session_scope(factory) as db:
        set_id = generate_stimuli(db, settings, config).id
    manifest = json.loads(
        (settings.data_dir / "stimulus-sets" / set_id / "manifest.json").read_text()
    )
    (unit,) = manifest["units"]
    # The contact sheet (one unit row, 4 blocks of up to 4 images) exists iff a unit is kept.
    overview = settings.data_dir / "stimulus-sets" / set_id / "overview.png"
    assert overview.exists() == unit["valid"]
    if unit["valid"]:
        with Image.open(overview) as sheet:
            assert sheet.format == "PNG" and sheet.width > 4 * sheet.height
    for direction in ("max", "min"):
        trail = unit["diversity_search"][direction]
        assert 2 <= len(trail) <= 3 and trail[0][0] == 1.0
        good = [alpha for alpha, ok in trail if ok]
        chosen = unit[f"diversity_weight_{direction}"]
        # the kept render is the largest good alpha, or the smallest tried if none was good
        assert chosen == (max(good) if good else min(a for a, _ in trail))
        assert unit[f"diverse_{direction}_beat_natural"] == bool(good)


def test_search_settings_are_validated():
    with pytest.raises(ValueError, match="factor"):
        FVConfig.model_validate({"diversity_search": {"enabled": True, "factor": 1}})
