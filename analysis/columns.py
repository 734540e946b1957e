"""The tidy response table: standard column names, and parsing of what exports put in them.

Every analysis function takes a frame with these columns, one row per response, so
loaders (database, CSV, IMI) only have to produce them once.
"""

from __future__ import annotations

import pandas as pd

from server.errors import AppError

#: Columns every tidy frame has, in this order.
STANDARD_COLUMNS = (
    "participant",
    "study",
    "model",
    "layer",
    "unit",
    "condition",
    "trial_kind",
    "correct",
    "confidence",
    "rt_ms",
    "excluded",
)
#: Columns a response file must map; the others get defaults.
REQUIRED_COLUMNS = ("participant", "condition", "correct")
#: Optional standard columns a user may map from a file (`rt` is accepted for `rt_ms`).
MAPPABLE_COLUMNS = (*STANDARD_COLUMNS, "choice", "trial", "duration_s", "practice_attempts")
TRIAL_KINDS = ("main", "practice", "catch")

_TRUE = {"true", "t", "1", "yes", "y", "1.0"}
_FALSE = {"false", "f", "0", "no", "n", "0.0"}


def parse_bool(values: pd.Series, name: str) -> pd.Series:
    """Booleans as exports write them: True/False, true/false, 1/0 (also yes/no).

    Anything else is an error naming the column and the bad values, because silently
    reading "TRUE " or "2" as False would change every score.
    """
    if values.dtype == bool:
        return values
    text = values.astype("string").str.strip().str.lower()
    parsed = pd.Series(pd.NA, index=values.index, dtype="boolean")
    parsed[text.isin(_TRUE)] = True
    parsed[text.isin(_FALSE)] = False
    bad = text[parsed.isna() & text.notna()]
    if len(bad):
        examples = ", ".join(repr(v) for v in bad.unique()[:5])
        raise AppError(
            f"column {name!r} must hold booleans (True/False, true/false, 1/0); "
            f"found {examples} in {len(bad)} row(s)"
        )
    if parsed.isna().any():
        raise AppError(f"column {name!r} has {int(parsed.isna().sum())} empty value(s)")
    return parsed.astype(bool)


def parse_column_mapping(text: str) -> dict[str, str]:
    """`participant=worker_id,condition=cond,correct=is_correct` → {standard: file column}."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise AppError(f"--columns entry {part!r} must look like NAME=COLUMN")
        key, column = (s.strip() for s in part.split("=", 1))
        key = "rt_ms" if key == "rt" else key
        if key not in MAPPABLE_COLUMNS:
            raise AppError(
                f"--columns: unknown name {key!r}; use one of {', '.join(MAPPABLE_COLUMNS)}"
            )
        mapping[key] = column
    return mapping


def require_columns(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], what: str) -> None:
    """Fail naming the missing column and listing the ones that are there."""
    for column in columns:
        if column not in frame.columns:
            present = ", ".join(map(str, frame.columns))
            raise AppError(f"{what} has no column {column!r}; columns present: {present}")


def standardise(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill defaults and fix dtypes so every loader yields the same tidy frame."""
    require_columns(frame, REQUIRED_COLUMNS, "response table")
    out = frame.copy()
    defaults = {
        "study": "",
        "model": "",
        "layer": "",
        "unit": "",
        "trial_kind": "main",
        "confidence": float("nan"),
        "rt_ms": float("nan"),
        "excluded": False,
    }
    for column, default in defaults.items():
        if column not in out.columns:
            out[column] = default
    for column in ("participant", "study", "model", "layer", "unit", "condition"):
        out[column] = out[column].astype("string").fillna("").astype(str)
    out["trial_kind"] = out["trial_kind"].astype("string").str.strip().str.lower().fillna("main")
    unknown = sorted(set(out["trial_kind"]) - set(TRIAL_KINDS))
    if unknown:
        raise AppError(
            f"trial_kind must be one of {', '.join(TRIAL_KINDS)}; found {', '.join(unknown)}"
        )
    out["trial_kind"] = out["trial_kind"].astype(str)
    out["correct"] = parse_bool(out["correct"], "correct")
    out["excluded"] = parse_bool(out["excluded"].fillna(False), "excluded")
    for column in ("confidence", "rt_ms"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    extra = [c for c in out.columns if c not in STANDARD_COLUMNS]
    return out[[*STANDARD_COLUMNS, *extra]].reset_index(drop=True)
