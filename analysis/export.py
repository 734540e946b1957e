"""Streamed export of a study's responses (long format, one row per trial) to CSV or Parquet.

Rows come from `load.study_rows` chunk by chunk and are written as they arrive, so an
export never holds the whole study in memory; the count written is returned to be shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine

from analysis.load import EXPORT_COLUMNS, _study_id, engine_for, paradigm_columns, study_rows
from server.config import Settings
from server.errors import AppError

_TIMESTAMP = pa.timestamp("us", tz="UTC")
#: Fixed Parquet types: a chunk with only nulls in a column must not change its type.
PARQUET_SCHEMA = pa.schema(
    [
        (name, kind)
        for name, kind in {
            "study": pa.string(),
            "participant": pa.string(),
            "platform": pa.string(),
            "trial_index": pa.int64(),
            "trial_id": pa.string(),
            "condition": pa.string(),
            "trial_kind": pa.string(),
            "model": pa.string(),
            "layer": pa.string(),
            "unit": pa.string(),
            "unit_index": pa.float64(),
            "layer_depth": pa.float64(),
            "choice": pa.string(),
            "correct": pa.bool_(),
            "confidence": pa.float64(),
            "rt_ms": pa.float64(),
            "time_elapsed_ms": pa.float64(),
            "max_is_a": pa.bool_(),
            "stimulus_max": pa.string(),
            "stimulus_min": pa.string(),
            "stimulus_a": pa.string(),
            "stimulus_b": pa.string(),
            "received_at": _TIMESTAMP,
            "client_sent_at": pa.string(),
            "excluded": pa.bool_(),
            "exclusion_reason": pa.string(),
            "session_status": pa.string(),
            "session_started_at": _TIMESTAMP,
            "session_completed_at": _TIMESTAMP,
            "practice_passed": pa.bool_(),
            "practice_attempts": pa.int64(),
            "practice_passed_at": _TIMESTAMP,
            "instruction_s": pa.float64(),
        }.items()
    ]
)

#: The Parquet type of each paradigm export column type (server/paradigms/base.EXPORT_TYPES).
_PARADIGM_TYPES = {
    "float": pa.float64(),
    "int": pa.int64(),
    "string": pa.string(),
    "bool": pa.bool_(),
}


def parquet_schema(columns: dict[str, str]) -> pa.Schema:
    """PARQUET_SCHEMA followed by a paradigm's export columns (name -> type)."""
    return pa.schema(
        [*PARQUET_SCHEMA, *(pa.field(n, _PARADIGM_TYPES[t]) for n, t in columns.items())]
    )


#: A cell starting with one of these is run as a formula by Excel, LibreOffice and Google
#: Sheets (CSV injection: `=HYPERLINK(...)` in a participant-controlled field would run on the
#: researcher's machine). Tab and CR count too: some spreadsheets strip them first.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _neutralise_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value  # the spreadsheet convention: a leading quote means "text"
    return value


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with text cells that a spreadsheet would run as formulas prefixed by `'`.

    Only text cells change: numbers (a negative `rt_ms`, a float in an object column) are
    left as they are, so numeric columns still read back as numbers.
    """
    text_columns = [
        column
        for column in frame.columns
        if frame[column].dtype == object or isinstance(frame[column].dtype, pd.StringDtype)
    ]
    if not text_columns:
        return frame
    frame = frame.copy()
    for column in text_columns:
        frame[column] = frame[column].map(_neutralise_cell)
    return frame


def to_safe_csv(frame: pd.DataFrame, **kwargs) -> str | None:
    """`frame.to_csv(**kwargs)` with formula cells neutralised: the only way CSV is written."""
    return neutralise_formulas(frame).to_csv(**kwargs)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    participants: int


def _for_parquet(chunk: pd.DataFrame, columns: dict[str, str]) -> pa.Table:
    chunk = chunk.copy()
    for column in ("received_at", "session_started_at", "session_completed_at"):
        chunk[column] = pd.to_datetime(chunk[column], utc=True)
    chunk["practice_passed_at"] = pd.to_datetime(chunk["practice_passed_at"], utc=True)
    # NULL until a practice round ends: pandas holds it as object; arrow wants bool/None.
    chunk["practice_passed"] = chunk["practice_passed"].astype("boolean")
    for column in (
        "unit_index",
        "layer_depth",
        "confidence",
        "rt_ms",
        "time_elapsed_ms",
        "instruction_s",
    ):
        chunk[column] = pd.to_numeric(chunk[column], errors="coerce").astype(float)
    return pa.Table.from_pandas(chunk, schema=parquet_schema(columns), preserve_index=False)


def export_study(
    database: str | Settings | Engine,
    slug: str,
    fmt: str,
    output: str | Path | None = None,
    chunk_size: int = 5000,
) -> ExportResult:
    """Write every response of study SLUG to OUTPUT (default `<slug>-responses.<fmt>`)."""
    if fmt not in {"csv", "parquet"}:
        raise AppError(f"unknown export format {fmt!r}: use csv or parquet")
    engine = engine_for(database)
    columns = paradigm_columns(engine, _study_id(engine, slug))
    schema = parquet_schema(columns)
    path = Path(output or f"{slug}-responses.{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, participants = 0, set()
    writer = None
    try:
        for chunk in study_rows(engine, slug, chunk_size=chunk_size):
            if fmt == "csv":
                to_safe_csv(
                    chunk,
                    path_or_buf=path,
                    mode="w" if rows == 0 else "a",
                    header=rows == 0,
                    index=False,
                )
            else:
                writer = writer or pq.ParquetWriter(path, schema)
                writer.write_table(_for_parquet(chunk, columns))
            rows += len(chunk)
            participants.update(chunk["participant"])
        if rows == 0:  # still a valid file with the header / schema
            if fmt == "csv":
                pd.DataFrame(columns=[*EXPORT_COLUMNS, *columns]).to_csv(path, index=False)
            else:
                pq.write_table(schema.empty_table(), path)
    finally:
        if writer is not None:
            writer.close()
    return ExportResult(path=path, rows=rows, participants=len(participants))
