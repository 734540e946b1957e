"""The default runner: one worker process on this machine, started by `psychinterp serve`.

A process (not a thread) so generation's CPU/GPU work and memory never touch the web
process, and killing it cannot take the server down. `psychinterp worker` runs the same
loop in the foreground (e.g. on a GPU box sharing the database).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

from server.config import Settings


def run_worker(settings: Settings, poll_s: float = 1.0, parent_pid: int | None = None) -> None:
    """The worker process's main: the job loop until SIGTERM/SIGINT, or, for the worker a
    server started (`parent_pid`), until that server is gone: a server killed without its
    shutdown (SIGKILL, a crash) must not leave its worker polling the database forever."""
    from server.db.migrate import upgrade_database
    from server.db.session import make_engine, make_session_factory
    from server.jobs.runner import worker_loop

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if parent_pid is not None:
        threading.Thread(target=_stop_when_orphaned, args=(parent_pid, stop), daemon=True).start()
    upgrade_database(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        worker_loop(make_session_factory(engine), settings, stop, poll_s)
    finally:
        engine.dispose()


def _stop_when_orphaned(parent_pid: int, stop: threading.Event, every_s: float = 1.0) -> None:
    """Set `stop` once this process's parent is no longer `parent_pid` (it was reparented:
    the server died). A job in progress runs to its end first, as on SIGTERM."""
    while not stop.wait(every_s):
        if os.getppid() != parent_pid:
            stop.set()


class LocalRunner:
    """A `JobRunner` backed by one spawned worker process."""

    def __init__(self, settings: Settings, poll_s: float = 1.0):
        self.settings = settings
        self.poll_s = poll_s
        self.process: multiprocessing.Process | None = None

    def start(self) -> None:
        # spawn: a fresh interpreter (no forked torch threads, no copied DB connections).
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=run_worker,
            args=(self.settings, self.poll_s, os.getpid()),
            name="psychinterp-worker",
        )
        self.process.daemon = True
        self.process.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None:
            return
        self.process.terminate()  # SIGTERM: the loop stops between jobs or at its next poll
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def is_alive(self) -> bool:
        return self.process is not None and self.process.is_alive()
