"""Crossed (two-way) bootstrap of accuracy: participants and units resampled independently.

Why: a study samples units from a model and participants from a crowd, and the two are
crossed (every participant sees many units, every unit is seen by many participants). A
bootstrap that draws participants and then units *within* each participant treats units
as nested in participants: it never redraws the set of units, so the between-unit
variance is lost and 95% intervals covered the true accuracy in only ~77% of simulated
studies (issue 19). The two-way "pigeonhole" bootstrap (Owen 2007, Ann. Appl. Stat.
1:2, "The pigeonhole bootstrap") draws participants with replacement and, independently,
units with replacement; a response (p, u) then counts w_p x w_u times. It carries both
variance components (it counts the residual once more, so it is slightly conservative:
bench/ci_coverage.py measures ~0.95-0.96 on the issue's simulation).

The statistic is the paper's: the mean over (drawn) participants of each participant's
proportion correct over its (drawn) units. All resamples are vectorised: per chunk of
resamples, participant and unit weights are bincounts of uniform draws, and each
participant's weighted correct/answered counts are one sparse (cells) x dense (weights)
product.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from analysis.bootstrap import (
    _CHUNK_ELEMENTS,
    BootstrapResult,
    _single_cell_resamples,
    group_cells,
)


def _weights(rng: np.random.Generator, size: np.ndarray, start: np.ndarray, b: int) -> np.ndarray:
    """(n_items, b) draw counts: each group draws its size in its own items, b times."""
    n_items = int(size.sum())
    slots = np.repeat(np.arange(len(size)), size)
    picks = start[slots] + (rng.random((b, n_items)) * size[slots]).astype(np.int64)
    flat = (picks + (np.arange(b) * n_items)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n_items).reshape(b, n_items).T.astype(float)


def _layout(group_of_item: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    size = np.bincount(group_of_item, minlength=n_groups)
    return size, np.concatenate([[0], np.cumsum(size)[:-1]])


def _two_way_resamples(
    rng: np.random.Generator, cells: pd.DataFrame, n_resamples: int
) -> np.ndarray:
    """Groups (numbered `g`, participants `pg` sorted by group) with several units each."""
    cells = cells.copy()
    cells["ug"] = cells.groupby(["g", "unit"], sort=True, observed=True).ngroup()
    n_groups = int(cells["g"].max()) + 1
    pg, ug = cells["pg"].to_numpy(), cells["ug"].to_numpy()
    n_pg, n_ug = int(pg.max()) + 1, int(ug.max()) + 1
    k = sparse.csr_matrix((cells["k"].to_numpy(float), (pg, ug)), shape=(n_pg, n_ug))
    n = sparse.csr_matrix((cells["n"].to_numpy(float), (pg, ug)), shape=(n_pg, n_ug))
    group_of_pg = cells.groupby("pg")["g"].first().to_numpy()
    group_of_ug = cells.groupby("ug")["g"].first().to_numpy()
    p_size, p_start = _layout(group_of_pg, n_groups)
    u_size, u_start = _layout(group_of_ug, n_groups)
    out = np.empty((n_groups, n_resamples))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_pg, n_ug))
    for first in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - first)
        unit_w = _weights(rng, u_size, u_start, b)
        participant_w = _weights(rng, p_size, p_start, b)
        correct, answered = k @ unit_w, n @ unit_w
        present = answered > 0
        # A drawn participant whose units were all left out of this resample drops out.
        weight = participant_w * present
        prop = np.divide(correct, answered, out=np.zeros_like(correct), where=present)
        total = np.add.reduceat(weight * prop, p_start, axis=0)
        count = np.add.reduceat(weight, p_start, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, first : first + b] = total / count
    return out


def crossed_bootstrap(
    frame: pd.DataFrame, by: list[str], n_resamples: int = 1000, seed: int = 0
) -> BootstrapResult:
    """Accuracy per group of `by` with `n_resamples` two-way (participants x units) resamples.

    A group with a single unit (per-unit scores) has no unit variance to draw: its
    resamples redraw participants only, which is the same distribution. Seeded.
    """
    rng = np.random.default_rng(seed)
    cells, per_participant, groups, keys = group_cells(frame, by)
    resamples = np.empty((len(groups), n_resamples))
    one_unit = cells.groupby("g")["unit"].nunique().to_numpy() == 1
    if one_unit.any():
        chosen = per_participant[one_unit[per_participant["g"].to_numpy()]]
        renumber = np.cumsum(one_unit) - 1
        resamples[one_unit] = _single_cell_resamples(
            rng, renumber[chosen["g"].to_numpy()], chosen["prop"].to_numpy(), n_resamples
        )
    several = ~one_unit
    if several.any():
        subset = cells[several[cells["g"].to_numpy()]].copy()
        subset["g"] = subset.groupby("g").ngroup()
        subset["pg"] = subset.groupby("pg").ngroup()
        resamples[several] = _two_way_resamples(rng, subset, n_resamples)
    table = pd.concat([keys, groups.drop(columns="max_units")], axis=1)
    return BootstrapResult(groups=table, resamples=resamples)
