"""Who may do what to a study: researchers own the studies they create; admins manage all.

A researcher cannot close or delete another researcher's study unless they are an admin.
Studies made from the CLI have no owner and stay manageable by every researcher.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.models import AdminUser, ParticipantSession, Study
from server.errors import Conflict, Forbidden
from server.studies.audit import record_audit_event

OWNER_ONLY_ACTIONS = {"close", "delete"}


def require_may(user: AdminUser, study: Study, action: str) -> None:
    if action not in OWNER_ONLY_ACTIONS or user.role == "admin":
        return
    if study.owner_id is not None and study.owner_id != user.id:
        raise Forbidden(
            f"study {study.slug!r} belongs to another researcher: only they or an admin "
            f"may {action} it"
        )


def delete_study(db: Session, user: AdminUser, study: Study) -> None:
    """Delete a study nobody has taken part in (a draft, or one closed before anyone came)."""
    require_may(user, study, "delete")
    sessions = db.scalar(select(func.count()).where(ParticipantSession.study_id == study.id))
    if sessions:
        raise Conflict(
            f"study {study.slug!r} has {sessions} participant session(s): close it instead, "
            "so their data stays"
        )
    record_audit_event(db, "study.delete", {"slug": study.slug}, study.id, user.email)
    db.delete(study)
    db.flush()
