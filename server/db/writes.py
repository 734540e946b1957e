"""Hot-path writes: group commit on SQLite, one transaction per write on PostgreSQL.

SQLite has one writer at a time. Left to its busy handler, concurrent writer threads sleep
in growing steps and throughput collapses; and a transaction per write pays BEGIN, COMMIT
and the ORM session's bookkeeping every time. So every hot-path write of a process goes to
one thread per SQLite database, which drains everything queued, runs each write in its own
SAVEPOINT (a failing write rolls back only itself and gets its own error), COMMITs once,
and only then answers the callers: nothing is acknowledged before its commit.

PostgreSQL takes concurrent writers well: there each write is its own transaction in the
threadpool.

A write is a function of a Connection that may run twice: when it hits a unique
constraint it is rolled back and run once more, so it sees the row that won the race and
can answer accordingly (an idempotent replay, a 409).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

T = TypeVar("T")
Write = Callable[[Connection], T]

MAX_BATCH = 256  # bounds one commit's latency; a batch is rarely larger than the client count


@dataclass(eq=False)
class _Pending:
    write: Write
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    result: Any = None
    error: BaseException | None = None


class GroupCommitWriter:
    """One thread that owns one connection to a SQLite database and commits in groups."""

    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sqlite-writer", daemon=True)
        self._thread.start()

    async def run(self, write: Write[T]) -> T:
        """`write(connection)` committed (with whatever else was queued) before this returns."""
        loop = asyncio.get_running_loop()
        pending = _Pending(write, loop, loop.create_future())
        self._queue.put(pending)
        return await pending.future

    def close(self) -> None:
        """Finish what is queued, then stop the thread and close its connection."""
        self._queue.put(None)
        self._thread.join()

    def _serve(self) -> None:
        connection: Connection | None = None
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if not batch:
                continue
            try:
                if connection is None:
                    connection = self._engine.connect()
                self._commit(connection, batch)
            except BaseException as exc:  # noqa: BLE001 - the thread must live on
                # Not committed, so none of the batch is stored, whatever each write returned.
                for pending in batch:
                    pending.error = exc
                connection = _discard(connection)  # it may be broken: the next batch reconnects
            _answer(batch)
        _discard(connection)

    def _next_batch(self) -> tuple[list[_Pending], bool]:
        """(what is queued, up to max_batch, waiting for at least one; whether to stop)."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is None:
                return batch, True
            batch.append(pending)
        return batch, False

    @staticmethod
    def _commit(connection: Connection, batch: list[_Pending]) -> None:
        with connection.begin():
            # Take the write lock up front: every read of the batch then sees the state its
            # writes commit onto (another process cannot write in between).
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            # Savepoints on the driver's cursor: they are plain statements, and SQLAlchemy's
            # execution machinery would double their cost.
            cursor = connection.connection.dbapi_connection.cursor()
            for pending in batch:
                _run_in_savepoint(connection, cursor, pending)


def _discard(connection: Connection | None) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.close()


def _run_in_savepoint(connection: Connection, cursor: Any, pending: _Pending) -> None:
    cursor.execute("SAVEPOINT hot_write")
    for attempt in (0, 1):
        try:
            pending.result = pending.write(connection)
            break
        except IntegrityError as exc:
            cursor.execute("ROLLBACK TO hot_write")
            if attempt:
                pending.error = exc
        except Exception as exc:  # noqa: BLE001 - it is this write's answer, not the batch's
            cursor.execute("ROLLBACK TO hot_write")
            pending.error = exc
            break
    cursor.execute("RELEASE hot_write")


def _answer(batch: list[_Pending]) -> None:
    """One wake-up per event loop for the whole batch, not one per write."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for pending in batch:
        by_loop.setdefault(pending.loop, []).append(pending)
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, group)
        except RuntimeError:  # that loop is closed: nobody is waiting for these answers
            pass


def _settle(group: list[_Pending]) -> None:
    for pending in group:
        if pending.future.done():  # the caller went away (client disconnected): still stored
            continue
        if pending.error is not None:
            pending.future.set_exception(pending.error)
        else:
            pending.future.set_result(pending.result)


def run_in_transaction(engine: Engine, write: Write[T]) -> T:
    """`write` in its own transaction, run once more after a unique-constraint race."""
    try:
        with engine.begin() as connection:
            return write(connection)
    except IntegrityError:
        with engine.begin() as connection:
            return write(connection)


_WRITERS: dict[str, GroupCommitWriter] = {}
_BY_ENGINE: weakref.WeakKeyDictionary[Engine, GroupCommitWriter] = weakref.WeakKeyDictionary()
_WRITERS_GUARD = threading.Lock()


def group_commit_writer(engine: Engine) -> GroupCommitWriter | None:
    """The process's writer for this SQLite database (made on first use); None elsewhere.

    One per database file, not per engine: two apps of one process on the same file (tests,
    serve_in_thread) must not compete for SQLite's single write lock. The writer keeps its
    own engine, so disposing an app's engine does not pull its connection away.
    """
    writer = _BY_ENGINE.get(engine)  # per request: rendering the URL each time costs
    if writer is not None or engine.dialect.name != "sqlite":
        return writer
    from server.db.session import make_engine

    key = engine.url.render_as_string(hide_password=False)
    with _WRITERS_GUARD:
        if key not in _WRITERS:
            _WRITERS[key] = GroupCommitWriter(make_engine(key))
        _BY_ENGINE[engine] = _WRITERS[key]
        return _WRITERS[key]


async def run_write(engine: Engine, write: Write[T]) -> T:
    """`write(connection)` committed before this returns: group commit on SQLite, a
    transaction of its own in the threadpool on PostgreSQL."""
    writer = group_commit_writer(engine)
    if writer is None:
        return await run_in_threadpool(run_in_transaction, engine, write)
    return await writer.run(write)
