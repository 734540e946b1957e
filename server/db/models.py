"""The domain in tables: models, units, images, stimuli, studies, trials, sessions, responses.

Answers (which query is the max) live only here and in server-side code; nothing
that reaches a participant's browser is derived from them except the grading result.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """Opaque random identifiers: sequential IDs would leak order and counts."""
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict] = {dict[str, Any]: JSON, list[Any]: JSON}


class AdminUser(Base):
    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="researcher")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AdminSession(Base):
    """A logged-in dashboard session: server-side, so logout and expiry really revoke it."""

    __tablename__ = "admin_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Failed dashboard logins of one bucket (see server/login_throttle.py): an account
    from one address or trusted browser, or one address over all accounts. In the database,
    not in memory, so every server process sees the same counts."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the bucket
    scope: Mapped[str] = mapped_column(String(16))  # account | address
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiToken(Base):
    """A bearer token for scripts on /api/admin: only its digest is stored (shown once)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # shown in lists to tell tokens apart
    scope: Mapped[str] = mapped_column(String(10))  # read | write
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class VisionModel(Base):
    """A model as used by a study: registry name plus the spec it was loaded with."""

    __tablename__ = "vision_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(50))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)

    units: Mapped[list[Unit]] = relationship(back_populates="model")


class Unit(Base):
    """One channel/neuron of one layer of one model."""

    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("model_id", "layer", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("vision_models.id", ondelete="CASCADE"))
    layer: Mapped[str] = mapped_column(String(200))
    index: Mapped[int] = mapped_column(Integer)
    layer_depth: Mapped[float | None] = mapped_column(Float, nullable=True)

    model: Mapped[VisionModel] = relationship(back_populates="units")


class Image(Base):
    """A content-addressed image file in the stimulus store (sha256 of its bytes)."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # natural | synthetic | occlusion
    media_type: Mapped[str] = mapped_column(String(40))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)  # original file (natural)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), default="draft")  # draft|live|paused|closed
    config_yaml: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer, default=0)
    stimulus_set_id: Mapped[str | None] = mapped_column(
        ForeignKey("stimulus_sets.id", ondelete="SET NULL"), nullable=True
    )
    frozen: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    launched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("admin_users.id", ondelete="SET NULL"), nullable=True
    )


class StimulusSet(Base):
    """The output of one generation run. Visible to studies only once status is 'ready'."""

    __tablename__ = "stimulus_sets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    config_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="building")  # building|ready|failed
    manifest: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Stimulus(Base):
    """One image in a role for one unit: e.g. a max reference, a min query."""

    __tablename__ = "stimuli"

    id: Mapped[int] = mapped_column(primary_key=True)
    stimulus_set_id: Mapped[str] = mapped_column(
        ForeignKey("stimulus_sets.id", ondelete="CASCADE"), index=True
    )
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"))
    # role: query_max | query_min | reference_max | reference_min | base (occlusion)
    role: Mapped[str] = mapped_column(String(30))
    source: Mapped[str] = mapped_column(String(20))  # natural | synthetic | occlusion
    # IMI splits each unit's extremes into batches (one trial's worth of images each).
    batch: Mapped[int] = mapped_column(Integer, default=0)
    rank: Mapped[int] = mapped_column(Integer, default=0)
    activation: Mapped[float | None] = mapped_column(Float, nullable=True)


class Trial(Base):
    """A trial of some paradigm (server/paradigms): its images by role, the two roles offered
    as choices and the role of the right one (kept server-side). Serving, grading, export,
    analysis and the MIS fit all read the trial through `images`, `choices` and `answer`;
    the 2AFC-shaped query/reference columns that predate the seam were dropped (0011)."""

    __tablename__ = "trials"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(20))  # main | practice | catch
    condition: Mapped[str] = mapped_column(String(30))  # natural | synthetic | mixed | none
    slot: Mapped[int] = mapped_column(Integer, default=0)  # position in the design
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # issue 21 (0007): the paradigm seam.
    paradigm: Mapped[str] = mapped_column(String(30), default="imi", server_default="imi")
    images: Mapped[dict[str, Any]] = mapped_column(nullable=True, default=dict)  # role -> sha
    choices: Mapped[list[Any]] = mapped_column(nullable=True, default=list)  # the two roles
    answer: Mapped[str] = mapped_column(String(30), default="query_max", server_default="query_max")


class ParticipantSession(Base):
    __tablename__ = "participant_sessions"
    __table_args__ = (
        UniqueConstraint("study_id", "worker_hash"),
        # One session per design claim: concurrent arrivals can never share a slot.
        UniqueConstraint("study_id", "design_claim"),
        # Every session start releases the study's expired places (0010): without this index
        # that update read every session of the study.
        Index("ix_participant_sessions_study_status_started", "study_id", "status", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    worker_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    platform: Mapped[str] = mapped_column(String(20), default="plain")  # prolific|mturk|plain
    platform_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="active")
    # active | completed | declined | returned | screened_out
    seed: Mapped[int] = mapped_column(Integer, default=0)
    design_row: Mapped[int] = mapped_column(Integer, default=0)
    # Between-participant designs: the one condition this participant sees (issue 20).
    condition: Mapped[str | None] = mapped_column(String(30), nullable=True)
    # n-th place of the study's design (row = claim % rows); NULL once released (timed out).
    design_claim: Mapped[int | None] = mapped_column(Integer, nullable=True)
    client_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    events: Mapped[list[Any]] = mapped_column(default=list)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    exclusion_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    completion_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # issue 25: the bearer token is random (only its digest is stored), replaced on resume,
    # and dies with the session (its time limit). NULL only for sessions made before 0002.
    token_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    # issue 19 (0004): practice rounds finished, whether/when one was all right (NULL until
    # the first round ends), and the instruction time the page reported (exclusion rules).
    practice_passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    practice_passed_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    practice_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    instruction_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class SessionEvent(Base):
    """One interaction event (blur, fullscreen exit, ...): appended, never rewritten."""

    __tablename__ = "session_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("participant_sessions.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(60))
    t_ms: Mapped[float] = mapped_column(Float)
    detail: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SessionStart(Base):
    """One session start, kept for a while: rate limits per address and per study that hold
    across processes (the address is stored as a keyed hash)."""

    __tablename__ = "session_starts"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    address_hash: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Assignment(Base):
    """A trial placed at a position in one session, with its a/b order (answer side)."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("session_id", "position"),
        # A repeated practice block shows the same trials again as a new attempt.
        UniqueConstraint("session_id", "trial_id", "attempt"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("participant_sessions.id", ondelete="CASCADE"), index=True
    )
    trial_id: Mapped[str] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    max_is_a: Mapped[bool] = mapped_column(Boolean)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Order of references shown; server-side so a/b and the references can be re-shown on resume.
    display: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set when the trial is first served: only served trials can be answered (issue 25).
    served_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Response(Base):
    """One graded answer. Written once: unique per assignment and per idempotency key."""

    __tablename__ = "responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("participant_sessions.id", ondelete="CASCADE"), index=True
    )
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignments.id", ondelete="CASCADE"), unique=True
    )
    trial_id: Mapped[str] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    choice: Mapped[str] = mapped_column(String(1))  # a | b
    confidence: Mapped[int] = mapped_column(Integer)
    rt_ms: Mapped[float] = mapped_column(Float)
    correct: Mapped[bool] = mapped_column(Boolean)
    client_sent_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    client_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    record_hash: Mapped[str] = mapped_column(String(64))


class Job(Base):
    """A background generation job with its progress, visible to the CLI and dashboard."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    # queued | running | succeeded | failed | cancelled
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("studies.id", ondelete="SET NULL"), nullable=True
    )
    progress: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # issue 23 (server/jobs): what to run, where it runs, how far it got.
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    step: Mapped[str] = mapped_column(String(60), default="")
    log_tail: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(320), nullable=True)


class BarredWorker(Base):
    """A (hashed) worker who may not take part in a study group."""

    __tablename__ = "barred_workers"
    __table_args__ = (UniqueConstraint("worker_hash", "study_group"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_hash: Mapped[str] = mapped_column(String(64))
    study_group: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """Append-only log; each row's hash chains the previous one (integrity proof)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(60))
    study_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))


class MachineScore(Base):
    """issue 22 (0006): machine interpretability score (MIS) of one unit, or why it has none.

    One row per unit and scoring key (model, layer, unit, similarity backend, alpha, tasks,
    references, seed, image set): a run that stops resumes by skipping stored keys. The
    per-task similarity differences are kept, so alpha can be refitted without re-embedding.
    """

    __tablename__ = "machine_scores"
    __table_args__ = (
        UniqueConstraint(
            "model", "layer", "unit_index", "backend", "alpha", "n_tasks", "k", "seed",
            "image_set", name="uq_machine_scores_key",
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    layer: Mapped[str] = mapped_column(String(200))
    unit_index: Mapped[int] = mapped_column(Integer)
    layer_depth: Mapped[float] = mapped_column(Float)
    backend: Mapped[str] = mapped_column(String(100))
    alpha: Mapped[float] = mapped_column(Float)
    n_tasks: Mapped[int] = mapped_column(Integer)
    k: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    image_set: Mapped[str] = mapped_column(String(64))  # hash of the image files (name, size)
    images: Mapped[str] = mapped_column(Text)  # the folder, for people
    mis: Mapped[float | None] = mapped_column(Float, nullable=True)  # NULL: dropped, see note
    ci_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    ci_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    deltas: Mapped[list[Any]] = mapped_column(default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
