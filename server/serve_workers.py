"""Several app processes behind one port (`psychinterp serve --workers N`, issue 24).

uvicorn's workers are separate interpreters started from an import string, so the settings
the command line resolved travel to them as JSON in one environment variable, and each
worker builds its app from that with `app_from_environment`. Everything the participant
path must share between processes already lives in the database (assignment claims under
a row lock with a unique (study, claim), responses unique per idempotency key and per
(session, trial, attempt), session-start rate limits and login throttling as rows), so N
processes behave like one. Work done once per deployment happens in the parent: the
migrations (N workers upgrading at once would race on Alembic's version table) and the
secret key (generated once, never one per worker).

SQLite is refused: its one writer is a process per app (server/db/write_process.py), and
N of them on one file would only queue on its lock.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from server.config import Settings
from server.errors import AppError

SETTINGS_ENV = "PSYCHINTERP_SERVE_SETTINGS_JSON"


def check_workers(settings: Settings, workers: int) -> None:
    """A clear error for a worker count the database cannot serve."""
    if workers < 1:
        raise AppError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and settings.database_url.startswith("sqlite"):
        raise AppError(
            f"--workers {workers} needs PostgreSQL: SQLite has one writer per file. Set "
            "PSYCHINTERP_DATABASE_URL=postgresql+psycopg://USER:PASSWORD@HOST/DB (or "
            "--database-url), or serve with --workers 1"
        )


def prepare_worker_settings(settings: Settings) -> Settings:
    """The settings every worker runs with: migrated once here, one resolved secret key."""
    from server.db.migrate import upgrade_database

    if settings.run_migrations_on_start:
        upgrade_database(settings.database_url)
    shared = settings.model_copy(
        update={"secret_key": settings.resolved_secret_key(), "run_migrations_on_start": False}
    )
    os.environ[SETTINGS_ENV] = shared.model_dump_json()
    return shared


def app_from_environment() -> FastAPI:
    """uvicorn's app factory in each worker process (`--factory`)."""
    from server.app import create_app

    data = os.environ.get(SETTINGS_ENV)
    if not data:
        raise AppError(f"{SETTINGS_ENV} is not set: start the workers with `psychinterp serve`")
    return create_app(Settings.model_validate_json(data))
