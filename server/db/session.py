"""Engine and session creation for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from server.errors import AppError


def normalise_database_url(url: str) -> str:
    """Let users write `postgresql://` and still get psycopg 3 (not psycopg2)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs (WAL, FKs, durable commits on SQLite)."""
    url = normalise_database_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise AppError(
            f"invalid database URL {url!r}: use sqlite:///path.db or "
            "postgresql+psycopg://user:pass@host/db"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # A file gets as many connections as the threadpool has threads (40) and then some:
        # a burst of requests (participants reconnecting after a restart) must never wait
        # 30 s for a pooled connection and fail with a 500. SQLite connections are cheap;
        # writers still queue in SQLite's busy handler. (In-memory: one shared connection.)
        in_memory = not parsed.database or parsed.database == ":memory:"
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            **({} if in_memory else {"pool_size": 10, "max_overflow": 40}),
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # FULL: a COMMIT returns only once the WAL is on disk, so an acknowledged answer
            # survives power loss and OS crashes, not just a process crash (NORMAL). The hot
            # path commits in batches (server/db/write_process.py): one fsync serves a batch.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def describe_database_error(exc: OperationalError) -> str:
    """The driver's first line (e.g. "connection refused"), without SQLAlchemy's wrapping."""
    return (str(exc.orig) if exc.orig else str(exc)).strip().splitlines()[0]


def check_database(engine: Engine) -> str | None:
    """None if the database answers, else a one-line reason."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except OperationalError as exc:
        return describe_database_error(exc)
    except Exception as exc:  # noqa: BLE001 - any driver failure is "unreachable" here
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
