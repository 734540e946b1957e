"""Practice and catch trials show material no main trial shows, for both example studies
(generated on the CPU with tiny settings), and the manifest lists what was reserved."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from server.config import Settings
from server.db.migrate import upgrade_database
from server.db.models import StimulusSet, Trial, Unit
from server.db.session import make_engine, make_session_factory, session_scope
from server.studies.service import create_study, generate_study

STUDIES = Path(__file__).parents[1] / "studies"
TINY_FV = {
    "steps": 24,
    "image_size": 40,
    "crop_size": 32,
    "render_size": 64,
    "n_diverse": 2,
    "batch_size": 64,
    "early_stop": False,
    "diversity_search": {"enabled": False},
    "non_diverse_runs": 1,
    "no_alpha_fallback": "keep_diverse",
}


def _tiny(name: str) -> str:
    config = yaml.safe_load((STUDIES / name).read_text())
    generation = config["generation"]
    generation.update(
        model="efficientnet-lite0",
        layers=["_blocks.4"],
        units_per_layer=2,
        images="demo",
        demo_pool_per_photo=10,
        demo_pool_size=192,
        n_batches=2,
        invalid_units="rerender",
    )
    generation["fv"] = {**generation["fv"], **TINY_FV}
    config["trials"]["main"] = 4
    config["trials"]["catch"] = {"count": 2}
    return yaml.safe_dump(config, sort_keys=False)


@pytest.mark.parametrize("name", ["imi-demo.yaml", "borowski2021-exp1.yaml"])
def test_practice_and_catch_material_is_disjoint_from_main(name, tmp_path, study_data_dir):
    assert yaml.safe_load((STUDIES / name).read_text())["generation"]["reserved_units_per_layer"]
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    settings = Settings(database_url=url, data_dir=study_data_dir, secret_key="k")
    upgrade_database(url)
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as db:
        study = create_study(db, settings, _tiny(name), name)
        generate_study(db, settings, study)
        trials = db.scalars(select(Trial).where(Trial.study_id == study.id)).all()
        main = [t for t in trials if t.kind == "main"]
        reserved = [t for t in trials if t.kind in ("practice", "catch")]
        assert main and {t.kind for t in reserved} == {"practice", "catch"}
        assert not {t.unit_id for t in main} & {t.unit_id for t in reserved}
        # (A photo may still be among the extremes of two units, as in IMI's ImageNet
        # pool; no unit and so no trial's reference set is shared.)
        main_batches = {(t.unit_id, t.details["batch"]) for t in main}
        assert not main_batches & {(t.unit_id, t.details["batch"]) for t in reserved}
        assert {t.details["material"] for t in reserved} == {"reserved_units"}
        manifest = db.get(StimulusSet, study.stimulus_set_id).manifest
        listed = {(u["layer"], u["unit"]) for u in manifest["reserved"]["units"]}
        used = {(u.layer, u.index) for u in (db.get(Unit, t.unit_id) for t in reserved)}
        assert used <= listed and len(listed) == 1
        assert [u["reserved"] for u in manifest["units"]].count(True) == 1
    engine.dispose()


def test_generate_limit_units_makes_a_smoke_run(tmp_path, study_data_dir):
    from typer.testing import CliRunner

    from server.cli import app as cli_app

    config = yaml.safe_load((STUDIES / "imi-demo.yaml").read_text())
    config["generation"]["fv"] = {"enabled": False}
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(config))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    result = CliRunner().invoke(
        cli_app,
        ["generate", str(path), "--limit-units", "1", "--database-url", url],
        env={"PSYCHINTERP_DATA_DIR": str(study_data_dir)},
    )
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as db:
        manifest = db.scalars(select(StimulusSet)).one().manifest
    engine.dispose()
    assert sorted(u["layer"] for u in manifest["units"]) == ["_blocks.4"] * 2 + ["_blocks.9"] * 2
    assert len(manifest["reserved"]["units"]) == 2
