"""A toy third paradigm (tests/test_toy_paradigm.py): "which of two natural images does the
unit respond to more?", no references (the max and min query of each batch). Its own file,
importing only the seam, as a paradigm of another package would."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from sqlalchemy import select

from server.paradigms.base import Paradigm, Section, trial_row


class ToySection(Section):
    paradigm: Literal["toy"] = "toy"
    pairs_per_unit: int = Field(1, ge=1, le=4)


class ToyParadigm(Paradigm):
    name = "toy"
    trial_type = "toy"
    section = ToySection
    conditions = ("none",)

    def build_trials(self, db, config, study_id, stimulus_set_id):
        from server.db.models import Stimulus

        rows = db.execute(
            select(Stimulus.unit_id, Stimulus.batch, Stimulus.role, Stimulus.image_sha256).where(
                Stimulus.stimulus_set_id == stimulus_set_id,
                Stimulus.source == "natural",
                Stimulus.role.in_(["query_max", "query_min"]),
            )
        ).all()
        pairs: dict[tuple[int, int], dict[str, str]] = {}
        for unit_id, batch, role, sha in rows:
            pairs.setdefault((unit_id, batch), {})[role] = sha
        trials = []
        for kind in ("main", "catch"):  # no practice trials (trials.practice.count: 0)
            for (unit_id, batch), images in sorted(pairs.items()):
                trials.append(
                    trial_row(study_id, "toy", kind, "none", unit_id, len(trials), images,
                              ("query_max", "query_min"), "query_max", {"batch": batch})
                )  # fmt: skip
        return trials
