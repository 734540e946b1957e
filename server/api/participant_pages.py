"""HTML pages a participant opens: the task page and the MTurk preview.

The pages are shells: `task.js` reads the study from the participant JSON API, so the
HTML carries no study data and nothing about trials. Query parameters from the
crowdsourcing platform are passed through to the script as JSON.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from server.errors import NotFound
from web import TEMPLATES_DIR

router = APIRouter(tags=["participant pages"], include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
# Parameters Prolific and MTurk append to the study URL; anything else is dropped.
PLATFORM_PARAMS = (
    "PROLIFIC_PID",
    "STUDY_ID",
    "SESSION_ID",
    "workerId",
    "assignmentId",
    "hitId",
    "turkSubmitTo",
)
MTURK_PREVIEW_ASSIGNMENT = "ASSIGNMENT_ID_NOT_AVAILABLE"

# Participants' pages load only our own scripts and images; inline JSON config is data.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self' https:; frame-ancestors 'self' https://*.mturk.com"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _render(request: Request, slug: str, mode: str) -> HTMLResponse:
    if not _SLUG.match(slug):
        raise NotFound(f"no study {slug!r}: a study link looks like /s/<study-slug>")
    params = {k: request.query_params[k] for k in PLATFORM_PARAMS if k in request.query_params}
    page_config = {"slug": slug, "mode": mode, "params": params, "api": "/api/v1"}
    response = templates.TemplateResponse(request, "participant/task.html", {"config": page_config})
    response.headers.update(_SECURITY_HEADERS)
    return response


@router.get("/s/{slug}", response_class=HTMLResponse)
def task_page(slug: str, request: Request) -> HTMLResponse:
    """The whole participant run (consent to completion) on one page."""
    preview = request.query_params.get("assignmentId") == MTURK_PREVIEW_ASSIGNMENT
    return _render(request, slug, "preview" if preview else "task")


@router.get("/s/{slug}/preview", response_class=HTMLResponse)
def preview_page(slug: str, request: Request) -> HTMLResponse:
    """What an MTurk worker sees before accepting the HIT: the description, no trials."""
    return _render(request, slug, "preview")
