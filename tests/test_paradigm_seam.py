"""The paradigm seam (issue 21): registry, `task:` sections keyed on `paradigm`, trials by
role, and migration 0007 carrying existing 2AFC trials over unchanged."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from server import paradigms
from server.app import create_app
from server.config import Settings
from server.db.models import Trial
from server.db.session import make_engine, make_session_factory, session_scope
from server.studies.loading import StudyConfigError, parse_study_yaml
from server.studies.sessions import answers_for_session


def _yaml(fast_study_yaml: str, **changes) -> str:
    config = yaml.safe_load(fast_study_yaml)
    config.update(changes)
    return yaml.safe_dump(config, sort_keys=False)


def test_registry_lists_both_paradigms():
    assert {"imi", "occlusion"} <= set(paradigms.names())
    assert paradigms.get("occlusion").trial_type == "occlusion"
    with pytest.raises(ValueError, match="unknown paradigm 'nope': use one of"):
        paradigms.get("nope")


def test_section_is_validated_for_its_paradigm(fast_study_yaml):
    config = parse_study_yaml(fast_study_yaml, "s.yaml")
    assert config.paradigm == "imi" and config.task.paradigm == "imi"
    with pytest.raises(StudyConfigError, match=r"s\.yaml:\d+: paradigm: .*unknown paradigm"):
        parse_study_yaml(_yaml(fast_study_yaml, paradigm="nope"), "s.yaml")
    mixed = _yaml(fast_study_yaml, task={"paradigm": "occlusion", "patch_fraction": 0.4})
    with pytest.raises(StudyConfigError, match="'occlusion' section but the study's paradigm"):
        parse_study_yaml(mixed, "s.yaml")
    # An occlusion option in a 2AFC study is an unknown field of its section, with its line.
    with pytest.raises(StudyConfigError, match=r"s\.yaml:\d+: task: patch_fraction: Extra"):
        parse_study_yaml(_yaml(fast_study_yaml, task={"patch_fraction": 0.4}), "s.yaml")
    blurred = _yaml(fast_study_yaml, conditions=["natural", "natural_blurred"])
    with pytest.raises(StudyConfigError, match="not conditions of paradigm 'imi'"):
        parse_study_yaml(blurred, "s.yaml")


def _served(client: TestClient, session: dict) -> dict:
    reply = client.get(
        f"/api/v1/sessions/{session['session_id']}/trials/next",
        headers={"Authorization": f"Bearer {session['token']}"},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def _downgraded_copy(source_url: str, target_url: str, revision: str) -> None:
    """The SQLite database at `source_url` copied to `target_url` and downgraded there."""
    import shutil

    from alembic import command

    from server.db.migrate import alembic_config

    shutil.copyfile(source_url.removeprefix("sqlite:///"), target_url.removeprefix("sqlite:///"))
    command.downgrade(alembic_config(target_url), revision)


def test_migrations_carry_2afc_trials_down_and_up(tmp_path, study_data_dir, fast_study_yaml):
    """A 2AFC study with a session, taken down to revision 0006 (before the seam: trials by
    query/reference columns), holds each trial's images in those columns (0011's and 0007's
    downgrades), and after upgrading back (0007 fills the role map, 0011 drops the columns)
    serves and grades the same."""
    from server.db.migrate import upgrade_database
    from server.studies.service import create_study, generate_study, launch_study

    head_url, old_url = f"sqlite:///{tmp_path / 'head.db'}", f"sqlite:///{tmp_path / 'old.db'}"
    settings = Settings(database_url=head_url, data_dir=study_data_dir, secret_key="k")
    upgrade_database(head_url)
    engine = make_engine(head_url)
    factory = make_session_factory(engine)
    with session_scope(factory) as db:
        study = create_study(db, settings, fast_study_yaml, "fast.yaml")
        generate_study(db, settings, study)
        launch_study(db, study)
    body = {
        "client": {"user_agent": "pytest"},
        "PROLIFIC_PID": "p1",
        "STUDY_ID": "s",
        "SESSION_ID": uuid.uuid4().hex,
    }
    with TestClient(create_app(settings)) as client:
        session = client.post("/api/v1/studies/imi-demo/sessions", json=body).json()
        before = _served(client, session)
    with session_scope(factory) as db:
        stored = {
            t.id: (t.images, t.choices, t.answer)
            for t in db.scalars(select(Trial).where(Trial.kind == "main"))
        }
    engine.dispose()

    _downgraded_copy(head_url, old_url, "0006")
    with make_engine(old_url).connect() as conn:
        legacy = {
            row.id: row
            for row in conn.execute(
                text("SELECT id, query_max, query_min, references_max, references_min FROM trials")
            )
        }
    assert set(stored) <= set(legacy)
    for trial_id, (images, _, _) in stored.items():
        row = legacy[trial_id]
        assert (row.query_max, row.query_min) == (images["query_max"], images["query_min"])
        assert json.loads(row.references_max) == images["references_max"]
        assert json.loads(row.references_min) == images["references_min"]
    upgrade_database(old_url)
    settings = Settings(database_url=old_url, data_dir=study_data_dir, secret_key="k")
    engine = make_engine(old_url)
    factory = make_session_factory(engine)
    with session_scope(factory) as db:
        after = {
            t.id: (t.images, t.choices, t.answer)
            for t in db.scalars(select(Trial).where(Trial.kind == "main"))
        }
        assert {t.paradigm for t in db.scalars(select(Trial))} == {"imi"}
    assert after == stored and all(a == "query_max" for _, _, a in after.values())
    with TestClient(create_app(settings)) as client:
        body["SESSION_ID"] = uuid.uuid4().hex  # the same worker resumes (a fresh token)
        resumed = client.post("/api/v1/studies/imi-demo/sessions", json=body).json()
        assert resumed["session_id"] == session["session_id"]
        again = _served(client, resumed)
        assert again == before  # same trial, same per-session URLs, same a/b
        with session_scope(factory) as db:
            answers = answers_for_session(db, resumed["session_id"])
        right = "a" if answers[again["trial_id"]] else "b"
        reply = client.post(
            f"/api/v1/sessions/{resumed['session_id']}/responses",
            json={
                "trial_id": again["trial_id"],
                "choice": right,
                "confidence": 2,
                "rt_ms": 700,
                "idempotency_key": uuid.uuid4().hex,
            },
            headers={"Authorization": f"Bearer {resumed['token']}"},
        )
        assert reply.status_code == 201, reply.text
        assert reply.json().get("feedback", {"correct": True})["correct"] is True
    engine.dispose()


def test_downgrades_keep_participant_rows_on_sqlite(tmp_path, study_data_dir, fast_study_yaml):
    """Batch migrations copy and drop tables on SQLite; with foreign keys on, that drop would
    cascade into sessions and assignments. Downgrading to the first schema keeps them all."""
    from alembic import command

    from server.db.migrate import alembic_config, upgrade_database
    from server.studies.service import create_study, generate_study, launch_study

    url = f"sqlite:///{tmp_path / 'down.db'}"
    settings = Settings(database_url=url, data_dir=study_data_dir, secret_key="k")
    upgrade_database(url)
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as db:
        study = create_study(db, settings, fast_study_yaml, "fast.yaml")
        generate_study(db, settings, study)
        launch_study(db, study)
    with TestClient(create_app(settings)) as client:
        for worker in ("p1", "p2"):
            body = {"PROLIFIC_PID": worker, "STUDY_ID": "s", "SESSION_ID": uuid.uuid4().hex}
            reply = client.post("/api/v1/studies/imi-demo/sessions", json=body)
            assert reply.status_code in (200, 201), reply.text

    def counts() -> tuple[int, int]:
        with engine.connect() as conn:
            sessions = conn.execute(text("SELECT count(*) FROM participant_sessions")).scalar()
            assignments = conn.execute(text("SELECT count(*) FROM assignments")).scalar()
        return sessions, assignments

    before = counts()
    assert before[0] == 2 and before[1] > 0
    command.downgrade(alembic_config(url), "0001")
    assert counts() == before
    engine.dispose()
