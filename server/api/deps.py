"""Every injected dependency, as Annotated aliases routes declare by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.config import Settings
from server.db import writes
from server.db.session import session_scope


def get_db(request: Request) -> Iterator[Session]:
    """One session per request: commit once on success, roll back on error.

    No Python lock is held here: a lock held across the dependency's thread hops could
    starve the threadpool. Concurrent SQLite writers on these routes (the dashboard's, rare)
    wait in SQLite's busy handler; every participant route that writes uses `run_write`
    instead (under load, a busy-handler writer starved beside the writer process).
    """
    with session_scope(request.app.state.session_factory) as session:
        yield session


async def run_write(request: Request, write: writes.Write[writes.T]) -> writes.T:
    """`write(connection)` committed before this returns (the hot path): grouped with the
    other queued writes in SQLite's writer process, a transaction of its own on PostgreSQL
    (see server/db/writes.py). `write` must be picklable: a functools.partial of a
    module-level function."""
    return await writes.run_write(request.app.state.engine, write)


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


# scope="function": commit before the response is sent, so nothing is acknowledged unsaved
# (the default "request" scope runs the exit code after sending).
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
