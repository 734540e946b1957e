"""What a paradigm declares, and the one way its trials become rows.

A paradigm (2AFC natural-vs-synthetic, occlusion, ...) is a module under server/paradigms
with a `Paradigm` subclass and a line in the registry. Everything else (grading, the
response hot path, assignment, serving, export, simulate) works on what a trial stores:
its images by role, the two roles offered as choices and the role of the right one. So a
new paradigm is new files, a YAML and tests; nothing else learns its name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.orm import Session

    from server.config import Settings
    from server.db.models import StimulusSet, Trial
    from server.studies.schema import StudyConfig


class Section(BaseModel):
    """A paradigm's study-config section (`task:` in the YAML). Subclasses narrow
    `paradigm` to their name: the registry joins them into a union keyed on it."""

    model_config = ConfigDict(extra="forbid")
    paradigm: str


class Paradigm:
    """Subclass and register (server/paradigms/__init__.py) to add a paradigm."""

    name: ClassVar[str]  # the study's `paradigm:` value
    trial_type: ClassVar[str]  # the page loads web/static/js/trials/<trial_type>.js
    section: ClassVar[type[Section]]
    conditions: ClassVar[tuple[str, ...]]  # the conditions a study of it may list
    # Extra per-response columns of the export beyond the common ones, name -> type
    # (one of EXPORT_TYPES: Parquet needs fixed types even for a chunk of nulls).
    export_columns: ClassVar[dict[str, str]] = {}

    def generate(
        self, db: Session, settings: Settings, config: StudyConfig, progress=None
    ) -> StimulusSet:
        """A ready stimulus set for the study (flushed, not committed); by default the
        common pipeline (activations, exemplars, feature visualizations)."""
        from server.stimuli.generate import generate_stimuli

        return generate_stimuli(db, settings, config.generation, progress=progress)

    def build_trials(
        self, db: Session, config: StudyConfig, study_id: int, stimulus_set_id: str
    ) -> list[Trial]:
        """Trial rows (not yet added) from a ready stimulus set."""
        raise NotImplementedError

    def export_values(self, images: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
        """One trial's values of `export_columns`; by default its `details` of those names."""
        return {name: details.get(name) for name in self.export_columns}

    def comprehension(self, config: StudyConfig) -> list[dict[str, Any]]:
        """The questions the page asks after the instructions when the study's YAML sets no
        `comprehension:` of its own ({question, options, answer} each); none (the default)
        skips the check. The page asks exactly these (issue 20's contract)."""
        return []

    def analysis_extras(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Paradigm-specific analysis beside the common scores (JSON-able)."""
        return {}


def trial_row(
    study_id: int,
    paradigm: str,
    kind: str,
    condition: str,
    unit_id: int | None,
    slot: int,
    images: dict[str, Any],
    choices: tuple[str, str],
    answer: str,
    details: dict[str, Any],
) -> Trial:
    """A Trial from its images by role. `answer` is the role of the right choice, one of
    `choices`; list-valued roles are reference sets (shuffled per session as shown),
    string-valued ones single images."""
    from server.db.models import Trial

    if answer not in choices or len(choices) != 2:
        raise ValueError(f"answer {answer!r} must be one of the two choices {choices}")
    missing = [r for r in choices if not isinstance(images.get(r), str)]
    if missing:
        raise ValueError(f"choice role(s) {missing} need one image each in `images`")
    return Trial(
        study_id=study_id,
        paradigm=paradigm,
        unit_id=unit_id,
        kind=kind,
        condition=condition,
        slot=slot,
        images=images,
        choices=list(choices),
        answer=answer,
        details=details,
    )


def right_and_wrong(images: dict[str, Any], choices: list[str], answer: str) -> tuple[str, str]:
    """(right image, wrong image) of a trial, from its role map: the one place that reads
    which choice is the answer, for serving, export and the MIS fit alike."""
    other = choices[1] if choices[0] == answer else choices[0]
    return images[answer], images[other]


Kind = Literal["main", "practice", "catch"]

#: The types a paradigm's export column may have (its Parquet type follows).
EXPORT_TYPES = ("float", "int", "string", "bool")
