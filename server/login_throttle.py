"""Throttling of dashboard logins: exponential back-off per bucket, counted in the database.

Why in the database: an in-memory counter is per process (a second worker, or a restart,
starts from zero). Why buckets and not one lock per account: a lock per account lets anyone
who knows a researcher's email lock them out, and behind a proxy every request has the
proxy's address, so a lock per address would lock out everyone at once.

The design follows OWASP's "device cookie" scheme (Slow Down Online Guessing Attacks with
Device Cookies) and the back-off of tools such as Keycloak:

- An **untrusted** browser's failures count in two buckets: the account from this address,
  and this address over all accounts (password spraying). Each bucket allows a few free
  failures, then waits 2 s, 4 s, 8 s, ... (at most 15 min) before it may try again.
- A browser that has logged in to an account before holds a signed **device cookie** for it.
  Its failures count only in a bucket of its own (the account from this device), so an
  attacker elsewhere, or behind the same proxy, cannot lock that researcher out.
- A successful login clears the bucket of the account it used (not the address bucket: an
  attacker with one valid account must not reset the count of his spraying).
- Unknown accounts are throttled exactly like real ones, so throttling reveals no account.

Buckets are stored as a sha256 of their parts (no email or address in the table) and
forgotten a day after their last failure.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.orm import Session

from server.db.models import LoginThrottle
from server.errors import AppError

DEVICE_COOKIE = "pi_device"
DEVICE_COOKIE_MAX_AGE_S = 365 * 24 * 3600


@dataclass(frozen=True)
class BackOff:
    """`free` failures, then a wait of base · 2^(n-1) seconds after the free+n-th, capped."""

    free: int
    base_s: float = 2.0
    max_s: float = 900.0

    def wait_after(self, failures: int) -> timedelta | None:
        if failures <= self.free:
            return None
        return timedelta(seconds=min(self.base_s * 2 ** (failures - self.free - 1), self.max_s))


ACCOUNT_BACKOFF = BackOff(free=5)
ADDRESS_BACKOFF = BackOff(free=50)  # many accounts from one address: spraying, or a proxy
FORGET_AFTER = timedelta(days=1)


class LoginThrottled(AppError):
    status_code = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"too many failed logins: try again in {retry_after_s} s "
            "(each further failure doubles the wait)"
        )
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class LoginClient:
    """Who is trying: the client address and the browser's device cookie, if it sent one."""

    address: str
    device_cookie: str | None = None


@dataclass(frozen=True)
class _Bucket:
    key: str
    scope: str
    backoff: BackOff


def _mac(secret_key: str, email: str, nonce: str) -> str:
    message = f"{email}:{nonce}".encode()
    return hmac.new(f"login-device:{secret_key}".encode(), message, hashlib.sha256).hexdigest()


def _normalise(email: str) -> str:
    return email.strip().lower()


def device_cookie_for(secret_key: str, email: str) -> str:
    """A new device cookie value for a browser that just logged in as `email`."""
    nonce = secrets.token_urlsafe(16)
    return f"{nonce}.{_mac(secret_key, _normalise(email), nonce)}"


def trusted_device(secret_key: str, email: str, cookie: str | None) -> str | None:
    """The device's nonce if `cookie` was issued by this server for this account."""
    if not cookie or cookie.count(".") != 1:
        return None
    nonce, mac = cookie.split(".")
    if hmac.compare_digest(mac, _mac(secret_key, _normalise(email), nonce)):
        return nonce
    return None


def _buckets(secret_key: str, email: str, client: LoginClient) -> list[_Bucket]:
    def key(*parts: str) -> str:
        return hashlib.sha256("\x00".join((secret_key, *parts)).encode()).hexdigest()

    email = _normalise(email)
    device = trusted_device(secret_key, email, client.device_cookie)
    if device is not None:
        return [_Bucket(key("device", email, device), "account", ACCOUNT_BACKOFF)]
    return [
        _Bucket(key("address", email, client.address), "account", ACCOUNT_BACKOFF),
        _Bucket(key("spray", client.address), "address", ADDRESS_BACKOFF),
    ]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite drops the zone


def check_login_allowed(
    db: Session, secret_key: str, email: str, client: LoginClient, now: datetime | None = None
) -> None:
    """Raise LoginThrottled (with the seconds to wait) if any bucket of this try waits."""
    now = now or datetime.now(UTC)
    keys = [bucket.key for bucket in _buckets(secret_key, email, client)]
    waits = [
        _aware(until) - now
        for until in db.scalars(
            select(LoginThrottle.blocked_until).where(
                LoginThrottle.key.in_(keys), LoginThrottle.blocked_until.is_not(None)
            )
        )
        if _aware(until) > now
    ]
    if waits:
        raise LoginThrottled(max(1, int(max(waits).total_seconds() + 0.999)))


def record_login_failure(
    db: Session, secret_key: str, email: str, client: LoginClient, now: datetime | None = None
) -> None:
    """Count a failed login in each of its buckets and set their next allowed time."""
    now = now or datetime.now(UTC)
    forget_before = now - FORGET_AFTER
    db.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < forget_before))
    for bucket in _buckets(secret_key, email, client):
        failures = _increment(db, bucket, now, forget_before)
        wait = bucket.backoff.wait_after(failures)
        if wait is not None:
            db.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == bucket.key)
                .values(blocked_until=now + wait)
            )


def _increment(db: Session, bucket: _Bucket, now: datetime, forget_before: datetime) -> int:
    """failures + 1 in one statement (an upsert), so concurrent processes never lose a count."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the two supported databases
        raise AppError(f"login throttling supports SQLite and PostgreSQL, not {dialect}")
    table = LoginThrottle.__table__
    statement = insert(table).values(key=bucket.key, scope=bucket.scope, failures=1,
                                     last_failure_at=now)  # fmt: skip
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "failures": case(
                (table.c.last_failure_at < forget_before, 1), else_=table.c.failures + 1
            ),
            "last_failure_at": now,
        },
    ).returning(table.c.failures)
    return db.execute(statement).scalar_one()


def record_login_success(db: Session, secret_key: str, email: str, client: LoginClient) -> None:
    """Clear the account's bucket for this client (the address bucket keeps counting)."""
    accounts = [b.key for b in _buckets(secret_key, email, client) if b.scope == "account"]
    db.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(accounts)))
