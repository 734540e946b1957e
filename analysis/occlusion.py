"""Occlusion task analysis (issue 21): accuracy as a function of the activation difference
between the two occlusions of a trial.

Zimmermann et al. (2021) ask whether people can tell which occlusion leaves a unit more
active; a trial whose two occlusions differ little is harder by construction. The main
trials are binned by that difference (quantile bins over the trials, the same edges for
every condition, so conditions compare bin by bin) and each bin is scored with the study's
score definition (accuracy and CI as everywhere else); a Spearman correlation of per-trial
accuracy with the difference says, per condition, whether accuracy follows the effect size.

The difference comes with every response of an occlusion study (the paradigm's export
column `activation_diff`), so the same analysis runs on the database and on an export file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from analysis.scores import main_trials, score_table
from server.errors import AppError

#: The export column this analysis needs (server/paradigms/occlusion.py export_columns).
DIFFERENCE = "activation_diff"
BIN_COLUMNS = ["condition", "diff_bin", "diff_low", "diff_high"]


def has_differences(frame: pd.DataFrame) -> bool:
    """Whether `frame` is an occlusion study's (its responses carry activation differences)."""
    return DIFFERENCE in frame.columns and frame[DIFFERENCE].notna().any()


def _scored_with_differences(frame: pd.DataFrame) -> pd.DataFrame:
    if DIFFERENCE not in frame.columns:
        raise AppError(
            f"the responses have no {DIFFERENCE!r} column: load an occlusion study "
            "(analysis.load_study) or its export file"
        )
    scored = main_trials(frame)
    scored = scored[scored[DIFFERENCE].notna()].copy()
    if scored.empty:
        raise AppError(f"no main-trial response has an {DIFFERENCE!r} value")
    scored[DIFFERENCE] = scored[DIFFERENCE].astype(float)
    return scored


def _per_trial(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per trial (per distinct difference where a file has no trial ids)."""
    key = "trial" if "trial" in scored.columns else DIFFERENCE
    return scored.groupby(["condition", key], observed=True).agg(
        accuracy=("correct", "mean"), difference=(DIFFERENCE, "first")
    )


def accuracy_by_activation_difference(
    frame: pd.DataFrame,
    bins: int = 4,
    n_resamples: int | None = None,
    seed: int = 0,
    score: str | None = None,
) -> pd.DataFrame:
    """Per condition and activation-difference bin: the score table's columns (accuracy,
    CI, counts), with the bin number (1 = smallest differences) and its edges.

    `frame` is a tidy frame with `activation_diff`; main trials of kept participants count.
    """
    if bins < 1:
        raise AppError(f"bins must be at least 1 (got {bins})")
    scored = _scored_with_differences(frame)
    differences = _per_trial(scored)["difference"].to_numpy()
    edges = np.unique(np.quantile(differences, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 2:  # every trial has the same difference: one bin
        edges = np.array([edges[0], edges[0]])
        number = pd.Series(0, index=scored.index)
    else:
        number = pd.Series(
            pd.cut(scored[DIFFERENCE], edges, include_lowest=True, labels=False),
            index=scored.index,
        ).astype(int)
    scored["diff_bin"] = number + 1
    table = score_table(
        scored, ["condition", "diff_bin"], n_resamples=n_resamples, seed=seed, score=score
    )
    table["diff_low"] = edges[table["diff_bin"] - 1]
    table["diff_high"] = edges[table["diff_bin"]]
    rest = [c for c in table.columns if c not in BIN_COLUMNS]
    return table[BIN_COLUMNS + rest].sort_values(["condition", "diff_bin"], ignore_index=True)


def difference_correlations(frame: pd.DataFrame) -> pd.DataFrame:
    """Per condition: Spearman's rho (and p) of per-trial accuracy with the difference;
    undefined (NaN) with fewer than 3 trials or when every trial has the same accuracy."""
    per_trial = _per_trial(_scored_with_differences(frame)).reset_index()
    rows = []
    for condition, group in per_trial.groupby("condition", observed=True):
        defined = len(group) > 2 and group["accuracy"].nunique() > 1
        rho = stats.spearmanr(group["difference"], group["accuracy"]) if defined else None
        rows.append(
            {
                "condition": condition,
                "n_trials": len(group),
                "spearman_rho": float(rho.statistic) if rho else float("nan"),
                "p_value": float(rho.pvalue) if rho else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["condition", "n_trials", "spearman_rho", "p_value"])


def plot_accuracy_by_difference(table: pd.DataFrame, chance: float = 0.5) -> Figure:
    """Accuracy (95% CI) against the activation-difference bin, one line per condition."""
    figure = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = figure.subplots()
    conditions = sorted(table["condition"].unique())
    width = 0.3 / max(1, len(conditions))
    for i, condition in enumerate(conditions):
        rows = table[table["condition"] == condition]
        x = rows["diff_bin"].to_numpy() + (i - (len(conditions) - 1) / 2) * width
        low = (rows["accuracy"] - rows["ci_low"]).clip(lower=0.0)
        high = (rows["ci_high"] - rows["accuracy"]).clip(lower=0.0)
        ax.errorbar(
            x, rows["accuracy"], yerr=np.vstack([low, high]), fmt="o-", capsize=3, label=condition
        )
    edges = table.drop_duplicates("diff_bin").sort_values("diff_bin")
    ax.set_xticks(
        edges["diff_bin"],
        [
            f"{lo:.3g}–{hi:.3g}"
            for lo, hi in zip(edges["diff_low"], edges["diff_high"], strict=True)
        ],
        rotation=20,
    )
    ax.set_xlabel("activation difference between the two occlusions (bin)")
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("proportion correct")
    ax.set_title("Accuracy by activation difference")
    ax.legend(fontsize=8, loc="best")
    return figure


def tables(
    scored: pd.DataFrame, n_resamples: int | None = None, seed: int = 0, score: str | None = None
) -> dict[str, pd.DataFrame]:
    """The report's occlusion tables by name, or none when `scored` (main trials, after
    exclusions) is not an occlusion study's."""
    if not has_differences(scored):
        return {}
    return {
        "by_activation_difference": accuracy_by_activation_difference(
            scored, n_resamples=n_resamples, seed=seed, score=score
        ),
        "activation_difference_correlation": difference_correlations(scored),
    }


def figures(paradigm_tables: dict[str, pd.DataFrame]) -> dict[str, Figure]:
    """The report's occlusion figure, titled, when `tables` produced its table."""
    table = paradigm_tables.get("by_activation_difference")
    if table is None:
        return {}
    return {"Accuracy by activation difference": plot_accuracy_by_difference(table)}
