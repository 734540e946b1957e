"""Named score definitions: what a published number means, chosen per study or per call.

- ``crossed`` (default): the mean over participants of each participant's proportion
  correct, with a two-way (participants x units) bootstrap percentile interval
  (analysis.crossed: both are random samples, so both vary the score).
- ``imi`` (Zimmermann et al. 2023): the mean over units of each unit's proportion correct,
  with a BCa bootstrap over units (10,000 resamples by default, as IMI used scipy's
  ``bootstrap``). A group holding a single unit (per-unit scores) resamples that unit's
  responses instead, the only level left.
- ``borowski`` (Borowski et al. 2021): the mean over participants of each participant's
  proportion correct, with the SEM over participants and the interval mean +- 2 SEM
  (no resampling: ``n_resamples`` is 0).

Every table says which definition and how many resamples produced it (columns ``score``
and ``n_resamples``), so a number cannot leave the analysis without its definition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from analysis.bootstrap import _single_cell_resamples, group_cells
from analysis.crossed import crossed_bootstrap
from server.errors import AppError

SCORE_DEFINITIONS = ("crossed", "imi", "borowski")
DEFAULT_SCORE = "crossed"
#: Resamples when the caller gives none: IMI's 10,000, the page-friendly 1000 otherwise.
DEFAULT_RESAMPLES = {"crossed": 1000, "imi": 10_000, "borowski": 0}
SCORE_COLUMNS = [
    "accuracy",
    "ci_low",
    "ci_high",
    "sem",
    "n_participants",
    "n_responses",
    "n_units",
    "score",
    "n_resamples",
]


def check_score(score: str | None) -> str:
    """The definition's name, or an error listing the valid ones."""
    score = score or DEFAULT_SCORE
    if score not in SCORE_DEFINITIONS:
        raise AppError(
            f"unknown score definition {score!r}: use one of {', '.join(SCORE_DEFINITIONS)}"
        )
    return score


def resamples_for(score: str, n_resamples: int | None) -> int:
    return DEFAULT_RESAMPLES[score] if n_resamples is None else int(n_resamples)


def _per_row_quantiles(sorted_rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Linear-interpolated quantile q[i] of each sorted row i (numpy takes one q for all)."""
    width = sorted_rows.shape[1]
    position = np.clip(q, 0.0, 1.0) * (width - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, width - 1)
    rows = np.arange(len(q))
    frac = position - below
    return sorted_rows[rows, below] * (1 - frac) + sorted_rows[rows, above] * frac


def bca_interval(
    values: np.ndarray, group: np.ndarray, n_resamples: int, seed: int, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) per group of the mean of `values`, BCa bootstrap (Efron 1987).

    Vectorised over groups: resampled means come from `_single_cell_resamples` (a draw
    per distinct value, not per resample), the acceleration from the closed-form
    jackknife of a mean. On continuous values it matches scipy.stats.bootstrap(method="BCa")
    up to Monte Carlo error (tests/test_score_definitions.py checks it).
    """
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({"g": group, "x": values})
    stats = data.groupby("g")["x"].agg(["sum", "size", "mean"])
    theta = stats["mean"].to_numpy()
    resamples = np.sort(_single_cell_resamples(rng, group, values, n_resamples), axis=1)
    # Bias correction: where the point estimate falls among its resamples. Ties count
    # half (mid-rank): means of few 0/1 answers or few units often equal the estimate,
    # and counting them as "above" would shift the interval (scipy counts only "<").
    below = (resamples < theta[:, None]).mean(axis=1)
    below += 0.5 * (resamples == theta[:, None]).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z0 = ndtri(below)
        size = data["g"].map(stats["size"]).to_numpy()
        leave_one_out = (data["g"].map(stats["sum"]).to_numpy() - values) / (size - 1)
        data["d"] = data["g"].map(pd.Series(leave_one_out).groupby(group).mean()) - leave_one_out
        d = data["d"].to_numpy()
        moments = pd.DataFrame({"g": group, "d2": d**2, "d3": d**3}).groupby("g").sum()
        accel = (moments["d3"] / (6.0 * moments["d2"] ** 1.5)).to_numpy()
        tails = []
        for z_alpha in (ndtri((1 - level) / 2), ndtri((1 + level) / 2)):
            tails.append(ndtr(z0 + (z0 + z_alpha) / (1 - accel * (z0 + z_alpha))))
    low, high = (_per_row_quantiles(resamples, np.nan_to_num(t, nan=0.5)) for t in tails)
    # Degenerate groups (all values equal, or one value): the interval is the point.
    flat = ~np.isfinite(z0) | ~np.isfinite(accel)
    low, high = np.where(flat, theta, low), np.where(flat, theta, high)
    return theta, low, high


def imi_table(
    frame: pd.DataFrame, by: list[str], n_resamples: int, seed: int, level: float
) -> pd.DataFrame:
    """Mean of per-unit means per group, BCa over units (over responses for one unit)."""
    cells, _, groups, keys = group_cells(frame, by)
    per_unit = cells.groupby(["g", "unit"], sort=True, observed=True)[["k", "n"]].sum()
    per_unit["x"] = per_unit["k"] / per_unit["n"]
    n_units = per_unit.groupby("g").size().to_numpy()
    g = per_unit.index.get_level_values("g").to_numpy()
    values, group = per_unit["x"].to_numpy(), g
    single = n_units == 1
    if single.any():
        # One unit: its responses (k correct of n) are the sample, as 0/1 values.
        one = per_unit[single[g]]
        counts = np.column_stack([one["k"].to_numpy(), (one["n"] - one["k"]).to_numpy()])
        g_one = np.repeat(np.repeat(one.index.get_level_values("g").to_numpy(), 2), counts.ravel())
        x_one = np.repeat(np.tile([1.0, 0.0], len(one)), counts.ravel())
        keep = ~single[g]
        values = np.concatenate([values[keep], x_one])
        group = np.concatenate([group[keep], g_one])
    order = np.argsort(group, kind="stable")
    theta, low, high = bca_interval(values[order], group[order], max(n_resamples, 1), seed, level)
    table = pd.concat([keys, groups.drop(columns="max_units")], axis=1)
    table["accuracy"], table["ci_low"], table["ci_high"] = theta, low, high
    # SEM of the mean over units (over responses for a single unit).
    spread = pd.DataFrame({"g": group, "x": values}).groupby("g")["x"].agg(["std", "size"])
    table["sem"] = (spread["std"] / np.sqrt(spread["size"])).fillna(0.0).to_numpy()
    table["n_units"] = n_units
    return table


def score_groups(
    frame: pd.DataFrame,
    by: list[str],
    score: str | None = None,
    n_resamples: int | None = None,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per group of `by` under the named definition (columns SCORE_COLUMNS)."""
    score = check_score(score)
    n_resamples = resamples_for(score, n_resamples)
    if score == "imi":
        if (frame["unit"].astype(str) == "").all():
            raise AppError(
                "score 'imi' averages per-unit accuracies, but the responses carry no unit: "
                "map one (--unit COL or unit=COL in --columns), or use --score crossed"
            )
        table = imi_table(frame, by, n_resamples, seed, level)
    elif score == "borowski":
        _, _, groups, keys = group_cells(frame, by)
        table = pd.concat([keys, groups.drop(columns="max_units")], axis=1)
        table["ci_low"] = table["accuracy"] - 2.0 * table["sem"]
        table["ci_high"] = table["accuracy"] + 2.0 * table["sem"]
    else:
        if n_resamples < 1:
            raise AppError("score 'crossed' needs at least one bootstrap resample")
        result = crossed_bootstrap(frame, by, n_resamples=n_resamples, seed=seed)
        table = result.groups.copy()
        table["ci_low"], table["ci_high"] = result.interval(level)
    if "n_units" not in table:
        table["n_units"] = frame.groupby(by, sort=True, observed=True)["unit"].nunique().to_numpy()
    table["score"] = score
    table["n_resamples"] = n_resamples
    return table[[*by, *SCORE_COLUMNS]]
