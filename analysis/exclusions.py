"""Exclusion rules of the papers, as parameters, applied where the data has what they need.

Participant rules drop every response of a participant; `min_rt_ms` drops single
responses. Each rule reports how many it caught, so a report always says why N shrank.
A rule has one name everywhere: the study YAML's `exclusion:` key is the field of
ExclusionRules, the `--rule` name and the name in the report (RULE_NAMES).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace

import pandas as pd

from analysis.columns import parse_bool
from server.errors import AppError

#: The study YAML's `exclusion:` keys, which are also the rules' names in the code, the
#: export's columns they read, and the report (issue 19: one name per rule everywhere).
RULE_NAMES = (
    "min_catch_accuracy",
    "total_time_s",
    "min_instruction_s",
    "max_practice_attempts",
    "min_choices_per_row",
    "min_rt_ms",
)
#: Names used before issue 19, still accepted by --rule: old name -> (rule, pair index).
_OLD_NAMES = {
    "min_duration_s": ("total_time_s", 0),
    "max_duration_s": ("total_time_s", 1),
    "min_choices_per_side": ("min_choices_per_row", None),
}


@dataclass(frozen=True)
class ExclusionRules:
    """Defaults are IMI's (Zimmermann et al. 2023); `None` switches a rule off.

    Field names are the study YAML's `exclusion:` keys (RULE_NAMES).
    """

    min_catch_accuracy: float | None = 0.8
    total_time_s: tuple[float | None, float | None] | None = (135.0, 2500.0)
    min_instruction_s: float | None = 15.0
    max_practice_attempts: int | None = 3
    min_choices_per_row: int | None = 5
    min_rt_ms: float | None = None
    use_manual: bool = True
    # Sessions not (yet) completed: kept by default so a running study can be watched.
    require_completed: bool = False

    # Read-only aliases of the names used before issue 19.
    @property
    def min_duration_s(self) -> float | None:
        return self.total_time_s[0] if self.total_time_s else None

    @property
    def max_duration_s(self) -> float | None:
        return self.total_time_s[1] if self.total_time_s else None

    @property
    def min_choices_per_side(self) -> int | None:
        return self.min_choices_per_row


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


def _practice_rounds_needed(frame: pd.DataFrame) -> pd.Series | None:
    """Practice rounds each participant needed: recorded by the server (rounds done, plus
    one when the last round still had an error), or counted as repeats of the same
    practice trial in a file that has no such columns."""
    if "practice_attempts" in frame.columns:
        per = frame.groupby("participant")["practice_attempts"].max()
        attempts = pd.to_numeric(per, errors="coerce")
        if "practice_passed" in frame.columns:
            passed = frame.groupby("participant")["practice_passed"].first()
            failed = passed.map(lambda v: str(v).strip().lower() in {"false", "0"})
            attempts = attempts + failed.astype(int)
        # 0: no practice round finished (a study without practice): nothing to judge.
        return attempts[attempts > 0].dropna()
    if "trial" not in frame.columns:
        return None
    practice = frame[frame["trial_kind"] == "practice"]
    if practice.empty:
        return None
    return practice.groupby(["participant", "trial"]).size().groupby("participant").max()


def _fewest_choices_per_row(frame: pd.DataFrame) -> pd.Series | None:
    """Per participant, the fewer of the choices of the upper (a) and lower (b) query row,
    over main and catch trials (as IMI counts them)."""
    if "choice" not in frame.columns:
        return None
    answered = frame[frame["trial_kind"].isin(["main", "catch"]) & frame["choice"].isin(["a", "b"])]
    if answered.empty:
        return None
    rows = answered.groupby(["participant", "choice"]).size().unstack(fill_value=0)
    return rows.reindex(columns=["a", "b"], fill_value=0).min(axis=1)


def _instruction_seconds(frame: pd.DataFrame) -> pd.Series | None:
    """Seconds on the instructions, as the page's `instructions_done` event reported them."""
    if "instruction_s" not in frame.columns:
        return None
    seconds = pd.to_numeric(frame["instruction_s"], errors="coerce")
    per = seconds.groupby(frame["participant"]).first().dropna()
    return per if not per.empty else None


def _caught_below(values: pd.Series | None, threshold) -> tuple[set, bool]:
    if values is None:
        return set(), False
    return set(values[values < threshold].index), True


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
        out["min_catch_accuracy"] = (rules.min_catch_accuracy, set(caught), not accuracy.empty)
    if rules.total_time_s is not None:
        low, high = rules.total_time_s
        if "duration_s" in frame.columns and frame["duration_s"].notna().any():
            duration = frame.groupby("participant")["duration_s"].first().dropna()
            too_short = duration[duration < low].index if low is not None else []
            too_long = duration[duration > high].index if high is not None else []
            out["total_time_s"] = ([low, high], set(too_short) | set(too_long), True)
        else:
            out["total_time_s"] = ([low, high], set(), False)
    if rules.min_instruction_s is not None:
        caught, applied = _caught_below(_instruction_seconds(frame), rules.min_instruction_s)
        out["min_instruction_s"] = (rules.min_instruction_s, caught, applied)
    if rules.max_practice_attempts is not None:
        needed = _practice_rounds_needed(frame)
        caught = needed[needed > rules.max_practice_attempts].index if needed is not None else []
        out["max_practice_attempts"] = (
            rules.max_practice_attempts,
            set(caught),
            needed is not None,
        )
    if "comprehension_passed" in frame.columns:
        passed = parse_bool(frame["comprehension_passed"], "comprehension_passed")
        out["comprehension_check"] = (True, set(frame.loc[~passed, "participant"]), True)
    if rules.min_choices_per_row is not None:
        caught, applied = _caught_below(_fewest_choices_per_row(frame), rules.min_choices_per_row)
        out["min_choices_per_row"] = (rules.min_choices_per_row, caught, applied)
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
        report_rules["min_rt_ms"] = {
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

    The keys are the rules' names. 0 means "no limit" for the count/RT rules, and an
    unknown key is an error (the YAML loader already says file:line for a study file).
    """
    exclusion = dict(exclusion or {})
    unknown = sorted(set(exclusion) - set(RULE_NAMES))
    if unknown:
        raise AppError(
            f"unknown exclusion rule(s) {', '.join(unknown)}: use {', '.join(RULE_NAMES)}"
        )
    values: dict = {}
    if "total_time_s" in exclusion:
        span = exclusion.pop("total_time_s")
        values["total_time_s"] = tuple(span) if span else None
    for name in ("min_choices_per_row", "min_rt_ms", "min_instruction_s"):
        if name in exclusion:
            values[name] = exclusion.pop(name) or None
    values |= exclusion
    return replace(ExclusionRules(), **values)


def _number(option: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise AppError(f"--rule {option!r}: {text!r} is not a number or 'off'") from None


def rules_from_options(
    options: Iterable[str], no_exclusions: bool = False, base: ExclusionRules | None = None
) -> ExclusionRules:
    """`--rule NAME=VALUE` strings (VALUE `off` switches a rule off) over `base` rules.

    `total_time_s=MIN,MAX` sets the span (either side may be `off`); the names used before
    issue 19 (min_duration_s, max_duration_s, min_choices_per_side) still work.
    """
    names = [f.name for f in fields(ExclusionRules)]
    if no_exclusions:
        values = {name: None for name in names} | {"use_manual": False, "require_completed": False}
        return ExclusionRules(**values)
    rules = base or ExclusionRules()
    for option in options:
        name, _, text = option.partition("=")
        name = name.strip().replace("-", "_")
        text = text.strip().lower()
        if (name not in names and name not in _OLD_NAMES) or not text:
            raise AppError(f"--rule {option!r}: use NAME=VALUE with NAME one of {', '.join(names)}")
        off = text in {"off", "none"}
        if name in _OLD_NAMES:
            name, side = _OLD_NAMES[name]
            if side is not None:
                span = list(rules.total_time_s or (None, None))
                span[side] = None if off else _number(option, text)
                rules = replace(rules, total_time_s=tuple(span))
                continue
        if name in {"use_manual", "require_completed"}:
            value = text in {"1", "true", "yes", "on"}
        elif off:
            value = None
        elif name == "total_time_s":
            parts = [p.strip() for p in text.split(",")]
            if len(parts) != 2:
                raise AppError(f"--rule {option!r}: use total_time_s=MIN,MAX (seconds) or off")
            value = tuple(None if p in {"off", "none"} else _number(option, p) for p in parts)
        else:
            value = _number(option, text)
        rules = replace(rules, **{name: value})
    return rules
