"""Graded responses: the hot path of a running study (bench/ingest.py).

A response costs one SELECT and one INSERT inside the caller's transaction (a group commit
on SQLite, see server/db/writes.py). The SELECT answers everything the write depends on:
the session behind the token and its status and the study's status (both can change from
another process, so they are read every time, never cached), whether the idempotency key
is known, the trial's lowest unanswered assignment with its answer side, the previous hash
of the session's record chain and the running score. Only practice responses read once
more (does the block have to be repeated?). The two hot statements are `Prepared`: built
and compiled once, run on the driver's cursor (see server/db/prepared.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, DateTime, bindparam, func, insert, or_, select
from sqlalchemy.orm import aliased

from server.auth import token_digest
from server.db.models import Assignment, ParticipantSession, Response, Study, Trial, utcnow
from server.db.prepared import Prepared
from server.errors import AppError, Conflict, NotFound, Unauthorized
from server.studies.audit import GENESIS, chain_hash
from server.studies.practice import finish_practice_response, replayed_practice_outcome
from server.studies.schema import StudyConfig
from server.studies.service import cached_config
from server.studies.sessions import (
    EXPIRED_TOKEN,
    INVALID_TOKEN,
    MISSING_TOKEN,
    check_open,
)


@dataclass(frozen=True)
class ResponseIn:
    trial_id: str
    choice: str
    confidence: int
    rt_ms: float
    client_sent_at: str | None
    idempotency_key: str
    data: dict[str, Any]


# --- statements --------------------------------------------------------------------------------

_answered = aliased(Response)
_PREVIOUS_HASH = (
    select(Response.record_hash)
    .where(Response.session_id == bindparam("session_id"))
    .order_by(Response.id.desc())
    .limit(1)
    .correlate(None)
    .scalar_subquery()
)
_KEY_USED_BY = (
    select(Response.id)
    .where(Response.idempotency_key == bindparam("key"))
    .correlate(None)
    .scalar_subquery()
)
_open = aliased(Assignment)
_OPEN_ASSIGNMENT = (
    select(_open.id)
    .outerjoin(_answered, _answered.assignment_id == _open.id)
    .where(
        _open.session_id == bindparam("session_id"),
        _open.trial_id == bindparam("trial_id"),
        _answered.id.is_(None),
    )
    .order_by(_open.position)
    .limit(1)
    .correlate(None)
    .scalar_subquery()
)
_scored = aliased(Trial)
_MAIN_CORRECT = (
    select(func.count(Response.id))
    .join(_scored, _scored.id == Response.trial_id)
    .where(
        Response.session_id == bindparam("session_id"),
        Response.correct.is_(True),
        _scored.kind != "practice",
    )
    .correlate(None)
    .scalar_subquery()
)
_STATE = Prepared(
    select(
        ParticipantSession.status,
        ParticipantSession.seed,
        Study.id,
        Study.status,
        Study.config_hash,
        Study.stimulus_set_id,
        _KEY_USED_BY,
        Assignment.id,
        Assignment.max_is_a,
        Assignment.attempt,
        Trial.kind,
        _PREVIOUS_HASH,
        _MAIN_CORRECT,
        or_(
            ParticipantSession.token_expires_at.is_(None),
            ParticipantSession.token_expires_at > bindparam("now", type_=DateTime(timezone=True)),
        ),
        Assignment.served_at.is_not(None),
    )
    .join(Study, Study.id == ParticipantSession.study_id)
    .outerjoin(Assignment, Assignment.id == _OPEN_ASSIGNMENT)
    .outerjoin(Trial, Trial.id == Assignment.trial_id)
    .where(
        ParticipantSession.id == bindparam("session_id"),
        ParticipantSession.token_hash == bindparam("token_hash"),
    )
)
# PostgreSQL runs a session's writes concurrently: the row lock makes them take turns, so
# each reads the head of the hash chain that the one before it committed.
_LOCK_SESSION = Prepared(
    select(ParticipantSession.id)
    .where(
        ParticipantSession.id == bindparam("session_id"),
        ParticipantSession.token_hash == bindparam("token_hash"),
    )
    .with_for_update()
)
_ANY_ASSIGNMENT = (
    select(Assignment.id)
    .where(
        Assignment.session_id == bindparam("session_id"),
        Assignment.trial_id == bindparam("trial_id"),
    )
    .limit(1)
)
_BY_KEY = (
    select(Response.id, Response.session_id, Response.trial_id, Response.correct, Trial.kind)
    .join(Trial, Trial.id == Response.trial_id)
    .where(Response.id == bindparam("response_id"))
)
_MAIN_CORRECT_UP_TO = (
    select(func.count(Response.id))
    .join(Trial, Trial.id == Response.trial_id)
    .where(
        Response.session_id == bindparam("session_id"),
        Response.id <= bindparam("response_id"),
        Response.correct.is_(True),
        Trial.kind != "practice",
    )
)
_RECORD_COLUMNS = (
    "session_id",
    "trial_id",
    "assignment_id",
    "idempotency_key",
    "choice",
    "confidence",
    "rt_ms",
    "correct",
    "client_sent_at",
    "client_data",
    "received_at",
    "record_hash",
)
_INSERT = Prepared(insert(Response), column_keys=_RECORD_COLUMNS)


# --- the write ---------------------------------------------------------------------------------


def record_response(
    conn: Connection, session_id: str, token: str | None, r: ResponseIn
) -> tuple[dict[str, Any], bool]:
    """(body, created): graded here; a repeated idempotency key returns the first body."""
    if not token:
        raise Unauthorized(MISSING_TOKEN)
    now = utcnow()
    params = {
        "session_id": session_id,
        "token_hash": token_digest(token),
        "trial_id": r.trial_id,
        "key": r.idempotency_key,
        "now": now,
    }
    if conn.dialect.name != "sqlite":  # SQLite's single writer already takes turns
        _LOCK_SESSION.run(conn, params)
    row = _STATE.first(conn, params)
    if row is None:
        raise Unauthorized(INVALID_TOKEN)
    (
        session_status,
        seed,
        study_id,
        study_status,
        study_hash,
        stimulus_set_id,
        key_used_by,
        assignment_id,
        max_is_a,
        attempt,
        kind,
        previous_hash,
        main_correct,
        token_live,
        served,
    ) = row
    if not token_live:
        raise Unauthorized(EXPIRED_TOKEN)
    config = cached_config(conn, study_id, study_hash)
    if key_used_by is not None:
        return _replay(conn, config, session_id, r.trial_id, key_used_by), False
    check_open(study_status, session_status)
    if assignment_id is None:
        if conn.execute(_ANY_ASSIGNMENT, params).first() is None:
            raise NotFound("this trial is not assigned to this session")
        raise Conflict("this trial was already answered (with another idempotency key)")
    if not served:
        # Answers may arrive late or out of order (the page's offline queue), but only for
        # trials this session was shown: nobody answers ahead to probe the grading.
        raise Conflict("this trial has not been shown in this session yet: fetch it first")
    levels = config.layout.confidence_levels
    if not 1 <= r.confidence <= levels:
        raise AppError(
            f"confidence must be between 1 and {levels} in this study (got {r.confidence})",
            status_code=422,
            code="InvalidRequest",
        )
    correct = (r.choice == "a") == bool(max_is_a)
    record = {
        "session_id": session_id,
        "trial_id": r.trial_id,
        "assignment_id": assignment_id,
        "idempotency_key": r.idempotency_key,
        "choice": r.choice,
        "confidence": r.confidence,
        "rt_ms": r.rt_ms,
        "correct": correct,
        "client_sent_at": r.client_sent_at,
        "data": r.data,
    }
    values = {k: v for k, v in record.items() if k != "data"}
    values |= {
        "client_data": r.data,
        "received_at": now,
        "record_hash": chain_hash(previous_hash or GENESIS, record),
    }
    _INSERT.run(conn, values)
    practice = None
    if kind == "practice":
        design_key = (study_id, study_hash, stimulus_set_id)
        practice = finish_practice_response(conn, config, design_key, session_id, seed, attempt)
    # This response is the newest of its session, so the score so far plus itself is the
    # score up to it.
    body = _body(config, kind, correct, main_correct + (correct and kind != "practice"))
    if practice is not None:
        body["practice"] = practice  # a round ended: repeat, go on, or stop (issue 19)
    return body, True


def _replay(
    conn: Connection, config: StudyConfig, session_id: str, trial_id: str, response_id: int
) -> dict[str, Any]:
    """The body first sent for this idempotency key, if it was this session's and trial's."""
    _, owner, answered_trial, correct, kind = conn.execute(
        _BY_KEY, {"response_id": response_id}
    ).one()
    if owner != session_id or answered_trial != trial_id:
        raise Conflict("this idempotency key was already used for another trial: make a new one")
    score = conn.execute(
        _MAIN_CORRECT_UP_TO, {"session_id": session_id, "response_id": response_id}
    ).scalar_one()
    body = _body(config, kind, correct, score)
    if kind == "practice":
        practice = replayed_practice_outcome(conn, config, session_id, response_id)
        if practice is not None:
            body["practice"] = practice
    return body


def _body(config: StudyConfig, kind: str, correct: bool, main_correct: int) -> dict[str, Any]:
    body: dict[str, Any] = {"recorded": True}
    shows = config.trials.practice.feedback if kind == "practice" else config.trials.feedback_main
    if shows:
        body["feedback"] = {"correct": bool(correct)}
    # The running count is feedback too: a participant could diff it after every answer, so
    # it is sent only where main trials get feedback anyway.
    if kind != "practice" and config.layout.show_running_score and config.trials.feedback_main:
        body["n_correct"] = int(main_correct)
    return body
