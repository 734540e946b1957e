"""The runner interface, and the one function every runner calls to run a claimed job.

The `jobs` table is the queue: a runner takes work with `service.claim_next_job` and runs
it with `run_claimed_job`. The local runner (local.py) does that in a worker process on
this machine; a distributed runner (Ray) implements the same three methods and calls the
same two functions on its workers, so jobs, progress and resume behave the same.
"""

from __future__ import annotations

import threading
import traceback
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.db.models import Job
from server.db.session import session_scope
from server.errors import AppError
from server.jobs.context import JobCancelled, JobContext
from server.jobs.kinds import job_kind
from server.jobs.service import claim_next_job, reap_dead_jobs, worker_name


class JobRunner(Protocol):
    """Runs queued jobs somewhere until stopped."""

    def start(self) -> None:
        """Begin taking queued jobs (returns at once)."""

    def stop(self) -> None:
        """Stop taking jobs; a running job is abandoned and later reaped as failed."""

    def is_alive(self) -> bool:
        """Whether the runner still takes jobs."""


def run_claimed_job(
    factory: sessionmaker[Session], settings: Settings, job: Job, on_progress=None
) -> str:
    """Run a job this process claimed; record succeeded / failed / cancelled. Returns it."""
    context = JobContext(factory, settings, job.id, on_progress=on_progress)
    context._lines = [line for line in (job.log_tail or "").splitlines() if line]
    context.start_heartbeat()
    status, error, result = "succeeded", None, None
    try:
        context.log(f"attempt {job.attempts} on {job.worker}")
        result = job_kind(job.kind).run(context, dict(job.params or {}))
    except BaseException as exc:  # every ending is recorded; re-raised unless an Exception
        cancelled = isinstance(exc, JobCancelled) or isinstance(exc.__cause__, JobCancelled)
        status = "cancelled" if cancelled else "failed"
        error = None if cancelled else (exc.message if isinstance(exc, AppError) else repr(exc))
        if not cancelled and not isinstance(exc, AppError):
            context._lines.append(traceback.format_exc(limit=6))
        if not isinstance(exc, Exception):
            raise
    finally:
        context.stop_heartbeat()
        with session_scope(factory) as db:
            row = db.get(Job, job.id)
            row.status, row.error, row.finished_at = status, error, datetime.now(UTC)
            row.message = {"succeeded": "done", "cancelled": "cancelled"}.get(status, "failed")
            row.result = result if status == "succeeded" else None
            row.log_tail = "\n".join([*context._lines, f"{status}"][-60:])
    return status


def work_once(
    factory: sessionmaker[Session], settings: Settings, worker: str | None = None
) -> str | None:
    """Reap dead jobs, claim one and run it; None when nothing was queued."""
    with session_scope(factory) as db:
        reap_dead_jobs(db)
        job = claim_next_job(db, worker or worker_name())
    if job is None:
        return None
    return run_claimed_job(factory, settings, job)


def worker_loop(
    factory: sessionmaker[Session],
    settings: Settings,
    stop: threading.Event,
    poll_s: float = 1.0,
) -> None:
    """Take and run jobs until `stop` is set (checked between jobs and while idle)."""
    while not stop.is_set():
        if work_once(factory, settings) is None:
            stop.wait(poll_s)
