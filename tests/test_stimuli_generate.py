"""generate_stimuli and `psychinterp generate` on real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from typer.testing import CliRunner

from server.cli import app as cli_app
from server.db.migrate import upgrade_database
from server.db.models import Image, Stimulus, StimulusSet, Unit
from server.db.session import make_engine, make_session_factory, session_scope
from server.stimuli.generate import GenerationConfig, GenerationFailed, generate_stimuli
from server.stimuli.store import ImageStore

# The fast natural-only configuration (also what other helpers' tests use).
FAST = {
    "model": "efficientnet-lite0",
    "layers": ["_blocks.3", "_blocks.10"],
    "units_per_layer": 2,
    "seed": 0,
    "images": "demo",
    "demo_pool_per_photo": 6,
    "demo_pool_size": 160,
    "k_references": 9,
    "n_batches": 2,
    "fv": {"enabled": False},
}


@pytest.fixture
def factory(settings):
    upgrade_database(settings.database_url)
    return make_session_factory(make_engine(settings.database_url))


def test_natural_only_set_has_every_role_and_no_repeats(settings, factory):
    config = GenerationConfig.model_validate(FAST)
    with session_scope(factory) as db:
        stimulus_set = generate_stimuli(db, settings, config)
        set_id = stimulus_set.id
    with session_scope(factory) as db:
        row = db.get(StimulusSet, set_id)
        assert row.status == "ready" and row.config_hash == config.config_hash()
        stimuli = db.scalars(select(Stimulus).where(Stimulus.stimulus_set_id == set_id)).all()
        units = db.scalars(select(Unit)).all()
        assert len(units) == 4 and all(0 < u.layer_depth < 1 for u in units)
        per_trial = Counter((s.unit_id, s.batch, s.role) for s in stimuli)
        for unit in units:
            for batch in (0, 1):
                assert per_trial[(unit.id, batch, "reference_max")] == 9
                assert per_trial[(unit.id, batch, "reference_min")] == 9
                assert per_trial[(unit.id, batch, "query_max")] == 1
                assert per_trial[(unit.id, batch, "query_min")] == 1
                images = [
                    s.image_sha256 for s in stimuli if (s.unit_id, s.batch) == (unit.id, batch)
                ]
                assert len(images) == len(set(images)) == 20
                acts = {
                    s.role: s.activation
                    for s in stimuli
                    if (s.unit_id, s.batch) == (unit.id, batch) and s.rank == 0
                }
                assert acts["query_max"] > acts["query_min"]
        assert {s.source for s in stimuli} == {"natural"}
        store = ImageStore(settings.stimuli_dir)
        for image in db.scalars(select(Image)).all():
            path, media_type = store.locate(image.sha256)
            assert path is not None and media_type == "image/jpeg" and image.width == 224
    manifest_file = settings.data_dir / "stimulus-sets" / set_id / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    assert manifest == row.manifest
    assert (manifest["units"][0]["layer"], manifest["units"][0]["valid"]) == ("_blocks.3", True)
    assert set(manifest["units"][0]) >= {
        "model",
        "layer",
        "unit",
        "fv_max_activation",
        "fv_min_activation",
        "natural_max_activation",
        "natural_min_activation",
        "valid",
    }
    # A second run reuses the cached activations and the stored images.
    with session_scope(factory) as db:
        again = generate_stimuli(db, settings, config)
        assert again.manifest["units"] == manifest["units"]


def test_failure_marks_the_set_failed_with_no_stimuli(settings, factory):
    config = GenerationConfig.model_validate({**FAST, "k_references": 60})  # 96 images: too few
    db = factory()
    with pytest.raises(GenerationFailed, match="distinct images") as info:
        generate_stimuli(db, settings, config)
    db.commit()
    db.close()
    with session_scope(factory) as db:
        assert db.get(StimulusSet, info.value.stimulus_set_id).status == "failed"
        assert db.scalar(select(func.count()).select_from(Stimulus)) == 0


def test_config_validation_messages():
    with pytest.raises(ValidationError, match="extra"):
        GenerationConfig.model_validate({**FAST, "unit_per_layer": 3})
    with pytest.raises(ValidationError, match="layers must be distinct"):
        GenerationConfig.model_validate({**FAST, "layers": ["_blocks.3", "_blocks.3"]})
    with pytest.raises(ValidationError, match="scales must all be positive"):
        GenerationConfig.model_validate({**FAST, "fv": {"scales": [0, 1]}})
    assert (
        GenerationConfig.model_validate(FAST).config_hash()
        == GenerationConfig.model_validate(dict(reversed(FAST.items()))).config_hash()
    )


def _write_study(path: Path, generation: str) -> Path:
    path.write_text(f"title: ignored here\ngeneration:\n{generation}")
    return path


def test_cli_generate_errors_name_file_line_and_layer(tmp_path, sqlite_url):
    runner = CliRunner()
    bad_field = _write_study(tmp_path / "a.yaml", "  layers: [_blocks.3]\n  units_per_layer: -1\n")
    result = runner.invoke(cli_app, ["generate", str(bad_field), "--database-url", sqlite_url])
    assert result.exit_code == 1
    assert f"{bad_field}:4: generation.units_per_layer" in result.output
    bad_yaml = _write_study(tmp_path / "b.yaml", "  layers: [_blocks.3\n")
    result = runner.invoke(cli_app, ["generate", str(bad_yaml), "--database-url", sqlite_url])
    assert result.exit_code == 1 and "not valid YAML" in result.output
    bad_layer = _write_study(tmp_path / "c.yaml", "  layers: [_blocks.99]\n  units_per_layer: 2\n")
    result = runner.invoke(
        cli_app,
        ["generate", str(bad_layer), "--database-url", sqlite_url],
        env={"PSYCHINTERP_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.exit_code == 1
    assert (
        "'_blocks.99' is not in model" in result.output
        and "Valid layers: _conv_stem" in result.output
    )
