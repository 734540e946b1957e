"""load_study and export on real SQLite and PostgreSQL databases, rows written directly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import analysis
from analysis.export import PARQUET_SCHEMA, export_study
from analysis.load import EXPORT_COLUMNS
from server.cli import app
from server.db import models as m
from server.db.migrate import upgrade_database
from server.db.session import make_engine
from server.paradigms.base import trial_row
from server.paradigms.imi import CHOICES

runner = CliRunner()
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _image(db: Session, n: int) -> str:
    sha = f"{n:064x}"
    db.add(m.Image(sha256=sha, kind="natural", media_type="image/png", width=8, height=8))
    return sha


def make_study(url: str, answers: dict[str, list[tuple[str, str, bool]]]) -> None:
    """A study with one model, two units, trials per (kind, condition, unit), and sessions
    whose answers are given as (kind, condition, correct) in trial order."""
    upgrade_database(url)
    engine = make_engine(url)
    with Session(engine) as db:
        model = m.VisionModel(name="efficientnet-lite0", source="builtin", spec={})
        units = [m.Unit(model=model, layer="blocks.2", index=i, layer_depth=0.4) for i in (3, 7)]
        study = m.Study(slug="imi", title="IMI", config_yaml="", config={}, config_hash="0" * 64)
        db.add_all([model, *units, study])
        db.flush()
        n_images = 0
        trials: dict[tuple[str, str, int], m.Trial] = {}
        for kind, condition in {(k, c) for rows in answers.values() for k, c, _ in rows}:
            for u, unit in enumerate(units):
                images = {
                    "query_max": _image(db, n_images + 1),
                    "query_min": _image(db, n_images + 2),
                }
                trial = trial_row(
                    study.id, "imi", kind, condition, unit.id, 0, images, CHOICES, "query_max", {}
                )
                n_images += 2
                trials[kind, condition, u] = trial
                db.add(trial)
        db.flush()
        for s, (name, rows) in enumerate(answers.items()):
            session = m.ParticipantSession(
                id=name,
                study_id=study.id,
                token_hash=f"{s:064x}",
                status="active" if name.startswith("active") else "completed",
                excluded=name.startswith("excluded"),
                started_at=START,
                completed_at=START + timedelta(seconds=600),
            )
            db.add(session)
            db.flush()
            for position, (kind, condition, correct) in enumerate(rows):
                trial = trials[kind, condition, position % 2]
                assignment = m.Assignment(
                    session_id=name,
                    trial_id=trial.id,
                    position=position,
                    max_is_a=position % 3 == 0,
                )
                db.add(assignment)
                db.flush()
                chose_a = correct == assignment.max_is_a
                db.add(
                    m.Response(
                        session_id=name,
                        assignment_id=assignment.id,
                        trial_id=trial.id,
                        idempotency_key=f"{name}-{position}",
                        choice="a" if chose_a else "b",
                        confidence=1 + position % 3,
                        rt_ms=1500.0 + position,
                        correct=correct,
                        client_data={"time_elapsed_ms": 1000 * position},
                        received_at=START + timedelta(seconds=10 * position),
                        record_hash="0" * 64,
                    )
                )
        db.commit()
    engine.dispose()


ANSWERS = {
    "alice": [
        ("practice", "natural", True),
        ("main", "natural", True),
        ("main", "natural", True),
        ("main", "synthetic", False),
        ("main", "synthetic", True),
        ("catch", "natural", True),
    ],
    "bob": [
        ("main", "natural", True),
        ("main", "natural", False),
        ("main", "synthetic", False),
        ("main", "synthetic", False),
        ("catch", "natural", True),
    ],
    "excluded-carol": [("main", "natural", False), ("main", "synthetic", False)],
}


def test_load_study_tidy_frame(database_url):
    make_study(database_url, ANSWERS)
    frame = analysis.load_study(database_url, "imi")
    assert len(frame) == 13
    assert list(frame.columns[:11]) == list(analysis.columns.STANDARD_COLUMNS)
    alice = frame[frame["participant"] == "alice"]
    assert alice["trial_kind"].tolist() == ["practice", "main", "main", "main", "main", "catch"]
    assert alice["correct"].tolist() == [True, True, True, False, True, True]
    assert set(frame["unit"]) == {"blocks.2:3", "blocks.2:7"}
    assert set(frame["model"]) == {"efficientnet-lite0"}
    assert frame.loc[frame["participant"] == "excluded-carol", "excluded"].all()
    assert (frame["duration_s"] == 600).all()
    # Scores: carol is excluded by the dashboard flag; per-participant means.
    rules = analysis.ExclusionRules(min_choices_per_row=None)
    kept, report = analysis.apply_exclusions(frame, rules)
    assert report.participants == {"excluded-carol": ["manual"]}
    table = analysis.score_table(analysis.main_trials(kept), ["condition"], 100)
    accuracy = table.set_index("condition")["accuracy"]
    assert accuracy["natural"] == pytest.approx((1.0 + 0.5) / 2)
    assert accuracy["synthetic"] == pytest.approx((0.5 + 0.0) / 2)


def test_unknown_study_lists_known(database_url):
    make_study(database_url, {"alice": ANSWERS["alice"]})
    result = runner.invoke(app, ["analyze", "nope", "--database-url", database_url])
    assert result.exit_code == 1
    assert "no study 'nope' in this database; studies: imi" in result.output


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_streams_long_format(database_url, tmp_path, fmt):
    make_study(database_url, ANSWERS)
    out = tmp_path / f"imi.{fmt}"
    result = runner.invoke(
        app,
        ["export", "imi", "--format", fmt, "--output", str(out), "--database-url", database_url],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote 13 responses of 3 participants to {out}" in result.output
    frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert list(frame.columns) == list(EXPORT_COLUMNS)
    assert len(frame) == 13
    bob = frame[frame["participant"] == "bob"].reset_index(drop=True)
    assert bob["trial_index"].tolist() == [0, 1, 2, 3, 4]
    assert bob["time_elapsed_ms"].tolist() == [0, 1000, 2000, 3000, 4000]
    first = bob.iloc[0]  # max_is_a at position 0, answered correctly: chose a = the max
    assert first["choice"] == "a" and first["stimulus_a"] == first["stimulus_max"]
    assert len(first["stimulus_max"]) == 64


def test_export_small_chunks_and_empty_study(database_url, tmp_path):
    make_study(database_url, ANSWERS)
    result = export_study(database_url, "imi", "parquet", tmp_path / "a.parquet", chunk_size=4)
    assert (result.rows, result.participants) == (13, 3)
    assert pq.read_table(result.path).num_rows == 13
    assert tuple(PARQUET_SCHEMA.names) == EXPORT_COLUMNS
    with Session(make_engine(database_url)) as db:
        db.add(m.Study(slug="empty", title="E", config_yaml="", config={}, config_hash="1" * 64))
        db.commit()
    empty = export_study(database_url, "empty", "csv", tmp_path / "e.csv")
    assert empty.rows == 0 and pd.read_csv(empty.path).columns.tolist() == list(EXPORT_COLUMNS)
    assert analysis.load_study(database_url, "empty").empty


def test_cli_analyze_study_json(database_url):
    make_study(database_url, ANSWERS)
    result = runner.invoke(
        app,
        [
            "analyze",
            "imi",
            "--database-url",
            database_url,
            "--format",
            "json",
            "--bootstrap",
            "100",
            "--rule",
            "min_choices_per_side=off",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["by_condition"]["natural"]["accuracy"] == pytest.approx(0.75)
    assert data["by_condition"]["natural"]["n_participants"] == 2
    assert data["excluded"]["participants_excluded"] == 1
    assert data["excluded"]["rules"]["min_catch_accuracy"]["applied"] is True


def test_require_completed_rule(database_url):
    make_study(database_url, {"alice": ANSWERS["alice"], "active-dave": ANSWERS["bob"]})
    frame = analysis.load_study(database_url, "imi")
    assert set(frame["session_status"]) == {"completed", "active"}
    rules = analysis.exclusions.rules_from_options(
        ["require_completed=true", "min_choices_per_side=off"]
    )
    kept, report = analysis.apply_exclusions(frame, rules)
    assert report.participants == {"active-dave": ["incomplete"]}
    assert set(kept["participant"]) == {"alice"}
