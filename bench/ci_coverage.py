"""Coverage of the default 95% interval on simulated crossed studies (issue 19).

Each simulated study: 40 units (logit difficulty sd 0.9) and 40 participants (logit
ability sd 0.4), every participant answers every unit once (40 trials), intercept 1.0.
The truth is the population accuracy E[logistic(1 + unit + participant)]. Every study
is one group of a single vectorised `score_table` call; the nested (participants, then
units within them) bootstrap is run on the same studies as the baseline.

    python bench/ci_coverage.py [--studies 400] [--score crossed]

Prints `coverage=...` and the mean interval width (and the nested baseline's).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# This folder has analysis.py: keep it off the path so `analysis` is the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np

from analysis.bootstrap import hierarchical_bootstrap
from analysis.scores import score_table
from analysis.synthetic import crossed_studies, crossed_truth


def coverage(low: np.ndarray, high: np.ndarray, truth: float) -> tuple[float, float]:
    return float(np.mean((low <= truth) & (truth <= high))), float(np.mean(high - low))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--score", default="crossed", help="crossed, imi or borowski")
    parser.add_argument("--resamples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    truth = crossed_truth()
    frame = crossed_studies(args.studies, seed=args.seed)
    start = time.perf_counter()
    table = score_table(frame, ["condition"], n_resamples=args.resamples, score=args.score)
    seconds = time.perf_counter() - start
    covered, width = coverage(table["ci_low"].to_numpy(), table["ci_high"].to_numpy(), truth)
    nested = hierarchical_bootstrap(frame, ["condition"], 1000, seed=args.seed)
    nested_covered, nested_width = coverage(*nested.interval(), truth)
    print(
        f"studies={args.studies} units=40 participants=40 trials=40 truth={truth:.4f} "
        f"score={args.score} resamples={int(table['n_resamples'].iloc[0])}"
    )
    print(f"coverage={covered:.3f} mean_width={width:.4f} seconds={seconds:.2f}")
    print(
        f"nested_baseline coverage={nested_covered:.3f} mean_width={nested_width:.4f} "
        f"width_ratio={width / nested_width:.2f}"
    )


if __name__ == "__main__":
    main()
