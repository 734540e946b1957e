"""Participant API (`/api/v1`): JSON, no cookies, session token as a Bearer header.

Handlers validate the body and call server.studies.sessions; grading and answers stay
there. Shapes follow API_CONTRACT.md (the browser task is built against it).

Every body is parsed from its bytes by pydantic's JSON parser under strict models
(`strict=True`, `allow_inf_nan=False`, unknown fields refused except in the free-form
parts, which are capped; see server/api/input_safety.py). Bodies over
`max_upload_bytes` never get here (server/api/body_limit.py).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from server.api.deps import SessionDep, run_write
from server.api.input_safety import FiniteFloat, Text, bounded_json
from server.api.openapi_schema import inline_json_schema
from server.api.participant_contract import PublicStudy, TrialPublic
from server.errors import AppError
from server.studies import responses, sessions
from server.studies.admission import AdmissionLimits, address_hash
from server.studies.responses import ResponseIn

router = APIRouter(prefix="/api/v1", tags=["participant"])

M = TypeVar("M", bound=BaseModel)
STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")
PlatformId = Text(200, min_length=1)
MAX_DATA_BYTES = 64_000  # a response's `data` (events of the trial, window, device...)
MAX_DETAIL_BYTES = 4_000  # an event's `detail`
MAX_CLIENT_EXTRA_BYTES = 4_000  # client fields beyond the named ones
MAX_CLIENT_EXTRA_FIELDS = 20
# MTurk posts the HIT's form back to one of these (live or sandbox).
MTURK_HOSTS = {"www.mturk.com", "workersandbox.mturk.com"}


_check_client_extras = bounded_json(MAX_CLIENT_EXTRA_BYTES, "client's extra fields").func


class ClientInfo(BaseModel):
    """The browser's description of itself; a few extra fields are kept (bounded)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")

    user_agent: Text(1000) | None = None
    screen_w: int | None = Field(None, ge=0, le=100_000)
    screen_h: int | None = Field(None, ge=0, le=100_000)
    window_w: int | None = Field(None, ge=0, le=100_000)
    window_h: int | None = Field(None, ge=0, le=100_000)
    refresh_hz: FiniteFloat | None = Field(None, ge=0, le=1000)

    @model_validator(mode="after")
    def _bounded_extras(self) -> ClientInfo:
        extra = self.model_extra or {}
        if len(extra) > MAX_CLIENT_EXTRA_FIELDS:
            raise ValueError(
                f"client has {len(extra)} extra fields; at most {MAX_CLIENT_EXTRA_FIELDS}"
            )
        _check_client_extras(extra)
        return self


class SessionCreate(BaseModel):
    """Crowdsourcing parameters as the platforms append them to the study URL."""

    model_config = STRICT

    PROLIFIC_PID: PlatformId | None = None
    STUDY_ID: PlatformId | None = None
    SESSION_ID: PlatformId | None = None
    workerId: PlatformId | None = None
    assignmentId: PlatformId | None = None
    hitId: PlatformId | None = None
    turkSubmitTo: Text(500) | None = None
    client: ClientInfo = ClientInfo()

    @field_validator("turkSubmitTo")
    @classmethod
    def _mturk_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlsplit(value)
        if url.scheme != "https" or url.hostname not in MTURK_HOSTS or url.path not in ("", "/"):
            raise ValueError(
                "turkSubmitTo must be https://www.mturk.com or https://workersandbox.mturk.com"
            )
        return value


class ResponseCreate(BaseModel):
    model_config = STRICT

    trial_id: Text(32, min_length=1)
    choice: Literal["a", "b"]
    confidence: int = Field(ge=1, le=7)  # the study's own levels are checked when grading
    rt_ms: FiniteFloat = Field(ge=0, le=86_400_000)
    client_sent_at: AwareDatetime | None = None
    idempotency_key: Text(100, min_length=8)
    data: Annotated[dict[str, Any], bounded_json(MAX_DATA_BYTES, "data")] = Field(
        default_factory=dict
    )


class Event(BaseModel):
    model_config = STRICT

    type: Text(60, min_length=1)
    t_ms: FiniteFloat = Field(ge=-86_400_000, le=86_400_000 * 7)
    detail: Annotated[Any, bounded_json(MAX_DETAIL_BYTES, "detail")] = None


class EventsCreate(BaseModel):
    model_config = STRICT

    events: list[Event] = Field(max_length=500)


class ErrorBody(BaseModel):
    detail: str
    code: str


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer (all in ErrorBody shape)."""
    text = {
        401: "Missing, invalid or expired session token",
        403: "Not allowed to take part (already completed, barred, MTurk preview)",
        404: "No such study, session or trial",
        409: "Conflict with the session's or study's state (full, closed, already answered)",
        413: "Body over the size limit (settings.max_upload_bytes) or event quota reached",
        415: "Body not sent as application/json",
        422: "Invalid body: the detail names each bad field",
        429: "Too many session starts: wait for Retry-After seconds",
    }
    return {s: {"model": ErrorBody, "description": text[s]} for s in statuses}


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


AuthHeader = Annotated[str | None, Header()]


async def _parse_json(request: Request, model: type[M]) -> M:
    """The body validated straight from its bytes by pydantic's JSON parser.

    A declared body parameter costs the hot route a quarter of its HTTP time: FastAPI
    decodes the JSON into dicts, validates them, and the handler copies the model again.
    Its decoder also lets through what pydantic's refuses (NaN, lone surrogates). Errors
    keep FastAPI's shape (a RequestValidationError with `body` locations). Only JSON is
    accepted, as a declared body would (a form or text/plain post gets a 415).
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise AppError(
            "send the body as JSON with Content-Type: application/json",
            status_code=415,
            code="UnsupportedMediaType",
        )
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def _json_body(model: type[BaseModel], bearer: bool = True) -> dict[str, Any]:
    """OpenAPI for a body the handler parses itself (see `_parse_json`), with the bearer
    header it reads itself (a declared header parameter costs the hot route ~10%)."""
    extra: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_json_schema(model)}},
        }
    }
    if bearer:
        extra["parameters"] = [
            {"name": "authorization", "in": "header", "schema": {"type": "string"}}
        ]
    return extra


def _body(model: type[M]):
    """A dependency parsing the body (`_parse_json`) before a sync handler runs."""

    async def parse(request: Request) -> M:
        return await _parse_json(request, model)

    return Depends(parse)


@router.get(
    "/studies/{slug}",
    responses=_errors(404),
    response_model=PublicStudy,
    response_model_exclude_unset=True,
)
def get_study_info(slug: str, db: SessionDep) -> dict[str, Any]:
    return sessions.public_study_info(db, slug)


@router.post(
    "/studies/{slug}/sessions",
    status_code=201,
    responses={200: {"description": "Resumed: the session again, with a fresh token"}}
    | _errors(403, 404, 409, 413, 415, 422, 429),
    openapi_extra=_json_body(SessionCreate, bearer=False),
)
async def create_session(slug: str, request: Request) -> JSONResponse:
    body = await _parse_json(request, SessionCreate)
    secret = request.app.state.secret_key
    address = address_hash(secret, request.client.host if request.client else None)
    start = functools.partial(
        sessions.start_session_write,
        secret_key=secret,
        slug=slug,
        params=body.model_dump(exclude={"client"}),
        client=body.client.model_dump(),
        address=address,
        limits=AdmissionLimits.from_settings(request.app.state.settings),
    )
    result, created = await run_write(request, start)
    return JSONResponse(result, status_code=201 if created else 200)


@router.get(
    "/sessions/{session_id}/trials/next",
    responses={204: {"description": "Every trial is answered"}} | _errors(401, 409),
    response_model=TrialPublic,
    response_model_exclude_unset=True,
)
async def get_next_trial(session_id: str, request: Request, authorization: AuthHeader = None):
    # It marks the trial served (only served trials can be answered): a write of the hot path.
    write = functools.partial(
        sessions.next_trial_write,
        session_id=session_id,
        token=_bearer(authorization),
        secret_key=request.app.state.secret_key,
    )
    trial = await run_write(request, write)
    return trial if trial is not None else Response(status_code=204)


@router.post(
    "/sessions/{session_id}/responses",
    status_code=201,
    responses={200: {"description": "A replay: the first answer's body"}}
    | _errors(401, 404, 409, 413, 415, 422),
    openapi_extra=_json_body(ResponseCreate),
)
async def post_response(session_id: str, request: Request) -> JSONResponse:
    """The hot path (bench/ingest.py): auth, grading and commit in one write transaction."""
    body = await _parse_json(request, ResponseCreate)
    sent_at = body.client_sent_at.isoformat() if body.client_sent_at else None
    answer = ResponseIn(
        body.trial_id,
        body.choice,
        body.confidence,
        body.rt_ms,
        sent_at,
        body.idempotency_key,
        body.data,
    )
    token = _bearer(request.headers.get("authorization"))
    # A partial of a module-level function: it is pickled to SQLite's writer process.
    record = functools.partial(
        responses.record_response, session_id=session_id, token=token, r=answer
    )
    result, created = await run_write(request, record)
    return JSONResponse(result, status_code=201 if created else 200)


@router.post(
    "/sessions/{session_id}/events",
    status_code=204,
    responses=_errors(401, 409, 413, 415, 422),
    openapi_extra=_json_body(EventsCreate),
)
async def post_events(
    session_id: str,
    request: Request,
    body: Annotated[EventsCreate, _body(EventsCreate)],
    authorization: AuthHeader = None,
) -> Response:
    events = [e.model_dump() for e in body.events]
    write = functools.partial(
        sessions.record_events_write,
        session_id=session_id,
        token=_bearer(authorization),
        events=events,
    )
    await run_write(request, write)
    return Response(status_code=204)


@router.post("/sessions/{session_id}/complete", responses=_errors(401, 409))
async def post_complete(
    session_id: str, request: Request, authorization: AuthHeader = None
) -> dict[str, Any]:
    write = functools.partial(
        sessions.complete_session_write, session_id=session_id, token=_bearer(authorization)
    )
    return await run_write(request, write)
