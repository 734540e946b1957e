"""A study as a participant would meet it, for the researcher, from stored trials only.

No session is created and nothing is written: the texts come from the config, the trials
from the draft's (or live study's) trial rows, images by content address (researchers'
pages may see hashes; participants never do). A trial's images are read by role through
the paradigm seam (its `images` map and two `choices`), so occlusion trials show their base
image and occluded queries as the page does, under the study's own titles.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import Study, Trial
from server.studies.service import study_config

PREVIEW_TRIALS = 3


def study_preview(db: Session, study: Study) -> dict[str, Any]:
    config = study_config(study)
    trials = db.scalars(
        select(Trial).where(Trial.study_id == study.id).order_by(Trial.kind.desc(), Trial.slot)
    ).all()
    shown = [t for t in trials if t.kind == "practice"][:1] + [
        t for t in trials if t.kind == "main"
    ][: PREVIEW_TRIALS - 1]
    order = random.Random(study.seed)  # a fixed a/b order, like a session's
    task = config.task
    titles = config.layout.reference_columns_titles
    return {
        "description": config.description,
        "consent": config.consent,
        "instructions": list(config.instructions),
        "n_trials": len(trials),
        "question": config.layout.question,
        # the occlusion task's titles (its `task:` section), else the 2AFC columns'
        "titles": {
            "references_max": getattr(task, "references_title", None) or titles.get("max"),
            "references_min": titles.get("min"),
            "base": getattr(task, "base_title", None),
        },
        "trials": [_trial_images(t, order) for t in shown],
    }


def _trial_images(trial: Trial, order: random.Random) -> dict[str, Any]:
    """A stored trial's images by role (seam: `images`, `choices`), queries in a/b order."""
    images = trial.images or {}
    queries = [images[role] for role in trial.choices]
    if order.random() < 0.5:
        queries.reverse()
    return {
        "kind": trial.kind,
        "condition": trial.condition,
        "type": trial.paradigm,
        "base": images.get("base"),
        "references_max": list(images.get("references_max", [])),
        "references_min": list(images.get("references_min", [])),
        "queries": queries,
    }
