"""The participant API against a real generated study (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from server.app import create_app
from server.auth import keyed_hash
from server.db.models import Assignment, BarredWorker, ParticipantSession, Response, Trial
from server.db.session import session_scope
from server.studies.audit import GENESIS, chain_hash
from server.studies.sessions import _designs, answers_for_session
from server.studies.simulate import serve_in_thread

STIMULUS_URL = re.compile(r"^/stimuli/[0-9a-f]{32}/[0-9a-f]{32}$")  # per session, opaque


@pytest.fixture(scope="module")
def api(live_study):
    settings, _, _ = live_study
    with TestClient(create_app(settings)) as client:
        yield client


def start(api, worker: str | None = None, expect: int = 201, **extra):
    body = {"client": {"user_agent": "pytest", "window_w": 1200, "window_h": 800}, **extra}
    if worker:
        body |= {"PROLIFIC_PID": worker, "STUDY_ID": "s1", "SESSION_ID": uuid.uuid4().hex}
    reply = api.post("/api/v1/studies/imi-demo/sessions", json=body)
    assert reply.status_code == expect, reply.text
    return reply.json()


def auth(session: dict) -> dict:
    return {"Authorization": f"Bearer {session['token']}"}


def answer(api, session, trial_id, choice, key=None):
    body = {"trial_id": trial_id, "choice": choice, "confidence": 2, "rt_ms": 812.5,
            "client_sent_at": "2024-01-01T00:00:00Z", "idempotency_key": key or uuid.uuid4().hex,
            "data": {"button": f"{choice}-2"}}  # fmt: skip
    return api.post(f"/api/v1/sessions/{session['session_id']}/responses", json=body,
                    headers=auth(session))  # fmt: skip


def right_choice(factory, session_id: str, trial_id: str) -> str:
    with session_scope(factory) as db:
        return "a" if answers_for_session(db, session_id)[trial_id] else "b"


def next_trial(api, session):
    return api.get(f"/api/v1/sessions/{session['session_id']}/trials/next", headers=auth(session))


def test_public_study_info(api):
    info = api.get("/api/v1/studies/imi-demo").json()
    assert info["status"] == "live" and info["paradigm"] == "imi"
    assert info["n_trials"] == 5 + 12 + 2
    assert info["practice"] == {"n_trials": 5, "feedback": True, "max_attempts": 3}
    assert info["feedback_main"] is True  # IMI shows feedback in the main block too
    assert info["layout"]["feedback_ms"] == {"frame": 350, "continue": 1150}
    assert info["layout"]["reference_columns_titles"]["max"] == "Right Examples"
    assert info["min_window"] == {"width": 940, "height": 600}
    missing = api.get("/api/v1/studies/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"


def test_trial_json_reveals_no_answer(api, live_study):
    _, factory, _ = live_study
    session = start(api, "leak-check")
    trial = next_trial(api, session).json()
    # `type` names the trial module the page loads (issue 21): the paradigm, never an answer.
    assert set(trial) == {"trial_id", "type", "index", "n_trials", "kind", "block", "images"}
    assert trial["type"] == "imi"
    assert set(trial["images"]) == {"query_a", "query_b", "references_max", "references_min"}
    urls = [trial["images"]["query_a"], trial["images"]["query_b"],
            *trial["images"]["references_max"], *trial["images"]["references_min"]]  # fmt: skip
    assert all(STIMULUS_URL.match(u) for u in urls)
    image = api.get(trial["images"]["query_a"])
    assert image.status_code == 200 and "content-disposition" not in {
        k.lower() for k in image.headers if "filename" in image.headers[k]
    }
    with session_scope(factory) as db:
        sides = db.scalars(
            select(Assignment.max_is_a)
            .join(Trial, Trial.id == Assignment.trial_id)
            .where(Assignment.session_id == session["session_id"], Trial.kind == "main")
        ).all()
    assert sorted(sides) == [False] * 6 + [True] * 6  # a/b balanced within the session


def test_whole_session(api, live_study):
    _, factory, _ = live_study
    session = start(api, "worker-1")
    again = start(api, "worker-1", expect=200)
    assert again["session_id"] == session["session_id"] and again["resumed"] is True
    assert again["token"] != session["token"]  # a resume revokes the old token
    stale = api.get(f"/api/v1/sessions/{session['session_id']}/trials/next", headers=auth(session))
    assert stale.status_code == 401
    session = again

    early = api.post(f"/api/v1/sessions/{session['session_id']}/complete", headers=auth(session))
    assert early.status_code == 409 and "19 trial(s)" in early.json()["detail"]
    assert answer(api, session, "0" * 32, "a").status_code == 404

    seen = 0
    while (reply := next_trial(api, session)).status_code == 200:
        trial = reply.json()
        assert trial["index"] == seen and trial["kind"] in ("practice", "main")
        choice = right_choice(factory, session["session_id"], trial["trial_id"])
        key = uuid.uuid4().hex
        first = answer(api, session, trial["trial_id"], choice, key)
        assert first.status_code == 201 and first.json()["feedback"] == {"correct": True}
        repeat = answer(api, session, trial["trial_id"], choice, key)
        assert repeat.status_code == 200 and repeat.json() == first.json()
        other_key = answer(api, session, trial["trial_id"], choice)
        assert other_key.status_code == 409
        seen += 1
    assert reply.status_code == 204 and seen == 19
    assert first.json()["n_correct"] == 14  # 12 main + 2 catch, all right

    done = api.post(f"/api/v1/sessions/{session['session_id']}/complete", headers=auth(session))
    assert done.status_code == 200 and done.json()["completion_code"]
    assert done.json()["redirect_url"].endswith("cc=" + done.json()["completion_code"])
    assert api.post(f"/api/v1/sessions/{session['session_id']}/complete",
                    headers=auth(session)).json() == done.json()  # fmt: skip
    late = answer(api, session, trial["trial_id"], "a")
    assert late.status_code in (200, 409)
    start(api, "worker-1", expect=403)

    with session_scope(factory) as db:
        rows = db.scalars(
            select(Response).where(Response.session_id == session["session_id"])
            .order_by(Response.id)
        ).all()  # fmt: skip
    assert len(rows) == 19
    assert chain_breaks(rows) == []  # each record hash chains the previous one of the session


@pytest.mark.parametrize("design_cached", [True, False])
def test_practice_repeats_until_all_correct(api, live_study, design_cached):
    _, factory, _ = live_study
    session = start(api, f"practice-worker-{design_cached}")
    for attempt in range(2):  # attempt 0 with one error, attempt 1 all right
        for i in range(5):
            if not design_cached:  # the repeat then loads the design inside its write
                _designs.clear()
            trial = next_trial(api, session).json()
            assert trial["kind"] == "practice" and trial["index"] == attempt * 5 + i
            right = right_choice(factory, session["session_id"], trial["trial_id"])
            wrong = "b" if right == "a" else "a"
            choice = wrong if (attempt == 0 and i == 2) else right
            body = answer(api, session, trial["trial_id"], choice).json()
            assert body["feedback"]["correct"] is (choice == right)
            assert "n_correct" not in body
    trial = next_trial(api, session).json()
    assert trial["kind"] == "main" and trial["index"] == 10 and trial["n_trials"] == 24


def test_plain_links_get_new_sessions_and_tokens_are_checked(api):
    one, two = start(api), start(api)
    assert one["session_id"] != two["session_id"]
    wrong = api.get(f"/api/v1/sessions/{one['session_id']}/trials/next", headers=auth(two))
    assert wrong.status_code == 401
    assert api.get(f"/api/v1/sessions/{one['session_id']}/trials/next").status_code == 401
    events = api.post(f"/api/v1/sessions/{one['session_id']}/events", headers=auth(one),
                      json={"events": [{"type": "blur", "t_ms": 1234.5}]})  # fmt: skip
    assert events.status_code == 204
    preview = {"workerId": "W1", "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "client": {}}
    assert api.post("/api/v1/studies/imi-demo/sessions", json=preview).status_code == 403


def test_worker_of_the_series_is_barred(api, live_study):
    _, factory, _ = live_study
    worker_hash = keyed_hash("test-secret-key", "prolific:veteran", "worker")
    with session_scope(factory) as db:
        db.add(BarredWorker(worker_hash=worker_hash, study_group="imi-demo-series"))
    body = start(api, "veteran", expect=403)
    assert "already taken part" in body["detail"]


def test_concurrent_arrivals_claim_distinct_places(live_study):
    settings, factory, _ = live_study
    with session_scope(factory) as db:
        before = db.scalar(select(func.count()).where(ParticipantSession.design_claim.is_not(None)))
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:

        def arrive(i: int) -> int:
            body = {"PROLIFIC_PID": f"rush-{i}", "client": {}}
            return client.post("/api/v1/studies/imi-demo/sessions", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(arrive, range(24))) == {201}
    with session_scope(factory) as db:
        claims = db.scalars(
            select(ParticipantSession.design_claim).where(
                ParticipantSession.design_claim.is_not(None)
            )
        ).all()
    assert sorted(claims) == list(range(before + 24))  # no place twice, none skipped


def test_released_places_are_claimed_lowest_first(api, live_study):
    """A timed-out session's place goes to the next arrival, the lowest gap first; with no
    gap the next place is one past the highest."""
    _, factory, _ = live_study
    for worker in ("gap-0", "gap-1", "gap-2", "gap-3"):
        start(api, worker)
    claim = ParticipantSession.design_claim
    with session_scope(factory) as db:
        highest = db.scalar(select(func.max(claim)))
        released = [highest - 2, highest]  # two of the four just claimed
        db.execute(
            update(ParticipantSession)
            .where(claim.in_(released))
            .values(status="timed_out", design_claim=None)
        )

    def claim_of(session: dict) -> int:
        with session_scope(factory) as db:
            return db.get(ParticipantSession, session["session_id"]).design_claim

    assert [claim_of(start(api, f"refill-{i}")) for i in range(3)] == [*released, highest + 1]


def chain_breaks(rows) -> list[int]:
    """Ids of the responses whose record hash does not chain the one before (by id)."""
    broken, prev = [], GENESIS
    for row in rows:
        record = {"session_id": row.session_id, "trial_id": row.trial_id,
                  "assignment_id": row.assignment_id, "idempotency_key": row.idempotency_key,
                  "choice": row.choice, "confidence": row.confidence, "rt_ms": row.rt_ms,
                  "correct": row.correct, "client_sent_at": row.client_sent_at,
                  "data": row.client_data}  # fmt: skip
        if row.record_hash != chain_hash(prev, record):
            broken.append(row.id)
        prev = row.record_hash
    return broken


def test_concurrent_responses_each_get_their_own_answer(live_study):
    """A burst of answers at once (grouped into shared commits on SQLite, concurrent
    transactions on PostgreSQL): each gets its own answer, every acknowledged one is stored
    once, and the session's hash chain stays one line."""
    settings, factory, _ = live_study
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        reply = client.post("/api/v1/studies/imi-demo/sessions", json={"client": {}})
        session = reply.json()
        with session_scope(factory) as db:  # as if the page had been shown every trial
            db.execute(
                update(Assignment)
                .where(Assignment.session_id == session["session_id"])
                .values(served_at=func.now())
            )
            trials = db.scalars(
                select(Assignment.trial_id)
                .where(Assignment.session_id == session["session_id"], Assignment.attempt == 0)
                .order_by(Assignment.position)
            ).all()
        keys = {trial: uuid.uuid4().hex for trial in trials}
        bodies = [(trial, keys[trial]) for trial in trials]
        bodies += [(trial, keys[trial]) for trial in trials[::4]]  # replays, racing the first
        bodies += [("0" * 32, uuid.uuid4().hex), (trials[1], keys[trials[0]])]

        def post(body: tuple[str, str]) -> httpx.Response:
            trial, key = body
            json = {"trial_id": trial, "choice": "a", "confidence": 1, "rt_ms": 500.0,
                    "idempotency_key": key, "client_sent_at": None}  # fmt: skip
            return client.post(f"/api/v1/sessions/{session['session_id']}/responses",
                               json=json, headers=auth(session))  # fmt: skip

        with ThreadPoolExecutor(12) as pool:
            replies = list(pool.map(post, bodies))
    by_key: dict[str, list[httpx.Response]] = {}
    for (_, key), reply in zip(bodies[:-2], replies[:-2], strict=True):
        by_key.setdefault(key, []).append(reply)
    for key, answers in by_key.items():
        assert sorted(r.status_code for r in answers) == [200] * (len(answers) - 1) + [201], key
        assert all(r.json() == answers[0].json() for r in answers)  # a replay: the same body
    assert replies[-2].status_code == 404  # not assigned
    assert replies[-1].status_code == 409 and "another trial" in replies[-1].json()["detail"]
    with session_scope(factory) as db:
        rows = db.scalars(
            select(Response).where(Response.session_id == session["session_id"])
            .order_by(Response.id)
        ).all()  # fmt: skip
    assert sorted(r.idempotency_key for r in rows) == sorted(keys.values())  # each once
    assert chain_breaks(rows) == []


def test_closed_study_refuses(api, live_study):
    _, factory, _ = live_study
    session = start(api, "late-worker")
    trial = next_trial(api, session).json()
    from server.studies.service import close_study, get_study

    with session_scope(factory) as db:
        close_study(db, get_study(db, "imi-demo"))
    refused = answer(api, session, trial["trial_id"], "a")
    assert refused.status_code == 409 and "closed" in refused.json()["detail"]
    assert start(api, "new-worker", expect=409)["code"] == "Conflict"


@pytest.mark.parametrize(
    ("feedback_main", "show_running_score", "sent"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_running_score_is_sent_only_with_main_feedback(
    fast_study_yaml, feedback_main, show_running_score, sent
):
    """'Correct so far' after each main answer is per-trial feedback by subtraction."""
    import yaml

    from server.studies.loading import parse_study_yaml
    from server.studies.responses import _body

    data = yaml.safe_load(fast_study_yaml)
    data["trials"]["feedback_main"] = feedback_main
    data.setdefault("layout", {})["show_running_score"] = show_running_score
    config = parse_study_yaml(yaml.safe_dump(data), "study.yaml")
    body = _body(config, "main", True, 7)
    assert ("n_correct" in body) is sent
    assert ("feedback" in body) is feedback_main
    assert "n_correct" not in _body(config, "practice", True, 7)
