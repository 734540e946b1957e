"""Participant API (`/api/v1`): JSON, no cookies, session token as a Bearer header.

Handlers validate the body and call server.studies.sessions; grading and answers stay
there. Shapes follow API_CONTRACT.md (the browser task is built against it).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.api.deps import SessionDep, run_write
from server.errors import AppError
from server.studies import responses, sessions
from server.studies.responses import ResponseIn
from server.studies.sessions import SessionAuth

router = APIRouter(prefix="/api/v1", tags=["participant"])

ID = Field(None, min_length=1, max_length=200)
M = TypeVar("M", bound=BaseModel)


class ClientInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    user_agent: str | None = Field(None, max_length=1000)
    screen_w: int | None = None
    screen_h: int | None = None
    window_w: int | None = None
    window_h: int | None = None
    refresh_hz: float | None = None


class SessionCreate(BaseModel):
    """Crowdsourcing parameters as the platforms append them to the study URL."""

    PROLIFIC_PID: str | None = ID
    STUDY_ID: str | None = ID
    SESSION_ID: str | None = ID
    workerId: str | None = ID
    assignmentId: str | None = ID
    hitId: str | None = ID
    turkSubmitTo: str | None = Field(None, max_length=500)
    client: ClientInfo = ClientInfo()


class ResponseCreate(BaseModel):
    trial_id: str = Field(min_length=1, max_length=32)
    choice: Literal["a", "b"]
    confidence: int = Field(ge=1, le=7)
    rt_ms: float = Field(ge=0, le=86_400_000)
    client_sent_at: str | None = Field(None, max_length=40)
    idempotency_key: str = Field(min_length=8, max_length=100)
    data: dict[str, Any] = Field(default_factory=dict)


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1, max_length=60)
    t_ms: float
    detail: Any = None


class EventsCreate(BaseModel):
    events: list[Event] = Field(max_length=500)


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _auth(db, session_id: str, authorization: str | None) -> SessionAuth:
    return sessions.authenticate(db, session_id, _bearer(authorization))


AuthHeader = Annotated[str | None, Header()]


@router.get("/studies/{slug}")
def get_study_info(slug: str, db: SessionDep) -> dict[str, Any]:
    return sessions.public_study_info(db, slug)


@router.post("/studies/{slug}/sessions", status_code=201)
def create_session(slug: str, body: SessionCreate, db: SessionDep, request: Request):
    params = body.model_dump(exclude={"client"})
    result, created = sessions.start_session(
        db, request.app.state.secret_key, slug, params, body.client.model_dump()
    )
    return result if created else JSONResponse(result, status_code=200)


@router.get("/sessions/{session_id}/trials/next")
def get_next_trial(session_id: str, db: SessionDep, authorization: AuthHeader = None):
    trial = sessions.next_trial(db, _auth(db, session_id, authorization))
    return trial if trial is not None else Response(status_code=204)


async def _parse_json(request: Request, model: type[M]) -> M:
    """The body validated straight from its bytes by pydantic's JSON parser.

    A declared body parameter costs the hot route a quarter of its HTTP time: FastAPI
    decodes the JSON into dicts, validates them, and the handler copies the model again.
    Errors keep FastAPI's shape (a RequestValidationError with `body` locations). Only
    JSON is accepted, as a declared body would (a form or text/plain post gets a 415).
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise AppError(
            f"send the body as JSON with Content-Type: application/json (got {media_type!r})",
            status_code=415,
            code="UnsupportedMediaType",
        )
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body the handler parses itself (see `_parse_json`), with the bearer
    header it reads itself (a declared header parameter costs the hot route ~10%)."""
    schema = model.model_json_schema()
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "parameters": [{"name": "authorization", "in": "header", "schema": {"type": "string"}}],
    }


@router.post(
    "/sessions/{session_id}/responses", status_code=201, openapi_extra=_json_body(ResponseCreate)
)
async def post_response(session_id: str, request: Request) -> JSONResponse:
    """The hot path (bench/ingest.py): auth, grading and commit in one write transaction."""
    body = await _parse_json(request, ResponseCreate)
    answer = ResponseIn(
        body.trial_id,
        body.choice,
        body.confidence,
        body.rt_ms,
        body.client_sent_at,
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


@router.post("/sessions/{session_id}/events", status_code=204)
def post_events(
    session_id: str, body: EventsCreate, db: SessionDep, authorization: AuthHeader = None
) -> Response:
    auth = _auth(db, session_id, authorization)
    sessions.record_events(db, auth, [e.model_dump() for e in body.events])
    return Response(status_code=204)


@router.post("/sessions/{session_id}/complete")
def post_complete(
    session_id: str, db: SessionDep, authorization: AuthHeader = None
) -> dict[str, Any]:
    return sessions.complete_session(db, _auth(db, session_id, authorization))
