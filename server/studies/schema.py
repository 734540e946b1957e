"""The study definition (YAML) as pydantic models: every number of a paradigm is a field here.

Defaults reproduce the IMI task (Zimmermann et al. 2023): 5 practice trials (4 obvious),
at most 3 practice attempts, 40 main + 5 catch trials, 9 references per side, feedback and
a running score, 1500 ms answer delay. Unknown keys are errors (typos must not pass silently).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from server.stimuli.generate import GenerationConfig

Condition = Literal["natural", "synthetic", "mixed", "none", "natural_blurred"]
CONDITIONS_NEEDING_FVS = {"synthetic", "mixed"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PracticeConfig(Strict):
    """Obvious (catch-like) trials first, then harder ones; repeated until all are correct."""

    count: int = Field(5, ge=0, le=50)
    obvious: int = Field(4, ge=0)
    max_attempts: int = Field(3, ge=1, le=10)
    feedback: bool = True
    # Practice repeats until every trial of a round is right (IMI). After max_attempts
    # rounds with errors a participant either goes on to the main trials, flagged
    # (`flag`: practice_passed false), or is stopped politely (`stop`: the session ends
    # screened out). The `max_practice_attempts` exclusion rule excludes both.
    on_fail: Literal["flag", "stop"] = "flag"

    @model_validator(mode="after")
    def _obvious_fits(self) -> PracticeConfig:
        if self.obvious > self.count:
            raise ValueError(f"obvious ({self.obvious}) cannot exceed count ({self.count})")
        return self


class CatchConfig(Strict):
    """Catch trials: the right query is one of the shown max references itself."""

    count: int | None = Field(None, ge=0, description="Overrides fraction when given.")
    fraction: float = Field(0.125, ge=0.0, le=0.5, description="Of the main trials.")

    def n_for(self, main_trials: int) -> int:
        return self.count if self.count is not None else round(self.fraction * main_trials)


class TrialsConfig(Strict):
    main: int = Field(40, ge=1, le=1000, description="Main (non-catch) trials per participant.")
    catch: CatchConfig = CatchConfig()
    practice: PracticeConfig = PracticeConfig()
    feedback_main: bool = True
    mixed_synthetic_references: int = Field(
        4, ge=1, description="In `mixed`, this many references per side are synthetic."
    )
    break_every: int | None = Field(None, ge=1)


class CounterbalancingConfig(Strict):
    """How slots (unit × condition × batch) are spread over participants and ordered."""

    conditions: Literal["within", "between"] = "within"
    order: Literal["blocked", "interleaved"] = "interleaved"
    responses_per_slot: int | None = Field(
        None, ge=1, description="Stop claiming places once every slot has this many."
    )
    none_split: tuple[int, int] | None = Field(
        None,
        description="Blocked order: the `none` trials split in this ratio before and after "
        "the blocks with references (Borowski et al. 2021: [23, 22]).",
    )

    @model_validator(mode="after")
    def _split_needs_blocks(self) -> CounterbalancingConfig:
        if self.none_split is not None:
            if self.order != "blocked":
                raise ValueError("none_split needs order: blocked")
            if min(self.none_split) < 0 or sum(self.none_split) == 0:
                raise ValueError("none_split: two counts >= 0, not both 0 (e.g. [23, 22])")
        return self


class TimeLimitsConfig(Strict):
    session_minutes: int = Field(60, ge=1, description="An unfinished place reopens after this.")
    trial_timeout_ms: int | None = Field(None, ge=1000)


class CompletionConfig(Strict):
    platform: Literal["prolific", "mturk", "plain"] = "plain"
    code: str | None = Field(None, max_length=64, description="Prolific completion code.")
    url: str | None = Field(None, description="Redirect after completion (default per platform).")
    redirect_delay_ms: int = Field(
        4000, ge=0, le=60_000, description="How long the end screen shows before redirecting."
    )

    @model_validator(mode="after")
    def _prolific_needs_code(self) -> CompletionConfig:
        if self.platform == "prolific" and not self.code:
            raise ValueError("platform prolific needs `code` (the study's completion code)")
        return self


class ExclusionConfig(Strict):
    """Applied in analysis (never at run time), so they stay adjustable after data collection."""

    min_catch_accuracy: float = Field(0.8, ge=0.0, le=1.0)
    min_rt_ms: float = Field(0.0, ge=0.0)
    total_time_s: tuple[float, float] | None = (135.0, 2500.0)
    min_instruction_s: float = 15.0
    min_choices_per_row: int = 5
    max_practice_attempts: int = 3

    @model_validator(mode="before")
    @classmethod
    def _known_rules(cls, data: object) -> object:
        """An unknown rule name is an error listing the valid ones (file:line is added by
        the loader): a typo must not silently switch a rule back to its default."""
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(
                    f"unknown exclusion rule(s) {', '.join(map(str, unknown))}: "
                    f"use {', '.join(cls.model_fields)}"
                )
        return data


class AnalysisConfig(Strict):
    """How the study's scores are defined (analysis.definitions): `crossed` (default,
    participants x units bootstrap), `imi` (mean of unit means, BCa over units) or
    `borowski` (mean of participant means +- 2 SEM)."""

    score: Literal["crossed", "imi", "borowski"] = "crossed"
    n_resamples: int | None = Field(
        None, ge=0, le=1_000_000, description="Bootstrap resamples; none: the score's default."
    )


class FeedbackTimings(Strict):
    """IMI: the chosen image's frame turns green/red `frame` ms after the click, and the
    Continue button appears `continue` ms after that (350 + 1150 ms)."""

    frame: int = 350
    # "continue" is a Python keyword only as an attribute name; the JSON key stays.
    continue_: int = Field(1150, alias="continue")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LayoutConfig(Strict):
    reference_columns_titles: dict[Literal["min", "max"], str] = {
        "min": "Left Examples",
        "max": "Right Examples",
    }
    question: str = "Which image at the center matches the Right Examples better?"
    confidence_levels: int = Field(3, ge=1, le=7)
    answer_delay_ms: int = Field(1500, ge=0)
    feedback_ms: FeedbackTimings = FeedbackTimings()
    show_running_score: bool = Field(
        True,
        description="'Correct so far' after main trials; only with trials.feedback_main "
        "(the count would give feedback on every trial).",
    )
    max_image_px: int = Field(224, ge=32)
    # The page's other settings (issue 20: every setting the page reads is sent): the blank
    # screen with a fixation cross between trials, the side of the max references (IMI:
    # right, titled "Right Examples"; the question names that side), and the picture of a
    # trial on the how-to-answer page.
    iti_ms: int = Field(500, ge=0, le=10_000, description="Fixation between trials (ms).")
    max_side: Literal["left", "right"] = "right"
    example_image_url: str = Field(
        "/static/img/example-trial.jpg",
        description="A file under web/static, served as /static/...: the page loads only "
        "its own images.",
    )

    @field_validator("example_image_url")
    @classmethod
    def _served_static_file(cls, value: str) -> str:
        from web import STATIC_DIR

        relative = value.removeprefix("/static/")
        path = (STATIC_DIR / relative).resolve()
        if (
            not value.startswith("/static/")
            or not path.is_relative_to(STATIC_DIR.resolve())
            or not path.is_file()
        ):
            raise ValueError(
                f"{value!r} is not a file under web/static: put the picture there and give "
                "its path as /static/<path> (the participant page loads only its own images)"
            )
        return value


class ComprehensionQuestion(Strict):
    """One multiple-choice question asked after the instructions; a wrong answer sends the
    participant back to them."""

    question: str = Field(min_length=1, max_length=500)
    options: list[str] = Field(min_length=2, max_length=8)
    answer: int = Field(ge=0, description="Index of the right option (0 = the first).")

    @model_validator(mode="after")
    def _answer_is_an_option(self) -> ComprehensionQuestion:
        if self.answer >= len(self.options):
            raise ValueError(
                f"answer {self.answer} is not an option: count from 0 "
                f"(0 … {len(self.options) - 1} for {len(self.options)} options)"
            )
        return self


class WindowConfig(Strict):
    min_width: int = 940
    min_height: int = 600
    allow_mobile: bool = False
    fullscreen: bool = True


class StudyConfig(Strict):
    title: str = Field(min_length=1, max_length=300)
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")
    description: str = ""
    group: str | None = Field(
        None, max_length=100, description="Series name: a worker takes part in one study of it."
    )
    exclude_studies: list[str] = Field(
        default_factory=list, description="Slugs whose finishers may not take this study."
    )
    consent: str = Field(min_length=1)
    instructions: list[str] = Field(min_length=1)
    condition_instructions: dict[Condition, list[str]] = Field(
        default_factory=dict,
        description="Between participants: pages shown after `instructions` to the "
        "participants of that condition only.",
    )
    estimated_minutes: int = Field(15, ge=1)
    comprehension: list[ComprehensionQuestion] | None = Field(
        None,
        description="Questions after the instructions; none: the paradigm's own (the 2AFC "
        "task's three, none for occlusion); []: no check (IMI's only check was the practice).",
    )
    # The paradigm (server/paradigms registry) and its own section (`task:`), validated as
    # a union keyed on `paradigm` (issue 21).
    paradigm: str = "imi"
    task: Any = None
    seed: int = Field(0, ge=0, lt=2**31)
    generation: GenerationConfig
    conditions: list[Condition] = Field(min_length=1)
    trials: TrialsConfig = TrialsConfig()
    counterbalancing: CounterbalancingConfig = CounterbalancingConfig()
    participants_wanted: int | None = Field(None, ge=1)
    time_limits: TimeLimitsConfig = TimeLimitsConfig()
    completion: CompletionConfig = CompletionConfig()
    exclusion: ExclusionConfig = ExclusionConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    layout: LayoutConfig = LayoutConfig()
    window: WindowConfig = WindowConfig()
    decline_redirect_url: str | None = None

    @field_validator("instructions", mode="before")
    @classmethod
    def _one_page_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("paradigm")
    @classmethod
    def _known_paradigm(cls, value: str) -> str:
        from server import paradigms

        paradigms.get(value)  # raises naming the registered ones
        return value

    @field_validator("task", mode="before")
    @classmethod
    def _paradigm_section(cls, value: object, info: ValidationInfo) -> object:
        """The `task:` section of the study's paradigm; a section of another paradigm
        (mixing them) is an error naming both."""
        from pydantic import ValidationError

        from server import paradigms

        paradigm = info.data.get("paradigm")
        if paradigm is None:  # the paradigm itself was invalid (reported there)
            return value
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"task: a mapping of the {paradigm} paradigm's options")
        given = (value or {}).get("paradigm")
        if given is not None and given != paradigm:
            raise ValueError(
                f"this is a {given!r} section but the study's paradigm is {paradigm!r}: "
                "one paradigm per study (drop the section or change `paradigm`)"
            )
        try:
            return paradigms.validate_section(paradigm, value)
        except ValidationError as exc:
            raise ValueError(
                "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'][1:]) or 'task'}: {e['msg']}"
                    for e in exc.errors()
                )
            ) from None

    @field_validator("conditions")
    @classmethod
    def _unique_conditions(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each condition may be listed once")
        return value

    @model_validator(mode="after")
    def _conditions_of_the_paradigm(self) -> StudyConfig:
        from server import paradigms

        allowed = paradigms.get(self.paradigm).conditions
        wrong = [c for c in self.conditions if c not in allowed]
        if wrong:
            raise ValueError(
                f"conditions {wrong} are not conditions of paradigm {self.paradigm!r}: "
                f"use {', '.join(allowed)}"
            )
        if self.task is None:
            self.task = paradigms.validate_section(self.paradigm, None)
        return self

    @model_validator(mode="after")
    def _fvs_for_synthetic(self) -> StudyConfig:
        needs = CONDITIONS_NEEDING_FVS.intersection(self.conditions)
        if needs and not self.generation.fv.enabled:
            raise ValueError(
                f"conditions {sorted(needs)} show feature visualizations: "
                "set generation.fv.enabled: true or drop them"
            )
        return self

    @model_validator(mode="after")
    def _condition_pages_fit_the_design(self) -> StudyConfig:
        extra = sorted(set(self.condition_instructions) - set(self.conditions))
        if extra:
            raise ValueError(f"condition_instructions for conditions not in `conditions`: {extra}")
        if self.condition_instructions and self.counterbalancing.conditions != "between":
            raise ValueError(
                "condition_instructions need counterbalancing.conditions: between "
                "(within participants everyone sees every condition)"
            )
        split = self.counterbalancing.none_split
        if split is not None and "none" not in self.conditions:
            raise ValueError("counterbalancing.none_split needs the `none` condition")
        return self

    def instructions_for(self, condition: str | None) -> list[str]:
        """The instruction pages of a participant in `condition` (None: within)."""
        return [*self.instructions, *self.condition_instructions.get(condition or "", [])]

    @property
    def n_catch(self) -> int:
        return self.trials.catch.n_for(self.trials.main)

    @property
    def group_names(self) -> list[str]:
        """Bar groups a finisher of this study joins (the study itself and its series)."""
        return [f"study:{self.slug}", *([self.group] if self.group else [])]

    @property
    def barred_by(self) -> list[str]:
        """Bar groups that keep a worker out of this study."""
        return [*self.group_names, *(f"study:{slug}" for slug in self.exclude_studies)]
