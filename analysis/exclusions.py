"""Exclusion rules of the papers, as parameters, applied where the data has what they need.

Participant rules drop every response of a participant; the too-fast rule drops single
responses. Each rule reports how many it caught, so a report always says why N shrank.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace

import pandas as pd

from analysis.columns import parse_bool
from server.errors import AppError


@dataclass(frozen=True)
class ExclusionRules:
    """Defaults are IMI's (Zimmermann et al. 2023); `None` switches a rule off."""

    min_catch_accuracy: float | None = 0.8
    min_duration_s: float | None = 135.0
    max_duration_s: float | None = 2500.0
    max_practice_attempts: int | None = 3
    min_choices_per_side: int | None = 5
    min_rt_ms: float | None = None
    use_manual: bool = True
    # Sessions not (yet) completed: kept by default so a running study can be watched.
    require_completed: bool = False


@dataclass
class ExclusionReport:
    participants_total: int
    participants_kept: int
    responses_total: int
    responses_kept: int
    rules: dict[str, dict] = field(default_factory=dict)
    participants: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self) | {
            "participants_excluded": self.participants_total - self.participants_kept
        }


def _catch_accuracy(frame: pd.DataFrame) -> pd.Series:
    catch = frame[frame["trial_kind"] == "catch"]
    return catch.groupby("participant")["correct"].mean()


def _practice_attempts(frame: pd.DataFrame) -> pd.Series | None:
    """Given per participant, or counted as repeats of the same practice trial."""
    if "practice_attempts" in frame.columns:
        return frame.groupby("participant")["practice_attempts"].max().dropna()
    if "trial" not in frame.columns:
        return None
    practice = frame[frame["trial_kind"] == "practice"]
    if practice.empty:
        return None
    return practice.groupby(["participant", "trial"]).size().groupby("participant").max()


def _fewest_choices_per_side(frame: pd.DataFrame) -> pd.Series | None:
    if "choice" not in frame.columns:
        return None
    main = frame[(frame["trial_kind"] == "main") & frame["choice"].isin(["a", "b"])]
    if main.empty:
        return None
    sides = main.groupby(["participant", "choice"]).size().unstack(fill_value=0)
    return sides.reindex(columns=["a", "b"], fill_value=0).min(axis=1)


def _participant_rules(frame: pd.DataFrame, rules: ExclusionRules) -> dict[str, tuple]:
    """name → (threshold, participant ids caught, whether the data allowed the rule)."""
    out: dict[str, tuple] = {}
    if rules.use_manual:
        manual = frame.loc[frame["excluded"], "participant"].unique()
        out["manual"] = (True, set(manual), True)
    if rules.require_completed:
        status = frame.get("session_status")
        caught = (
            set(frame.loc[status != "completed", "participant"]) if status is not None else set()
        )
        out["incomplete"] = (True, caught, status is not None)
    if rules.min_catch_accuracy is not None:
        accuracy = _catch_accuracy(frame)
        caught = accuracy[accuracy < rules.min_catch_accuracy].index
        out["catch_accuracy"] = (rules.min_catch_accuracy, set(caught), not accuracy.empty)
    if "duration_s" in frame.columns and frame["duration_s"].notna().any():
        duration = frame.groupby("participant")["duration_s"].first().dropna()
        low, high = rules.min_duration_s, rules.max_duration_s
        too_short = duration[duration < low].index if low is not None else []
        too_long = duration[duration > high].index if high is not None else []
        out["total_time"] = ([low, high], set(too_short) | set(too_long), True)
    else:
        out["total_time"] = ([rules.min_duration_s, rules.max_duration_s], set(), False)
    attempts = _practice_attempts(frame)
    if rules.max_practice_attempts is not None:
        caught = (
            attempts[attempts > rules.max_practice_attempts].index if attempts is not None else []
        )
        out["comprehension"] = (rules.max_practice_attempts, set(caught), attempts is not None)
    if "comprehension_passed" in frame.columns:
        passed = parse_bool(frame["comprehension_passed"], "comprehension_passed")
        out["comprehension_check"] = (True, set(frame.loc[~passed, "participant"]), True)
    if rules.min_choices_per_side is not None:
        fewest = _fewest_choices_per_side(frame)
        caught = fewest[fewest < rules.min_choices_per_side].index if fewest is not None else []
        out["choices_per_side"] = (rules.min_choices_per_side, set(caught), fewest is not None)
    return out


def apply_exclusions(
    frame: pd.DataFrame,
    rules: ExclusionRules | None = None,
    participants: Iterable[str] = (),
) -> tuple[pd.DataFrame, ExclusionReport]:
    """The responses that survive every rule, and a report of what each rule removed.

    `participants` are extra manual exclusions (ids), on top of the frame's `excluded` flag.
    """
    rules = rules or ExclusionRules()
    found = _participant_rules(frame, rules)
    listed = set(map(str, participants))
    if listed:
        threshold, caught, _ = found.get("manual", (True, set(), True))
        found["manual"] = (threshold, caught | (listed & set(frame["participant"])), True)
    reasons: dict[str, list[str]] = {}
    report_rules: dict[str, dict] = {}
    for name, (threshold, caught, applied) in found.items():
        report_rules[name] = {
            "threshold": threshold,
            "applied": applied,
            "participants": len(caught),
        }
        for participant in sorted(caught):
            reasons.setdefault(participant, []).append(name)
    kept = frame[~frame["participant"].isin(reasons)]
    if rules.min_rt_ms is not None:
        too_fast = kept["rt_ms"] < rules.min_rt_ms
        report_rules["too_fast"] = {
            "threshold": rules.min_rt_ms,
            "applied": bool(kept["rt_ms"].notna().any()),
            "responses": int(too_fast.sum()),
        }
        kept = kept[~too_fast]
    report = ExclusionReport(
        participants_total=int(frame["participant"].nunique()),
        participants_kept=int(kept["participant"].nunique()),
        responses_total=len(frame),
        responses_kept=len(kept),
        rules=report_rules,
        participants=reasons,
    )
    return kept.reset_index(drop=True), report


def rules_from_study_config(exclusion: dict | None) -> ExclusionRules:
    """A study YAML's `exclusion:` section as rules (the defaults where a key is absent).

    0 means "no limit" in the YAML for the count/RT rules. `min_instruction_s` is checked
    by the participant pages' events, not from response rows, so it is not mapped here.
    """
    exclusion = exclusion or {}
    defaults = ExclusionRules()
    values: dict = {}
    if "min_catch_accuracy" in exclusion:
        values["min_catch_accuracy"] = exclusion["min_catch_accuracy"]
    if "total_time_s" in exclusion:
        span = exclusion["total_time_s"]
        values["min_duration_s"], values["max_duration_s"] = span if span else (None, None)
    if "max_practice_attempts" in exclusion:
        values["max_practice_attempts"] = exclusion["max_practice_attempts"]
    if "min_choices_per_row" in exclusion:
        values["min_choices_per_side"] = exclusion["min_choices_per_row"] or None
    if "min_rt_ms" in exclusion:
        values["min_rt_ms"] = exclusion["min_rt_ms"] or None
    return replace(defaults, **values)


def rules_from_options(
    options: Iterable[str], no_exclusions: bool = False, base: ExclusionRules | None = None
) -> ExclusionRules:
    """`--rule NAME=VALUE` strings (VALUE `off` switches a rule off) over `base` rules."""
    names = {f.name: f.type for f in fields(ExclusionRules)}
    if no_exclusions:
        values = {name: None for name in names} | {"use_manual": False, "require_completed": False}
        return ExclusionRules(**values)
    values: dict = {}
    for option in options:
        name, _, text = option.partition("=")
        name = name.strip().replace("-", "_")
        if name not in names or not text:
            raise AppError(f"--rule {option!r}: use NAME=VALUE with NAME one of {', '.join(names)}")
        text = text.strip().lower()
        if name in {"use_manual", "require_completed"}:
            values[name] = text in {"1", "true", "yes", "on"}
        elif text in {"off", "none"}:
            values[name] = None
        else:
            try:
                values[name] = float(text)
            except ValueError:
                raise AppError(f"--rule {option!r}: {text!r} is not a number or 'off'") from None
    return replace(base or ExclusionRules(), **values)
