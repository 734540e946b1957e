"""What a running job reports through: progress per step with an ETA, a log tail, cancel.

Reports are written to the job's row in short transactions of their own (at most every
`min_interval_s`, and whenever the step changes), so the dashboard and `psychinterp jobs`
see them while the job's own work holds no transaction open. A separate heartbeat thread
keeps `heartbeat_at` fresh while one step computes for minutes: a job whose heartbeat
stops is treated as dead (see service.reap_dead_jobs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from server.config import Settings
from server.db.models import Job
from server.db.session import session_scope
from server.errors import AppError

LOG_LINES = 40
HEARTBEAT_S = 5.0


class JobCancelled(AppError):
    """Raised inside a job when its cancel was requested; the worker records "cancelled"."""


class JobContext:
    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        job_id: str,
        min_interval_s: float = 0.5,
        on_progress: Callable[[str, int, int], None] | None = None,
    ):
        self.factory = factory
        self.settings = settings
        self.job_id = job_id
        self.min_interval_s = min_interval_s
        self.on_progress = on_progress  # e.g. the CLI's progress bars, besides the row
        self._lines: list[str] = []
        self._step = ""
        self._step_started = time.monotonic()
        self._last_write = 0.0
        self._lock = threading.Lock()
        self._stop_beating = threading.Event()
        self._beater: threading.Thread | None = None

    # --- reports -------------------------------------------------------------------------

    def progress(self, step: str, done: int, total: int) -> None:
        """`done` of `total` units of `step`; raises JobCancelled once a cancel was asked."""
        if self.on_progress is not None:
            self.on_progress(step, done, total)
        now = time.monotonic()
        changed = step != self._step
        if changed:
            if self._step:
                self.log(f"{self._step}: done")
            self._step, self._step_started = step, now
            self.log(f"{step}: started ({total} units)")
        if not changed and now - self._last_write < self.min_interval_s and done < total:
            return
        elapsed = now - self._step_started
        eta = elapsed * (total - done) / done if done and total and done < total else None
        self._write(
            step=step,
            progress=int(done),
            total=int(total),
            message=f"{step}: {done}/{total}",
            result={"eta_s": round(eta, 1) if eta is not None else None},
        )

    def log(self, line: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        self._lines = [*self._lines, f"{stamp} {line}"][-LOG_LINES:]
        self._write(log_tail="\n".join(self._lines))

    def _write(self, **values: Any) -> None:
        with self._lock:
            self._last_write = time.monotonic()
            with session_scope(self.factory) as db:
                values["heartbeat_at"] = datetime.now(UTC)
                db.execute(update(Job).where(Job.id == self.job_id).values(**values))
                cancel = db.get(Job, self.job_id).cancel_requested
        if cancel:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    # --- heartbeat -----------------------------------------------------------------------

    def start_heartbeat(self, every_s: float = HEARTBEAT_S) -> None:
        def beat() -> None:
            while not self._stop_beating.wait(every_s):
                try:
                    with self._lock, session_scope(self.factory) as db:
                        db.execute(
                            update(Job)
                            .where(Job.id == self.job_id)
                            .values(heartbeat_at=datetime.now(UTC))
                        )
                except OperationalError:
                    continue  # e.g. SQLite busy while the job writes its results: beat later

        self._beater = threading.Thread(target=beat, name=f"job-{self.job_id}-heartbeat")
        self._beater.daemon = True
        self._beater.start()

    def stop_heartbeat(self) -> None:
        self._stop_beating.set()
        if self._beater is not None:
            self._beater.join()
