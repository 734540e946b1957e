"""Machine interpretability scores in analysis: alpha fitted to human answers, MIS against
human accuracy, and the cross-model figure (score vs relative layer depth).

The similarity observer's p(correct) = sigmoid(alpha * d) with d = Delta_right - Delta_wrong
(`server.studies.observers.similarity`). Given human answers on trials whose d is known,
alpha is the maximum-likelihood slope of a logistic regression through the origin.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import expit, log_expit

from server.errors import AppError

ALPHA_BOUNDS = (0.0, 1000.0)


@dataclass(frozen=True)
class AlphaFit:
    alpha: float
    se: float  # from the observed Fisher information
    n_responses: int
    log_likelihood: float
    human_accuracy: float
    predicted_accuracy: float

    def as_dict(self) -> dict:
        return asdict(self)


def fit_alpha(differences: np.ndarray, correct: np.ndarray) -> AlphaFit:
    """Maximum-likelihood alpha of p(correct) = sigmoid(alpha * d), one row per response."""
    d = np.asarray(differences, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    if d.shape != y.shape or d.ndim != 1:
        raise AppError("differences and correct must be 1-D arrays of the same length")
    if len(d) < 10:
        raise AppError(f"{len(d)} responses with references: fitting alpha needs at least 10")
    if not np.isfinite(d).all():
        raise AppError("the similarity differences contain NaN or infinity")
    signed = np.where(y, d, -d)  # log p(answer) = log sigmoid(alpha * signed)

    def negative_log_likelihood(alpha: float) -> float:
        return -float(log_expit(alpha * signed).sum())

    result = optimize.minimize_scalar(
        negative_log_likelihood, bounds=ALPHA_BOUNDS, method="bounded", options={"xatol": 1e-6}
    )
    alpha = float(result.x)
    p = expit(alpha * d)
    information = float(np.sum(d**2 * p * (1 - p)))
    return AlphaFit(
        alpha=alpha,
        se=float(1 / np.sqrt(information)) if information > 0 else float("inf"),
        n_responses=len(d),
        log_likelihood=-float(result.fun),
        human_accuracy=float(y.mean()),
        predicted_accuracy=float(p.mean()),
    )


def spearman_with_ci(x: np.ndarray, y: np.ndarray, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Spearman's rho of paired per-unit values with a percentile-bootstrap 95% CI over units.

    rho is None when it is undefined (fewer than 3 units, or one side constant). Resamples
    that happen to draw a constant side have no rho either; the CI is taken over the rest.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    undefined = {"rho": None, "ci_low": None, "ci_high": None, "n_units": len(x)}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return undefined
    rho = float(stats.spearmanr(x, y).statistic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        result = stats.bootstrap(
            (x, y),
            lambda a, b: stats.spearmanr(a, b).statistic,
            paired=True,
            vectorized=False,
            n_resamples=n_resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = np.nanpercentile(result.bootstrap_distribution, [2.5, 97.5])
    return {"rho": rho, "ci_low": float(low), "ci_high": float(high), "n_units": len(x)}


def layer_summary(scores: pd.DataFrame, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per model and layer: mean MIS over scored units with a bootstrap 95% CI over units.

    `scores` has columns model, layer, layer_depth, mis (NaN for dropped units).
    """
    rows = []
    scored = scores.dropna(subset=["mis"])
    for (model, layer), group in scored.groupby(["model", "layer"], sort=False):
        values = group["mis"].to_numpy()
        if len(values) > 1 and np.ptp(values) > 0:
            ci = stats.bootstrap(
                (values,),
                np.mean,
                n_resamples=n_resamples,
                method="percentile",
                rng=np.random.default_rng(seed),
            ).confidence_interval
            low, high = float(ci.low), float(ci.high)
        else:
            low = high = float(values.mean())
        rows.append(
            {
                "model": model,
                "layer": layer,
                "layer_depth": float(group["layer_depth"].iloc[0]),
                "mis": float(values.mean()),
                "ci_low": low,
                "ci_high": high,
                "n_units": len(values),
                "n_dropped": int(
                    scores[(scores["model"] == model) & (scores["layer"] == layer)]["mis"]
                    .isna()
                    .sum()
                ),
            }
        )
    columns = ["model", "layer", "layer_depth", "mis", "ci_low", "ci_high", "n_units", "n_dropped"]
    return pd.DataFrame(rows, columns=columns).sort_values(["model", "layer_depth"])
