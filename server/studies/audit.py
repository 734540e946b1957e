"""Hash chains: each audit event (and each session's responses) commits to its predecessor.

hash = sha256(prev_hash + canonical JSON). Changing or deleting any stored row breaks
every later hash, which `verify_audit_chain` detects.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AuditEvent
from server.hashing import canonical_json

GENESIS = "0" * 64


def chain_hash(prev_hash: str, record: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(record)).encode()).hexdigest()


def _event_record(event: AuditEvent) -> dict[str, Any]:
    return {
        "actor": event.actor,
        "action": event.action,
        "study_id": event.study_id,
        "payload": event.payload,
    }


def record_audit_event(
    db: Session, action: str, payload: dict[str, Any], study_id: int | None, actor: str = "cli"
) -> AuditEvent:
    """Append one event; the previous hash is read under the same transaction."""
    prev = db.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)) or GENESIS
    event = AuditEvent(
        actor=actor, action=action, study_id=study_id, payload=payload, prev_hash=prev, hash=""
    )
    event.hash = chain_hash(prev, _event_record(event))
    db.add(event)
    db.flush()
    return event


def verify_audit_chain(db: Session) -> int | None:
    """Id of the first event whose hash does not follow from its predecessor, else None."""
    prev = GENESIS
    for event in db.scalars(select(AuditEvent).order_by(AuditEvent.id)):
        if event.prev_hash != prev or event.hash != chain_hash(prev, _event_record(event)):
            return event.id
        prev = event.hash
    return None
