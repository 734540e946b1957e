"""Core statements compiled once per dialect and run on the driver's cursor (hot path only).

SQLAlchemy's `Connection.execute` spends about 50 µs of Python per statement (cache key,
parameter processing, execution context, result set-up): more than SQLite needs to run a
response's statements, and in the single writer process that Python time is the ceiling of
the whole server. A `Prepared` statement is still written in Core (one definition for
SQLite and PostgreSQL), compiled once per dialect; its bind values go through the type
processors SQLAlchemy itself would apply, so what is stored is identical. It runs on the
same DBAPI connection, inside the caller's transaction. Rows come back as the driver
returns them (SQLite gives 0/1 for booleans), and driver errors are raised as SQLAlchemy's
(`IntegrityError`, ...), like everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable


@dataclass(frozen=True)
class _Compiled:
    sql: str
    literals: dict[str, Any]  # the statement's own bind values, already processed
    processors: dict[str, Callable[[Any], Any]]  # for the caller's bind values
    positions: tuple[str, ...] | None  # bind names in order, for positional paramstyles


class Prepared:
    """`statement` compiled on first use for each dialect, run with `first` or `run`."""

    def __init__(self, statement: Executable, column_keys: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, dialect: Dialect) -> _Compiled:
        key = f"{dialect.name}+{dialect.driver}"
        if key not in self._by_dialect:
            self._by_dialect[key] = self._compile(dialect)
        return self._by_dialect[key]

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._statement.compile(dialect=dialect, column_keys=self._column_keys)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise NotImplementedError("Prepared cannot run statements with post-compile binds")
        required = {name for name, bind in compiled.binds.items() if bind.required}
        values = compiled.construct_params(dict.fromkeys(required))
        literals, processors = {}, {}
        for name, value in values.items():
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name in required:
                if processor is not None:
                    processors[name] = processor
            else:
                literals[name] = processor(value) if processor is not None else value
        positions = tuple(compiled.positiontup) if compiled.positional else None
        return _Compiled(compiled.string, literals, processors, positions)

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple | None:
        """The first row (as the driver returns it), or None."""
        cursor = self._run(conn, params)
        try:
            return cursor.fetchone()
        finally:
            cursor.close()

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        self._run(conn, params).close()

    def _run(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        dialect = conn.dialect
        c = self._compiled(dialect)
        values = {**c.literals, **params}
        for name, processor in c.processors.items():
            values[name] = processor(values[name])
        driver_params: Any = values if c.positions is None else [values[n] for n in c.positions]
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(c.sql, driver_params)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise DBAPIError.instance(
                c.sql, driver_params, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        return cursor
