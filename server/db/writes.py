"""Hot-path writes: group commit in a writer process on SQLite, a transaction each on
PostgreSQL.

SQLite has one writer at a time. Left to its busy handler, concurrent writers sleep in
growing steps and throughput collapses; and a transaction per write pays BEGIN and COMMIT
every time. So the hot-path writes of an event loop go to one writer that drains
everything queued, runs each write in its own SAVEPOINT (a failing write rolls back only
itself and gets its own error), COMMITs once, and only then answers: nothing is
acknowledged before its commit.

That writer is a child process (server/db/write_process.py), not a thread: a thread shares
the event loop's GIL, and every time SQLite hands the GIL back the thread waits for the
loop to let go of it, so serving and writing took turns instead of overlapping (measured:
the write cost the ingest route half its rate). `BatchCommitter` below is what the child
runs.

PostgreSQL takes concurrent writers well: there each write is its own transaction in the
threadpool.

A write is a picklable callable of a Connection (a module-level function or a
functools.partial of one: it travels to the writer process) that may run twice: when it
hits a unique constraint it is rolled back and run once more, so it sees the row that won
the race and can answer accordingly (an idempotent replay, a 409).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

T = TypeVar("T")
Write = Callable[[Connection], T]


def with_orm_session(conn: Connection, run: Callable[[Session], T]) -> T:
    """`run(db)` on an ORM session joined to a write's connection, flushed before it returns:
    for writes written against the ORM (the write's savepoint or transaction stays in charge
    of commit and rollback)."""
    with Session(bind=conn, join_transaction_mode="rollback_only") as db:
        result = run(db)
        db.flush()
        return result


@dataclass(eq=False)
class Outcome:
    """One write of a batch: what it returned or raised once the batch is committed."""

    write: Write
    result: Any = None
    error: BaseException | None = None


class BatchCommitter:
    """Runs batches of writes as one transaction each, on its own connection."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def commit(self, batch: list[Outcome]) -> None:
        """Every write of `batch` run and committed together; outcomes filled in place."""
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
            self._commit(self._connection, batch)
        except Exception as exc:  # noqa: BLE001 - the writer must live on
            # Not committed, so none of the batch is stored, whatever each write returned.
            for outcome in batch:
                outcome.error = exc
            self.close()  # the connection may be broken: the next batch reconnects

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    @staticmethod
    def _commit(connection: Connection, batch: list[Outcome]) -> None:
        with connection.begin():
            # Take the write lock up front: every read of the batch then sees the state its
            # writes commit onto (another process cannot write in between).
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            # Savepoints on the driver's cursor: they are plain statements, and SQLAlchemy's
            # execution machinery would double their cost.
            cursor = connection.connection.dbapi_connection.cursor()
            for outcome in batch:
                _run_in_savepoint(connection, cursor, outcome)


def _run_in_savepoint(connection: Connection, cursor: Any, outcome: Outcome) -> None:
    cursor.execute("SAVEPOINT hot_write")
    for attempt in (0, 1):
        try:
            outcome.result = outcome.write(connection)
            break
        except IntegrityError as exc:
            cursor.execute("ROLLBACK TO hot_write")
            if attempt:
                outcome.error = exc
        except Exception as exc:  # noqa: BLE001 - it is this write's answer, not the batch's
            cursor.execute("ROLLBACK TO hot_write")
            outcome.error = exc
            break
    cursor.execute("RELEASE hot_write")


def nothing(_connection: Connection) -> None:
    """A write that writes nothing: run once at start-up so that the writer is ready."""


def run_in_transaction(engine: Engine, write: Write[T]) -> T:
    """`write` in its own transaction, run once more after a unique-constraint race."""
    try:
        with engine.begin() as connection:
            return write(connection)
    except IntegrityError:
        with engine.begin() as connection:
            return write(connection)


async def run_write(engine: Engine, write: Write[T]) -> T:
    """`write(connection)` committed before this returns: group commit in the writer
    process on a SQLite file, a transaction of its own in the threadpool otherwise."""
    from server.db.write_process import writer_for

    writer = writer_for(engine)
    if writer is None:
        return await run_in_threadpool(run_in_transaction, engine, write)
    return await writer.run(write)
