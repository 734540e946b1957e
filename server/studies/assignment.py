"""Balanced assignment: which trials a session gets, in which order, with which a/b sides.

The design is a list of rows, each one participant's main trials. Rows are cut from
Latin-square groups: in group (batch b, shift k) unit i appears in condition
(i + k) mod C, so a row holds every unit at most once with conditions balanced, and the
groups together hold every slot once. The n-th session (its *claim*) gets row n mod R:
after any number of claims, slots differ by at most one response. Block order follows a
balanced Latin square over conditions; a/b sides are balanced within a session and flip
between replicates of a row, so each slot's answer side is balanced across participants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.errors import AppError
from server.studies.schema import StudyConfig


@dataclass(frozen=True)
class SlotInfo:
    """What assignment needs to know about a trial (never the answer)."""

    trial_id: str
    kind: str
    condition: str
    unit_id: int
    references_max: list[str]
    references_min: list[str]
    fixed_first: bool
    batch: int = 0


@dataclass(frozen=True)
class Planned:
    trial_id: str
    position: int
    max_is_a: bool
    attempt: int
    display: dict


def balanced_latin_square(n: int) -> list[list[int]]:
    """A Williams design: every condition immediately precedes every other equally often.

    For even n the n rows of the square do it; for odd n no n-row square can, so the square
    is followed by its mirror image (2n rows), as Williams (1949) prescribes.
    """
    first = [0]
    lo, hi = 1, n - 1
    for j in range(1, n):
        if j % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    square = [[(c + r) % n for c in first] for r in range(n)]
    if n % 2:
        square += [row[::-1] for row in square]
    return square


def _chunk_cyclic(stream: list[str], size: int) -> list[list[str]]:
    """Consecutive rows of `size`; the last row wraps to the start so all rows are full."""
    n_rows = -(-len(stream) // size)
    return [[stream[(r * size + j) % len(stream)] for j in range(size)] for r in range(n_rows)]


def design_rows(config: StudyConfig, main: list[SlotInfo]) -> list[list[str]]:
    """Rows of main trial ids, one per participant, covering every slot (see module doc)."""
    per_participant = config.trials.main
    if len(main) < per_participant:
        raise AppError(
            f"each participant needs {per_participant} main trials but the stimuli give only "
            f"{len(main)} slots (units × conditions × batches): add units or batches, or "
            "lower trials.main"
        )
    rng = np.random.default_rng(config.seed)
    units = sorted({s.unit_id for s in main})
    units = [units[i] for i in rng.permutation(len(units))]
    batches = sorted({s.batch for s in main})
    conditions = config.conditions
    by_key = {(s.unit_id, s.condition, s.batch): s.trial_id for s in main}
    if config.counterbalancing.conditions == "within":
        stream = [
            by_key[(u, conditions[(i + k) % len(conditions)], b)]
            for b in batches
            for k in range(len(conditions))
            for i, u in enumerate(units)
        ]
        return _chunk_cyclic(stream, per_participant)
    per_condition = [
        _chunk_cyclic([by_key[(u, c, b)] for b in batches for u in units], per_participant)
        for c in conditions
    ]
    longest = max(len(rows) for rows in per_condition)
    return [rows[r % len(rows)] for r in range(longest) for rows in per_condition]


def _balanced_sides(n: int, rng: np.random.Generator) -> list[bool]:
    sides = [i % 2 == 0 for i in range(n)]
    return [sides[i] for i in rng.permutation(n)]


def _display(slot: SlotInfo, rng: np.random.Generator) -> dict:
    """Reference order shown to this session: synthetic's first (plain FV) stays first."""

    def order(refs: list[str]) -> list[str]:
        head = refs[:1] if slot.fixed_first else []
        tail = refs[len(head) :]
        return head + [tail[i] for i in rng.permutation(len(tail))]

    return {"max": order(slot.references_max), "min": order(slot.references_min)}


def plan_practice(practice: list[SlotInfo], attempt: int, seed: int) -> list[Planned]:
    """One practice attempt: positions attempt*n .. attempt*n+n-1, fresh sides per attempt."""
    rng = np.random.default_rng([seed, attempt, 1])
    sides = _balanced_sides(len(practice), rng)
    base = attempt * len(practice)
    return [
        Planned(s.trial_id, base + i, sides[i], attempt, _display(s, rng))
        for i, s in enumerate(practice)
    ]


def practice_for(practice: list[SlotInfo], conditions: list[str]) -> list[SlotInfo]:
    """The practice trials of a row: a between-participant study has practice per condition,
    and a participant practises in their own condition only."""
    if len({s.condition for s in practice}) <= 1:
        return practice
    own = [s for s in practice if s.condition in conditions]
    if not own:
        raise AppError(f"no practice trials for conditions {conditions}: regenerate the study")
    return own


def plan_session(
    config: StudyConfig,
    rows: list[list[str]],
    slots: dict[str, SlotInfo],
    catch_pool: list[SlotInfo],
    practice: list[SlotInfo],
    claim: int,
    seed: int,
) -> list[Planned]:
    """Practice attempt 0, then the claimed row's main trials with catch trials mixed in."""
    row_index, replicate = claim % len(rows), claim // len(rows)
    row = rows[row_index]
    rng = np.random.default_rng([seed, 0, 2])
    design_sides = _balanced_sides(len(row), np.random.default_rng([config.seed, row_index]))
    side_of = {
        tid: side != bool(replicate % 2) for tid, side in zip(row, design_sides, strict=True)
    }

    trials = [slots[tid] for tid in row]
    present = [c for c in config.conditions if any(t.condition == c for t in trials)]
    none_split = config.counterbalancing.none_split
    if config.counterbalancing.order == "blocked":
        # Borowski: the no-reference trials open and close the run, the blocks with
        # references (in Williams order) come between.
        ordered = [c for c in present if not (none_split and c == "none")]
        square = balanced_latin_square(len(ordered)) if ordered else [[]]
        block_order = [ordered[i] for i in square[(replicate + row_index) % len(square)]]
        sequence = []
        for condition in block_order:
            block = [t for t in trials if t.condition == condition]
            sequence += [block[i] for i in rng.permutation(len(block))]
        if none_split and "none" in present:
            block = [t for t in trials if t.condition == "none"]
            block = [block[i] for i in rng.permutation(len(block))]
            before = round(len(block) * none_split[0] / sum(none_split))
            sequence = block[:before] + sequence + block[before:]
    else:
        sequence = [trials[i] for i in rng.permutation(len(trials))]

    catch = _pick_catch(config, catch_pool, trials, present, rng)
    catch_sides = _balanced_sides(len(catch), rng)
    for c in catch:
        # Inside its condition's block (never first), so it looks like any other trial there.
        spots = [i for i, t in enumerate(sequence) if t.condition == c.condition]
        sequence.insert(int(rng.choice(spots)) + 1, c)

    start = config.trials.practice.count * config.trials.practice.max_attempts
    planned = plan_practice(practice_for(practice, present), 0, seed)
    catch_iter = iter(catch_sides)
    for i, slot in enumerate(sequence):
        # A row may hold catch trials itself (an imported IMI task): they have design sides.
        side = side_of[slot.trial_id] if slot.trial_id in side_of else next(catch_iter)
        planned.append(Planned(slot.trial_id, start + i, side, 0, _display(slot, rng)))
    return planned


def _pick_catch(config, pool, trials, present, rng) -> list[SlotInfo]:
    """Catch trials spread over the row's conditions, preferring the row's own units."""
    n = config.n_catch
    if n == 0 or not pool:
        return []
    units = {t.unit_id for t in trials}
    chosen = []
    # Only conditions with catch material (a `none` block shows no references to catch on).
    present = [c for c in present if any(p.condition == c for p in pool)] or present
    offset = int(rng.integers(len(present)))
    for j in range(n):
        condition = present[(j + offset) % len(present)]
        candidates = [c for c in pool if c.condition == condition and c not in chosen]
        preferred = [c for c in candidates if c.unit_id in units] or candidates
        if not preferred:
            continue
        chosen.append(preferred[int(rng.integers(len(preferred)))])
    return chosen
