"""Observers: who answers a 2AFC trial. One home for all of them.

- `random`: a coin flip (chance level);
- `oracle`: always right, reads the answer from the database (a test tool);
- `similarity`: the machine observer of the MIS (Zimmermann, Klindt & Brendel 2024), which
  picks the query more similar to the positive references (`similarity.py`, `mis.py`).

`simulate` drives any of them through the real HTTP API.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx
import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from server.errors import AppError

OBSERVERS = ("random", "oracle", "similarity")


class TrialObserver(Protocol):
    name: str

    def choose(
        self,
        client: httpx.Client,
        session_id: str,
        trial: dict[str, Any],
        headers: dict[str, str],
        rng: np.random.Generator,
    ) -> str:
        """'a' or 'b' for one trial as the participant API serves it."""


def make_observer(
    name: str,
    session_factory: sessionmaker[Session] | None = None,
    backend: str | None = None,
    alpha: float | None = None,
    device: str = "cpu",
) -> TrialObserver:
    """An observer by name; the similarity observer takes a backend name and alpha."""
    if name == "random":
        from server.studies.observers.random_observer import RandomObserver

        return RandomObserver()
    if name == "oracle":
        from server.studies.observers.oracle import OracleObserver

        return OracleObserver(session_factory)
    if name == "similarity":
        from server.studies.observers.backends import DEFAULT_BACKEND, make_backend
        from server.studies.observers.similarity import DEFAULT_ALPHA
        from server.studies.observers.similarity_observer import SimilarityObserver

        return SimilarityObserver(
            make_backend(backend or DEFAULT_BACKEND, device),
            DEFAULT_ALPHA if alpha is None else alpha,
        )
    raise AppError(f"unknown observer {name!r}: use one of {', '.join(OBSERVERS)}")
