"""The oracle observer: always right, because it reads the answers from the database.

A test tool (it proves grading and storage end to end), never something the API offers:
the answer of a trial never leaves the server.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from server.db.session import session_scope
from server.errors import AppError
from server.studies.sessions import answers_for_session


class OracleObserver:
    name = "oracle"

    def __init__(self, session_factory: sessionmaker[Session] | None):
        if session_factory is None:
            raise AppError("the oracle observer reads answers from the database: give its URL")
        self.session_factory = session_factory

    def choose(
        self,
        client: httpx.Client,
        session_id: str,
        trial: dict[str, Any],
        headers: dict[str, str],
        rng: np.random.Generator,
    ) -> str:
        with session_scope(self.session_factory) as db:
            max_is_a = answers_for_session(db, session_id)[trial["trial_id"]]
        return "a" if max_is_a else "b"
