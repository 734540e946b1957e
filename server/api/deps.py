"""Every injected dependency, as Annotated aliases routes declare by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.config import Settings
from server.db.session import session_scope, write_lock

T = TypeVar("T")


def get_db(request: Request) -> Iterator[Session]:
    """One session per request: commit once on success, roll back on error.

    No Python lock is held here: a lock held across the dependency's thread hops could
    starve the threadpool. Concurrent SQLite writers on these (rare) routes wait in
    SQLite's busy handler; the hot response route uses `run_in_transaction` instead.
    """
    with session_scope(request.app.state.session_factory) as session:
        yield session


def run_in_transaction(request: Request, work: Callable[[Session], T]) -> T:
    """`work(session)` in one write transaction, run entirely in the calling thread.

    For async routes that hand a whole unit of work to the threadpool at once (the hot
    response path). On SQLite it holds the write lock (see `write_lock`) for exactly this
    call, never across an await, so queued writers cannot starve the threadpool.
    """
    with (
        write_lock(request.app.state.engine),
        session_scope(request.app.state.session_factory) as db,
    ):
        return work(db)


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


# scope="function": commit before the response is sent, so nothing is acknowledged unsaved
# (the default "request" scope runs the exit code after sending).
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
