"""Admin accounts and secret hashing: argon2 for passwords, keyed SHA-256 for worker IDs."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AdminSession, AdminUser
from server.errors import AppError, Conflict

_hasher = PasswordHasher()
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 10
_DUMMY_HASH = _hasher.hash("not a real password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


def keyed_hash(secret_key: str, value: str, purpose: str) -> str:
    """HMAC-SHA256 of `value`: stable for lookups, useless without the server's secret."""
    return hmac.new(f"{purpose}:{secret_key}".encode(), value.encode(), hashlib.sha256).hexdigest()


def create_admin_user(db: Session, email: str, password: str, role: str = "admin") -> AdminUser:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise AppError(f"{email!r} is not an email address")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AppError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if role not in {"admin", "researcher"}:
        raise AppError("role must be admin or researcher")
    if db.scalar(select(AdminUser).where(AdminUser.email == email)):
        raise Conflict(f"an account for {email} already exists")
    user = AdminUser(email=email, password_hash=hash_password(password), role=role)
    db.add(user)
    db.flush()
    return user


# --- dashboard sessions ------------------------------------------------------------------------

ADMIN_SESSION_HOURS = 12


class LoginFailed(AppError):
    status_code = 401


def token_digest(token: str) -> str:
    """Bearer and cookie tokens are stored only as this digest (a DB leak reveals no token)."""
    return hashlib.sha256(token.encode()).hexdigest()


def login(db: Session, email: str, password: str) -> tuple[str, AdminSession]:
    """Check the password; return a new session token (give it to the browser) and its row."""
    user = db.scalar(select(AdminUser).where(AdminUser.email == email.strip().lower()))
    # Verify against a dummy hash for unknown users so timing does not reveal accounts.
    stored = user.password_hash if user else _DUMMY_HASH
    if not verify_password(stored, password) or user is None:
        raise LoginFailed("wrong email or password")
    token = secrets.token_urlsafe(32)
    row = AdminSession(
        token_hash=token_digest(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=datetime.now(UTC) + timedelta(hours=ADMIN_SESSION_HOURS),
    )
    db.add(row)
    db.flush()
    return token, row


def admin_for_token(db: Session, token: str | None) -> tuple[AdminUser, AdminSession] | None:
    """The user and session behind a cookie token, if it is valid and not expired."""
    if not token:
        return None
    row = db.get(AdminSession, token_digest(token))
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires < datetime.now(UTC):
        db.delete(row)
        return None
    return db.get(AdminUser, row.user_id), row


def logout(db: Session, token: str | None) -> None:
    if token and (row := db.get(AdminSession, token_digest(token))):
        db.delete(row)
