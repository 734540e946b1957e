"""Group commit on SQLite: one transaction per batch, one SAVEPOINT per write, answers only
after the COMMIT (server/db/writes.py), run in a child process that the event loop feeds
over a socket (server/db/write_process.py). Checked on a real SQLite database."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Connection, insert, select, text
from sqlalchemy.exc import IntegrityError

from server.db.migrate import upgrade_database
from server.db.models import Assignment, BarredWorker
from server.db.session import make_engine
from server.db.write_process import WriterUnavailable, close_writers, writer_for
from server.db.writes import BatchCommitter, Outcome
from server.errors import Conflict


@pytest.fixture
def writer_engine(sqlite_url: str):
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


# Writes are module-level functions (bound with functools.partial): they travel by pickle.


def bar(conn: Connection, worker: str) -> str:
    """Store one row; say which connection it ran on (the writer's own)."""
    conn.execute(insert(BarredWorker).values(worker_hash=worker, study_group="g", reason=""))
    return f"{os.getpid()}:{id(conn.get_transaction())}"


def bar_then_refuse(conn: Connection) -> None:
    bar(conn, "refused")
    raise Conflict("refused after writing")


def stored(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(BarredWorker.worker_hash)))


def run_on_own_loop(coroutine):
    """Run on a loop of its own thread: a browser test's event loop may be running here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def commit_batch(engine, writes: list) -> list[Outcome]:
    committer = BatchCommitter(engine)
    batch = [Outcome(w) for w in writes]
    try:
        committer.commit(batch)
    finally:
        committer.close()
    return batch


def test_a_failing_write_rolls_back_only_itself(writer_engine):
    batch = commit_batch(
        writer_engine,
        [functools.partial(bar, worker=w) for w in ("w1",)]
        + [bar_then_refuse]
        + [functools.partial(bar, worker=w) for w in ("w2", "w3")],
    )
    assert isinstance(batch[1].error, Conflict) and batch[1].error.message == (
        "refused after writing"
    )
    ok = [o.result for o in batch if o.error is None]
    assert len(ok) == 3 and len(set(ok)) == 1  # one transaction for the batch
    assert stored(writer_engine) == {"w1", "w2", "w3"}  # acknowledged == stored


def test_a_unique_conflict_is_run_once_more_and_then_reported(writer_engine):
    calls: list[int] = []

    def lose_a_race_once(conn: Connection) -> str:
        calls.append(1)
        if len(calls) == 1:
            bar(conn, "dup")  # the same row as an earlier write of the batch
        return "seen the winner"

    batch = commit_batch(
        writer_engine,
        [
            functools.partial(bar, worker="dup"),
            lose_a_race_once,
            functools.partial(bar, worker="dup"),
            functools.partial(bar, worker="w4"),
        ],
    )
    assert batch[1].result == "seen the winner" and len(calls) == 2
    assert isinstance(batch[2].error, IntegrityError)  # conflicted twice: its own error
    assert stored(writer_engine) == {"dup", "w4"}


def orphan(conn: Connection) -> None:
    # A foreign key checked only at COMMIT: the whole batch's commit fails.
    conn.execute(text("PRAGMA defer_foreign_keys = ON"))
    conn.execute(
        insert(Assignment).values(
            session_id="no-such-session", trial_id="t", position=0, max_is_a=True, display={}
        )
    )


def test_nothing_is_acknowledged_when_the_commit_fails(writer_engine):
    batch = commit_batch(
        writer_engine,
        [functools.partial(bar, worker="w5"), orphan, functools.partial(bar, worker="w6")],
    )
    assert all(isinstance(o.error, IntegrityError) for o in batch), batch
    assert stored(writer_engine) == set()
    commit_batch(writer_engine, [functools.partial(bar, worker="w7")])
    assert stored(writer_engine) == {"w7"}


# --- the writer process ------------------------------------------------------------------------


def test_the_writer_process_commits_in_groups_and_returns_each_answer(writer_engine):
    async def scenario():
        writer = writer_for(writer_engine)
        assert writer is writer_for(writer_engine)  # one per file and loop
        writes = [functools.partial(bar, worker=f"p{i}") for i in range(40)] + [bar_then_refuse]
        results = await asyncio.gather(*(writer.run(w) for w in writes), return_exceptions=True)
        pid = writer.pid
        await close_writers(writer_engine)
        return results, pid

    results, pid = run_on_own_loop(scenario())
    refused = results.pop()
    # The error crosses the process boundary with its type, message and HTTP status.
    assert isinstance(refused, Conflict) and refused.status_code == 409
    assert refused.message == "refused after writing"
    pids = {r.split(":")[0] for r in results}
    assert pids == {str(pid)} and pid != os.getpid()  # written by the child
    assert len({r.split(":")[1] for r in results}) < len(results)  # some shared a commit
    assert stored(writer_engine) == {f"p{i}" for i in range(40)}


def test_a_dead_writer_process_fails_its_writes_clearly_and_is_restarted(writer_engine):
    async def scenario():
        writer = writer_for(writer_engine)
        await writer.run(functools.partial(bar, worker="before"))
        first = writer.pid
        os.kill(first, signal.SIGKILL)
        with pytest.raises(WriterUnavailable) as lost:
            # Sent to the dead child, or failed as its socket closes: never a silent hang.
            await asyncio.wait_for(writer.run(functools.partial(bar, worker="lost")), 10)
        await writer.run(functools.partial(bar, worker="after"))
        second = writer.pid
        await close_writers(writer_engine)
        return lost.value, first, second

    error, first, second = run_on_own_loop(scenario())
    assert error.status_code == 503 and "same idempotency key" in error.message
    assert second not in (None, first)
    assert stored(writer_engine) == {"before", "after"}


def test_in_memory_and_postgres_databases_have_no_writer_process():
    async def scenario():
        return writer_for(make_engine("sqlite://"))

    assert run_on_own_loop(scenario()) is None


def test_an_unpicklable_write_is_refused_before_it_is_queued(writer_engine):
    async def scenario():
        writer = writer_for(writer_engine)
        with pytest.raises(TypeError, match="must be picklable"):
            await writer.run(lambda conn: bar(conn, "closure"))
        # Nothing was queued for it, so the next answer still goes to the right caller.
        answer = await writer.run(functools.partial(bar, worker="next"))
        await close_writers(writer_engine)
        return answer

    assert run_on_own_loop(scenario()).split(":")[0] != str(os.getpid())
    assert stored(writer_engine) == {"next"}
