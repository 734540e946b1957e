"""Benchmark: per-condition and per-unit scores with 1000 bootstrap resamples (the default,
crossed definition: participants x units, analysis.crossed)
on 120,000 synthetic responses (300 participants, 9 models, 800 units), against a naive
pandas loop (one resample at a time, groupby per resample) on the same data, same run.

The naive loop runs NAIVE_RESAMPLES resamples and is scaled linearly to 1000 (its cost per
resample is constant); both figures are printed. Goal: < 5 s and >= 10x the naive loop.

    python bench/analysis.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# This file is named analysis.py: keep its folder off the path so `analysis` is the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np
import pandas as pd

from analysis.scores import score_table
from analysis.synthetic import synthetic_responses

N_RESAMPLES = 1000
NAIVE_RESAMPLES = 10


def fast(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    by_condition = score_table(frame, ["condition"], n_resamples=N_RESAMPLES, seed=0)
    by_unit = score_table(frame, ["model", "layer", "unit", "condition"], N_RESAMPLES, seed=0)
    return by_condition, by_unit


def naive(frame: pd.DataFrame, n_resamples: int) -> list[pd.Series]:
    """What one writes first: per resample, draw participants, then their units, groupby."""
    rng = np.random.default_rng(0)
    blocks = {p: g for p, g in frame.groupby("participant")}
    names = list(blocks)
    out = []
    for _ in range(n_resamples):
        picks = rng.choice(len(names), len(names))
        sample = pd.concat(
            [blocks[names[i]].assign(copy=c) for c, i in enumerate(picks)], ignore_index=True
        )
        sample = sample.groupby(["copy", "condition"]).sample(
            frac=1.0, replace=True, random_state=rng
        )
        per_participant = sample.groupby(["condition", "copy"])["correct"].mean()
        out.append(per_participant.groupby("condition").mean())
        per_unit = sample.groupby(["model", "layer", "unit", "condition", "copy"])["correct"].mean()
        out.append(per_unit.groupby(["model", "layer", "unit", "condition"]).mean())
    return out


def main() -> None:
    frame = synthetic_responses(300, 9, 800, 120_000, seed=0)
    start = time.perf_counter()
    by_condition, by_unit = fast(frame)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    naive(frame, NAIVE_RESAMPLES)
    naive_seconds = (time.perf_counter() - start) * N_RESAMPLES / NAIVE_RESAMPLES
    print(
        f"responses={len(frame)} participants={frame['participant'].nunique()} "
        f"units={frame['unit'].nunique()} groups={len(by_condition) + len(by_unit)} "
        f"resamples={N_RESAMPLES}"
    )
    print(f"naive_seconds={naive_seconds:.1f} (from {NAIVE_RESAMPLES} resamples)")
    print(f"seconds={seconds:.2f} ratio_vs_naive={naive_seconds / seconds:.1f}")


if __name__ == "__main__":
    main()
