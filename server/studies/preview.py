"""A study as a participant would meet it, for the researcher, from stored trials only.

No session is created and nothing is written: the texts come from the config, the trials
from the draft's (or live study's) trial rows, images by content address (researchers'
pages may see hashes; participants never do).
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
    return {
        "description": config.description,
        "consent": config.consent,
        "instructions": list(config.instructions),
        "n_trials": len(trials),
        "trials": [
            {
                "kind": t.kind,
                "condition": t.condition,
                "references_max": list(t.references_max),
                "references_min": list(t.references_min),
                "queries": [t.query_max, t.query_min]
                if order.random() < 0.5
                else [t.query_min, t.query_max],
            }
            for t in shown
        ],
    }
