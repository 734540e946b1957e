"""FV presets: values equal the fidelity table, explicit fields win, bad names are located,
and the `imi` preset's mechanics (crop, gradient-norm stop, best of n non-diverse runs,
non-diverse fallback) on the real EfficientNet-Lite0 with tiny settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from server.cli import app as cli_app
from server.stimuli.generate import FVConfig, _Computed, _use_non_diverse_runs
from server.stimuli.presets import FV_PRESETS
from server.stimuli.units import sample_units
from server.stimuli.visualize import draw_transforms, render_visualizations, transform_batch

ROOT = Path(__file__).resolve().parents[1]


def _table_rows() -> list[list[str]]:
    text = (ROOT / "docs" / "fidelity.md").read_text()
    section = text.split("## Preset values", 1)[1].split("\n## ", 1)[0]  # up to the next section
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `"):
            rows.append(cells)
    return rows


def _field(config: FVConfig, dotted: str):
    value = config.model_dump()
    for part in dotted.split("."):
        value = value[part]
    return value


def test_preset_values_equal_the_fidelity_table():
    rows = _table_rows()
    fields = {row[0].strip("`") for row in rows}
    assert len(rows) >= 20
    # Every field a preset sets appears in the table.
    for preset in FV_PRESETS.values():
        for key, value in preset.items():
            names = {f"{key}.{k}" for k in value} if isinstance(value, dict) else {key}
            assert names <= fields, f"{names - fields} missing from docs/fidelity.md"
    for name, column in (("imi", 1), ("borowski", 2), ("fast", 3)):
        config = FVConfig(preset=name)
        for row in rows:
            expected = yaml.safe_load(row[column])
            actual = _field(config, row[0].strip("`"))
            if isinstance(expected, list):
                assert [float(v) for v in expected] == pytest.approx(actual), (name, row[0])
            else:
                assert actual == expected, (name, row[0], actual, expected)


def test_explicit_fields_override_the_preset_and_nested_sections_merge():
    config = FVConfig(preset="imi", steps=64, diversity_search={"bisect_steps": 2})
    assert config.steps == 64 and config.jitter == 16 and config.crop_size == 224
    assert config.diversity_search.enabled and config.diversity_search.max_increases == 5
    assert config.diversity_search.bisect_steps == 2
    assert FVConfig().preset == "fast" and FVConfig().image_size == 224
    with pytest.raises(ValueError, match="crop_size .* cannot exceed image_size"):
        FVConfig(preset="imi", image_size=128)
    with pytest.raises(ValueError, match="non_diverse_runs to at least 11"):
        FVConfig(preset="imi", n_diverse=10)


def test_study_validate_names_file_line_for_an_unknown_preset(tmp_path):
    text = (ROOT / "studies" / "imi-demo.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    assert "\n    preset: imi " in text
    bad.write_text(text.replace("\n    preset: imi ", "\n    preset: lucid ", 1))
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if "preset: lucid" in t)
    result = CliRunner().invoke(cli_app, ["study", "validate", str(bad)])
    assert result.exit_code != 0
    assert f"{bad}:{line}: generation.fv.preset" in result.output
    assert "'imi', 'borowski' or 'fast'" in result.output


def test_crop_keeps_the_centre_of_the_transformed_canvas():
    config = FVConfig(jitter=0, jitter_after=0, scales=[1.0], angles=[0.0])
    images = torch.rand(2, 3, 32, 32)
    draws = draw_transforms(config, 2, seed=0, step=1)
    cropped = transform_batch(images, draws, pad=0, out_size=16, crop=16)
    torch.testing.assert_close(cropped, images[..., 8:24, 8:24], atol=1e-5, rtol=0)


def _tiny_imi(**overrides) -> FVConfig:
    values = {
        "preset": "imi",
        "steps": 40,
        "image_size": 72,
        "crop_size": 64,
        "render_size": 96,
        "n_diverse": 2,
        "non_diverse_runs": 3,
        "plateau_min_steps": 4,
        "plateau_window": 4,
        "batch_size": 64,
    }
    return FVConfig(**{**values, **overrides})


def test_imi_preset_renders_cropped_and_stops_on_the_gradient_norm(lite0):
    units = sample_units(lite0, ["_blocks.3"], 1, seed=3)
    never = _tiny_imi(gradient_ratio=1.0, early_stop=False)
    full = render_visualizations(lite0, units, never, seed=1, directions=("max",))[0]
    assert full.images.shape == (3, 64, 64, 3) and full.steps == 40
    settles = _tiny_imi(gradient_ratio=100.0)  # any ratio below 100 counts as settled
    stopped = render_visualizations(lite0, units, settles, seed=1, directions=("max",))[0]
    assert stopped.steps == 8  # first check: two windows of 4 steps


def test_best_non_diverse_run_first_and_fallback_when_no_alpha_passed(lite0):
    units = sample_units(lite0, ["_blocks.3"], 1, seed=3)
    config = _tiny_imi(steps=6, early_stop=False)
    main = render_visualizations(lite0, units, config, seed=0)
    plain = config.model_copy(update={"n_diverse": 0})
    runs = [render_visualizations(lite0, units, plain, seed=s) for s in (11, 12)]
    computed = _Computed(lite0, units, table=None)
    for vis in main:
        computed.visualizations[(vis.unit, vis.direction)] = vis
    unit = units[0]
    computed.alpha_trials = {(unit, "max"): [(1.0, True)], (unit, "min"): [(1.0, False)]}
    _use_non_diverse_runs(computed, config, units, runs)
    candidates = {
        d: [float(v.activations[0]) for v in [*(m for m in main if m.direction == d)]]
        + [float(r[i].activations[0]) for r in runs for i in range(2) if r[i].direction == d]
        for d in ("max", "min")
    }
    vmax, vmin = computed.visualizations[(unit, "max")], computed.visualizations[(unit, "min")]
    assert vmax.activations[0] == pytest.approx(max(candidates["max"]))
    np.testing.assert_allclose(vmax.activations[1:], main[0].activations[1:])  # alpha passed
    assert computed.fallbacks == {(unit, "max"): False, (unit, "min"): True}
    assert list(vmin.activations) == pytest.approx(sorted(candidates["min"]))  # all plain now


@pytest.mark.parametrize(
    "name", ["imi-demo.yaml", "imi2023-natural.yaml", "borowski2021-exp1.yaml"]
)
def test_study_validate_accepts_the_example_studies(name):
    result = CliRunner().invoke(cli_app, ["study", "validate", str(ROOT / "studies" / name)])
    assert result.exit_code == 0, result.output
