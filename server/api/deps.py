"""Every injected dependency, as Annotated aliases routes declare by name."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from server.config import Settings
from server.db.session import session_scope, sqlite_writer

T = TypeVar("T")


def get_db(request: Request) -> Iterator[Session]:
    """One session per request: commit once on success, roll back on error.

    No Python lock is held here: a lock held across the dependency's thread hops could
    starve the threadpool. Concurrent SQLite writers on these (rare) routes wait in
    SQLite's busy handler; the hot response route uses `run_write` instead.
    """
    with session_scope(request.app.state.session_factory) as session:
        yield session


async def run_write(request: Request, work: Callable[[Session], T]) -> T:
    """`work(session)` in one transaction, committed before this returns (the hot path).

    On SQLite it runs on the database's single writer thread (see `sqlite_writer`); on
    PostgreSQL in the threadpool, where concurrent writers are fine.
    """
    factory = request.app.state.session_factory

    def transaction() -> T:
        with session_scope(factory) as db:
            return work(db)

    writer = sqlite_writer(request.app.state.engine)
    if writer is None:
        return await run_in_threadpool(transaction)
    return await asyncio.get_running_loop().run_in_executor(writer, transaction)


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


# scope="function": commit before the response is sent, so nothing is acknowledged unsaved
# (the default "request" scope runs the exit code after sending).
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
