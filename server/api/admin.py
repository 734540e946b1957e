"""Researcher dashboard (HTML): login, studies overview, live results, exports.

Every route here except the login form needs a valid server-side admin session
(cookie `pi_admin`); every mutating form carries the session's CSRF token.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from server.api.deps import SessionDep
from server.auth import LoginFailed, admin_for_token, login, logout
from server.db.models import AdminSession, AdminUser, Study
from server.errors import AppError, Forbidden, NotFound
from server.login_throttle import (
    DEVICE_COOKIE,
    DEVICE_COOKIE_MAX_AGE_S,
    LoginClient,
    LoginThrottled,
    check_login_allowed,
    device_cookie_for,
    record_login_failure,
    record_login_success,
)
from server.security_headers import REPORT_CSP
from server.studies.service import participation_counts
from web import TEMPLATES_DIR

router = APIRouter(prefix="/admin", tags=["admin"], include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATES_DIR)
COOKIE = "pi_admin"
LOGIN_CSRF_COOKIE = "pi_login_csrf"


class LoginRequired(AppError):
    status_code = 401


def current_admin(request: Request, db: SessionDep) -> tuple[AdminUser, AdminSession]:
    found = admin_for_token(db, request.cookies.get(COOKIE))
    if found is None:
        raise LoginRequired("log in at /admin/login")
    return found


CurrentAdmin = Annotated[tuple[AdminUser, AdminSession], Depends(current_admin)]


def check_csrf(session: AdminSession, token: str) -> None:
    if not secrets.compare_digest(session.csrf_token, token or ""):
        raise Forbidden("invalid CSRF token: reload the page and try again")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, error: str | None = None) -> Response:
    csrf = secrets.token_urlsafe(24)
    response = templates.TemplateResponse(
        request, "admin/login.html", {"csrf": csrf, "error": error}
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        csrf,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/admin",
    )
    return response


@router.post("/login")
def login_submit(
    request: Request,
    db: SessionDep,
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
) -> Response:
    if not secrets.compare_digest(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf):
        raise Forbidden("invalid CSRF token: reload the login page and try again")
    # Throttled per account and address, or per account and trusted browser, in the
    # database (server/login_throttle.py). The address is the socket's peer unless
    # `forwarded_allow_ips` trusts a proxy's X-Forwarded-For (uvicorn resolves it).
    secret = request.app.state.secret_key
    client = LoginClient(
        request.client.host if request.client else "unknown", request.cookies.get(DEVICE_COOKIE)
    )
    try:
        check_login_allowed(db, secret, email, client)
    except LoginThrottled as exc:
        throttled = login_form(request, error=exc.message[:1].upper() + exc.message[1:] + ".")
        throttled.status_code = 429
        throttled.headers["Retry-After"] = str(exc.retry_after_s)
        return throttled
    try:
        token, _ = login(db, email, password)
    except LoginFailed:
        record_login_failure(db, secret, email, client)
        return login_form(request, error="Wrong email or password.")
    record_login_success(db, secret, email, client)
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(  # this browser is trusted for this account from now on
        DEVICE_COOKIE,
        device_cookie_for(secret, email),
        max_age=DEVICE_COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/admin/login",
    )
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/"
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin")
    return response


@router.post("/logout")
def logout_submit(
    request: Request, db: SessionDep, admin: CurrentAdmin, csrf: Annotated[str, Form()]
) -> Response:
    check_csrf(admin[1], csrf)
    logout(db, request.cookies.get(COOKIE))
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _page(request: Request, admin: tuple[AdminUser, AdminSession], template: str, **context):
    """A dashboard page: every one shows the user and carries the session's CSRF token."""
    context |= {"user": admin[0], "csrf": admin[1].csrf_token}
    return templates.TemplateResponse(request, template, context)


@router.get("", response_class=HTMLResponse)
def studies_page(request: Request, db: SessionDep, admin: CurrentAdmin) -> Response:
    studies = db.scalars(select(Study).order_by(Study.created_at.desc())).all()
    counts = participation_counts(db)
    return _page(request, admin, "admin/studies.html", studies=studies, counts=counts)


def _get_study(db: SessionDep, slug: str) -> Study:
    study = db.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        raise NotFound(f"no study {slug!r}")
    return study


@router.get("/studies/{slug}", response_class=HTMLResponse)
def study_page(request: Request, slug: str, db: SessionDep, admin: CurrentAdmin) -> Response:
    from analysis.dashboard import study_results

    study = _get_study(db, slug)
    from server.jobs.service import job_view, list_jobs

    results = study_results(request.app.state.engine, study)
    from analysis.machine_report import study_machine_section

    machine_html = study_machine_section(request.app.state.engine, study.config)  # issue 22
    counts = participation_counts(db, study.id)[study.id]
    job = next((job_view(j) for j in list_jobs(db, study.id, limit=1)), None)
    return _page(
        request,
        admin,
        "admin/study.html",
        study=study,
        counts=counts,
        results=results,
        job=job,
        machine_html=machine_html,
    )


@router.post("/studies/{slug}/{action}")
def study_action(
    slug: str, action: str, db: SessionDep, admin: CurrentAdmin, csrf: Annotated[str, Form()]
) -> Response:
    from server.studies import service
    from server.studies.ownership import require_may

    check_csrf(admin[1], csrf)
    actions = {
        "launch": service.launch_study,
        "pause": service.pause_study,
        "close": service.close_study,
    }
    if action not in actions:
        raise NotFound(f"unknown action {action!r}: use launch, pause or close")
    study = _get_study(db, slug)
    require_may(admin[0], study, action)  # closing another researcher's study: admins only
    actions[action](db, study, actor=admin[0].email)
    return RedirectResponse(f"/admin/studies/{slug}", status_code=303)


@router.get("/studies/{slug}/export.csv")
def export_csv(request: Request, slug: str, db: SessionDep, admin: CurrentAdmin) -> Response:
    from server.api.csv_export import stream_study_csv

    _get_study(db, slug)
    return stream_study_csv(request.app.state.engine, slug, f"{slug}-responses.csv")


@router.get("/studies/{slug}/report.html", response_class=HTMLResponse)
def report(request: Request, slug: str, db: SessionDep, admin: CurrentAdmin) -> Response:
    from analysis.dashboard import study_report_html

    return HTMLResponse(
        study_report_html(request.app.state.engine, _get_study(db, slug)),
        headers={"Content-Security-Policy": REPORT_CSP},  # inline styles, data: figures
    )
