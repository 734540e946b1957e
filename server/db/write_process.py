"""The SQLite writer process: hot-path writes leave the server's interpreter (and its GIL).

One child process per SQLite file and event loop. The loop talks to it over a socket pair
like to any other peer (an asyncio transport: no thread, no lock): each write is sent the
moment it is made, as a length-prefixed pickle. The child takes everything that has
arrived, runs it as one transaction (server/db/writes.py:BatchCommitter: a SAVEPOINT per
write), COMMITs, and only then answers each write in order: nothing is acknowledged before
its commit. While it commits, the next writes queue up in the socket, so batches grow with
the load by themselves, and the loop goes on serving requests on its own core meanwhile.

If the child dies, the writes in flight fail with a 503 (the client retries with the same
idempotency key, so a write committed just before the crash is answered from the stored
row), and the next write starts a new child. The child exits when its socket closes: on
app shutdown, or when the server process dies.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import pickle
import signal
import socket
import struct
import weakref
from typing import Any

from sqlalchemy import Engine

from server.db.writes import BatchCommitter, Outcome, Write
from server.errors import AppError

_HEADER = struct.Struct("!I")  # payload length
MAX_WRITES_PER_COMMIT = 256  # bounds one commit's latency
# forkserver: children fork from a small clean server with these modules already imported
# (fast, and safe to start from a process that runs threads and an event loop).
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_PRELOAD = ["server.db.write_process", "server.studies.responses"]


class WriterUnavailable(AppError):
    status_code = 503


def _frame(payload: Any) -> bytes:
    data = pickle.dumps(payload, pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _split_frames(buffer: bytearray, limit: int | None = None) -> list[Any]:
    """Unpickle the complete frames at the front of `buffer` (at most `limit`), removing
    them; a partial frame stays for the next read."""
    payloads = []
    offset = 0
    while len(buffer) - offset >= _HEADER.size and (limit is None or len(payloads) < limit):
        (size,) = _HEADER.unpack_from(buffer, offset)
        end = offset + _HEADER.size + size
        if len(buffer) < end:
            break
        payloads.append(pickle.loads(buffer[offset + _HEADER.size : end]))
        offset = end
    del buffer[:offset]
    return payloads


class _Link(asyncio.Protocol):
    """One child process and the parent's end of its socket. Answers arrive in the order
    the writes were sent; when the socket closes, what is still in flight fails."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.transport: asyncio.Transport | None = None
        self.in_flight: collections.deque[asyncio.Future] = collections.deque()
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, frame: bytes) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.in_flight.append(future)
        self.transport.write(frame)  # type: ignore[union-attr]
        return future

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        for result, error in _split_frames(self._buffer):
            future = self.in_flight.popleft()
            if future.done():  # the caller went away (client disconnected): still stored
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        error = WriterUnavailable(
            "the database writer restarted before confirming this write: send it again "
            "with the same idempotency key"
        )
        while self.in_flight:
            future = self.in_flight.popleft()
            if not future.done():
                future.set_exception(error)
        # No join here, on the event loop: `WriterProcess.close` joins on shutdown, and a
        # child that died is reaped by multiprocessing when the next one starts.

    @property
    def alive(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


class WriterProcess:
    """A child process that commits one SQLite file's hot-path writes for one event loop."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._link: _Link | None = None
        self._starting: asyncio.Task | None = None

    async def run(self, write: Write) -> Any:
        """`write(connection)` committed in the child; its result, or its error raised."""
        try:
            frame = _frame(write)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(
                "a hot-path write is sent to SQLite's writer process, so it must be "
                f"picklable (a functools.partial of a module-level function): {exc}"
            ) from exc
        if self._link is None or not self._link.alive:
            if self._starting is None:
                self._starting = asyncio.ensure_future(self._start())
            await asyncio.shield(self._starting)
        return await self._link.send(frame)  # type: ignore[union-attr]

    async def _start(self) -> None:
        try:
            context = multiprocessing.get_context(_START_METHOD)
            if _START_METHOD == "forkserver":
                context.set_forkserver_preload(_PRELOAD)
            here, there = socket.socketpair()
            process = context.Process(
                target=_child_main, args=(self._url, there), name="psychinterp-sqlite-writer"
            )
            process.daemon = True
            await asyncio.to_thread(process.start)  # the first start launches the forkserver
            there.close()
            loop = asyncio.get_running_loop()
            _, self._link = await loop.create_connection(lambda: _Link(process), sock=here)
        finally:
            self._starting = None

    @property
    def pid(self) -> int | None:
        return self._link.process.pid if self._link is not None else None

    async def close(self) -> None:
        """Let the child finish what it was sent, then stop it."""
        link, self._link = self._link, None
        if link is None:
            return
        if link.transport is not None:
            link.transport.close()  # flushes what is buffered first; the child sees EOF
        await asyncio.to_thread(link.process.join, 10)
        if link.process.is_alive():
            link.process.kill()


def _child_main(url: str, sock: socket.socket) -> None:
    """Commit whatever writes have arrived as one batch; answer each; repeat until EOF."""
    from server.db.session import make_engine

    # Ctrl-C reaches the whole process group: the server shuts down and closes the socket,
    # and the child finishes its batch and exits then, not in the middle of a commit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    committer = BatchCommitter(make_engine(url))
    buffer = bytearray()
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buffer += chunk
            while writes := _split_frames(buffer, MAX_WRITES_PER_COMMIT):
                batch = [Outcome(write) for write in writes]
                committer.commit(batch)
                sock.sendall(b"".join(_frame(_picklable(o)) for o in batch))
    finally:
        committer.close()
        sock.close()


def _picklable(outcome: Outcome) -> tuple[Any, BaseException | None]:
    error = outcome.error
    if error is not None:
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:  # noqa: BLE001 - say what it was, in a type the parent has
            error = RuntimeError(f"{type(error).__name__}: {error}")
    return outcome.result, error


# --- one writer per SQLite file and event loop ---------------------------------------------

_WRITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, WriterProcess]] = (
    weakref.WeakKeyDictionary()
)


def _sqlite_file(engine: Engine) -> str | None:
    """The URL of the engine's SQLite file; None for PostgreSQL or an in-memory database
    (which another process cannot open)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return engine.url.render_as_string(hide_password=False)


def writer_for(engine: Engine) -> WriterProcess | None:
    """This event loop's writer process for the engine's SQLite file (made on first use);
    None where writes run as transactions of their own.

    Per file, not per engine: two apps of one loop on the same file (tests) share it.
    """
    url = _sqlite_file(engine)
    if url is None:
        return None
    writers = _WRITERS.setdefault(asyncio.get_running_loop(), {})
    if url not in writers:
        writers[url] = WriterProcess(url)
    return writers[url]


async def close_writers(engine: Engine) -> None:
    """Stop this loop's writer for the engine's file (app shutdown)."""
    url = _sqlite_file(engine)
    writers = _WRITERS.get(asyncio.get_running_loop(), {})
    if url is not None and url in writers:
        await writers.pop(url).close()
