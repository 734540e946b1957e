"""Occlusion task analysis (issue 21): accuracy as a function of the activation difference
between the two occlusions of a trial.

Zimmermann et al. (2021) ask whether people can tell which occlusion leaves a unit more
active; a trial whose two occlusions differ little is harder by construction. Binning the
main trials by that difference (quantile bins) and correlating per-trial accuracy with it
(Spearman) shows whether accuracy follows the size of the effect, per condition.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from scipy import stats
from sqlalchemy import select

from analysis.load import _study_id, engine_for, load_study


def activation_differences(database, slug: str) -> pd.DataFrame:
    """trial (id) -> activation_diff (max minus min occlusion activation) of a study."""
    from server.db.models import Trial

    engine = engine_for(database)
    study_id = _study_id(engine, slug)
    with engine.connect() as conn:
        rows = conn.execute(select(Trial.id, Trial.details).where(Trial.study_id == study_id)).all()
    return pd.DataFrame(
        [(tid, (d or {}).get("activation_diff")) for tid, d in rows],
        columns=["trial", "activation_diff"],
    ).dropna()


def load_occlusion_study(database, slug: str) -> pd.DataFrame:
    """The tidy responses of an occlusion study with each trial's activation difference."""
    return load_study(database, slug).merge(activation_differences(database, slug), on="trial")


def accuracy_by_activation_difference(frame: pd.DataFrame, bins: int = 4) -> dict[str, Any]:
    """Per condition: accuracy in quantile bins of `activation_diff` (main trials, not
    excluded) and the Spearman correlation of per-trial accuracy with the difference."""
    if "activation_diff" not in frame:
        raise ValueError("the frame has no activation_diff column: use load_occlusion_study")
    main = frame[(frame["trial_kind"] == "main") & ~frame["excluded"].astype(bool)]
    out: dict[str, Any] = {}
    for condition, group in main.groupby("condition"):
        per_trial = group.groupby("trial").agg(
            accuracy=("correct", "mean"), activation_diff=("activation_diff", "first")
        )
        n_bins = min(bins, per_trial["activation_diff"].nunique())
        binned = pd.qcut(group["activation_diff"], n_bins, duplicates="drop")
        table = group.groupby(binned, observed=True)["correct"].agg(["mean", "size"])
        rho = (
            stats.spearmanr(per_trial["activation_diff"], per_trial["accuracy"])
            if len(per_trial) > 2 and per_trial["accuracy"].nunique() > 1
            else None
        )
        out[str(condition)] = {
            "bins": [
                {
                    "low": float(interval.left),
                    "high": float(interval.right),
                    "accuracy": float(row["mean"]),
                    "n_responses": int(row["size"]),
                }
                for interval, row in table.iterrows()
            ],
            "spearman_rho": None if rho is None else float(rho.statistic),
            "spearman_p": None if rho is None else float(rho.pvalue),
            "n_trials": len(per_trial),
        }
    return out
