"""GET /g/{group}: the one link of a group of studies (a model comparison) for Prolific or
MTurk. The arrival's place is claimed in the group's emptiest live study
(server/studies/group_entry.py), then the browser is sent on to that study's page with the
platform's parameters, where the session resumes. Problems are shown as a short page (a
participant opened this link), with the status code of the error."""

from __future__ import annotations

import functools
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from server.api.deps import run_write
from server.api.participant import SessionCreate
from server.api.participant_pages import (
    _SECURITY_HEADERS,
    MTURK_PREVIEW_ASSIGNMENT,
    PLATFORM_PARAMS,
)
from server.db.session import session_scope
from server.errors import AppError
from server.studies import group_entry
from server.studies.admission import AdmissionLimits, address_hash
from web import TEMPLATES_DIR

router = APIRouter(tags=["participant pages"], include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

TITLES = {403: "You cannot take part", 404: "Study not found", 409: "The study is not open"}


def _page(request: Request, error: AppError) -> HTMLResponse:
    title = TITLES.get(error.status_code, "This link cannot be used")
    response = templates.TemplateResponse(
        request,
        "participant/message.html",
        {"title": title, "message": error.message},
        status_code=error.status_code,
        headers=error.headers,
    )
    response.headers.update(_SECURITY_HEADERS)
    return response


@router.get("/g/{group:path}", response_class=HTMLResponse)
async def group_link(group: str, request: Request):
    """Claim a place in the group's emptiest live study, then go to its page (303)."""
    params = {k: request.query_params[k] for k in PLATFORM_PARAMS if k in request.query_params}
    try:
        valid = SessionCreate.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        return _page(request, AppError(f"the link's parameters are not valid ({problems})", 422))
    state = request.app.state
    try:
        if params.get("assignmentId") == MTURK_PREVIEW_ASSIGNMENT:
            with session_scope(state.session_factory) as db:  # a preview claims nothing
                slug = group_entry.preview_study(db, group)
        else:
            start = functools.partial(
                group_entry.start_group_session_write,
                secret_key=state.secret_key,
                group=group,
                params=valid.model_dump(exclude={"client"}),
                client={
                    "user_agent": request.headers.get("user-agent", "")[:1000],
                    "entry": f"group:{group}",
                },
                address=address_hash(
                    state.secret_key, request.client.host if request.client else None
                ),
                limits=AdmissionLimits.from_settings(state.settings),
            )
            slug, _body, _created = await run_write(request, start)
    except AppError as error:
        return _page(request, error)
    return RedirectResponse(f"/s/{quote(slug)}?{urlencode(params)}", status_code=303)
