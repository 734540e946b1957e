"""Responses into the tidy frame: from a study's database rows, or from a CSV/Parquet export.

`study_rows` is the one query over the response tables; `export` streams its chunks to a
file and `load_study` turns them into the tidy frame, so both always agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from analysis.columns import parse_bool, require_columns, standardise
from server.config import Settings
from server.db import models as m
from server.errors import AppError, NotFound
from server.paradigms.base import right_and_wrong

#: Export columns, one row per trial (jsPsych's long format plus our ids).
EXPORT_COLUMNS = (
    "study",
    "participant",
    "platform",
    "trial_index",
    "trial_id",
    "condition",
    "trial_kind",
    "model",
    "layer",
    "unit",
    "unit_index",
    "layer_depth",
    "choice",
    "correct",
    "confidence",
    "rt_ms",
    "time_elapsed_ms",
    "max_is_a",
    "stimulus_max",
    "stimulus_min",
    "stimulus_a",
    "stimulus_b",
    "received_at",
    "client_sent_at",
    "excluded",
    "exclusion_reason",
    "session_status",
    "session_started_at",
    "session_completed_at",
    # Per participant, for the exclusion rules of the same names (issue 19).
    "practice_passed",
    "practice_attempts",
    "practice_passed_at",
    "instruction_s",
)


def engine_for(database: str | Settings | Engine) -> Engine:
    """Accept what a notebook has at hand: a URL, the app's Settings, or an engine."""
    from server.db.session import make_engine

    if isinstance(database, Engine):
        return database
    url = database.database_url if isinstance(database, Settings) else database
    return make_engine(url)


def _study_id(engine: Engine, slug: str) -> int:
    with engine.connect() as connection:
        study_id = connection.execute(select(m.Study.id).where(m.Study.slug == slug)).scalar()
        if study_id is None:
            slugs = connection.execute(select(m.Study.slug).order_by(m.Study.slug)).scalars()
            known = ", ".join(slugs) or "none yet"
            raise NotFound(f"no study {slug!r} in this database; studies: {known}")
    return study_id


def study_config(database: str | Settings | Engine, slug: str) -> dict[str, Any]:
    """The study's stored (validated) configuration, e.g. its `exclusion` section."""
    engine = engine_for(database)
    study_id = _study_id(engine, slug)
    with engine.connect() as connection:
        return connection.execute(select(m.Study.config).where(m.Study.id == study_id)).scalar()


def _rows_statement(study_id: int):
    r, a, s, t = m.Response, m.Assignment, m.ParticipantSession, m.Trial
    return (
        select(
            m.Study.slug.label("study"),
            s.id.label("participant"),
            s.platform,
            a.position.label("trial_index"),
            t.id.label("trial_id"),
            t.condition,
            t.kind.label("trial_kind"),
            m.VisionModel.name.label("model"),
            m.Unit.layer,
            m.Unit.index.label("unit_index"),
            m.Unit.layer_depth,
            r.choice,
            r.correct,
            r.confidence,
            r.rt_ms,
            r.client_data,
            a.max_is_a,
            t.paradigm,
            t.images,
            t.choices,
            t.answer,
            t.details,
            r.received_at,
            r.client_sent_at,
            s.excluded,
            s.exclusion_reason,
            s.status.label("session_status"),
            s.started_at.label("session_started_at"),
            s.completed_at.label("session_completed_at"),
            s.practice_passed,
            s.practice_attempts,
            s.practice_passed_at,
            s.instruction_s,
        )
        .join(a, r.assignment_id == a.id)
        .join(s, r.session_id == s.id)
        .join(t, r.trial_id == t.id)
        .join(m.Study, t.study_id == m.Study.id)
        .outerjoin(m.Unit, t.unit_id == m.Unit.id)
        .outerjoin(m.VisionModel, m.Unit.model_id == m.VisionModel.id)
        .where(t.study_id == study_id)
        .order_by(s.started_at, s.id, a.position)
    )


#: pandas' nullable dtype of each paradigm export column type (server/paradigms/base.py
#: EXPORT_TYPES): a trial without a value stays empty, and an int column stays int.
PARADIGM_DTYPES = {"float": "Float64", "int": "Int64", "string": "string", "bool": "boolean"}


def paradigm_columns(engine: Engine, study_id: int) -> dict[str, str]:
    """The export columns (name -> type) the study's paradigm(s) add after EXPORT_COLUMNS."""
    from server import paradigms

    with engine.connect() as connection:
        names = connection.execute(
            select(m.Trial.paradigm).where(m.Trial.study_id == study_id).distinct()
        ).scalars()
        return {
            column: kind
            for name in sorted(names)
            for column, kind in paradigms.get(name).export_columns.items()
        }


def _paradigm_values(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Each row's values of its paradigm's export columns (None where another paradigm's)."""
    from server import paradigms

    values = [
        paradigms.get(paradigm).export_values(images or {}, details or {})
        for paradigm, images, details in zip(
            frame.pop("paradigm"), frame.pop("images"), frame.pop("details"), strict=True
        )
    ]
    extra = pd.DataFrame(values, columns=list(columns), index=frame.index)
    return extra.astype({name: PARADIGM_DTYPES[kind] for name, kind in columns.items()})


def _export_frame(rows: Sequence[Any], columns: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(rows[0]._fields))
    # The right and the wrong choice's image, read from the trial's role map like serving
    # and grading do (export names them stimulus_max/min: the right one is the "max" query).
    right_wrong = [
        right_and_wrong(images, choices, answer)
        for images, choices, answer in zip(
            frame["images"], frame.pop("choices"), frame.pop("answer"), strict=True
        )
    ]
    frame["stimulus_max"] = [right for right, _ in right_wrong]
    frame["stimulus_min"] = [wrong for _, wrong in right_wrong]
    extra = _paradigm_values(frame, columns)
    max_is_a = frame["max_is_a"].astype(bool)
    frame["stimulus_a"] = frame["stimulus_max"].where(max_is_a, frame["stimulus_min"])
    frame["stimulus_b"] = frame["stimulus_min"].where(max_is_a, frame["stimulus_max"])
    frame["unit"] = [
        f"{layer}:{index}" if layer is not None else ""
        for layer, index in zip(frame["layer"], frame["unit_index"], strict=True)
    ]
    frame["time_elapsed_ms"] = [
        (data or {}).get("time_elapsed_ms") for data in frame.pop("client_data")
    ]
    return pd.concat([frame[list(EXPORT_COLUMNS)], extra], axis=1)


def study_rows(
    database: str | Settings | Engine, slug: str, chunk_size: int = 5000
) -> Iterator[pd.DataFrame]:
    """A study's responses in export columns (EXPORT_COLUMNS, then its paradigm's), streamed
    from the database in chunks."""
    engine = engine_for(database)
    study_id = _study_id(engine, slug)
    columns = paradigm_columns(engine, study_id)
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=chunk_size).execute(
            _rows_statement(study_id)
        )
        for rows in result.partitions():
            yield _export_frame(rows, columns)


def tidy_from_export(frame: pd.DataFrame) -> pd.DataFrame:
    """Export columns → the tidy frame (keeps the trial id, choice and session duration)."""
    out = frame.rename(columns={"trial_id": "trial"}).copy()
    started = pd.to_datetime(out["session_started_at"], utc=True)
    completed = pd.to_datetime(out["session_completed_at"], utc=True)
    out["duration_s"] = (completed - started).dt.total_seconds()
    for column in ("model", "layer"):
        out[column] = out[column].fillna("")
    keep = [c for c in out.columns if c not in {"exclusion_reason", "client_sent_at"}]
    return standardise(out[keep])


def load_study(database_url_or_settings: str | Settings | Engine, slug: str) -> pd.DataFrame:
    """Every response of study SLUG as the tidy frame (empty frame if none yet)."""
    chunks = list(study_rows(database_url_or_settings, slug))
    if not chunks:
        empty = pd.DataFrame(columns=list(EXPORT_COLUMNS))
        return tidy_from_export(empty)
    return tidy_from_export(pd.concat(chunks, ignore_index=True))


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise AppError(f"response file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        frame = pd.read_parquet(path)
    elif suffix in {".csv", ".tsv", ".txt"}:
        frame = pd.read_csv(path, sep=None, engine="python")
    else:
        raise AppError(f"cannot read {path.name!r}: use a .csv, .tsv or .parquet file")
    # pandas' to_csv writes the index as a first, unnamed column: drop it.
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed: ") or str(c) == ""]
    return frame.drop(columns=unnamed)


def parse_where(conditions: Sequence[str]) -> list[tuple[str, str]]:
    """`COL=VALUE` strings (as given to --where) into pairs."""
    pairs = []
    for condition in conditions:
        if "=" not in condition:
            raise AppError(f"--where {condition!r} must look like COLUMN=VALUE")
        column, value = condition.split("=", 1)
        pairs.append((column.strip(), value.strip()))
    return pairs


def _matches(values: pd.Series, wanted: str, column: str) -> pd.Series:
    """Compare as the file means it: booleans as booleans, numbers as numbers, else text."""
    text = values.astype("string").str.strip()
    if wanted.lower() in {"true", "false"}:
        try:
            return parse_bool(values, column) == (wanted.lower() == "true")
        except AppError:
            pass
    numeric = pd.to_numeric(pd.Series([wanted]), errors="coerce").iloc[0]
    if pd.notna(numeric) and pd.api.types.is_numeric_dtype(values):
        return values == numeric
    return text == wanted


def read_response_file(
    path: str | Path, where: Sequence[str] | Sequence[tuple[str, str]] = ()
) -> pd.DataFrame:
    """A CSV/Parquet file's rows with the file's own column names, filtered by `where`
    (`"is_practice=False"` keeps rows whose column equals the value)."""
    path = Path(path)
    raw = _read_table(path)
    pairs = [parse_where([w])[0] if isinstance(w, str) else w for w in where]
    for column, value in pairs:
        require_columns(raw, [column], f"{path.name} (--where)")
        raw = raw[_matches(raw[column], value, column)]
    if raw.empty:
        filters = " and ".join(f"{c}={v}" for c, v in pairs)
        reason = f" after keeping only rows with {filters}" if filters else ""
        raise AppError(f"{path.name}: no responses left{reason}")
    return raw.reset_index(drop=True)


def tidy_from_file(raw: pd.DataFrame, columns: Mapping[str, str], name: str) -> pd.DataFrame:
    """A file's rows as the tidy frame; `columns` maps standard names to the file's names."""
    mapping = dict(columns)
    require_columns(raw, list(mapping.values()), name)
    # A mapped column replaces any file column already called by the standard name.
    shadowed = [k for k, v in mapping.items() if k != v and k in raw.columns]
    renamed = raw.drop(columns=shadowed).rename(columns={v: k for k, v in mapping.items()})
    try:
        return standardise(renamed)
    except AppError as exc:
        raise AppError(f"{name}: {exc.message}") from None


def load_responses(
    path: str | Path,
    columns: Mapping[str, str] | None = None,
    where: Sequence[str] | Sequence[tuple[str, str]] = (),
) -> pd.DataFrame:
    """A CSV/Parquet response file as the tidy frame.

    `columns` maps standard names to the file's names (`{"participant": "worker_id"}`);
    standard names the file already uses need no entry. `where` keeps rows whose column
    equals a value (`"is_practice=False"`), applied before mapping, on the file's names.
    """
    raw = read_response_file(path, where)
    return tidy_from_file(raw, columns or {}, Path(path).name)
