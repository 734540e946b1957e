"""A study's participants for the researcher: status, timing, catch accuracy, flags; exclusions.

Flags are what the study's own exclusion rules say about each participant (computed by
`analysis.apply_exclusions`, the same code the scores use), so the page and the scores
never disagree. Excluding or including someone is audit-logged with the researcher's
identity and the reason; scores follow at once (they read the `excluded` flag).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from server.db.models import BarredWorker, ParticipantSession, Response, Study
from server.errors import AppError, NotFound
from server.studies.audit import record_audit_event


def _seconds(start, end) -> float | None:
    if start is None or end is None:
        return None
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    return round((end - start).total_seconds(), 1)


def _per_participant(frame: pd.DataFrame, study: Study) -> dict[str, dict[str, Any]]:
    """Catch accuracy, practice rounds and rule flags per participant, from the tidy frame."""
    from analysis.dashboard import study_rules
    from analysis.exclusions import apply_exclusions

    if frame.empty:
        return {}
    catch = frame[frame["trial_kind"] == "catch"].groupby("participant")["correct"].mean()
    practice = frame[frame["trial_kind"] == "practice"]
    if "practice_attempts" in frame.columns and frame["practice_attempts"].notna().any():
        rounds = frame.groupby("participant")["practice_attempts"].max()
    else:
        trial = "trial" if "trial" in practice.columns else "trial_id"
        rounds = practice.groupby(["participant", trial]).size().groupby("participant").max()
    _, report = apply_exclusions(frame, study_rules(study))
    out: dict[str, dict[str, Any]] = {}
    for participant in frame["participant"].unique():
        out[str(participant)] = {
            "catch_accuracy": _number(catch.get(participant)),
            "practice_rounds": _number(rounds.get(participant)),
            "flags": [r for r in report.participants.get(participant, []) if r != "manual"],
        }
    return out


_NO_STATS = {"catch_accuracy": None, "practice_rounds": None, "flags": []}


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 3)


def list_participants(db: Session, engine: Engine, study: Study) -> list[dict[str, Any]]:
    """One row per session of the study, newest first."""
    from analysis.load import load_study

    answers = dict(
        db.execute(
            select(Response.session_id, func.count())
            .join(ParticipantSession, ParticipantSession.id == Response.session_id)
            .where(ParticipantSession.study_id == study.id)
            .group_by(Response.session_id)
        ).all()
    )
    stats = _per_participant(load_study(engine, study.slug), study)
    barred = _barred_by_researchers(db, study)
    rows = []
    sessions = db.scalars(
        select(ParticipantSession)
        .where(ParticipantSession.study_id == study.id)
        .order_by(ParticipantSession.started_at.desc())
    )
    for session in sessions:
        end = session.completed_at or session.last_seen_at
        rows.append(
            {
                "id": session.id,
                "platform": session.platform,
                "status": session.status,
                "started_at": session.started_at,
                "completed_at": session.completed_at,
                "duration_s": _seconds(session.started_at, end),
                "responses": answers.get(session.id, 0),
                "excluded": session.excluded,
                "exclusion_reason": session.exclusion_reason,
                "can_bar": session.worker_hash is not None,
                "barred_reason": barred.get(session.worker_hash),
                **stats.get(session.id, _NO_STATS),
            }
        )
    return rows


def set_exclusion(
    db: Session, study: Study, session_id: str, excluded: bool, reason: str, actor: str
) -> ParticipantSession:
    """Exclude (or include again) one participant; the reason is required and audit-logged."""
    reason = (reason or "").strip()
    if not reason:
        raise AppError("give a reason: it is stored in the audit log with your name")
    if len(reason) > 2000:
        raise AppError("the reason is too long: keep it under 2000 characters")
    session = db.get(ParticipantSession, session_id)
    if session is None or session.study_id != study.id:
        raise NotFound(f"no participant {session_id!r} in study {study.slug!r}")
    session.excluded = excluded
    session.exclusion_reason = reason if excluded else None
    db.flush()
    action = "participant.exclude" if excluded else "participant.include"
    record_audit_event(db, action, {"session": session_id, "reason": reason}, study.id, actor)
    return session


def _group_names(study: Study) -> list[str]:
    from server.studies.service import study_config

    return study_config(study).group_names


def _barred_by_researchers(db: Session, study: Study) -> dict[str, str]:
    """worker hash -> reason, for bars a researcher set on this study's series."""
    rows = db.execute(
        select(BarredWorker.worker_hash, BarredWorker.reason).where(
            BarredWorker.study_group.in_(_group_names(study)),
            BarredWorker.reason.like("barred by %"),
        )
    )
    return dict(rows.all())


def bar_participant(
    db: Session, study: Study, session_id: str, reason: str, actor: str
) -> ParticipantSession:
    """Keep this participant's worker out of the study and its series (`group`) from now on."""
    reason = (reason or "").strip()
    if not reason:
        raise AppError("give a reason for barring: it is stored in the audit log with your name")
    session = db.get(ParticipantSession, session_id)
    if session is None or session.study_id != study.id:
        raise NotFound(f"no participant {session_id!r} in study {study.slug!r}")
    if session.worker_hash is None:
        raise AppError("this participant came by a plain link: there is no worker ID to bar")
    groups = _group_names(study)
    known = {
        row.study_group: row
        for row in db.scalars(
            select(BarredWorker).where(
                BarredWorker.worker_hash == session.worker_hash,
                BarredWorker.study_group.in_(groups),
            )
        )
    }
    stored = f"barred by {actor}: {reason}"[:2000]
    for group in groups:
        if group in known:
            known[group].reason = stored
        else:
            db.add(BarredWorker(worker_hash=session.worker_hash, study_group=group, reason=stored))
    db.flush()
    record_audit_event(
        db, "participant.bar", {"session": session_id, "groups": groups, "reason": reason},
        study.id, actor,
    )  # fmt: skip
    return session
