"""Response files of earlier experiments (IMI/jsPsych/psiTurk exports) as the tidy frame.

Those exports name the same things differently (`worker_id`, `subject`, `is_correct`,
`catch_trial`, `is_demo`...). `guess_columns` maps the usual names; anything it cannot
guess, or guesses wrongly, the caller passes explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from analysis.columns import parse_bool
from analysis.load import read_response_file, tidy_from_file

#: Standard name → names earlier exports used for it (compared case-insensitively).
ALIASES: dict[str, tuple[str, ...]] = {
    "participant": (
        "participant",
        "worker_id",
        "workerid",
        "subject",
        "subject_id",
        "prolific_pid",
        "participant_id",
        "session_id",
        "session",
    ),
    "condition": ("condition", "mode", "cond", "reference_type"),
    "correct": ("correct", "is_correct", "hit", "accuracy"),
    "confidence": ("confidence", "conf"),
    "rt_ms": ("rt_ms", "rt", "reaction_time", "response_time"),
    "unit": ("unit", "unit_id", "task_name", "feature_map"),
    "layer": ("layer", "layer_name"),
    "model": ("model", "model_name", "network"),
    "choice": ("choice", "response", "button_pressed"),
    "trial": ("trial", "trial_id", "trial_index"),
}
#: Boolean flags that mark a trial's kind.
KIND_FLAGS = {
    "catch": ("catch_trial", "is_catch", "catch"),
    "practice": ("practice", "is_practice", "is_demo", "demo"),
}


def guess_columns(columns: Sequence[str]) -> dict[str, str]:
    """Standard name → the file's column, for every alias found (first alias wins)."""
    by_lower = {str(c).lower(): str(c) for c in columns}
    mapping = {}
    for name, aliases in ALIASES.items():
        found = next((by_lower[a] for a in aliases if a in by_lower), None)
        if found is not None:
            mapping[name] = found
    return mapping


def _trial_kind(raw: pd.DataFrame) -> pd.Series | None:
    """main/practice/catch from boolean flag columns, if the file has any."""
    by_lower = {str(c).lower(): c for c in raw.columns}
    kind = pd.Series("main", index=raw.index)
    found = False
    for name, flags in KIND_FLAGS.items():
        for flag in flags:
            if flag in by_lower:
                column = by_lower[flag]
                kind[parse_bool(raw[column].fillna(False), column).to_numpy()] = name
                found = True
    return kind if found else None


def import_response_file(
    path: str | Path,
    columns: Mapping[str, str] | None = None,
    where: Sequence[str] = (),
) -> pd.DataFrame:
    """An earlier experiment's export as the tidy frame, columns guessed where not given.

    Catch and practice flags become `trial_kind`, so exclusions and scores treat them
    as the papers did (main trials scored, catch trials for exclusions).
    """
    raw = read_response_file(path, where)
    mapping = guess_columns(list(raw.columns)) | dict(columns or {})
    if "trial_kind" not in mapping and "trial_kind" not in raw.columns:
        kind = _trial_kind(raw)
        if kind is not None:
            raw = raw.assign(trial_kind=kind)
    return tidy_from_file(raw, mapping, Path(path).name)
