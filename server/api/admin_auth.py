"""Who is calling an admin route: a dashboard session (cookie + CSRF) or an API token.

`/api/admin/...` accepts both: `Authorization: Bearer TOKEN` (scripts; `read` tokens may
only GET) or the dashboard's session cookie, whose unsafe requests must carry the
session's CSRF token in `X-CSRF-Token` (so another site cannot make the browser act).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.api.deps import SessionDep
from server.api_tokens import user_for_bearer
from server.auth import admin_for_token
from server.db.models import AdminSession, AdminUser
from server.errors import Forbidden, Unauthorized

COOKIE = "pi_admin"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_bearer = HTTPBearer(
    auto_error=False,
    description="An API token from the dashboard's API tokens page (scope read or write).",
)


@dataclass
class Researcher:
    user: AdminUser
    via: str  # session | token
    scope: str  # read | write (a dashboard session may write)
    session: AdminSession | None = None

    @property
    def identity(self) -> str:
        """What the audit log records as the actor."""
        return self.user.email if self.via == "session" else f"{self.user.email} (API token)"


def current_researcher(
    request: Request,
    db: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Researcher:
    if request.headers.get("authorization"):
        found = user_for_bearer(db, bearer.credentials) if bearer else None
        if found is None:
            raise Unauthorized(
                "invalid or revoked API token: send `Authorization: Bearer TOKEN` with a token "
                "from the dashboard's API tokens page"
            )
        user, token = found
        if request.method not in SAFE_METHODS and token.scope != "write":
            raise Forbidden("this API token is read-only: create a token with scope write")
        return Researcher(user, "token", token.scope)
    found_session = admin_for_token(db, request.cookies.get(COOKIE))
    if found_session is None:
        raise Unauthorized("log in at /admin/login, or send `Authorization: Bearer TOKEN`")
    user, session = found_session
    if request.method not in SAFE_METHODS:
        sent = request.headers.get("x-csrf-token", "")
        if not secrets.compare_digest(session.csrf_token, sent):
            raise Forbidden("missing or wrong X-CSRF-Token header: reload the page and retry")
    return Researcher(user, "session", "write", session)


CurrentResearcher = Annotated[Researcher, Depends(current_researcher)]
