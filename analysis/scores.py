"""Interpretability scores: proportion correct per condition, model, layer and unit.

Under the default definition (`crossed`) a group's accuracy is the mean over its
participants of each participant's proportion correct (as the papers report), with a
two-way (participants x units) bootstrap CI and the SEM over participants; `imi` and
`borowski` are the two papers' own definitions (analysis.definitions). Only main trials
count; catch and practice trials serve exclusions.
"""

from __future__ import annotations

import pandas as pd

from analysis.columns import require_columns
from analysis.definitions import SCORE_COLUMNS, score_groups
from server.errors import AppError

#: The groupings every analysis reports, by name.
GROUPINGS: dict[str, list[str]] = {
    "by_condition": ["condition"],
    "by_model": ["model", "condition"],
    "by_layer": ["model", "layer", "condition"],
    "by_unit": ["model", "layer", "unit", "condition"],
}
__all__ = ["GROUPINGS", "SCORE_COLUMNS", "main_trials", "participant_accuracy", "score_table"]


def main_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """The responses that are scored: main trials of participants not excluded."""
    scored = frame[(frame["trial_kind"] == "main") & ~frame["excluded"]]
    if scored.empty:
        raise AppError(
            f"no main-trial responses to score (of {len(frame)} response(s); "
            "check the exclusions and the trial_kind / --where filters)"
        )
    return scored


def participant_accuracy(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Each participant's proportion correct per group: the unit the papers average."""
    return (
        frame.groupby([*by, "participant"], observed=True)["correct"]
        .agg(accuracy="mean", n_responses="size")
        .reset_index()
    )


def score_table(
    frame: pd.DataFrame,
    by: list[str],
    n_resamples: int | None = None,
    seed: int = 0,
    level: float = 0.95,
    score: str | None = None,
) -> pd.DataFrame:
    """One row per group: accuracy, CI, SEM, counts, and the definition and resamples used.

    `score` is `crossed` (default), `imi` or `borowski`; `n_resamples` None takes the
    definition's default (1000, 10,000 and 0).
    """
    require_columns(frame, [*by, "participant", "unit", "correct"], "response table")
    return score_groups(frame, by, score=score, n_resamples=n_resamples, seed=seed, level=level)


def scores(
    frame: pd.DataFrame,
    n_resamples: int | None = None,
    seed: int = 0,
    level: float = 0.95,
    score: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Every grouping of GROUPINGS whose columns carry information, scored.

    A grouping by model or layer is skipped when the data has no model/layer values
    (a plain CSV with only participant, condition, correct).
    """
    scored = main_trials(frame)
    out = {}
    for name, by in GROUPINGS.items():
        informative = [c for c in by if c != "condition"]
        if any((scored[c] == "").all() for c in informative):
            continue
        out[name] = score_table(
            scored, by, n_resamples=n_resamples, seed=seed, level=level, score=score
        )
    return out
