"""One link for a group of studies: each arriving participant takes a place in the live
study of the group with the fewest claimed places (issue 20).

A model comparison is several studies, one per model, sharing `group:` (a worker takes
part in one of them). Participants are spread over the models by this entry: it counts
the claimed places of every live study of the group and starts the arrival's session in
the emptiest one at once, through the ordinary session start, in the same transaction.
A redirect alone would not balance: arrivals who have not yet pressed "start" claim
nothing, so a burst of them would all be sent to the same study.

Concurrency: on SQLite the write runs in the writer process, one write after another; on
PostgreSQL the group's study rows are locked (in id order, the lock a session start takes
on its study) before counting, so concurrent arrivals take turns and each sees the places
the previous one claimed. Ties go by an order seeded with the group's name (the same on
every process, and not simply the alphabet).

A group link needs the platform's participant ID (Prolific's PROLIFIC_PID, MTurk's
workerId): the page the arrival is sent to starts its session again with that ID, which
resumes the place claimed here instead of taking a second one.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from server.auth import keyed_hash
from server.db.models import ParticipantSession, Study
from server.db.writes import with_orm_session
from server.errors import AppError, Conflict, NotFound
from server.studies import sessions
from server.studies.admission import AdmissionLimits
from server.studies.service import study_config


def group_studies(db: Session, group: str) -> list[Study]:
    """The live studies whose `group:` is `group`, in id order (few: filtered here, so the
    JSON column needs no dialect-specific query)."""
    live = db.scalars(select(Study).where(Study.status == "live").order_by(Study.id))
    return [s for s in live if (s.config or {}).get("group") == group]


def tie_order(group: str, slugs: list[str]) -> dict[str, int]:
    """A fixed order of the group's studies for ties, seeded with the group's name."""
    shuffled = sorted(slugs)
    random.Random(f"group:{group}").shuffle(shuffled)
    return {slug: rank for rank, slug in enumerate(shuffled)}


def claimed_places(db: Session, studies: list[Study]) -> dict[int, int]:
    """Places held per study (active or finished sessions; expired ones released first)."""
    for study in studies:
        sessions.release_expired(db.connection(), study.id, study_config(study))
    rows = db.execute(
        select(ParticipantSession.study_id, func.count())
        .where(
            ParticipantSession.study_id.in_([s.id for s in studies]),
            ParticipantSession.design_claim.is_not(None),
        )
        .group_by(ParticipantSession.study_id)
    ).all()
    return {s.id: 0 for s in studies} | dict(rows)


def _is_full(study: Study, claimed: int) -> bool:
    capacity = sessions._capacity(study_config(study), len(study.frozen["design_rows"]))
    return capacity is not None and claimed >= capacity


def preview_study(db: Session, group: str) -> str:
    """The study an MTurk preview shows (nothing is claimed for a preview)."""
    studies = _live_or_404(db, group)
    order = tie_order(group, [s.slug for s in studies])
    return min(studies, key=lambda s: order[s.slug]).slug


def _live_or_404(db: Session, group: str) -> list[Study]:
    studies = group_studies(db, group)
    if not studies:
        raise NotFound(
            f"no live study in group {group!r}: the link is /g/<group> with the `group:` "
            "of launched studies"
        )
    return studies


def start_group_session(
    db: Session,
    secret_key: str,
    group: str,
    params: dict[str, Any],
    client: dict[str, Any],
    address: str | None = None,
    limits: AdmissionLimits | None = None,
    own_transaction: bool = True,
) -> tuple[str, dict[str, Any], bool]:
    """(slug, session body, created): the arrival's place in the emptiest live study of
    the group, or its existing place in one of them (a returning worker)."""
    platform, worker = sessions.worker_identity(params)
    if worker is None:
        raise AppError(
            "a group link needs the platform's participant ID (PROLIFIC_PID on Prolific, "
            "workerId on MTurk): it is how the study page finds the place taken here; "
            "without a platform, share one study's own link (/s/<slug>)",
            status_code=422,
            code="PlatformIdRequired",
        )
    studies = _live_or_404(db, group)
    ids = [s.id for s in studies]
    # PostgreSQL: arrivals to the group take turns (locks in id order: no deadlock with
    # each other or with a session start on one study, which locks just its own row).
    db.execute(
        select(Study.id).where(Study.id.in_(ids)).order_by(Study.id).with_for_update(key_share=True)
    )
    worker_hash = keyed_hash(secret_key, f"{platform}:{worker}", "worker")
    returning = db.scalar(
        select(ParticipantSession.study_id)
        .where(ParticipantSession.worker_hash == worker_hash, ParticipantSession.study_id.in_(ids))
        .limit(1)
    )
    if returning is not None:
        chosen = next(s for s in studies if s.id == returning)
    else:
        claimed = claimed_places(db, studies)
        order = tie_order(group, [s.slug for s in studies])
        open_ = [s for s in studies if not _is_full(s, claimed[s.id])]
        if not open_:
            raise Conflict(
                f"every study of group {group!r} has all the participants it needs: "
                "thank you for your interest"
            )
        chosen = min(open_, key=lambda s: (claimed[s.id], order[s.slug]))
    body, created = sessions.start_session(
        db, secret_key, chosen.slug, params, client, address, limits, own_transaction
    )
    return chosen.slug, body, created


def start_group_session_write(
    conn: Connection,
    secret_key: str,
    group: str,
    params: dict[str, Any],
    client: dict[str, Any],
    address: str,
    limits: AdmissionLimits,
) -> tuple[str, dict[str, Any], bool]:
    """`start_group_session` as a write for server.db.writes.run_write (SQLite's writer
    process; a transaction of its own on PostgreSQL), like `sessions.start_session_write`."""
    return with_orm_session(
        conn,
        lambda db: start_group_session(
            db, secret_key, group, params, client, address, limits, own_transaction=False
        ),
    )
