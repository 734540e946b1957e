"""Hierarchical bootstrap of accuracy: resample participants, then units within each one.

The score of a group (a condition, a unit, a layer...) is the mean over its participants
of each participant's proportion correct. One resample draws the group's participants
with replacement and, for every drawn participant, that participant's units (with their
responses) with replacement.

All resamples are drawn at once with numpy. A multinomial draw over a few categories is a
chain of binomial draws, so a loop over the (few) distinct outcomes replaces a loop over
the (many) resamples:
- groups where every participant has one unit (per-unit scores) need only the level-1
  draw, over the distinct participant proportions of the group;
- groups where each participant answered each of its units equally often (the usual
  design: once) use additivity: W drawn copies of a participant with M units sum to one
  multinomial over "k correct" with W*M draws, so one draw per distinct participant
  profile (same r, same counts), not per copy;
- other groups draw participant slots, then for each slot a multinomial over the
  participant's distinct (k correct, n responses) unit cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Upper bound on floats held per array while drawing (chunks of resamples).
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class BootstrapResult:
    """Per group: point accuracy, the resampled accuracies (groups x resamples)."""

    groups: pd.DataFrame  # one row per group: the `by` columns, accuracy, sem, counts
    resamples: np.ndarray  # shape (len(groups), n_resamples)

    def interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        tail = (1.0 - level) / 2.0 * 100.0
        # A crossed resample of a tiny group can draw no answered cell (NaN): skip those.
        percentile = np.nanpercentile if np.isnan(self.resamples).any() else np.percentile
        low, high = percentile(self.resamples, [tail, 100.0 - tail], axis=1)
        return low, high


def _padded(keys: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows grouped by sorted integer `keys` → (n_keys, width) arrays, zero padded."""
    n_keys = int(keys.max()) + 1 if len(keys) else 0
    starts = np.searchsorted(keys, np.arange(n_keys))
    position = np.arange(len(keys)) - starts[keys]
    width = int(position.max()) + 1 if len(keys) else 1
    out = []
    for value in values:
        table = np.zeros((n_keys, width), dtype=value.dtype)
        table[keys, position] = value
        out.append(table)
    return tuple(out)


def _multinomial(rng: np.random.Generator, totals: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Multinomial counts for every cell of `totals` over the last axis of `probs`.

    numpy's multinomial takes one probability vector per call; drawing category by
    category with binomials conditional on what is left is the same distribution and
    vectorises over every resample and slot at once.
    """
    counts = np.zeros(probs.shape, dtype=np.int64)
    remaining = totals.astype(np.int64)
    mass_left = np.ones(probs.shape[:-1])
    for t in range(probs.shape[-1] - 1):
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.clip(np.where(mass_left > 0, probs[..., t] / mass_left, 0.0), 0.0, 1.0)
        counts[..., t] = rng.binomial(remaining, p)
        remaining -= counts[..., t]
        mass_left = mass_left - probs[..., t]
    counts[..., -1] = remaining
    return counts


def _single_cell_resamples(
    rng: np.random.Generator, group: np.ndarray, prop: np.ndarray, n_resamples: int
) -> np.ndarray:
    """Groups whose participants each have one unit: resample participant proportions."""
    values = pd.DataFrame({"g": group, "x": prop}).value_counts().sort_index()
    g = values.index.get_level_values("g").to_numpy()
    x = values.index.get_level_values("x").to_numpy(dtype=float)
    counts = values.to_numpy()
    n_groups = int(g.max()) + 1
    size = np.bincount(g, weights=counts, minlength=n_groups)
    x_table, c_table = _padded(g, x, counts.astype(float))
    probs = c_table / size[:, None]
    out = np.empty((n_groups, n_resamples))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, x_table.size))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        draws = _multinomial(
            rng, np.broadcast_to(size, (b, n_groups)), np.broadcast_to(probs, (b, *probs.shape))
        )
        out[:, start : start + draws.shape[0]] = ((draws * x_table).sum(axis=2) / size).T
    return out


def _group_layout(group_of_participant: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Participants sorted by group → (number of groups, group sizes, group starts)."""
    n_groups = int(group_of_participant.max()) + 1
    size = np.bincount(group_of_participant, minlength=n_groups)
    return n_groups, size, np.concatenate([[0], np.cumsum(size)[:-1]])


def _participant_draws(
    rng: np.random.Generator, size: np.ndarray, start: np.ndarray, b: int
) -> np.ndarray:
    """Level 1 for `b` resamples: each group draws its size in participant indices."""
    slots = np.repeat(np.arange(len(size)), size)
    return start[slots] + (rng.random((b, len(slots))) * size[slots]).astype(np.int64)


def _equal_n_resamples(
    rng: np.random.Generator, cells: pd.DataFrame, n_resamples: int
) -> np.ndarray:
    """Groups whose participants answered each of their units r times (r per participant)."""
    per_k = cells.groupby(["pg", "k"], sort=True).size()
    pg = per_k.index.get_level_values("pg").to_numpy()
    # by_k[p, t]: how many of participant p's units had t correct answers.
    by_k = np.zeros((int(pg.max()) + 1, int(cells["k"].max()) + 1))
    by_k[pg, per_k.index.get_level_values("k").to_numpy()] = per_k.to_numpy(float)
    participant = cells.groupby("pg").agg(g=("g", "first"), r=("n", "first"))
    # Participants of a group with the same r and the same counts are interchangeable:
    # draw level 2 once per distinct profile (copies summed), not once per participant.
    rows = np.column_stack([participant["g"].to_numpy(), participant["r"].to_numpy(), by_k])
    profiles, profile_of = np.unique(rows, axis=0, return_inverse=True)
    profile_of = profile_of.ravel()
    profile_group, r, counts = profiles[:, 0].astype(np.int64), profiles[:, 1], profiles[:, 2:]
    n_units = counts.sum(axis=1)
    probs = counts / n_units[:, None]
    values = np.arange(counts.shape[1], dtype=float)
    n_groups, size, start = _group_layout(participant["g"].to_numpy())
    profile_start = np.searchsorted(profile_group, np.arange(n_groups))
    n_profiles = len(profiles)
    out = np.empty((n_groups, n_resamples))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, size.sum(), n_profiles * counts.shape[1]))
    for first in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - first)
        drawn = profile_of[_participant_draws(rng, size, start, b)]
        flat = drawn + (np.arange(b) * n_profiles)[:, None]
        copies = np.bincount(flat.ravel(), minlength=b * n_profiles).reshape(b, -1)
        k_counts = _multinomial(rng, copies * n_units, np.broadcast_to(probs, (b, *probs.shape)))
        prop_sum = (k_counts @ values) / (n_units * r)
        out[:, first : first + b] = (np.add.reduceat(prop_sum, profile_start, axis=1) / size).T
    return out


def _nested_resamples(
    rng: np.random.Generator, cells: pd.DataFrame, n_resamples: int
) -> np.ndarray:
    """Groups with several units per participant: draw participants, then their units."""
    # Distinct (k, n) unit cells per participant-in-group, with how many units have each.
    types = cells.groupby(["g", "pg", "k", "n"], sort=True).size().reset_index(name="m")
    pg = types["pg"].to_numpy()
    k_table, n_table, m_table = _padded(
        pg, types["k"].to_numpy(float), types["n"].to_numpy(float), types["m"].to_numpy(float)
    )
    n_units = m_table.sum(axis=1)
    probs = m_table / n_units[:, None]
    # pg is sorted by group, so each group's participants are contiguous.
    n_groups, group_size, group_start = _group_layout(types.groupby("pg")["g"].first().to_numpy())
    out = np.empty((n_groups, n_resamples))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, group_size.sum() * k_table.shape[1]))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        drawn = _participant_draws(rng, group_size, group_start, b)
        units = _multinomial(rng, n_units[drawn], probs[drawn])
        correct = (units * k_table[drawn]).sum(axis=2)
        answered = (units * n_table[drawn]).sum(axis=2)
        prop = correct / answered
        out[:, start : start + b] = (np.add.reduceat(prop, group_start, axis=1) / group_size).T
    return out


def group_cells(
    frame: pd.DataFrame, by: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(participant x unit cells with k correct of n, per-participant proportions, per-group
    accuracy/sem/counts, the groups' `by` keys): what every bootstrap of a group starts from.

    Cells carry `g` (group number) and `pg` (participant-in-group number, sorted by group).
    """
    cells = (
        frame.groupby(list(dict.fromkeys([*by, "participant", "unit"])), sort=True, observed=True)[
            "correct"
        ]
        .agg(k="sum", n="count")
        .reset_index()
    )
    cells["g"] = cells.groupby(by, sort=True, observed=True).ngroup()
    cells["pg"] = cells.groupby(["g", "participant"], sort=True, observed=True).ngroup()
    per_participant = cells.groupby("pg").agg(
        g=("g", "first"), k=("k", "sum"), n=("n", "sum"), units=("unit", "size")
    )
    per_participant["prop"] = per_participant["k"] / per_participant["n"]
    groups = (
        per_participant.groupby("g")
        .agg(
            accuracy=("prop", "mean"),
            sd=("prop", "std"),
            n_participants=("prop", "size"),
            n_responses=("n", "sum"),
            max_units=("units", "max"),
        )
        .reset_index(drop=True)
    )
    groups["sem"] = (groups.pop("sd") / np.sqrt(groups["n_participants"])).fillna(0.0)
    keys = cells.groupby("g")[by].first().reset_index(drop=True)
    return cells, per_participant, groups, keys


def hierarchical_bootstrap(
    frame: pd.DataFrame, by: list[str], n_resamples: int = 1000, seed: int = 0
) -> BootstrapResult:
    """Accuracy per group of `by` with `n_resamples` hierarchical bootstrap resamples.

    `frame` is a tidy response frame (participant, unit, correct and the `by` columns).
    Seeded: the same frame, grouping and seed give the same resamples.
    """
    rng = np.random.default_rng(seed)
    cells, per_participant, groups, keys = group_cells(frame, by)
    resamples = np.empty((len(groups), n_resamples))
    single = groups["max_units"].to_numpy() == 1
    if single.any():
        chosen = per_participant[single[per_participant["g"].to_numpy()]]
        renumber = np.cumsum(single) - 1
        resamples[single] = _single_cell_resamples(
            rng, renumber[chosen["g"].to_numpy()], chosen["prop"].to_numpy(), n_resamples
        )
    spread = cells.groupby("pg")["n"].agg(["min", "max"])
    unequal = (spread["min"] != spread["max"]).groupby(per_participant["g"]).any().to_numpy()
    for chosen, draw in (
        (~single & ~unequal, _equal_n_resamples),
        (~single & unequal, _nested_resamples),
    ):
        if chosen.any():
            subset = cells[chosen[cells["g"].to_numpy()]].copy()
            subset["g"] = subset.groupby("g").ngroup()
            subset["pg"] = subset.groupby("pg").ngroup()
            resamples[chosen] = draw(rng, subset, n_resamples)
    table = pd.concat([keys, groups.drop(columns="max_units")], axis=1)
    return BootstrapResult(groups=table, resamples=resamples)
