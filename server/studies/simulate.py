"""Simulated participants driving the real HTTP API (pilots, tests, load).

Each participant starts a session, answers trials until 204, and completes. A response
whose acknowledgement is "lost" (probability drop_rate) is sent again with the same
idempotency key, as the browser's retry queue does; the server must store it once.
Observers (random, oracle, similarity) live in `server.studies.observers`; the oracle reads
answers from the database (a test tool, never the API).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import httpx
import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from server.db.models import Response, Trial
from server.db.session import session_scope
from server.errors import AppError
from server.studies.observers import TrialObserver, make_observer

Observer = Literal["random", "oracle", "similarity"]


@dataclass
class SimulationResult:
    sent: int = 0
    acknowledged: int = 0
    duplicates: int = 0
    completed: int = 0
    session_ids: list[str] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    responses: dict[str, int] = field(default_factory=dict)
    # The idempotency keys the server acknowledged: a fault test checks each one is stored.
    acknowledged_keys: set[str] = field(default_factory=set, repr=False)

    def summary(self) -> str:
        parts = [
            f"sent={self.sent}",
            f"acknowledged={self.acknowledged}",
            f"duplicates={self.duplicates}",
            f"completed={self.completed}",
        ]
        parts += [f"accuracy[{c}]={a:.3f}" for c, a in sorted(self.accuracy.items())]
        return " ".join(parts)


class _Tally:
    """Counters shared by the participant threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.created: Counter[str] = Counter()
        self.acknowledged: set[str] = set()
        self.completed = 0
        self.session_ids: list[str] = []


def _request(client: httpx.Client, method: str, url: str, tally=None, **kwargs) -> httpx.Response:
    """Retry transport failures and 5xx with backoff, and 429 after its Retry-After, as the
    browser does (other 4xx are answers, not failures)."""
    delay = 0.05
    for _ in range(30):
        if tally is not None:
            with tally.lock:
                tally.sent += 1
        try:
            reply = client.request(method, url, **kwargs)
            if reply.status_code == 429:
                time.sleep(float(reply.headers.get("retry-after", 1)))
                continue
            if reply.status_code < 500:
                return reply
        except httpx.TransportError:
            pass
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    raise AppError(f"{method} {url}: no answer after 30 tries")


def _start_body(client: httpx.Client, slug: str, worker: str) -> dict:
    """The platform parameters the study's platform would append to its link (a Prolific or
    MTurk study refuses a session without them)."""
    info = _request(client, "GET", f"/api/v1/studies/{slug}")
    platform = info.json().get("completion", {}).get("platform") if info.is_success else None
    if platform == "mturk":
        ids = {"workerId": worker, "assignmentId": f"a-{worker}", "hitId": "sim"}
        return {**ids, "turkSubmitTo": "https://workersandbox.mturk.com", "client": {}}
    return {"PROLIFIC_PID": worker, "STUDY_ID": "sim", "SESSION_ID": worker, "client": {}}


def _participant(
    client: httpx.Client,
    slug: str,
    worker: str,
    observer: TrialObserver,
    drop_rate: float,
    rng: np.random.Generator,
    tally: _Tally,
) -> None:
    reply = _request(
        client,
        "POST",
        f"/api/v1/studies/{slug}/sessions",
        json=_start_body(client, slug, worker),
    )
    if reply.status_code not in (200, 201):
        raise AppError(f"could not start a session: {reply.status_code} {reply.text}")
    session_id, token = reply.json()["session_id"], reply.json()["token"]
    with tally.lock:
        tally.session_ids.append(session_id)
    headers = {"Authorization": f"Bearer {token}"}
    base = f"/api/v1/sessions/{session_id}"
    while True:
        reply = _request(client, "GET", f"{base}/trials/next", headers=headers)
        if reply.status_code == 204:
            break
        reply.raise_for_status()
        trial = reply.json()
        trial_id = trial["trial_id"]
        choice = observer.choose(client, session_id, trial, headers, rng)
        body = {
            "trial_id": trial_id,
            "choice": choice,
            "confidence": int(rng.integers(1, 4)),
            "rt_ms": float(rng.uniform(400, 3000)),
            "idempotency_key": uuid.uuid4().hex,
            "client_sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        while True:
            reply = _request(client, "POST", f"{base}/responses", tally, headers=headers, json=body)
            if reply.status_code not in (200, 201):
                raise AppError(f"response refused: {reply.status_code} {reply.text}")
            with tally.lock:
                if reply.status_code == 201:
                    tally.created[body["idempotency_key"]] += 1
            if rng.random() >= drop_rate:  # else: the acknowledgement was "lost": send again
                break
        with tally.lock:
            tally.acknowledged.add(body["idempotency_key"])
    reply = _request(client, "POST", f"{base}/complete", headers=headers)
    if reply.status_code != 200:
        raise AppError(f"could not complete: {reply.status_code} {reply.text}")
    with tally.lock:
        tally.completed += 1


def run_simulation(
    base_url: str,
    slug: str,
    participants: int,
    observer: Observer = "random",
    concurrency: int = 4,
    drop_rate: float = 0.0,
    seed: int = 0,
    session_factory: sessionmaker[Session] | None = None,
    backend: str | None = None,
    alpha: float | None = None,
) -> SimulationResult:
    """Drive `participants` through the API at `base_url`; accuracy comes from the DB.

    `observer` is a name (random, oracle, similarity) or an observer object; the similarity
    observer takes a backend name and alpha (defaults: EfficientNet-Lite2, DEFAULT_ALPHA).
    """
    if not 0.0 <= drop_rate < 1.0:
        raise AppError("drop rate must be in [0, 1)")
    if isinstance(observer, str):
        observer = make_observer(observer, session_factory, backend, alpha)

    tally = _Tally()
    run = uuid.uuid4().hex[:8]
    seeds = np.random.SeedSequence(seed).spawn(participants)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with (
        httpx.Client(base_url=base_url, timeout=30.0, limits=limits) as client,
        ThreadPoolExecutor(max_workers=concurrency) as pool,
    ):
        futures = [
            pool.submit(
                _participant,
                client,
                slug,
                f"sim-{run}-{i}",
                observer,
                drop_rate,
                np.random.default_rng(seeds[i]),
                tally,
            )
            for i in range(participants)
        ]
        for future in futures:
            future.result()
    result = SimulationResult(
        sent=tally.sent,
        acknowledged=len(tally.acknowledged),
        duplicates=sum(n - 1 for n in tally.created.values() if n > 1),
        completed=tally.completed,
        session_ids=tally.session_ids,
        acknowledged_keys=set(tally.acknowledged),
    )
    if session_factory is not None:
        with session_scope(session_factory) as db:
            _add_db_figures(db, result)
    return result


def _add_db_figures(db: Session, result: SimulationResult) -> None:
    """Server-graded accuracy of main trials per condition; rows beyond one per key."""
    ids = result.session_ids
    rows = db.execute(
        select(
            Trial.condition, func.count(Response.id), func.sum(case((Response.correct, 1), else_=0))
        )
        .join(Trial, Trial.id == Response.trial_id)
        .where(Response.session_id.in_(ids), Trial.kind == "main")
        .group_by(Trial.condition)
    ).all()
    result.accuracy = {c: float(k) / n for c, n, k in rows}
    result.responses = {c: int(n) for c, n, _ in rows}
    stored = db.scalar(select(func.count(Response.id)).where(Response.session_id.in_(ids)))
    result.duplicates += max(0, stored - result.acknowledged)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """A real uvicorn server for `app` on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise AppError(f"the in-process server did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
