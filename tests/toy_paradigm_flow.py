"""The toy paradigm's run through the whole pipeline. Not collected on its own: run by
tests/test_toy_paradigm.py in a fresh process with PSYCHINTERP_PARADIGMS naming the toy, the
way a package outside psychinterp plugs a paradigm in (so every process, the SQLite writer's
included, knows it, and no other test's process ever does)."""

from __future__ import annotations

import uuid

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from server import paradigms
from server.app import create_app
from server.config import Settings
from server.db.models import Trial
from server.db.session import make_engine, make_session_factory, session_scope
from server.studies.loading import StudyConfigError, parse_study_yaml
from server.studies.sessions import answers_for_session


def test_the_plug_in_is_registered_from_the_environment():
    assert "toy" in paradigms.names()


def _toy_yaml(fast_study_yaml: str, **task) -> str:
    config = yaml.safe_load(fast_study_yaml)
    config |= {"paradigm": "toy", "slug": "toy-study", "conditions": ["none"]}
    config["task"] = task or None
    config["trials"] |= {"main": 4, "catch": {"count": 1}}
    config["trials"]["practice"] |= {"count": 0, "obvious": 0}  # main and catch trials only
    return yaml.safe_dump(config, sort_keys=False)


def test_toy_paradigm_needs_only_its_own_files(tmp_path, study_data_dir, fast_study_yaml):
    from server.db.migrate import upgrade_database
    from server.studies.service import create_study, generate_study, launch_study

    with pytest.raises(StudyConfigError, match=r"toy\.yaml:\d+: task: pairs_per_unit"):
        parse_study_yaml(_toy_yaml(fast_study_yaml, pairs_per_unit=9), "toy.yaml")
    with pytest.raises(StudyConfigError, match="not conditions of paradigm 'toy'"):
        parse_study_yaml(_toy_yaml(fast_study_yaml).replace("- none", "- natural"), "toy.yaml")

    url = f"sqlite:///{tmp_path / 'toy.db'}"
    settings = Settings(database_url=url, data_dir=study_data_dir, secret_key="k")
    upgrade_database(url)
    factory = make_session_factory(make_engine(url))
    with session_scope(factory) as db:
        study = create_study(db, settings, _toy_yaml(fast_study_yaml), "toy.yaml")
        generate_study(db, settings, study)
        launch_study(db, study)
        assert {t.paradigm for t in db.scalars(select(Trial))} == {"toy"}
    body = {"client": {"user_agent": "pytest"}, "PROLIFIC_PID": uuid.uuid4().hex,
            "STUDY_ID": "s", "SESSION_ID": uuid.uuid4().hex}  # fmt: skip
    with TestClient(create_app(settings)) as client:
        started = client.post("/api/v1/studies/toy-study/sessions", json=body)
        assert started.status_code == 201, started.text
        session = started.json()
        headers = {"Authorization": f"Bearer {session['token']}"}
        served = 0
        while True:
            reply = client.get(
                f"/api/v1/sessions/{session['session_id']}/trials/next", headers=headers
            )
            if reply.status_code == 204:
                break
            trial = reply.json()
            assert trial["type"] == "toy"
            assert set(trial["images"]) == {"query_a", "query_b", "references_max",
                                            "references_min"}  # fmt: skip
            with session_scope(factory) as db:
                right = answers_for_session(db, session["session_id"])[trial["trial_id"]]
            answer = client.post(
                f"/api/v1/sessions/{session['session_id']}/responses",
                json={"trial_id": trial["trial_id"], "choice": "a" if right else "b",
                      "confidence": 3, "rt_ms": 800, "idempotency_key": uuid.uuid4().hex},
                headers=headers,
            )  # fmt: skip
            assert answer.status_code == 201, answer.text
            served += 1
        assert served == session["n_trials"]
        done = client.post(f"/api/v1/sessions/{session['session_id']}/complete", headers=headers)
        assert done.status_code == 200, done.text
