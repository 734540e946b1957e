"""Admin dashboard auth: login with CSRF, server-side sessions, every admin route guarded."""

from __future__ import annotations

import re

import pytest

from server.auth import create_admin_user
from server.db.session import session_scope

PASSWORD = "a strong enough password"


@pytest.fixture
def admin_client(app, client):
    with session_scope(app.state.session_factory) as db:
        create_admin_user(db, "lead@lab.org", PASSWORD)
    return client


def _login(client, email="lead@lab.org", password=PASSWORD):
    page = client.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf": csrf},
        follow_redirects=False,
    )


def test_admin_pages_redirect_or_401_without_login(client):
    page = client.get("/admin", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/admin/login"
    for path in (
        "/admin",
        "/admin/studies/demo",
        "/admin/studies/demo/export.csv",
        "/admin/studies/demo/report.html",
    ):
        assert client.get(path, follow_redirects=False).status_code == 401, path
    assert client.post("/admin/studies/demo/close", data={"csrf": "x"}).status_code == 401


def test_login_sets_httponly_cookie_and_shows_studies(admin_client):
    response = _login(admin_client)
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    cookie = response.headers["set-cookie"]
    assert "pi_admin=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    page = admin_client.get("/admin")
    assert page.status_code == 200 and "lead@lab.org" in page.text


def test_wrong_password_and_missing_csrf_are_refused(admin_client):
    wrong = _login(admin_client, password="not the password")
    assert wrong.status_code == 200 and "Wrong email or password" in wrong.text
    assert "pi_admin=" not in wrong.headers.get("set-cookie", "")
    forged = admin_client.post(
        "/admin/login", data={"email": "lead@lab.org", "password": PASSWORD, "csrf": "forged"}
    )
    assert forged.status_code == 403


def test_logout_needs_csrf_and_revokes_the_session(admin_client):
    _login(admin_client)
    page = admin_client.get("/admin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert admin_client.post("/admin/logout", data={"csrf": "wrong"}).status_code == 403
    token = admin_client.cookies.get("pi_admin")
    out = admin_client.post("/admin/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    admin_client.cookies.set("pi_admin", token)  # replaying the old cookie must not work
    assert admin_client.get("/admin", follow_redirects=False).status_code == 401


def test_login_is_rate_limited(admin_client):
    """Back-off after a few failures (details: tests/test_hardening_admin.py)."""
    from server.login_throttle import ACCOUNT_BACKOFF

    for _ in range(ACCOUNT_BACKOFF.free + 1):
        _login(admin_client, password="guess guess guess")
    assert _login(admin_client).status_code == 429


def _all_routes(app):
    """(path, method) of every HTTP route, through included routers too."""
    found = []
    for route in app.routes:
        routes = route.original_router.routes if hasattr(route, "original_router") else [route]
        for inner in routes:
            for method in getattr(inner, "methods", None) or ():
                found.append((inner.path, method))
    return found


PUBLIC_ADMIN_ROUTES = {("/admin/login", "GET"), ("/admin/login", "POST")}


def test_every_admin_route_refuses_anonymous_access(app, client):
    """A new admin route cannot be added unprotected: this walks the router table."""
    admin_routes = [
        (path, method)
        for path, method in _all_routes(app)
        if path.startswith(("/admin", "/api/admin"))
        and (path, method) not in PUBLIC_ADMIN_ROUTES
        and method != "HEAD"
    ]
    assert len(admin_routes) >= 6
    for path, method in admin_routes:
        url = re.sub(r"\{[^}]+\}", "x", path)
        response = client.request(method, url, data={"csrf": "x"}, follow_redirects=False)
        assert response.status_code == 401, (method, path, response.status_code)
