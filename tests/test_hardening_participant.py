"""Issue 25, participant path: each finding probed as an attacker would, on a real study.

Finding 1 (anyone can fill a study), 2 (answer keys harvested through recurring URLs),
3 (image headers leak the answer), 4 (bad input gives 500), 5 (no body limit) and 9 (the
smaller ones: tokens, strict types, served trials, events after completion, turkSubmitTo,
OpenAPI). Each test fails on the code before the fix.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import delete, func, select, update

from server.app import create_app
from server.config import Settings
from server.db.models import (
    Assignment,
    ParticipantSession,
    Response,
    SessionEvent,
    SessionStart,
    Trial,
)
from server.db.session import session_scope
from server.stimuli.store import ImageStore
from server.studies.sessions import MAX_EVENTS, answers_for_session

SLUG = "imi-demo"
PROLIFIC_SLUG = "hardening-prolific"


@pytest.fixture(scope="module")
def prolific_study(live_study, fast_study_yaml):
    """The fast study again, run on Prolific, with two places."""
    from server.studies.service import create_study, generate_study, launch_study

    settings, factory, _ = live_study
    config = yaml.safe_load(fast_study_yaml)
    config |= {"slug": PROLIFIC_SLUG, "participants_wanted": 2}
    config["completion"] = {"platform": "prolific", "code": "C0DE1234"}
    with session_scope(factory) as db:
        study = create_study(db, settings, yaml.safe_dump(config), "prolific.yaml")
        generate_study(db, settings, study)  # the activation cache makes this quick
        launch_study(db, study)
    return PROLIFIC_SLUG


def client_for(live_study, address: str = "10.0.0.1", **overrides) -> TestClient:
    settings, _, _ = live_study
    app = create_app(settings.model_copy(update=overrides))
    return TestClient(app, client=(address, 40000), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def api(live_study):
    with client_for(live_study, "10.9.9.9") as client:
        yield client


def start(api, slug: str = SLUG, expect: int = 201, **body):
    reply = api.post(f"/api/v1/studies/{slug}/sessions", json={"client": {}, **body})
    assert reply.status_code == expect, reply.text
    return reply.json()


def bearer(session) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}"}


def next_trial(api, session):
    return api.get(f"/api/v1/sessions/{session['session_id']}/trials/next", headers=bearer(session))


def answer_body(trial_id: str, choice: str = "a", **overrides):
    body = {"trial_id": trial_id, "choice": choice, "confidence": 2, "rt_ms": 700.0,
            "client_sent_at": "2024-05-01T12:00:00.5+02:00",
            "idempotency_key": uuid.uuid4().hex, "data": {}}  # fmt: skip
    return body | overrides


def post_answer(api, session, body):
    return api.post(
        f"/api/v1/sessions/{session['session_id']}/responses", json=body, headers=bearer(session)
    )


def post_raw(api, url: str, content: bytes | str, session=None):
    """A body as the client wrote it (json= would refuse NaN or invalid UTF-8)."""
    headers = {"Content-Type": "application/json", **(bearer(session) if session else {})}
    return api.post(url, content=content, headers=headers)


# --- finding 1: anyone can fill a study ---------------------------------------------------------


DEFAULT_LIMITS = {
    name: Settings.model_fields[name].default
    for name in ("session_starts_per_address", "session_starts_per_study")
}


def test_default_start_limit_per_address_fires_and_holds_across_processes(live_study):
    assert DEFAULT_LIMITS["session_starts_per_address"] == 10
    with client_for(live_study, "10.1.1.1", **DEFAULT_LIMITS) as first:
        for _ in range(10):
            start(first)
        refused = first.post(f"/api/v1/studies/{SLUG}/sessions", json={"client": {}})
    assert refused.status_code == 429 and refused.json()["code"] == "TooManyRequests"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # Another app (another worker process) on the same database sees the same starts.
    with client_for(live_study, "10.1.1.1", **DEFAULT_LIMITS) as second:
        assert second.post(f"/api/v1/studies/{SLUG}/sessions", json={}).status_code == 429
    with client_for(live_study, "10.1.1.2", **DEFAULT_LIMITS) as other_address:
        start(other_address)


def test_start_limit_per_study(live_study):
    limits = {"session_starts_per_study": 3, "session_starts_per_address": 1000}
    with session_scope(live_study[1]) as db:  # starts of the other tests in this window
        db.execute(delete(SessionStart))
    for i in range(3):
        with client_for(live_study, f"10.2.0.{i}", **limits) as client:
            start(client)
    with client_for(live_study, "10.2.0.99", **limits) as client:
        refused = client.post(f"/api/v1/studies/{SLUG}/sessions", json={"client": {}})
    assert refused.status_code == 429 and "for this study" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1


def test_prolific_study_needs_a_prolific_id(api, prolific_study):
    for body in ({}, {"workerId": "W1", "assignmentId": "A1"}):
        refused = start(api, prolific_study, expect=422, **body)
        assert refused["code"] == "PlatformIdRequired" and "PROLIFIC_PID" in refused["detail"]
    start(api, prolific_study, PROLIFIC_PID="real-participant", STUDY_ID="s", SESSION_ID="x")


def test_idle_places_go_to_new_arrivals(api, live_study, prolific_study):
    _, factory, _ = live_study
    holders = []
    while (
        reply := api.post(
            f"/api/v1/studies/{prolific_study}/sessions",
            json={"PROLIFIC_PID": f"holder-{len(holders)}", "client": {}},
        )
    ).status_code == 201:
        holders.append(reply.json())
    assert reply.status_code == 409 and "all the participants" in reply.json()["detail"]
    with session_scope(factory) as db:  # the holders went quiet 11 minutes ago
        db.execute(
            update(ParticipantSession)
            .where(ParticipantSession.id.in_([h["session_id"] for h in holders]))
            .values(last_seen_at=datetime.now(UTC) - timedelta(minutes=11))
        )
    start(api, prolific_study, PROLIFIC_PID="late-but-real")
    gone = start(api, prolific_study, expect=403, PROLIFIC_PID="holder-0")
    assert "timed_out" in gone["detail"]


# --- finding 9: tokens ---------------------------------------------------------------------------


def test_resume_issues_a_fresh_token_and_revokes_the_old_one(api):
    first = start(api, PROLIFIC_PID="resumer")
    trial = next_trial(api, first).json()
    again = start(api, expect=200, PROLIFIC_PID="resumer")
    assert again["session_id"] == first["session_id"] and again["token"] != first["token"]
    assert next_trial(api, first).status_code == 401
    assert post_answer(api, first, answer_body(trial["trial_id"])).status_code == 401
    assert post_answer(api, again, answer_body(trial["trial_id"])).status_code == 201


def test_tokens_expire_with_the_session(api, live_study):
    _, factory, _ = live_study
    session = start(api)
    trial = next_trial(api, session).json()
    with session_scope(factory) as db:
        db.execute(
            update(ParticipantSession)
            .where(ParticipantSession.id == session["session_id"])
            .values(token_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    for reply in (
        next_trial(api, session),
        post_answer(api, session, answer_body(trial["trial_id"])),
    ):
        assert reply.status_code == 401 and "expired" in reply.json()["detail"]


# --- finding 2: answer keys harvested through recurring URLs ------------------------------------


def served_urls(api, session) -> list[str]:
    images = next_trial(api, session).json()["images"]
    return [images["query_a"], images["query_b"], *images["references_max"],
            *images["references_min"]]  # fmt: skip


def test_image_urls_are_per_session_and_unique_within_a_trial(api, live_study):
    _, factory, _ = live_study
    one, two = start(api), start(api)
    urls_one, urls_two = served_urls(api, one), served_urls(api, two)
    assert not set(urls_one) & set(urls_two)
    # The first trials are practice trials: their query is also among the references, yet
    # every URL of the trial is different.
    with session_scope(factory) as db:
        images = db.scalars(
            select(Trial.images)
            .join(Assignment, Assignment.trial_id == Trial.id)
            .where(Assignment.session_id == one["session_id"], Assignment.served_at.is_not(None))
        ).first()
    shas = [images["query_max"], images["query_min"], *images["references_max"],
            *images["references_min"]]  # fmt: skip
    assert len(set(shas)) < len(shas)  # an image shown twice in the trial...
    assert len(set(urls_one)) == len(urls_one)  # ...under two URLs
    # A URL belongs to its session: moved to another session it names nothing.
    token = urls_one[0].rsplit("/", 1)[1]
    assert api.get(f"/stimuli/{two['session_id']}/{token}").status_code == 404


# --- finding 3: image headers leak the answer ---------------------------------------------------


def test_no_header_or_url_differs_between_right_and_wrong_query(api, live_study):
    """Across sessions and trials, the right and the wrong query have the same header names,
    the same Content-Length (every image of a session is padded to one size), no
    Last-Modified, an ETag that is the URL's own token, and URLs of the same shape."""
    settings, factory, _ = live_study
    store = ImageStore(settings.stimuli_dir)
    n_trials = 0
    for _ in range(4):
        session = start(api)
        for _ in range(3):
            trial = next_trial(api, session).json()
            with session_scope(factory) as db:
                max_is_a = answers_for_session(db, session["session_id"])[trial["trial_id"]]
            right, wrong = ("query_a", "query_b") if max_is_a else ("query_b", "query_a")
            replies = {k: api.get(trial["images"][k]) for k in (right, wrong)}
            r, w = replies[right], replies[wrong]
            assert r.status_code == w.status_code == 200
            assert sorted(r.headers) == sorted(w.headers)
            for name in r.headers:
                if name != "etag":
                    assert r.headers[name] == w.headers[name], name
            assert "last-modified" not in r.headers
            for key, reply in replies.items():
                assert reply.headers["etag"] == f'"{trial["images"][key].rsplit("/", 1)[1]}"'
            assert len(trial["images"][right]) == len(trial["images"][wrong])
            # Padding changes no pixel.
            with session_scope(factory) as db:
                trial_row = db.get(Trial, trial["trial_id"])
                path, _ = store.locate(trial_row.images[trial_row.answer])
            served = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
            stored = np.asarray(Image.open(path).convert("RGB"))
            assert np.array_equal(served, stored)
            post_answer(api, session, answer_body(trial["trial_id"]))
            n_trials += 1
    assert n_trials == 12


# --- finding 4: bad input gives 500 --------------------------------------------------------------

BAD_ANSWERS = [
    ("rt_ms", "NaN"),
    ("rt_ms", "Infinity"),
    ("rt_ms", "1e400"),
    ("confidence", "NaN"),
    ("confidence", "1e400"),
    ("confidence", '"2"'),  # strings are not coerced
    ("confidence", "true"),  # nor booleans
    ("choice", "true"),
    ("rt_ms", '"800"'),
    ("client_sent_at", '"yesterday"'),
    ("client_sent_at", '"2024-05-01T12:00:00"'),  # no timezone
    ("data", '{"x": NaN}'),
    ("data", '{"x": [1, 2, -Infinity]}'),
    ("data", '{"x": "nul\\u0000"}'),
    ("data", '{"x": "\\ud800"}'),  # a lone surrogate
    ("trial_id", '"nul\\u0000"'),
]


@pytest.mark.parametrize(("field", "raw"), BAD_ANSWERS)
def test_bad_answer_values_get_422(api, field, raw):
    session = start(api)
    trial = next_trial(api, session).json()
    body = answer_body(trial["trial_id"])
    body[field] = "@@MARK@@"
    raw_body = json.dumps(body).replace('"@@MARK@@"', raw)
    reply = post_raw(api, f"/api/v1/sessions/{session['session_id']}/responses", raw_body, session)
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert field in detail or "Invalid JSON" in detail  # a lone surrogate fails the parse


def test_invalid_utf8_and_non_finite_starts_get_422_without_echo(api, caplog):
    marker = "SECRET-BODY-MARKER"
    session = start(api)
    trial = next_trial(api, session).json()
    body = answer_body(trial["trial_id"], data={"note": f"{marker} @@"})
    raw = json.dumps(body).encode().replace(b"@@", bytes([0xFF, 0xFE]))  # invalid UTF-8
    with caplog.at_level(logging.DEBUG):
        bad_utf8 = post_raw(
            api, f"/api/v1/sessions/{session['session_id']}/responses", raw, session
        )
        starts = [
            post_raw(api, f"/api/v1/studies/{SLUG}/sessions", body)
            for body in (
                '{"client": {"screen_w": NaN}}',
                '{"client": {"refresh_hz": Infinity}}',
                '{"client": {"extra_thing": NaN}}',
                '{"client": {"user_agent": "a\\u0000b"}}',
                '{"client": {"screen_w": 1.5}}',
                f'{{"client": {{"user_agent": "{marker}", "screen_w": "wide"}}}}',
            )
        ]
    assert bad_utf8.status_code == 422 and marker not in bad_utf8.text
    for reply in starts:
        assert reply.status_code == 422, reply.text
        assert marker not in reply.text and "input" not in reply.json()["errors"][0]
    assert marker not in caplog.text


def test_events_reject_non_finite_times(api):
    session = start(api)
    url = f"/api/v1/sessions/{session['session_id']}/events"
    for raw in (
        '{"events": [{"type": "blur", "t_ms": NaN}]}',
        '{"events": [{"type": "blur", "t_ms": 1, "detail": {"x": Infinity}}]}',
    ):
        assert post_raw(api, url, raw, session).status_code == 422


# --- finding 5: no body limit ---------------------------------------------------------------------


def test_bodies_over_the_limit_get_413_before_parsing(live_study):
    with client_for(live_study, "10.5.5.5", max_upload_bytes=100_000) as client:
        session = start(client)
        trial = next_trial(client, session).json()
        big = answer_body(trial["trial_id"], data={"x": "y" * 200_000})
        reply = post_answer(client, session, big)
        assert reply.status_code == 413 and "PSYCHINTERP_MAX_UPLOAD_BYTES" in reply.json()["detail"]

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"trial_id": "x", "data": {"x": "'
            for _ in range(30):
                yield b"y" * 10_000
            yield b'"}}'

        streamed = client.post(
            f"/api/v1/sessions/{session['session_id']}/responses",
            content=chunks(),
            headers={**bearer(session), "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        assert post_answer(client, session, answer_body(trial["trial_id"])).status_code == 201


def test_free_form_parts_are_capped(api):
    session = start(api)
    trial = next_trial(api, session).json()
    too_much_data = post_answer(
        api, session, answer_body(trial["trial_id"], data={"x": "y" * 70_000})
    )
    assert too_much_data.status_code == 422 and "data" in too_much_data.json()["detail"]
    url = f"/api/v1/sessions/{session['session_id']}/events"
    big_detail = {"events": [{"type": "blur", "t_ms": 1.0, "detail": {"x": "y" * 5000}}]}
    assert api.post(url, json=big_detail, headers=bearer(session)).status_code == 422
    extras = {"client": {f"k{i}": "v" * 300 for i in range(15)}}
    assert api.post(f"/api/v1/studies/{SLUG}/sessions", json=extras).status_code == 422


def test_events_are_rows_with_a_quota(api, live_study):
    _, factory, _ = live_study
    session = start(api)
    url = f"/api/v1/sessions/{session['session_id']}/events"
    batch = {"events": [{"type": "blur", "t_ms": float(i)} for i in range(500)]}
    for _ in range(MAX_EVENTS // 500):
        assert api.post(url, json=batch, headers=bearer(session)).status_code == 204
    over = api.post(url, json={"events": [{"type": "blur", "t_ms": 1.0}]}, headers=bearer(session))
    assert over.status_code == 413 and over.json()["code"] == "EventQuotaExceeded"
    with session_scope(factory) as db:
        rows = db.scalar(
            select(func.count(SessionEvent.id)).where(
                SessionEvent.session_id == session["session_id"]
            )
        )
        legacy = db.get(ParticipantSession, session["session_id"]).events
    assert rows == MAX_EVENTS and legacy == []  # appended as rows, the session row untouched


# --- finding 9: strict answers -------------------------------------------------------------------


def test_confidence_is_checked_against_the_study_levels(api):
    session = start(api)
    trial = next_trial(api, session).json()
    reply = post_answer(api, session, answer_body(trial["trial_id"], confidence=7))
    assert reply.status_code == 422 and "between 1 and 3" in reply.json()["detail"]


def test_only_served_trials_can_be_answered_late_ones_still_count(api, live_study):
    _, factory, _ = live_study
    session = start(api)
    with session_scope(factory) as db:
        later = db.scalar(
            select(Assignment.trial_id)
            .where(Assignment.session_id == session["session_id"])
            .order_by(Assignment.position.desc())
        )
    ahead = post_answer(api, session, answer_body(later))
    assert ahead.status_code == 409 and "not been shown" in ahead.json()["detail"]
    served = next_trial(api, session).json()
    next_trial(api, session)  # the page reloaded: the same trial again, still unanswered
    late = post_answer(api, session, answer_body(served["trial_id"]))
    assert late.status_code == 201
    with session_scope(factory) as db:
        stored = db.scalar(select(Response).where(Response.session_id == session["session_id"]))
    assert stored.client_sent_at == "2024-05-01T12:00:00.500000+02:00"  # parsed, normalised


def test_no_events_after_completion(api, live_study):
    _, factory, _ = live_study
    session = start(api)
    while (reply := next_trial(api, session)).status_code == 200:
        trial_id = reply.json()["trial_id"]
        with session_scope(factory) as db:
            right = "a" if answers_for_session(db, session["session_id"])[trial_id] else "b"
        assert post_answer(api, session, answer_body(trial_id, right)).status_code == 201
    done = api.post(f"/api/v1/sessions/{session['session_id']}/complete", headers=bearer(session))
    assert done.status_code == 200
    late = api.post(
        f"/api/v1/sessions/{session['session_id']}/events",
        json={"events": [{"type": "blur", "t_ms": 1.0}]},
        headers=bearer(session),
    )
    assert late.status_code == 409 and "finished" in late.json()["detail"]


@pytest.mark.parametrize(
    "submit_to",
    [
        "https://evil.example.com",
        "http://www.mturk.com",
        "https://www.mturk.com.evil.com",
        "https://user@evil.com",
        "javascript:alert(1)",
        "https://www.mturk.com/x",
    ],
)
def test_turk_submit_to_only_mturk_hosts(api, submit_to):
    body = {"workerId": "W9", "assignmentId": "A9", "hitId": "H9", "turkSubmitTo": submit_to}
    reply = api.post(f"/api/v1/studies/{SLUG}/sessions", json={**body, "client": {}})
    assert reply.status_code == 422 and "turkSubmitTo" in reply.json()["detail"]


def test_turk_submit_to_sandbox_is_accepted(api):
    start(api, workerId="W10", assignmentId="A10", turkSubmitTo="https://workersandbox.mturk.com")


def test_openapi_documents_every_participant_status(api):
    paths = api.get("/openapi.json").json()["paths"]
    expected = {
        ("post", "/api/v1/studies/{slug}/sessions"): {"201", "200", "403", "404", "409", "413",
                                                      "415", "422", "429"},
        ("get", "/api/v1/sessions/{session_id}/trials/next"): {"200", "204", "401", "409"},
        ("post", "/api/v1/sessions/{session_id}/responses"): {"201", "200", "401", "404", "409",
                                                              "413", "415", "422"},
        ("post", "/api/v1/sessions/{session_id}/events"): {"204", "401", "409", "413", "415",
                                                           "422"},
        ("post", "/api/v1/sessions/{session_id}/complete"): {"200", "401", "409"},
    }  # fmt: skip
    for (method, path), statuses in expected.items():
        documented = set(paths[path][method]["responses"])
        assert statuses <= documented, (path, statuses - documented)
        assert "requestBody" in paths[path][method] or method == "get" or "complete" in path
