"""Jobs in the database: submit, list, cancel, resume, claim (workers) and reap dead ones.

States: queued -> running -> succeeded | failed | cancelled. A failed or cancelled job can
be resumed (back to queued): its kind picks up what earlier attempts left (generation
reuses cached activations and finished feature-visualization chunks). A running job whose
worker stopped beating (killed, machine gone) is marked failed with the reason, so nothing
stays "running" for ever.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.db.models import Job
from server.errors import Conflict, NotFound
from server.jobs.kinds import job_kind

FINISHED = {"succeeded", "failed", "cancelled"}
RESUMABLE = {"failed", "cancelled"}
# A running job whose heartbeat is older than this is considered dead (workers beat every
# few seconds, also while one step computes for minutes).
STALE_AFTER_S = 60.0


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes (stored as UTC)."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def worker_name() -> str:
    """host:pid, so a worker on the same host can tell whether a job's worker still lives."""
    return f"{socket.gethostname()}:{os.getpid()}"


def submit_job(
    db: Session,
    kind: str,
    params: dict[str, Any],
    study_id: int | None = None,
    created_by: str | None = None,
) -> Job:
    """Queue a job; its parameters are checked by its kind now, not when a worker runs it."""
    checked = job_kind(kind).check_params(dict(params))
    job = Job(
        kind=kind,
        params=checked,
        study_id=study_id,
        status="queued",
        message="waiting for a worker",
        created_by=created_by,
    )
    db.add(job)
    db.flush()
    return job


def get_job(db: Session, job_id: str) -> Job:
    job = db.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r} (see: psychinterp jobs list)")
    return job


def list_jobs(db: Session, study_id: int | None = None, limit: int = 50) -> list[Job]:
    query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
    if study_id is not None:
        query = query.where(Job.study_id == study_id)
    return list(db.scalars(query))


def active_job(db: Session, study_id: int, kind: str) -> Job | None:
    """The queued or running job of `kind` for a study, if any (one at a time)."""
    return db.scalar(
        select(Job).where(
            Job.study_id == study_id, Job.kind == kind, Job.status.in_(("queued", "running"))
        )
    )


def cancel_job(db: Session, job: Job) -> Job:
    """Queued: cancelled now. Running: its worker stops at the next progress report."""
    if job.status == "queued":
        job.status, job.finished_at, job.message = "cancelled", datetime.now(UTC), "cancelled"
    elif job.status == "running":
        job.cancel_requested = True
        job.message = "cancel requested"
    else:
        raise Conflict(
            f"job {job.id} is {job.status}: only queued or running jobs can be cancelled"
        )
    db.flush()
    return job


def resume_job(db: Session, job: Job) -> Job:
    """A failed or cancelled job goes back to the queue, keeping what it had finished."""
    if job.status not in RESUMABLE:
        raise Conflict(f"job {job.id} is {job.status}: only failed or cancelled jobs can resume")
    job.status, job.error, job.cancel_requested = "queued", None, False
    job.finished_at, job.worker, job.message = None, None, "waiting for a worker (resumed)"
    db.flush()
    return job


def claim_next_job(db: Session, worker: str, kinds: list[str] | None = None) -> Job | None:
    """Take the oldest queued job for `worker`: a conditional UPDATE, so two workers racing
    for one job cannot both get it."""
    query = select(Job.id).where(Job.status == "queued").order_by(Job.created_at, Job.id)
    if kinds:
        query = query.where(Job.kind.in_(kinds))
    for job_id in db.scalars(query.limit(5)).all():
        now = datetime.now(UTC)
        claimed = db.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(
                status="running",
                worker=worker,
                started_at=now,
                heartbeat_at=now,
                attempts=Job.attempts + 1,
                message="starting",
                cancel_requested=False,
            )
        ).rowcount
        if claimed == 1:
            db.flush()
            return db.get(Job, job_id, populate_existing=True)
    return None


def _local_worker_state(worker: str | None) -> str:
    """ "gone" or "alive" for a worker (host:pid) on this host; "unknown" for another host."""
    if not worker or ":" not in worker:
        return "unknown"
    host, pid = worker.rsplit(":", 1)
    if host != socket.gethostname() or not pid.isdigit():
        return "unknown"
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "alive"
    return "gone" if _is_zombie(int(pid)) else "alive"


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def reap_dead_jobs(db: Session, stale_after_s: float = STALE_AFTER_S) -> list[Job]:
    """Mark running jobs whose worker died as failed, saying why; they can be resumed."""
    now = datetime.now(UTC)
    dead = []
    for job in db.scalars(select(Job).where(Job.status == "running")):
        beat = _aware(job.heartbeat_at) or _aware(job.started_at) or now
        state = _local_worker_state(job.worker)
        if state == "gone":
            reason = f"worker {job.worker} died during {job.step or 'start-up'}"
        elif state == "unknown" and now - beat > timedelta(seconds=stale_after_s):
            # Another host: only the heartbeat tells (a local live process may just be busy
            # writing its results, with SQLite's lock delaying its beat).
            reason = (
                f"no heartbeat from worker {job.worker} for {int((now - beat).total_seconds())} "
                f"s (during {job.step or 'start-up'})"
            )
        else:
            continue
        job.status, job.finished_at = "failed", now
        job.error = f"{reason}; resume the job to continue where it stopped"
        job.message = "worker died"
        dead.append(job)
    db.flush()
    return dead


def job_view(job: Job) -> dict[str, Any]:
    """What the dashboard, the JSON API and the CLI show of a job."""
    live = job.result if job.status == "running" and isinstance(job.result, dict) else {}
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "study_id": job.study_id,
        "params": job.params or {},
        "step": job.step,
        "done": job.progress,
        "total": job.total,
        "fraction": round(job.progress / job.total, 4) if job.total else None,
        "eta_s": live.get("eta_s"),
        "message": job.message,
        "error": job.error,
        "log_tail": job.log_tail,
        "attempts": job.attempts,
        "worker": job.worker,
        "cancel_requested": job.cancel_requested,
        "resumable": job.status in RESUMABLE,
        "result": job.result if job.status == "succeeded" else None,
        "created_by": job.created_by,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "heartbeat_at": job.heartbeat_at,
        "finished_at": job.finished_at,
    }
