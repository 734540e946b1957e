"""The FastAPI application factory: routers are mounted here and only here."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError

from server.api import (
    admin,
    admin_api,
    admin_pages,
    group_entry,
    health,
    home,
    participant,
    participant_pages,
    stimuli_files,
)
from server.api.body_limit import BodySizeLimit
from server.api.input_safety import error_sentence, public_errors
from server.config import Settings, get_settings
from server.db import writes
from server.db.migrate import upgrade_database
from server.db.session import make_engine, make_session_factory
from server.db.write_process import close_writers
from server.errors import AppError
from server.security_headers import ResearcherSecurityHeaders
from web import STATIC_DIR

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (tests pass their own; the CLI uses the environment)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # SQLite's writer process starts now, not when the first participant arrives (its
        # cold start takes seconds on a busy machine; session starts are writes too).
        try:
            await writes.run_write(app.state.engine, writes.nothing)
        except (SQLAlchemyError, AppError) as exc:
            # An unreachable database must not stop the app: /healthz reports it (503) and
            # the first write retries the writer.
            logger.warning("database writer not started: %s", exc.__class__.__name__)
        yield
        await close_writers(app.state.engine)
        app.state.engine.dispose()

    app = FastAPI(
        title="psychinterp",
        version="0.1.0",
        description="Psychophysics of vision-model units: stimuli, 2AFC trials, responses, scores.",
        lifespan=lifespan,
    )
    if settings.run_migrations_on_start:
        upgrade_database(settings.database_url)
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.secret_key = settings.resolved_secret_key()

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code,
            content={"detail": exc.message, "code": exc.code},
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """One readable sentence per bad field, in the same shape as every other error."""
        errors = public_errors(exc.errors())  # never the input: it may not even encode
        return JSONResponse(
            status_code=422,
            content={"detail": error_sentence(errors), "code": "InvalidRequest", "errors": errors},
        )

    @app.exception_handler(admin.LoginRequired)
    async def _login_required(request: Request, exc: admin.LoginRequired) -> Response:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/admin/login", status_code=303)
        return JSONResponse(status_code=401, content={"detail": exc.message, "code": exc.code})

    # Routes are matched in order, each one tried in turn: participants' API calls are the
    # bulk of the traffic, so their router comes first.
    app.include_router(participant.router)
    app.include_router(health.router)
    app.include_router(admin_pages.router)  # before admin's /admin/studies/{slug}/{action}
    app.include_router(admin.router)
    app.include_router(admin_api.router)
    app.include_router(stimuli_files.router)
    app.include_router(participant_pages.router)
    app.include_router(group_entry.router)  # /g/{group}: one link for a group of studies
    app.include_router(home.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)  # 413 unparsed
    app.add_middleware(ResearcherSecurityHeaders)  # admin pages, admin API, exports
    return app
