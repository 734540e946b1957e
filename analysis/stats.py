"""Tests and comparisons on top of the scores: chance level, paired differences, GLMM,
confidence and reaction-time summaries."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.bootstrap import hierarchical_bootstrap
from analysis.scores import participant_accuracy


def chance_tests(frame: pd.DataFrame, by: list[str], chance: float = 0.5) -> pd.DataFrame:
    """Is each group above chance? One-sided t-test over participant accuracies, and a
    binomial test over the pooled responses (which ignores participant clustering)."""
    per_participant = participant_accuracy(frame, by)
    rows = []
    for key, group in per_participant.groupby(by, observed=True):
        values = group["accuracy"].to_numpy()
        if len(values) > 1 and values.std() > 0:
            t = sps.ttest_1samp(values, chance, alternative="greater")
            t_stat, t_p = float(t.statistic), float(t.pvalue)
        else:
            t_stat, t_p = float("nan"), float("nan")
        responses = frame
        for column, value in zip(by, key, strict=True):
            responses = responses[responses[column] == value]
        k, n = int(responses["correct"].sum()), len(responses)
        binom_p = float(sps.binomtest(k, n, chance, alternative="greater").pvalue)
        rows.append((*key, chance, t_stat, t_p, k, n, binom_p))
    columns = [*by, "chance", "t", "p_t", "k_correct", "n_responses", "p_binomial"]
    return pd.DataFrame(rows, columns=columns)


def compare(
    frame: pd.DataFrame,
    factor: str,
    first: str,
    second: str,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Accuracy difference `first - second` between two levels of `factor`, with a CI.

    Participants who did both levels (conditions within one session) give paired
    differences, resampled over participants; otherwise (models seen by different people)
    the two groups' hierarchical bootstraps are drawn independently and subtracted.
    """
    per = participant_accuracy(frame, [factor]).pivot(
        index="participant", columns=factor, values="accuracy"
    )
    both = per[[first, second]].dropna() if {first, second} <= set(per.columns) else per.iloc[:0]
    tail = (1.0 - level) / 2.0 * 100.0
    if len(both) >= 2:
        diffs = (both[first] - both[second]).to_numpy()
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(diffs), size=(n_resamples, len(diffs)))
        resampled = diffs[picks].mean(axis=1)
        test = sps.wilcoxon(diffs) if np.any(diffs != 0) else None
        p_value = float(test.pvalue) if test is not None else 1.0
        difference, paired, n = float(diffs.mean()), True, len(diffs)
    else:
        subset = frame[frame[factor].isin([first, second])]
        result = hierarchical_bootstrap(subset, [factor], n_resamples=n_resamples, seed=seed)
        order = {v: i for i, v in enumerate(result.groups[factor])}
        resampled = result.resamples[order[first]] - result.resamples[order[second]]
        accuracy = result.groups.set_index(factor)["accuracy"]
        difference, paired = float(accuracy[first] - accuracy[second]), False
        n = int(result.groups["n_participants"].sum())
        a, b = per[first].dropna(), per[second].dropna()
        p_value = float(sps.brunnermunzel(a, b).pvalue) if len(a) > 1 and len(b) > 1 else None
    low, high = np.percentile(resampled, [tail, 100.0 - tail])
    return {
        "factor": factor,
        "first": first,
        "second": second,
        "difference": difference,
        "ci_low": float(low),
        "ci_high": float(high),
        "paired": paired,
        "n_participants": n,
        "p_value": p_value,
    }


def compare_levels(
    frame: pd.DataFrame, factor: str, n_resamples: int = 1000, seed: int = 0
) -> list[dict]:
    """Every pair of levels of `factor` (conditions, models), compared."""
    levels = sorted(frame[factor].unique())
    return [
        compare(frame, factor, a, b, n_resamples=n_resamples, seed=seed)
        for a, b in itertools.combinations(levels, 2)
    ]


def unit_accuracy(frame: pd.DataFrame, factor: str) -> pd.DataFrame:
    """Each unit's proportion correct within each level of `factor` (IMI's observations)."""
    return (
        frame.groupby([factor, "unit"], observed=True)["correct"]
        .agg(accuracy="mean", n_responses="size")
        .reset_index()
    )


def unit_rank_tests(frame: pd.DataFrame, factor: str = "condition") -> dict:
    """Tests between the levels of `factor` on per-unit accuracies, as IMI reports them.

    Kruskal-Wallis across all levels, and Brunner-Munzel for every pair (it allows
    unequal variances and ties, which per-unit proportions of ~30 answers have). Units are
    the observations, so units seen under both levels count in both samples: the tests
    compare the populations of units, not paired differences.
    """
    per_unit = unit_accuracy(frame, factor)
    samples = {
        str(level): group["accuracy"].to_numpy()
        for level, group in per_unit.groupby(factor, observed=True, sort=True)
    }
    out: dict = {"factor": factor, "observations": "units", "n_units": {}, "kruskal": None}
    out["n_units"] = {level: len(values) for level, values in samples.items()}
    usable = {level: values for level, values in samples.items() if len(values) >= 2}
    if len(usable) >= 2:
        pooled = np.concatenate(list(usable.values()))
        if np.ptp(pooled) > 0:
            test = sps.kruskal(*usable.values())
            out["kruskal"] = {
                "levels": list(usable),
                "statistic": float(test.statistic),
                "p_value": float(test.pvalue),
            }
    pairs = []
    for first, second in itertools.combinations(samples, 2):
        a, b = samples[first], samples[second]
        row = {
            "first": first,
            "second": second,
            "n_units_first": len(a),
            "n_units_second": len(b),
            "mean_first": float(a.mean()),
            "mean_second": float(b.mean()),
            "statistic": None,
            "p_value": None,
        }
        if len(a) >= 2 and len(b) >= 2 and np.ptp(np.concatenate([a, b])) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy warns about small samples; p says it
                test = sps.brunnermunzel(a, b)
            if np.isfinite(test.statistic):
                row["statistic"], row["p_value"] = float(test.statistic), float(test.pvalue)
        pairs.append(row)
    out["brunner_munzel"] = pairs
    return out


def binomial_glmm(frame: pd.DataFrame, factor: str = "condition", max_size: int = 400_000) -> dict:
    """correct ~ factor with random intercepts for participant and unit (statsmodels,
    variational Bayes). Returns the fixed effects (log-odds), or why it could not run.

    Its optimiser scales with rows x random effects; above `max_size` (a study of about
    a hundred participants) it reports that instead of running for many minutes.
    """
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    if frame[factor].nunique() < 2:
        return {"fitted": False, "reason": f"needs at least two levels of {factor}"}
    if frame["participant"].nunique() < 3:
        return {"fitted": False, "reason": "needs at least three participants"}
    size = len(frame) * (frame["participant"].nunique() + frame["unit"].nunique())
    if size > max_size:
        return {
            "fitted": False,
            "reason": f"too large for the variational GLMM ({len(frame)} rows x "
            f"{size // len(frame)} random effects > {max_size}); subsample, or fit it in lme4",
        }
    data = frame[["correct", factor, "participant", "unit"]].copy()
    data["correct"] = data["correct"].astype(float)
    random = {"participant": "0 + C(participant)"}
    if data["unit"].nunique() > 1:
        random["unit"] = "0 + C(unit)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = BinomialBayesMixedGLM.from_formula(f"correct ~ C({factor})", random, data)
            fit = model.fit_vb()
    except (ValueError, np.linalg.LinAlgError) as exc:
        return {"fitted": False, "reason": str(exc)}
    k = model.k_fep
    names = model.fep_names
    return {
        "fitted": True,
        "formula": f"correct ~ {factor} + (1|participant)"
        + (" + (1|unit)" if "unit" in random else ""),
        "fixed_effects": {
            name: {"log_odds": float(mean), "sd": float(sd)}
            for name, mean, sd in zip(names, fit.fe_mean[:k], fit.fe_sd[:k], strict=True)
        },
    }


def response_summary(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Confidence and reaction time per group (missing confidence values are skipped)."""
    grouped = frame.groupby(by, observed=True)
    table = grouped.agg(
        mean_confidence=("confidence", "mean"),
        n_confidence=("confidence", "count"),
        median_rt_ms=("rt_ms", "median"),
        mean_rt_ms=("rt_ms", "mean"),
    )
    by_correct = frame.groupby([*by, "correct"], observed=True)["confidence"].mean().unstack()
    table["confidence_correct"] = by_correct.get(True)
    table["confidence_incorrect"] = by_correct.get(False)
    return table.reset_index()
