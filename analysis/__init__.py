"""Analysis of psychinterp responses: tidy frames, exclusions, scores with CIs, plots.

Importable without the server running (it never imports FastAPI)::

    import analysis
    frame = analysis.load_responses("responses.csv", columns={"participant": "worker"})
    tables = analysis.scores(frame)
"""

from analysis.bootstrap import hierarchical_bootstrap
from analysis.exclusions import ExclusionRules, apply_exclusions
from analysis.load import load_responses, load_study, study_rows
from analysis.report import analyze, to_html, to_json, to_text
from analysis.scores import main_trials, participant_accuracy, score_table, scores
from analysis.stats import (
    binomial_glmm,
    chance_tests,
    compare,
    compare_levels,
    response_summary,
    unit_accuracy,
    unit_rank_tests,
)

__all__ = [
    "ExclusionRules",
    "analyze",
    "apply_exclusions",
    "binomial_glmm",
    "chance_tests",
    "compare",
    "compare_levels",
    "hierarchical_bootstrap",
    "load_responses",
    "load_study",
    "main_trials",
    "participant_accuracy",
    "response_summary",
    "score_table",
    "scores",
    "study_rows",
    "to_html",
    "to_json",
    "to_text",
    "unit_accuracy",
    "unit_rank_tests",
]
