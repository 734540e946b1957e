"""Who may start a session: rate limits per address and per study, and idle places.

Limits count recent session starts in the `session_starts` table (address as a keyed hash),
so they hold across worker processes and restarts, unlike an in-memory counter. A start
over the limit gets 429 with Retry-After: the seconds until the oldest start in the window
leaves it. Places held by idle sessions (no request for `idle_place_minutes`) are given to
new arrivals when the study is full, so a burst of abandoned starts cannot lock a study
until its full time limit runs out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update

from server.auth import keyed_hash
from server.db.models import ParticipantSession, SessionStart
from server.errors import TooManyRequests


@dataclass(frozen=True)
class AdmissionLimits:
    per_address: int
    per_study: int
    window_s: int
    idle_place_minutes: float

    @classmethod
    def from_settings(cls, settings) -> AdmissionLimits:
        return cls(
            settings.session_starts_per_address,
            settings.session_starts_per_study,
            settings.session_start_window_s,
            settings.idle_place_minutes,
        )


def aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def address_hash(secret_key: str, address: str | None) -> str:
    return keyed_hash(secret_key, address or "unknown", "client-address")


def admit(conn: Connection, limits: AdmissionLimits, study_id: int, address: str) -> None:
    """Record one session start, or raise 429 if the address or the study is over its limit.
    (Core statements: it runs inside every session start, SQLite's one writer.)"""
    now = datetime.now(UTC)
    window_start = now - timedelta(seconds=limits.window_s)
    conn.execute(delete(SessionStart).where(SessionStart.at < window_start))
    for column, value, limit, who in (
        (SessionStart.address_hash, address, limits.per_address, "from your network address"),
        (SessionStart.study_id, study_id, limits.per_study, "for this study"),
    ):
        count, oldest = conn.execute(
            select(func.count(SessionStart.id), func.min(SessionStart.at)).where(
                column == value, SessionStart.at >= window_start
            )
        ).one()
        if count >= limit:
            wait = limits.window_s - (now - aware(oldest)).total_seconds()
            raise TooManyRequests(
                f"too many sessions started {who} (at most {limit} per {limits.window_s} s): "
                "please try again in a moment",
                math.ceil(wait),
            )
    conn.execute(insert(SessionStart).values(study_id=study_id, address_hash=address, at=now))


def release_idle(conn: Connection, study_id: int, idle_minutes: float) -> int:
    """Give back the places of active sessions not seen for `idle_minutes`; how many."""
    cutoff = datetime.now(UTC) - timedelta(minutes=idle_minutes)
    result = conn.execute(
        update(ParticipantSession)
        .where(
            ParticipantSession.study_id == study_id,
            ParticipantSession.status == "active",
            ParticipantSession.design_claim.is_not(None),
            ParticipantSession.last_seen_at < cutoff,
        )
        .values(status="timed_out", design_claim=None)
    )
    return result.rowcount or 0
