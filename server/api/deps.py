"""Every injected dependency, as Annotated aliases routes declare by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.config import Settings


def get_db(request: Request) -> Iterator[Session]:
    """One session per request: commit once on success, roll back on error."""
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
