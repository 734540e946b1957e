"""What the admin dashboard shows of a study: live scores with CIs, and the full report."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from analysis import occlusion
from analysis.exclusions import (
    ExclusionRules,
    apply_exclusions,
    rules_from_options,
    rules_from_study_config,
)
from analysis.load import load_study
from analysis.report import analyze, figure_html, figures, to_html, to_json
from server.errors import AppError

# Fewer resamples than a paper's final analysis: the page refreshes while a study runs.
DASHBOARD_RESAMPLES = 1000
# The fallback when the study's rules exclude everyone: no automatic rule, but the
# researcher's own exclusions still count (excluding someone must change the scores).
NO_EXCLUSIONS = replace(rules_from_options([], no_exclusions=True), use_manual=True)


def study_results(engine: Engine, study: Any) -> dict[str, Any]:
    """Per-condition accuracy with CIs and the by-condition figure, or why there is none yet.

    Scores follow the study's exclusion rules. While a study runs these may exclude
    everyone (e.g. a minimum total time nobody has reached yet); the page then shows the
    scores without exclusions, with a note saying so, rather than nothing.
    """
    frame = load_study(engine, study.slug)
    if frame.empty:
        return {"available": False, "reason": "no responses yet"}
    try:
        result, note = _scores_or_unruled(frame, study, lambda r: _analyze(frame, study, r))
    except AppError as again:
        return {"available": False, "reason": again.message}
    figure = figures(result, frame)
    first = next(iter(figure.values()), None)
    return {
        "available": True,
        "note": note,
        "summary": to_json(result),
        "figure_html": figure_html(first) if first is not None else "",
        # issue 21: the paradigm's own figure (occlusion: accuracy by activation difference)
        "paradigm_figure_html": "".join(
            figure_html(f) for f in occlusion.figures(result.paradigm_tables).values()
        ),
    }


def everyone_excluded_note(frame, rules: ExclusionRules) -> str:
    """Page wording (no CLI flags) for "the study's rules exclude everybody so far"."""
    _, report = apply_exclusions(frame, rules)
    # Named as in the YAML's `exclusion:` section, where the researcher would change them.
    caught = "; ".join(
        f"{name}: {rule['threshold']} excludes {rule['participants']}"
        for name, rule in report.rules.items()
        if rule.get("participants") and name != "manual"
    )
    return (
        f"The study's exclusion rules currently exclude all {report.participants_total} "
        f"participants ({caught}). Until some pass them, the scores below include every "
        "participant you have not excluded yourself. To change a rule, edit the study's "
        "`exclusion:` section."
    )


def study_rules(study: Any) -> ExclusionRules:
    """The exclusion rules of the study's own YAML `exclusion:` section."""
    return rules_from_study_config(study.config.get("exclusion"))


def study_score(study: Any) -> tuple[str, int | None]:
    """The study YAML's `analysis:` section: (score definition, resamples or None)."""
    section = study.config.get("analysis") or {}
    return section.get("score") or "crossed", section.get("n_resamples")


def _scores_or_unruled(frame, study: Any, run: Callable[[ExclusionRules], Any]):
    """(run(study's rules), None), or, when those rules exclude everyone so far,
    (run(manual exclusions only), the page's note saying so)."""
    rules = study_rules(study)
    try:
        return run(rules), None
    except AppError:
        return run(NO_EXCLUSIONS), everyone_excluded_note(frame, rules)


def _analyze(frame, study: Any, rules: ExclusionRules):
    score, n_resamples = study_score(study)
    if n_resamples is None and score == "crossed":
        n_resamples = DASHBOARD_RESAMPLES
    return analyze(
        frame, title=study.title, rules=rules, n_resamples=n_resamples, glmm=False, score=score
    )


def study_report_html(engine: Engine, study: Any) -> str:
    frame = load_study(engine, study.slug)
    if frame.empty:
        return f"<!doctype html><p>{study.title}: no responses yet.</p>"
    score, n_resamples = study_score(study)
    result, note = _scores_or_unruled(
        frame,
        study,
        lambda r: analyze(frame, title=study.title, rules=r, score=score, n_resamples=n_resamples),
    )
    sections = []
    if note:  # as on the study page: scores without the automatic rules, and why
        sections.append(
            f"<section data-testid='rules-suspended'><p>{html.escape(note)}</p></section>"
        )
    from analysis.machine_report import study_machine_section

    sections.append(study_machine_section(engine, study.config, frame))
    return to_html(result, frame, sections)
