"""Admin accounts and secret hashing: argon2 for passwords, keyed SHA-256 for worker IDs."""

from __future__ import annotations

import hashlib
import hmac
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AdminUser
from server.errors import AppError, Conflict

_hasher = PasswordHasher()
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 10


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
