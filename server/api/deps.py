"""Every injected dependency, as Annotated aliases routes declare by name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.config import Settings
from server.db.session import write_lock

READ_ONLY_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_db(request: Request) -> Iterator[Session]:
    """One session per request: commit once on success, roll back on error.

    Mutating requests hold the SQLite write lock for their whole transaction (see
    `write_lock`); reads never wait (WAL).
    """
    lock = (
        nullcontext()
        if request.method in READ_ONLY_METHODS
        else write_lock(request.app.state.engine)
    )
    with lock:
        session: Session = request.app.state.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


# scope="function": commit before the response is sent, so nothing is acknowledged unsaved
# (the default "request" scope runs the exit code after sending).
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
