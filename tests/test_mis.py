"""Machine interpretability score: the similarity observer, alpha fitting, MIS on real units."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.machine import fit_alpha, spearman_with_ci
from server.errors import AppError
from server.studies.observers.mis import (
    mis_with_ci,
    sample_tasks,
    score_units,
    score_units_naive,
    shuffle_reference_labels,
    task_differences,
)
from server.studies.observers.similarity import DEFAULT_ALPHA, normalize_rows, p_correct, p_first


def _cluster(rng, centre, n, spread=0.3):
    return centre + spread * rng.standard_normal((n, len(centre)))


def test_observer_picks_the_query_like_the_positive_references():
    rng = np.random.default_rng(0)
    u, v = np.eye(16)[0] * 3, np.eye(16)[1] * 3
    positives = normalize_rows(_cluster(rng, u, 9))
    negatives = normalize_rows(_cluster(rng, v, 9))
    similar, dissimilar = normalize_rows(_cluster(rng, u, 1)), normalize_rows(_cluster(rng, v, 1))
    assert p_first(similar[0], dissimilar[0], positives, negatives, alpha=10) > 0.9
    assert p_first(dissimilar[0], similar[0], positives, negatives, alpha=10) < 0.1
    assert p_first(similar[0], dissimilar[0], positives[:0], negatives[:0], alpha=10) == 0.5


def test_mis_is_high_for_similar_tasks_and_half_when_labels_are_shuffled():
    """Synthetic images whose embedding follows the unit's activation: an interpretable unit."""
    rng = np.random.default_rng(1)
    n = 4000  # the tasks use the top/bottom 200: extremes of a large pool, as in IMI
    activation = rng.standard_normal(n)
    direction = normalize_rows(rng.standard_normal((1, 32)))[0]
    embeddings = normalize_rows(
        activation[:, None] * direction + 0.5 * rng.standard_normal((n, 32))
    )
    (score,) = score_units(activation[:, None], embeddings, alpha=20)
    assert 0.0 <= score.ci_low <= score.mis <= score.ci_high <= 1.0
    assert score.mis > 0.8 and len(score.deltas) == 20
    # Queries from the opposite ends: the observer is right on (almost) every task.
    tasks = sample_tasks(activation, seed=3)
    assert (task_differences(embeddings, tasks) > 0).mean() >= 0.9
    shuffled = [
        p_correct(task_differences(embeddings, shuffle_reference_labels(tasks, s)), 20).mean()
        for s in range(50)
    ]
    assert abs(np.mean(shuffled) - 0.5) < 0.05


def test_constant_units_are_dropped_with_a_note():
    rng = np.random.default_rng(2)
    activations = np.stack([rng.standard_normal(60), np.full(60, 0.25)], axis=1)
    embeddings = normalize_rows(rng.standard_normal((60, 8)))
    varying, constant = score_units(activations, embeddings, alpha=10, n_tasks=5)
    assert varying.mis is not None and "recur across tasks" in varying.note
    assert constant.mis is None and "constant" in constant.note and "1e-08" in constant.note


def test_batched_and_naive_scoring_agree():
    rng = np.random.default_rng(3)
    activations = rng.standard_normal((80, 3))
    embeddings = normalize_rows(rng.standard_normal((80, 8)))
    batched = score_units(activations, embeddings, alpha=10, n_tasks=6)
    naive = score_units_naive(activations, lambda idx: embeddings[idx], alpha=10, n_tasks=6)
    for a, b in zip(batched, naive, strict=True):
        np.testing.assert_allclose(a.deltas, b.deltas, atol=1e-6)
        assert a.mis == pytest.approx(b.mis)


def test_bad_inputs_say_what_to_fix():
    with pytest.raises(AppError, match="needs 20"):
        sample_tasks(np.arange(10.0), k=9, n_tasks=1)
    with pytest.raises(AppError, match="alpha"):
        p_correct(np.zeros(3), -1)
    with pytest.raises(AppError, match="same images"):
        score_units(np.zeros((5, 1)), np.zeros((4, 3)), alpha=1)
    with pytest.raises(AppError, match="at least 10"):
        fit_alpha(np.zeros(3), np.ones(3, dtype=bool))


def test_alpha_fit_recovers_a_known_alpha():
    rng = np.random.default_rng(4)
    d = rng.normal(0.05, 0.1, size=6000)
    correct = rng.random(6000) < p_correct(d, 15.0)
    fit = fit_alpha(d, correct)
    assert abs(fit.alpha - 15.0) < 2.5 * fit.se and fit.se < 1.5
    assert fit.predicted_accuracy == pytest.approx(fit.human_accuracy, abs=0.02)


def test_mis_ci_and_spearman():
    mis, low, high = mis_with_ci(np.array([[0.1] * 20, [-0.1] * 20]), alpha=10)
    assert mis[0] > 0.5 > mis[1] and low[0] == pytest.approx(high[0])
    rng = np.random.default_rng(5)
    x = rng.random(30)
    result = spearman_with_ci(x, x + 0.1 * rng.random(30))
    assert result["rho"] > 0.8 and result["ci_low"] <= result["rho"] <= result["ci_high"]
    # Few units: some resamples draw one value only; the CI comes from the others.
    few = spearman_with_ci(np.array([0.8, 0.7, 0.9, 0.6, 0.85, 0.75]), np.array([1, 0.5] * 3))
    assert np.isfinite(few["ci_low"]) and few["ci_low"] <= few["rho"] <= few["ci_high"]
    assert spearman_with_ci(x, np.ones(30))["rho"] is None  # undefined, not NaN


@pytest.fixture(scope="module")
def lite2_backend():
    from server.studies.observers.backends import make_backend

    return make_backend("efficientnet-lite2")


def test_real_units_of_the_trained_model_score_above_chance(lite0, demo_pool, lite2_backend):
    """EfficientNet-Lite0 units on the demo photos, embedded by EfficientNet-Lite2."""
    from server.stimuli.activations import collect_activations
    from server.stimuli.units import sample_units

    units = sample_units(lite0, ["_blocks.4", "_blocks.12"], 4, seed=0)
    table = collect_activations(lite0, demo_pool, units)
    files, embeddings = lite2_backend.embed_files(table.files)
    assert files == [str(p) for p in table.files]
    activations = np.stack([table.of(u) for u in units], axis=1)
    scores = score_units(activations, embeddings, alpha=DEFAULT_ALPHA)
    mis = np.array([s.mis for s in scores if s.mis is not None])
    assert len(mis) >= 6 and ((mis >= 0) & (mis <= 1)).all()
    assert mis.mean() > 0.65 and (mis > 0.55).all(), mis
    shuffled = []
    for column, unit_scores in enumerate(scores):
        if unit_scores.mis is None:
            continue
        tasks = sample_tasks(activations[:, column], seed=column)
        for s in range(10):
            control = shuffle_reference_labels(tasks, s)
            shuffled.append(p_correct(task_differences(embeddings, control), DEFAULT_ALPHA).mean())
    assert abs(np.mean(shuffled) - 0.5) < 0.02, np.mean(shuffled)
    assert mis.mean() - np.mean(shuffled) > 0.05
