"""API tokens for scripts: created in the dashboard, shown once, stored as a SHA-256 digest.

A token acts for the researcher who made it, with scope `read` (GET) or `write` (every
method); revoking it (or deleting the account) stops it at once. Tokens are random 256-bit
values, so a plain digest (not a slow password hash) is enough to make a leaked table useless.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.auth import token_digest
from server.db.models import AdminUser, ApiToken
from server.errors import AppError, NotFound

SCOPES = ("read", "write")
PREFIX = "pit_"  # recognisable in logs and secret scanners


def create_token(db: Session, user: AdminUser, name: str, scope: str) -> tuple[str, ApiToken]:
    """A new token for `user`: the plain value (show it once) and its row."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise AppError("give the token a name of 1-100 characters (what the script is for)")
    if scope not in SCOPES:
        raise AppError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id, name=name, scope=scope, token_hash=token_digest(token), prefix=token[:10]
    )
    db.add(row)
    db.flush()
    return token, row


def list_tokens(db: Session, user: AdminUser) -> list[ApiToken]:
    return list(
        db.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc()))
    )


def revoke_token(db: Session, user: AdminUser, token_id: int) -> ApiToken:
    """Revoke one of `user`'s tokens (an admin may revoke anyone's)."""
    row = db.get(ApiToken, token_id)
    if row is None or (row.user_id != user.id and user.role != "admin"):
        raise NotFound(f"no token {token_id} of yours")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        db.flush()
    return row


def user_for_bearer(db: Session, token: str) -> tuple[AdminUser, ApiToken] | None:
    """The researcher and token behind an `Authorization: Bearer` value, if it is live."""
    row = db.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    user = db.get(AdminUser, row.user_id)
    if user is None:
        return None
    row.last_used_at = datetime.now(UTC)
    return user, row
