"""Group commit on SQLite (server/db/writes.py): one transaction for everything queued, one
SAVEPOINT per write, answers only after the COMMIT. Checked on a real SQLite database."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Connection, insert, select, text
from sqlalchemy.exc import IntegrityError

from server.db.migrate import upgrade_database
from server.db.models import Assignment, BarredWorker
from server.db.session import make_engine
from server.db.writes import GroupCommitWriter
from server.errors import Conflict


@pytest.fixture
def writer_engine(sqlite_url: str):
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def bar(worker: str):
    """A write that stores one row and says which transaction it ran in."""

    def write(conn: Connection):
        conn.execute(insert(BarredWorker).values(worker_hash=worker, study_group="g", reason=""))
        return conn.get_transaction()

    return write


def stored(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(BarredWorker.worker_hash)))


def in_one_batch(writer: GroupCommitWriter, writes: list) -> list:
    """Results of `writes`, run as one batch (on a loop of their own: a browser test's
    event loop may be running in this thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _in_one_batch(writer, writes)).result()


async def _in_one_batch(writer: GroupCommitWriter, writes: list) -> list:
    """Hold the writer on a first write until all of `writes` are queued behind it."""
    started, gate = threading.Event(), threading.Event()

    def hold(_conn: Connection) -> None:
        started.set()
        gate.wait()

    loop = asyncio.get_running_loop()
    holder = asyncio.ensure_future(writer.run(hold))
    await loop.run_in_executor(None, started.wait)
    tasks = [asyncio.ensure_future(writer.run(w)) for w in writes]
    await asyncio.sleep(0)  # each task runs up to its await: every write is queued now
    gate.set()
    await holder
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_a_failing_write_rolls_back_only_itself(writer_engine):
    def insert_then_refuse(conn: Connection):
        bar("refused")(conn)
        raise Conflict("refused after writing")

    writer = GroupCommitWriter(writer_engine)
    try:
        results = in_one_batch(writer, [bar("w1"), insert_then_refuse, bar("w2"), bar("w3")])
    finally:
        writer.close()
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert isinstance(results[1], Conflict) and results[1].message == "refused after writing"
    assert len(ok) == 3 and all(t is ok[0] for t in ok)  # one transaction for the batch
    assert stored(writer_engine) == {"w1", "w2", "w3"}  # acknowledged == stored


def test_a_unique_conflict_is_run_once_more_and_then_reported(writer_engine):
    calls: list[int] = []

    def lose_a_race_once(conn: Connection) -> str:
        calls.append(1)
        if len(calls) == 1:
            bar("dup")(conn)  # the same row as an earlier write of the batch
        return "seen the winner"

    writer = GroupCommitWriter(writer_engine)
    try:
        results = in_one_batch(writer, [bar("dup"), lose_a_race_once, bar("dup"), bar("w4")])
    finally:
        writer.close()
    assert results[1] == "seen the winner" and len(calls) == 2
    assert isinstance(results[2], IntegrityError)  # conflicted twice: its own error
    assert stored(writer_engine) == {"dup", "w4"}


def test_nothing_is_acknowledged_when_the_commit_fails(writer_engine):
    def orphan(conn: Connection) -> None:
        # A foreign key checked only at COMMIT: the whole batch's commit fails.
        conn.execute(text("PRAGMA defer_foreign_keys = ON"))
        conn.execute(
            insert(Assignment).values(
                session_id="no-such-session", trial_id="t", position=0, max_is_a=True, display={}
            )
        )

    writer = GroupCommitWriter(writer_engine)
    try:
        results = in_one_batch(writer, [bar("w5"), orphan, bar("w6")])
        assert all(isinstance(r, IntegrityError) for r in results), results
        assert stored(writer_engine) == set()
        # The writer carries on with the next batch.
        in_one_batch(writer, [bar("w7")])
    finally:
        writer.close()
    assert stored(writer_engine) == {"w7"}
