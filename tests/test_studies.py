"""Study definitions, design rows and the lifecycle (draft → live → paused → closed)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from server.cli import app as cli_app
from server.db.migrate import upgrade_database
from server.db.models import AuditEvent
from server.db.session import make_engine, make_session_factory, session_scope
from server.errors import Conflict
from server.studies.assignment import SlotInfo, balanced_latin_square, design_rows
from server.studies.audit import verify_audit_chain
from server.studies.loading import StudyConfigError, load_study_file, parse_study_yaml
from server.studies.service import (
    create_study,
    generate_study,
    launch_study,
    pause_study,
    update_draft,
)

STUDIES = Path(__file__).parents[1] / "studies"


@pytest.mark.parametrize("name", ["imi-demo.yaml", "borowski2021-exp1.yaml"])
def test_example_studies_validate(name):
    config, _ = load_study_file(STUDIES / name)
    assert config.paradigm == "imi" and config.generation.k_references == 9


def test_borowski_reproduces_the_papers_counts():
    config, _ = load_study_file(STUDIES / "borowski2021-exp1.yaml")
    assert config.trials.practice.count == 15 and config.n_catch == 18
    assert config.trials.main == 135 and config.conditions == ["none", "natural", "synthetic"]


def test_broken_yaml_names_file_line_and_field(tmp_path):
    text = (STUDIES / "imi-demo.yaml").read_text().replace("  main: 12", "  main: -3")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text)
    line = text.splitlines().index("  main: -3") + 1
    result = CliRunner().invoke(cli_app, ["study", "validate", str(broken)])
    assert result.exit_code == 1
    assert f"{broken}:{line}: trials.main: Input should be greater than or equal to 1" in (
        result.output
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda t: t.replace("conditions: [natural, synthetic]", "conditions: [natural, bogus]"),
            "conditions[1]: Input should be",
        ),
        (lambda t: t + "unknown_field: 1\n", "unknown_field: Extra inputs are not permitted"),
        (lambda t: t.replace("title:", "title: [unclosed"), "not valid YAML"),
        (lambda t: t.replace("    enabled: true", "    enabled: false"), "feature visualizations"),
    ],
)
def test_schema_errors_are_specific(edit, expected):
    with pytest.raises(StudyConfigError) as info:
        parse_study_yaml(edit((STUDIES / "imi-demo.yaml").read_text()), "x.yaml")
    assert expected in info.value.message and info.value.message.startswith("x.yaml:")


def test_balanced_latin_square_orders_each_pair_equally():
    square = balanced_latin_square(4)
    assert all(sorted(row) == [0, 1, 2, 3] for row in square)
    pairs = Counter((row[i], row[i + 1]) for row in square for i in range(3))
    assert set(pairs.values()) == {1} and len(pairs) == 12


@pytest.mark.parametrize("mode", ["within", "between"])
def test_design_rows_cover_every_slot_once(mode):
    config = parse_study_yaml((STUDIES / "imi-demo.yaml").read_text(), "x.yaml")
    config = config.model_copy(
        update={"counterbalancing": config.counterbalancing.model_copy(update={"conditions": mode})}
    )
    slots = [
        SlotInfo(f"{u}-{c}-{b}", "main", c, u, [], [], False, b)
        for u in range(6)
        for c in config.conditions
        for b in range(2)
    ]
    rows = design_rows(config, slots)
    assert all(len(row) == 12 for row in rows) and len(rows) == 2
    assert sorted(tid for row in rows for tid in row) == sorted(s.trial_id for s in slots)
    for row in rows:
        conditions = Counter(tid.split("-")[1] for tid in row)
        if mode == "within":  # each unit once per condition pass, conditions balanced
            assert conditions == {"natural": 6, "synthetic": 6}
        else:
            assert len(conditions) == 1


def test_lifecycle_freezes_and_audits(database_url, tmp_path, study_data_dir, fast_study_yaml):
    from server.config import Settings

    settings = Settings(database_url=database_url, data_dir=study_data_dir, secret_key="k")
    upgrade_database(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with session_scope(factory) as db:
        study = create_study(db, settings, fast_study_yaml, "fast.yaml")
        with pytest.raises(Conflict):
            create_study(db, settings, fast_study_yaml, "fast.yaml")
        with pytest.raises(Conflict, match="generate"):
            launch_study(db, study)
        generate_study(db, settings, study)
        launch_study(db, study)
        frozen = dict(study.frozen)
        assert frozen["config_hash"] == study.config_hash and frozen["seed"] == 2023
        assert (
            len(frozen["images_sha256"]) == 64 and frozen["n_trials"] == 5 + 24 + 2
        )  # catch: 2 reserved units, natural only
        with pytest.raises(Conflict, match="live"):
            update_draft(db, study, fast_study_yaml, "fast.yaml")
        with pytest.raises(Conflict):
            generate_study(db, settings, study)
        pause_study(db, study)
        launch_study(db, study)  # resume keeps the frozen record
        assert study.frozen == frozen

        # Same config, new slug: regenerated bit for bit (trials and images).
        twin = create_study(
            db, settings, fast_study_yaml.replace("slug: imi-demo", "slug: imi-twin"), "twin.yaml"
        )
        generate_study(db, settings, twin)
        launch_study(db, twin)
        assert twin.frozen["trials_sha256"] == frozen["trials_sha256"]
        assert twin.frozen["images_sha256"] == frozen["images_sha256"]

        actions = db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert actions[:5] == [
            "study.create",
            "study.generate",
            "study.launch",
            "study.pause",
            "study.launch",
        ]
        assert verify_audit_chain(db) is None
        db.scalars(select(AuditEvent).order_by(AuditEvent.id)).first().payload = {"x": 1}
        db.flush()
        assert verify_audit_chain(db) is not None  # tampering breaks the chain
        db.rollback()
    engine.dispose()
