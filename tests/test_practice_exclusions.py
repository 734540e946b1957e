"""Exclusions that fire (issue 19), through the real participant API and database:
practice repeats until all right, a participant failing it three times is flagged (the
default) or stopped (`practice.on_fail: stop`) and excluded by `max_practice_attempts`,
and `min_instruction_s` applies the page's events."""

from __future__ import annotations

import uuid

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from analysis.exclusions import apply_exclusions, rules_from_options, rules_from_study_config
from analysis.load import load_study
from server.app import create_app
from server.db.models import ParticipantSession
from server.db.session import session_scope
from server.studies.service import create_study, generate_study, launch_study
from server.studies.sessions import answers_for_session


@pytest.fixture(scope="module")
def api(live_study):
    settings, _, _ = live_study
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def stop_study(live_study, fast_study_yaml):
    """The demo study again, as `imi-demo-stop`, stopping those who fail practice."""
    settings, factory, _ = live_study
    config = yaml.safe_load(fast_study_yaml)
    config["slug"] = "imi-demo-stop"
    config["trials"] = {**config.get("trials", {}), "practice": {"on_fail": "stop"}}
    with session_scope(factory) as db:
        study = create_study(db, settings, yaml.safe_dump(config), "stop.yaml")
        generate_study(db, settings, study)
        launch_study(db, study)
    return study.slug


def start(api, worker: str, slug: str = "imi-demo") -> dict:
    body = {
        "client": {"user_agent": "pytest"},
        "PROLIFIC_PID": worker,
        "STUDY_ID": "s1",
        "SESSION_ID": uuid.uuid4().hex,
    }
    reply = api.post(f"/api/v1/studies/{slug}/sessions", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


def headers(session: dict) -> dict:
    return {"Authorization": f"Bearer {session['token']}"}


def next_trial(api, session):
    url = f"/api/v1/sessions/{session['session_id']}/trials/next"
    return api.get(url, headers=headers(session))


def answer(api, factory, session, trial_id: str, right: bool) -> dict:
    with session_scope(factory) as db:
        max_is_a = answers_for_session(db, session["session_id"])[trial_id]
    choice = "a" if max_is_a == right else "b"
    body = {
        "trial_id": trial_id,
        "choice": choice,
        "confidence": 2,
        "rt_ms": 900.0,
        "client_sent_at": None,
        "idempotency_key": uuid.uuid4().hex,
        "data": {},
    }
    url = f"/api/v1/sessions/{session['session_id']}/responses"
    reply = api.post(url, json=body, headers=headers(session))
    assert reply.status_code == 201, reply.text
    return reply.json()


def instructions_done(api, session, seconds: float) -> None:
    event = {"type": "instructions_done", "t_ms": 1000.0, "detail": {"duration_ms": seconds * 1e3}}
    url = f"/api/v1/sessions/{session['session_id']}/events"
    reply = api.post(url, json={"events": [event]}, headers=headers(session))
    assert reply.status_code < 300, reply.text


def practice_round(api, factory, session, wrong_at: int | None) -> dict:
    """Five practice trials, one answered wrong (or none); the last response's body."""
    for i in range(5):
        trial = next_trial(api, session).json()
        assert trial["kind"] == "practice"
        body = answer(api, factory, session, trial["trial_id"], right=i != wrong_at)
        assert ("practice" in body) == (i == 4)  # the round's outcome comes with its end
    return body["practice"]


def finish_main(api, factory, session) -> None:
    while (reply := next_trial(api, session)).status_code == 200:
        assert reply.json()["kind"] == "main"
        answer(api, factory, session, reply.json()["trial_id"], right=True)
    url = f"/api/v1/sessions/{session['session_id']}/complete"
    assert api.post(url, headers=headers(session)).status_code == 200


def stored(factory, session) -> ParticipantSession:
    with session_scope(factory) as db:
        row = db.scalar(
            select(ParticipantSession).where(ParticipantSession.id == session["session_id"])
        )
        db.expunge(row)
        return row


def test_failing_practice_three_times_is_stopped(api, live_study, stop_study):
    _, factory, _ = live_study
    failing = start(api, "fails-practice-stop", stop_study)
    for round_ in (1, 2):
        outcome = practice_round(api, factory, failing, wrong_at=round_)
        assert outcome == {"round": round_, "passed": False, "repeat": True, "stopped": False}
    outcome = practice_round(api, factory, failing, wrong_at=0)
    assert outcome["stopped"] is True and outcome["round"] == 3 and not outcome["repeat"]
    assert "not all answered correctly after 3 rounds" in outcome["message"]
    refused = next_trial(api, failing)
    assert refused.status_code == 409 and "screened_out" in refused.json()["detail"]
    row = stored(factory, failing)
    assert (row.status, row.practice_attempts, row.practice_passed) == ("screened_out", 3, False)
    assert row.practice_passed_at is None and row.design_claim is None
    frame = load_study(factory.kw["bind"], stop_study)
    _, report = apply_exclusions(frame, rules_from_options(["total_time_s=off"]))
    assert report.participants == {failing["session_id"]: ["max_practice_attempts"]}


def test_failing_practice_three_times_is_flagged_and_excluded(api, live_study):
    _, factory, study = live_study
    failing = start(api, "fails-practice")
    instructions_done(api, failing, 40)
    for round_ in (1, 2, 3):
        outcome = practice_round(api, factory, failing, wrong_at=round_)
        repeat = round_ < 3  # the study's practice.max_attempts: 3
        assert outcome == {"round": round_, "passed": False, "repeat": repeat, "stopped": False}
    finish_main(api, factory, failing)  # flagged, not stopped: the participant finishes
    row = stored(factory, failing)
    assert (row.status, row.practice_attempts, row.practice_passed) == ("completed", 3, False)

    passing = start(api, "passes-second-round")
    instructions_done(api, passing, 40)
    assert practice_round(api, factory, passing, wrong_at=3)["repeat"] is True
    second = practice_round(api, factory, passing, wrong_at=None)
    assert second == {"round": 2, "passed": True, "repeat": False, "stopped": False}
    finish_main(api, factory, passing)
    row = stored(factory, passing)
    assert (row.practice_attempts, row.practice_passed, row.instruction_s) == (2, True, 40.0)
    assert row.practice_passed_at is not None

    skimmer = start(api, "skims-instructions")
    instructions_done(api, skimmer, 4.5)
    instructions_done(api, skimmer, 60)  # only the first report counts
    practice_round(api, factory, skimmer, wrong_at=None)
    finish_main(api, factory, skimmer)

    engine = factory.kw["bind"]
    frame = load_study(engine, study.slug)
    frame = frame[frame["participant"].isin([failing["session_id"], passing["session_id"],
                                             skimmer["session_id"]])]  # fmt: skip
    # The study's own rules; total time off (this test takes seconds, not minutes).
    rules = rules_from_options(
        ["total_time_s=off"], base=rules_from_study_config(study.config["exclusion"])
    )
    kept, report = apply_exclusions(frame, rules)
    assert report.participants == {
        failing["session_id"]: ["max_practice_attempts"],
        skimmer["session_id"]: ["min_instruction_s"],
    }
    assert set(kept["participant"]) == {passing["session_id"]}
    assert report.rules["max_practice_attempts"]["applied"] is True
    minimum = study.config["exclusion"]["min_instruction_s"]
    assert 4.5 < minimum < 40  # the demo study's rule catches the skimmer only
    assert report.rules["min_instruction_s"] == {"threshold": minimum, "applied": True,
                                                 "participants": 1}  # fmt: skip
