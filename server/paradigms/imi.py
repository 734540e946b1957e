"""2AFC natural-vs-synthetic (IMI; Borowski et al. 2021, Zimmermann et al. 2023).

Two queries (the unit's max and min query of a batch) between reference sets of its most
and least activating images (natural, feature visualizations, mixed, or none); the right
choice is the max query. Trial building stays in server/studies/trials.py (reserved
practice/catch material, catch and practice trials); this module turns its specs into rows
by role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from server.paradigms.base import Paradigm, Section, trial_row

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from server.db.models import Trial
    from server.studies.schema import StudyConfig

CHOICES = ("query_max", "query_min")


class ImiSection(Section):
    """No options of its own yet: the 2AFC task's numbers live in `trials:` and `layout:`."""

    paradigm: Literal["imi"] = "imi"


class ImiParadigm(Paradigm):
    name = "imi"
    trial_type = "imi"
    section = ImiSection
    conditions = ("natural", "synthetic", "mixed", "none")

    def comprehension(self, config: StudyConfig) -> list[dict]:
        """Three questions on the 2AFC task (which image, how to answer, what the numbers
        say), worded with the study's column titles and confidence levels. IMI itself had
        none (its practice was the only check): `comprehension: []` in the YAML."""
        titles = config.layout.reference_columns_titles
        levels = config.layout.confidence_levels
        numbers = (
            ", ".join(str(n) for n in range(1, levels)) + f" or {levels}" if levels > 1 else "1"
        )
        return [
            {
                "question": "Which image at the center should you choose?",
                "options": [
                    f"The one that matches the {titles['min']} better",
                    f"The one that matches the {titles['max']} better",
                    "The one I like more",
                ],
                "answer": 1,
            },
            {
                "question": "How do you give your answer?",
                "options": [
                    "I click the image itself",
                    "I type the image's number",
                    f"I click {numbers} next to the image I choose (or press its key)",
                ],
                "answer": 2,
            },
            {
                "question": f"What do the numbers 1 … {levels} say?",
                "options": [
                    f"How confident I am: {levels} = very confident",
                    "Which image I choose",
                    "How much I like the image",
                ],
                "answer": 0,
            },
        ]

    def build_trials(
        self, db: Session, config: StudyConfig, study_id: int, stimulus_set_id: str
    ) -> list[Trial]:
        from server.studies.trials import TrialBuilder, load_unit_stimuli

        specs = TrialBuilder(config, load_unit_stimuli(db, stimulus_set_id)).all()
        return [
            trial_row(
                study_id,
                self.name,
                s.kind,
                s.condition,
                s.unit_id,
                s.slot,
                {
                    "query_max": s.query_max,
                    "query_min": s.query_min,
                    "references_max": list(s.references_max),
                    "references_min": list(s.references_min),
                },
                CHOICES,
                "query_max",
                s.details,
            )
            for s in specs
        ]
