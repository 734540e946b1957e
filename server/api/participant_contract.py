"""The typed public contract between the server and the participant page (issues 20, 21).

Response models for everything the page reads before and during a session: the study's
public settings (`PublicStudy`: the admin API's `StudyPublic` is another model) and a served trial (`TrialPublic`, with `type` naming the
paradigm's trial module web/static/js/trials/<type>.js). They are the routes'
`response_model`, so they appear in /openapi.json; tests/test_participant_contract.py checks
that every key the page's JavaScript reads is declared here. Extra keys are allowed through
(`extra="allow"`) so a setting added server-side is never silently dropped; the test makes
such a key part of the contract as soon as the page reads it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PracticePublic(Open):
    n_trials: int
    feedback: bool
    max_attempts: int


class FeedbackTimingsPublic(Open):
    frame: int
    continue_: int = Field(alias="continue")

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)


class LayoutPublic(Open):
    reference_columns_titles: dict[str, str]
    question: str
    confidence_levels: int
    answer_delay_ms: int
    feedback_ms: FeedbackTimingsPublic
    show_running_score: bool
    max_image_px: int
    iti_ms: int = Field(description="Fixation screen between trials (ms).")
    max_side: Literal["left", "right"] = Field(description="Side of the max references.")
    example_image_url: str = Field(description="The how-to-answer page's example trial.")


class WindowPublic(Open):
    width: int
    height: int


class CompletionPublic(Open):
    platform: Literal["prolific", "mturk", "plain"]
    redirect_delay_ms: int = Field(description="End screen shown this long before redirecting.")


class ComprehensionPublic(Open):
    question: str
    options: list[str]
    answer: int = Field(
        description="The right option's index (the check is for understanding, not a secret)."
    )


class PublicStudy(Open):
    """GET /api/v1/studies/{slug}: never an answer, only what the page shows and honours."""

    slug: str
    title: str
    description: str
    consent: str
    instructions: list[str]
    estimated_minutes: int
    status: str
    paradigm: str
    task: dict[str, Any] = Field(description="The paradigm's `task:` section (its options).")
    n_trials: int
    practice: PracticePublic
    feedback_main: bool
    layout: LayoutPublic
    break_every: int | None
    trial_timeout_ms: int | None
    min_window: WindowPublic
    allow_mobile: bool
    fullscreen: bool
    completion: CompletionPublic
    decline_redirect_url: str | None
    comprehension: list[ComprehensionPublic] = Field(
        description="Asked after the instructions (the study's or its paradigm's); empty: no check."
    )


class TrialImages(Open):
    """Opaque per-session URLs by role: the two choices as a/b, reference sets as lists
    (in this session's order), and single images of other roles (e.g. `base`)."""

    query_a: str
    query_b: str
    references_max: list[str] = []
    references_min: list[str] = []
    base: str | None = Field(None, description="Occlusion: the unoccluded base image.")


class TrialPublic(Open):
    """GET /api/v1/sessions/{id}/trials/next: one trial, never its answer."""

    trial_id: str
    type: str = Field(description="The trial module the page loads: js/trials/<type>.js.")
    index: int
    n_trials: int
    kind: Literal["practice", "main"]
    block: Literal["practice", "main"]
    images: TrialImages
