"""Participant sessions: start/resume, token checks, next trial, completion, events.

Responses (the hot path) are in server.studies.responses. The study's frozen design is
cached in-process (frozen at launch, so the cache can never be stale: it is keyed by the
config hash).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from server import paradigms
from server.auth import keyed_hash, token_digest
from server.db.models import (
    Assignment,
    BarredWorker,
    ParticipantSession,
    Response,
    SessionEvent,
    Study,
    Trial,
    new_id,
)
from server.db.writes import with_orm_session
from server.errors import AppError, Conflict, Forbidden, Unauthorized
from server.studies.admission import AdmissionLimits, admit, aware, release_idle
from server.studies.assignment import Planned, SlotInfo, plan_session
from server.studies.schema import StudyConfig
from server.studies.service import (
    cached_config,
    get_study,
    slot_info,
    study_config,
    study_not_found,
)
from server.studies.stimulus_urls import choice_images, single_images, trial_images

MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
CLAIM_RETRIES = 50
MAX_EVENTS = 5000


# --- frozen design cache -----------------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    rows: list[list[str]]
    slots: dict[str, SlotInfo]
    practice: list[SlotInfo]
    catch: list[SlotInfo]


_designs: dict[tuple[int, str, str | None], Design] = {}


def study_design(db: Session, study: Study) -> Design:
    # The stimulus set id is random per generation: two databases never share a key.
    key = (study.id, study.config_hash, study.stimulus_set_id)
    if key not in _designs:
        trials = db.scalars(select(Trial).where(Trial.study_id == study.id)).all()
        slots = {t.id: slot_info(t) for t in trials}
        practice = sorted((t for t in trials if t.kind == "practice"), key=lambda t: t.slot)
        catch = sorted((t for t in trials if t.kind == "catch"), key=lambda t: t.slot)
        _designs[key] = Design(
            study.frozen["design_rows"],
            slots,
            [slots[t.id] for t in practice],
            [slots[t.id] for t in catch],
        )
    return _designs[key]


def cached_design(
    conn: Connection, study_id: int, config_hash: str, stimulus_set_id: str | None
) -> Design:
    """`study_design` by key, for the response path: it loads the study row (and its
    frozen design, the largest column) only the first time."""
    design = _designs.get((study_id, config_hash, stimulus_set_id))
    if design is None:
        with Session(bind=conn, join_transaction_mode="rollback_only") as db:
            design = study_design(db, db.get(Study, study_id))
    return design


# --- tokens and identities ---------------------------------------------------------------------


def new_token() -> str:
    """Random; only its digest is stored. A resume replaces it (the old one stops working)."""
    return secrets.token_urlsafe(32)


def worker_identity(params: dict[str, Any]) -> tuple[str, str | None]:
    """(platform, worker id) from the crowdsourcing parameters."""
    if params.get("PROLIFIC_PID"):
        return "prolific", str(params["PROLIFIC_PID"])
    if params.get("workerId"):
        if params.get("assignmentId") == MTURK_PREVIEW:
            raise Forbidden("this is the MTurk preview: accept the HIT to start")
        return "mturk", str(params["workerId"])
    return "plain", None


PLATFORM_NAMES = {"prolific": ("Prolific", "PROLIFIC_PID"), "mturk": ("MTurk", "workerId")}


def require_platform_id(config: StudyConfig, platform: str, params: dict[str, Any]) -> None:
    """A study run on Prolific or MTurk takes only that platform's participants: an
    anonymous post cannot take one of its places."""
    wanted = config.completion.platform
    if wanted == "plain" or platform == wanted:
        if wanted == "mturk" and not params.get("assignmentId"):
            raise AppError(
                "this study runs on MTurk: open it from the HIT (the link needs assignmentId)",
                status_code=422,
                code="PlatformIdRequired",
            )
        return
    name, key = PLATFORM_NAMES[wanted]
    raise AppError(
        f"this study runs on {name}: open it from your {name} account "
        f"(the study link must carry {key})",
        status_code=422,
        code="PlatformIdRequired",
    )


# --- public study info -------------------------------------------------------------------------


def public_study_info(db: Session, slug: str) -> dict[str, Any]:
    """Everything the participant pages need before a session exists (never an answer)."""
    study = get_study(db, slug)
    c = study_config(study)
    practice = c.trials.practice
    return {
        "slug": study.slug,
        "title": c.title,
        "description": c.description,
        "consent": c.consent,
        "instructions": c.instructions,
        "estimated_minutes": c.estimated_minutes,
        "status": study.status,
        "paradigm": c.paradigm,
        "task": c.task.model_dump(mode="json"),  # the paradigm's section (titles, options)
        "n_trials": practice.count + c.trials.main + c.n_catch,
        "practice": {
            "n_trials": practice.count,
            "feedback": practice.feedback,
            "max_attempts": practice.max_attempts,
        },
        "feedback_main": c.trials.feedback_main,
        "layout": c.layout.model_dump(mode="json", by_alias=True),
        "break_every": c.trials.break_every,
        "trial_timeout_ms": c.time_limits.trial_timeout_ms,
        "min_window": {"width": c.window.min_width, "height": c.window.min_height},
        "allow_mobile": c.window.allow_mobile,
        "fullscreen": c.window.fullscreen,
        "completion": {
            "platform": c.completion.platform,
            "redirect_delay_ms": c.completion.redirect_delay_ms,
        },
        "decline_redirect_url": c.decline_redirect_url,
        "comprehension": comprehension_questions(c),
    }


def comprehension_questions(config: StudyConfig) -> list[dict[str, Any]]:
    """The study's own questions, else its paradigm's (none: the page skips the check)."""
    if config.comprehension is not None:
        return [q.model_dump() for q in config.comprehension]
    return paradigms.get(config.paradigm).comprehension(config)


# --- start / resume ----------------------------------------------------------------------------


# The start path runs Core statements on the session's connection: a start is one write of
# SQLite's single writer, so its cost is every other arrival's wait (issue 25: 16 parallel
# starts, p99 < 200 ms). ORM loads (the study row with its frozen design, session objects and
# their unit of work) took most of it; the study's config and design come from caches.
_LIVE_STUDY = select(Study.id, Study.status, Study.config_hash, Study.stimulus_set_id).where(
    Study.slug == bindparam("slug")
)
_LOCK_STUDY = (
    select(Study.id).where(Study.id == bindparam("study_id")).with_for_update(key_share=True)
)
_WORKER_SESSION = select(ParticipantSession.id).where(
    ParticipantSession.study_id == bindparam("study_id"),
    ParticipantSession.worker_hash == bindparam("worker_hash"),
)


@dataclass(frozen=True)
class StudyKey:
    """What a session start needs of the study row (its config and design are cached)."""

    id: int
    status: str
    config_hash: str
    stimulus_set_id: str | None


def _study_key(conn: Connection, slug: str) -> StudyKey:
    row = conn.execute(_LIVE_STUDY, {"slug": slug}).first()
    if row is None:
        raise study_not_found(slug)
    return StudyKey(*row)


def start_session(
    db: Session,
    secret_key: str,
    slug: str,
    params: dict[str, Any],
    client: dict[str, Any],
    address: str | None = None,
    limits: AdmissionLimits | None = None,
    own_transaction: bool = True,
) -> tuple[dict[str, Any], bool]:
    """(body, created). Same worker again resumes; finishers and barred workers get 403.

    `address` (a keyed hash of the client's address) and `limits` rate-limit new sessions
    and release idle places when the study is full (the API always passes them)."""
    platform, worker = worker_identity(params)
    worker_hash = keyed_hash(secret_key, f"{platform}:{worker}", "worker") if worker else None
    for _ in range(CLAIM_RETRIES):
        conn = db.connection()
        study = _study_key(conn, slug)
        if study.status != "live":
            raise Conflict(f"this study is {study.status}: it is not taking participants now")
        config = cached_config(conn, study.id, study.config_hash)
        require_platform_id(config, platform, params)
        if worker_hash:
            existing = conn.execute(
                _WORKER_SESSION, {"study_id": study.id, "worker_hash": worker_hash}
            ).scalar()
            if existing is not None:
                session = db.get(ParticipantSession, existing)
                return _resume(db, session, config, client), False
            _check_not_barred(conn, config, worker_hash)
        # PostgreSQL: new arrivals for one study take turns (SQLite's writer is one at a
        # time, so it skips the statement). NO KEY UPDATE: rows referencing the study only
        # need a key share of it.
        if conn.dialect.name != "sqlite":
            conn.execute(_LOCK_STUDY, {"study_id": study.id})
        if limits is not None:
            admit(conn, limits, study.id, address or "")
        try:
            session_id, condition, token, n_trials = _claim(
                conn, study, config, worker_hash, platform, params, client, limits
            )
        except IntegrityError:
            if not own_transaction:
                raise  # a write runner rolls back to its savepoint and runs it again
            db.rollback()  # another arrival took that claim (or this worker's row): try again
            continue
        return {
            "session_id": session_id,
            "token": token,
            "n_trials": n_trials,
            "resumed": False,
            "instructions": config.instructions_for(condition),
        }, True
    raise Conflict("too many participants are arriving at once: try again in a moment")


def start_session_write(
    conn: Connection,
    secret_key: str,
    slug: str,
    params: dict[str, Any],
    client: dict[str, Any],
    address: str,
    limits: AdmissionLimits,
) -> tuple[dict[str, Any], bool]:
    """`start_session` as a write for server.db.writes.run_write: on SQLite, grouped with the
    other writes in the writer process (one commit, no busy-handler sleeps: 16 parallel
    starts took seconds at p99 as separate transactions); on PostgreSQL a transaction of its
    own, the study row locked so that concurrent claims take turns instead of colliding."""
    return with_orm_session(
        conn,
        lambda db: start_session(
            db, secret_key, slug, params, client, address, limits, own_transaction=False
        ),
    )


def _resume(
    db: Session, session: ParticipantSession, config: StudyConfig, client: dict[str, Any]
) -> dict[str, Any]:
    if session.status == "completed":
        raise Forbidden("you have already completed this study: thank you, nothing more to do")
    if session.status != "active":
        raise Forbidden(f"your session has ended ({session.status}): you cannot continue")
    n_trials = db.scalar(
        select(func.count()).select_from(Assignment).where(Assignment.session_id == session.id)
    )
    # A platform ID alone must not hand out the session's live token: the resumer gets a
    # fresh one and the old one stops working.
    token = new_token()
    session.token_hash = token_digest(token)
    session.last_seen_at = datetime.now(UTC)
    if set(session.client_info or {}) <= {"user_agent", "entry"}:
        # Claimed by a group link (server/studies/group_entry.py), which knows only the
        # user agent: the page's first start brings the screen, window and refresh rate.
        session.client_info = {**client, **(session.client_info or {})}
    db.flush()
    instructions = config.instructions_for(session.condition)
    return {
        "session_id": session.id,
        "token": token,
        "n_trials": n_trials,
        "resumed": True,
        "instructions": instructions,
    }


_BARRED = select(BarredWorker.study_group).where(
    BarredWorker.worker_hash == bindparam("worker_hash"),
    BarredWorker.study_group.in_(bindparam("groups", expanding=True)),
)
_RELEASE_EXPIRED = (
    update(ParticipantSession)
    .where(
        ParticipantSession.study_id == bindparam("of_study"),
        ParticipantSession.status == "active",
        ParticipantSession.design_claim.is_not(None),
        ParticipantSession.started_at < bindparam("cutoff"),
    )
    .values(status="timed_out", design_claim=None)
)


def _check_not_barred(conn: Connection, config: StudyConfig, worker_hash: str) -> None:
    groups = config.barred_by
    barred = conn.execute(_BARRED, {"worker_hash": worker_hash, "groups": groups}).first()
    if barred is not None:
        raise Forbidden(
            "you have already taken part in this study or one of its series, "
            "so you cannot take part again"
        )


def release_expired(conn: Connection, study_id: int, config: StudyConfig) -> None:
    """Unfinished sessions past the time limit give their place back (Prolific reopens it)."""
    cutoff = datetime.now(UTC) - timedelta(minutes=config.time_limits.session_minutes)
    conn.execute(_RELEASE_EXPIRED, {"of_study": study_id, "cutoff": cutoff})


def _capacity(config: StudyConfig, n_rows: int) -> int | None:
    limits = [
        config.participants_wanted,
        n_rows * config.counterbalancing.responses_per_slot
        if config.counterbalancing.responses_per_slot
        else None,
    ]
    known = [x for x in limits if x is not None]
    return min(known) if known else None


_CLAIMS = ParticipantSession.design_claim
_OF_STUDY = (ParticipantSession.study_id == bindparam("study_id"), _CLAIMS.is_not(None))
_CLAIM_RANGE = select(func.count(_CLAIMS), func.min(_CLAIMS), func.max(_CLAIMS)).where(*_OF_STUDY)
_TAKEN = aliased(ParticipantSession)
_LOWEST_GAP = select(func.min(_CLAIMS + 1)).where(
    *_OF_STUDY,
    ~select(_TAKEN.id)
    .where(_TAKEN.study_id == bindparam("study_id"), _TAKEN.design_claim == _CLAIMS + 1)
    .exists(),
)


def _free_claim(conn: Connection, study_id: int) -> int:
    """The lowest place of the design nobody holds.

    Asked of the database, not by loading every claim (issue 25: a study's thousands of
    sessions made that the slowest part of a start). Usually no place was released, the
    claims are 0..n-1 and the answer is n; otherwise the lowest gap, found on the unique
    (study_id, design_claim) index."""
    count, lowest, highest = conn.execute(_CLAIM_RANGE, {"study_id": study_id}).one()
    if count == 0 or lowest > 0:
        return 0
    if highest == count - 1:
        return count
    return conn.execute(_LOWEST_GAP, {"study_id": study_id}).scalar_one()


def between_condition(config: StudyConfig, design: Design, row: int) -> str | None:
    """A between-participant row's one condition (rows never mix them); None within."""
    if config.counterbalancing.conditions != "between":
        return None
    return design.slots[design.rows[row][0]].condition


def _claim(
    conn: Connection,
    study: StudyKey,
    config: StudyConfig,
    worker_hash: str | None,
    platform: str,
    params: dict[str, Any],
    client: dict[str, Any],
    limits: AdmissionLimits | None,
) -> tuple[str, str | None, str, int]:
    """Take the lowest free place in the design; the unique claim makes races fail loudly.
    Returns the session's id, its condition (between designs), its token and its number
    of trials."""
    release_expired(conn, study.id, config)
    design = cached_design(conn, study.id, study.config_hash, study.stimulus_set_id)
    claim = _free_claim(conn, study.id)
    capacity = _capacity(config, len(design.rows))
    full = capacity is not None and claim >= capacity
    if full and limits is not None and release_idle(conn, study.id, limits.idle_place_minutes):
        claim = _free_claim(conn, study.id)
    if capacity is not None and claim >= capacity:
        raise Conflict("this study has all the participants it needs: thank you for your interest")
    seed = secrets.randbelow(2**31)
    row = claim % len(design.rows)
    condition = between_condition(config, design, row)
    session_id, token = new_id(), new_token()
    conn.execute(
        insert(ParticipantSession),
        {
            "id": session_id,
            "study_id": study.id,
            "worker_hash": worker_hash,
            "platform": platform,
            "platform_params": {
                k: v
                for k, v in params.items()
                if v is not None and k != "workerId" and k != "PROLIFIC_PID"
            },
            "seed": seed,
            "design_claim": claim,
            "design_row": row,
            "condition": condition,
            "client_info": client,
            "token_hash": token_digest(token),
            "token_expires_at": datetime.now(UTC)
            + timedelta(minutes=config.time_limits.session_minutes),
        },
    )
    planned = plan_session(
        config, design.rows, design.slots, design.catch, design.practice, claim, seed
    )
    insert_assignments(conn, session_id, planned)
    return session_id, condition, token, len(planned)


def insert_assignments(db: Session | Connection, session_id: str, planned: list[Planned]) -> None:
    if planned:
        db.execute(
            insert(Assignment),
            [
                {
                    "session_id": session_id,
                    "trial_id": p.trial_id,
                    "position": p.position,
                    "max_is_a": p.max_is_a,
                    "attempt": p.attempt,
                    "display": p.display,
                }
                for p in planned
            ],
        )


# --- authentication ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionAuth:
    session_id: str
    status: str
    seed: int
    worker_hash: str | None
    study_id: int
    study_status: str
    config_hash: str
    expires_at: datetime | None


_AUTH = (
    select(
        ParticipantSession.id,
        ParticipantSession.status,
        ParticipantSession.seed,
        ParticipantSession.worker_hash,
        Study.id,
        Study.status,
        Study.config_hash,
        ParticipantSession.token_expires_at,
    )
    .join(Study, Study.id == ParticipantSession.study_id)
    .where(ParticipantSession.token_hash == bindparam("token_hash"))
)
MISSING_TOKEN = "missing session token: send Authorization: Bearer <token>"
INVALID_TOKEN = "invalid session token for this session: start the study again"
EXPIRED_TOKEN = "this session has expired (the study's time limit has passed): it cannot continue"


def authenticate(db: Session, session_id: str, token: str | None) -> SessionAuth:
    if not token:
        raise Unauthorized(MISSING_TOKEN)
    row = db.connection().execute(_AUTH, {"token_hash": token_digest(token)}).first()
    if row is None or row[0] != session_id:
        raise Unauthorized(INVALID_TOKEN)
    auth = SessionAuth(*row)
    if auth.expires_at is not None and aware(auth.expires_at) <= datetime.now(UTC):
        raise Unauthorized(EXPIRED_TOKEN)
    return auth


def _config(db: Session, auth: SessionAuth) -> StudyConfig:
    return cached_config(db, auth.study_id, auth.config_hash)


# --- trials ------------------------------------------------------------------------------------


def _unanswered():
    return (
        select(Assignment.id)
        .outerjoin(Response, Response.assignment_id == Assignment.id)
        .where(Response.id.is_(None))
    )


def next_trial(db: Session, auth: SessionAuth, secret_key: str) -> dict[str, Any] | None:
    """The lowest-position unanswered trial, or None when all are answered. Serving it
    marks it served: only served trials can be answered."""
    if auth.status not in ("active", "completed"):
        check_open(auth.study_status, auth.status)
    row = db.execute(
        select(
            Assignment.id,
            Assignment.position,
            Assignment.served_at,
            Assignment.trial_id,
            Assignment.max_is_a,
            Assignment.display,
            Trial.kind,
            Trial.paradigm,
            Trial.images,
            Trial.choices,
            Trial.answer,
        )
        .join(Trial, Trial.id == Assignment.trial_id)
        .outerjoin(Response, Response.assignment_id == Assignment.id)
        .where(Assignment.session_id == auth.session_id, Response.id.is_(None))
        .order_by(Assignment.position)
        .limit(1)
    ).first()
    if row is None:
        return None
    assignment_id, position, served_at, trial_id, max_is_a, display, kind = row[:7]
    paradigm, images, choices, answer = row[7:]
    now = datetime.now(UTC)
    if served_at is None:
        db.execute(update(Assignment).where(Assignment.id == assignment_id).values(served_at=now))
    db.execute(
        update(ParticipantSession)
        .where(ParticipantSession.id == auth.session_id)
        .values(last_seen_at=now)
    )
    total, answered = db.execute(
        select(func.count(Assignment.id), func.count(Response.id))
        .outerjoin(Response, Response.assignment_id == Assignment.id)
        .where(Assignment.session_id == auth.session_id)
    ).one()
    a, b = choice_images(images, choices, answer, max_is_a)
    block = "practice" if kind == "practice" else "main"
    return {
        "trial_id": trial_id,
        "type": paradigms.get(paradigm).trial_type,
        "index": answered,
        "n_trials": total,
        "kind": block,  # catch trials are reported as "main": they must not stand out
        "block": block,
        "images": trial_images(
            secret_key,
            auth.session_id,
            position,
            a,
            b,
            display.get("max", []),
            display.get("min", []),
            single_images(images, choices),
        ),
    }


def _as_write(conn: Connection, session_id: str, token: str | None, run) -> Any:
    """`run(db, auth)` inside a write of server.db.writes.run_write, authenticated there."""
    return with_orm_session(conn, lambda db: run(db, authenticate(db, session_id, token)))


# The participant routes that write (besides responses and starts) run as writes of the hot
# path too: on SQLite in the writer process, which takes the write lock for every batch. A
# request thread writing beside it waited in SQLite's busy handler and, under bench/faults.py's
# 50 participants at once, could wait out its 30 s and fail with "database is locked".


def next_trial_write(
    conn: Connection, session_id: str, token: str | None, secret_key: str
) -> dict[str, Any] | None:
    return _as_write(conn, session_id, token, lambda db, a: next_trial(db, a, secret_key))


def complete_session_write(conn: Connection, session_id: str, token: str | None) -> dict[str, Any]:
    return _as_write(conn, session_id, token, complete_session)


def record_events_write(
    conn: Connection, session_id: str, token: str | None, events: list[dict[str, Any]]
) -> None:
    return _as_write(conn, session_id, token, lambda db, a: record_events(db, a, events))


def check_open(study_status: str, session_status: str) -> None:
    """Refuse answers once the study is closed or the session is over (with the reason)."""
    if study_status == "closed":
        raise Conflict("this study is closed: responses are no longer accepted")
    if session_status == "completed":
        raise Conflict("this session is finished: no more responses are accepted")
    if session_status != "active":
        raise Conflict(f"this session has ended ({session_status}): responses are not accepted")


# --- completion and events ---------------------------------------------------------------------


def complete_session(db: Session, auth: SessionAuth) -> dict[str, Any]:
    """Completion code and redirect once every trial is answered (again: the same answer)."""
    session = db.get(ParticipantSession, auth.session_id)
    config = _config(db, auth)
    if session.status != "completed":
        check_open(auth.study_status, auth.status)
        remaining = db.scalar(
            select(func.count()).select_from(
                _unanswered().where(Assignment.session_id == auth.session_id).subquery()
            )
        )
        if remaining:
            raise Conflict(f"{remaining} trial(s) are still unanswered: finish them first")
        session.status = "completed"
        session.completed_at = datetime.now(UTC)
        session.completion_code = config.completion.code or secrets.token_hex(4).upper()
        if session.worker_hash:
            _bar(db, session.worker_hash, config)
        db.flush()
    return _completion_body(config, session)


def _bar(db: Session, worker_hash: str, config: StudyConfig) -> None:
    """The bouncer: a finisher may not take this study or its series again."""
    known = set(
        db.scalars(
            select(BarredWorker.study_group).where(
                BarredWorker.worker_hash == worker_hash,
                BarredWorker.study_group.in_(config.group_names),
            )
        )
    )
    for group in config.group_names:
        if group not in known:
            db.add(BarredWorker(worker_hash=worker_hash, study_group=group, reason="completed"))


def _completion_body(config: StudyConfig, session: ParticipantSession) -> dict[str, Any]:
    code = session.completion_code
    platform = session.platform
    redirect = config.completion.url
    mturk = None
    if platform == "prolific" and not redirect:
        redirect = f"https://app.prolific.com/submissions/complete?cc={code}"
    if platform == "mturk":
        submit_to = session.platform_params.get("turkSubmitTo") or "https://www.mturk.com"
        mturk = {
            "submit_url": submit_to.rstrip("/") + "/mturk/externalSubmit",
            "assignmentId": session.platform_params.get("assignmentId"),
        }
        redirect = None
    return {"completion_code": code, "redirect_url": redirect, "mturk": mturk}


def record_events(db: Session, auth: SessionAuth, events: list[dict[str, Any]]) -> None:
    """Append the events as rows (a post never rewrites earlier ones), within the quota."""
    check_open(auth.study_status, auth.status)
    stored = db.scalar(
        select(func.count(SessionEvent.id)).where(SessionEvent.session_id == auth.session_id)
    )
    if stored + len(events) > MAX_EVENTS:
        raise AppError(
            f"too many events for one session (limit {MAX_EVENTS}, {stored} stored)",
            status_code=413,
            code="EventQuotaExceeded",
        )
    now = datetime.now(UTC)
    if events:
        db.execute(
            insert(SessionEvent),
            [
                {
                    "session_id": auth.session_id,
                    "type": e["type"],
                    "t_ms": e["t_ms"],
                    "detail": e.get("detail"),
                    "received_at": now,
                }
                for e in events
            ],
        )
    db.execute(
        update(ParticipantSession)
        .where(ParticipantSession.id == auth.session_id)
        .values(last_seen_at=now)
    )
    # The page reports the time spent on the instructions once (issue 19: min_instruction_s).
    done = [e for e in events if e["type"] == "instructions_done"]
    detail = done[0].get("detail") if done else None
    duration_ms = detail.get("duration_ms") if isinstance(detail, dict) else None
    if isinstance(duration_ms, int | float) and duration_ms >= 0:
        db.execute(
            update(ParticipantSession)
            .where(
                ParticipantSession.id == auth.session_id,
                ParticipantSession.instruction_s.is_(None),
            )
            .values(instruction_s=duration_ms / 1000.0)
        )


def session_events(db: Session, session_id: str) -> list[dict[str, Any]]:
    """A session's events in the order they arrived (before 0002 they were a JSON list on
    the session row, which is returned first)."""
    legacy = db.scalar(select(ParticipantSession.events).where(ParticipantSession.id == session_id))
    rows = db.execute(
        select(SessionEvent.type, SessionEvent.t_ms, SessionEvent.detail)
        .where(SessionEvent.session_id == session_id)
        .order_by(SessionEvent.id)
    ).all()
    return list(legacy or []) + [{"type": t, "t_ms": ms, "detail": d} for t, ms, d in rows]


def answers_for_session(db: Session, session_id: str) -> dict[str, bool]:
    """trial_id → max is a, for the unanswered assignments (test tool: the oracle observer)."""
    rows = db.execute(
        select(Assignment.trial_id, Assignment.max_is_a)
        .outerjoin(Response, Response.assignment_id == Assignment.id)
        .where(Assignment.session_id == session_id, Response.id.is_(None))
        .order_by(Assignment.position.desc())
    ).all()
    return dict(rows)  # lowest position wins (repeated practice shares trial ids)
