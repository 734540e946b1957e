"""Simulated response tables with known accuracies, for benchmarks, tests and examples.

Each participant answers units drawn from every model, once each per condition; a response is correct with the logistic of condition + participant + unit effects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CONDITION_LOGITS = {"natural": 1.6, "synthetic": 0.9}


def synthetic_responses(
    n_participants: int = 300,
    n_models: int = 9,
    n_units: int = 800,
    n_responses: int = 120_000,
    n_layers: int = 6,
    participant_sd: float = 0.5,
    unit_sd: float = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """A tidy frame of about `n_responses` main-trial responses."""
    rng = np.random.default_rng(seed)
    conditions = list(CONDITION_LOGITS)
    per_participant = min(n_units, max(1, n_responses // (n_participants * len(conditions))))
    participant_effect = rng.normal(0.0, participant_sd, n_participants)
    unit_effect = rng.normal(0.0, unit_sd, n_units)
    unit_model = np.arange(n_units) % n_models
    unit_layer = rng.integers(0, n_layers, n_units)
    # Without replacement: each participant sees a unit at most once per condition.
    picks = np.argsort(rng.random((n_participants, n_units)), axis=1)[:, :per_participant]
    participant = np.repeat(np.arange(n_participants), per_participant * len(conditions))
    unit = np.repeat(picks, len(conditions), axis=1).ravel()
    condition_index = np.tile(np.arange(len(conditions)), n_participants * per_participant)
    model = unit_model[unit]
    logit = (
        np.array(list(CONDITION_LOGITS.values()))[condition_index]
        + participant_effect[participant]
        + unit_effect[unit]
    )
    correct = rng.random(len(logit)) < 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame(
        {
            "participant": np.char.add("p", participant.astype(str)),
            "study": "synthetic",
            "model": np.char.add("model-", model.astype(str)),
            "layer": np.char.add("layer", unit_layer[unit].astype(str)),
            "unit": np.char.add("u", unit.astype(str)),
            "condition": np.array(conditions)[condition_index],
            "trial_kind": "main",
            "correct": correct,
            "confidence": rng.integers(1, 4, len(logit)).astype(float),
            "rt_ms": rng.lognormal(8.0, 0.4, len(logit)),
            "excluded": False,
        }
    )


def crossed_truth(
    intercept: float = 1.0, unit_sd: float = 0.9, participant_sd: float = 0.4, seed: int = 12345
) -> float:
    """Population accuracy E[logistic(intercept + unit + participant)] (Monte Carlo, 4M)."""
    z = np.random.default_rng(seed).normal(0.0, 1.0, (2, 4_000_000))
    logit = intercept + unit_sd * z[0] + participant_sd * z[1]
    return float(np.mean(1.0 / (1.0 + np.exp(-logit))))


def crossed_studies(
    n_studies: int,
    n_units: int = 40,
    n_participants: int = 40,
    intercept: float = 1.0,
    unit_sd: float = 0.9,
    participant_sd: float = 0.4,
    seed: int = 0,
) -> pd.DataFrame:
    """`n_studies` independent crossed studies (every participant answers every unit once),
    one `condition` each (study0, study1, ...): issue 19's coverage simulation."""
    rng = np.random.default_rng(seed)
    unit_effect = rng.normal(0.0, unit_sd, (n_studies, 1, n_units))
    participant_effect = rng.normal(0.0, participant_sd, (n_studies, n_participants, 1))
    p = 1.0 / (1.0 + np.exp(-(intercept + unit_effect + participant_effect)))
    correct = rng.random(p.shape) < p
    study, participant, unit = np.indices(correct.shape).reshape(3, -1)
    return pd.DataFrame(
        {
            "condition": np.char.add("study", study.astype(str)),
            "participant": np.char.add("p", participant.astype(str)),
            "unit": np.char.add("u", unit.astype(str)),
            "correct": correct.ravel(),
        }
    )
