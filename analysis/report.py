"""One analysis of a response table, and its three renderings: JSON, text tables, HTML.

`analyze` runs exclusions → scores → tests once; the CLI and notebooks only choose how
to show the result.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from analysis import occlusion, plots
from analysis.definitions import check_score, resamples_for
from analysis.exclusions import ExclusionReport, ExclusionRules, apply_exclusions
from analysis.scores import SCORE_COLUMNS, main_trials, scores
from analysis.stats import (
    binomial_glmm,
    chance_tests,
    compare_levels,
    response_summary,
    unit_rank_tests,
)
from server.errors import AppError


@dataclass
class Analysis:
    title: str
    tables: dict[str, pd.DataFrame]
    exclusions: ExclusionReport
    chance: pd.DataFrame
    comparisons: list[dict]
    glmm: dict
    responses: pd.DataFrame
    figures: dict = field(default_factory=dict)
    # Which score definition produced every number, and with how many resamples.
    score: str = "crossed"
    n_resamples: int = 1000
    # Kruskal-Wallis / Brunner-Munzel on per-unit accuracies, per factor (condition, model).
    unit_tests: dict = field(default_factory=dict)
    # A paradigm's own tables, when the responses carry its columns (issue 21: occlusion's
    # accuracy by activation difference), by name.
    paradigm_tables: dict = field(default_factory=dict)
    # What the reader must know to read the intervals right (empty when nothing).
    caveat: str = ""


def analyze(
    frame: pd.DataFrame,
    title: str = "analysis",
    rules: ExclusionRules | None = None,
    exclude_participants: Iterable[str] = (),
    n_resamples: int | None = None,
    seed: int = 0,
    chance: float = 0.5,
    glmm: bool = True,
    score: str | None = None,
) -> Analysis:
    """Exclusions, scores with CIs, chance tests, comparisons (and a GLMM) of `frame`.

    `score` names the definition (crossed, imi, borowski); `n_resamples` None takes its
    default. Pairwise comparisons keep their own 1000-resample bootstrap.
    """
    score = check_score(score)
    n_resamples = resamples_for(score, n_resamples)
    kept, report = apply_exclusions(frame, rules, exclude_participants)
    if report.participants_total and not report.participants_kept:
        caught = ", ".join(
            f"{name} ({rule['threshold']}): {rule['participants']}"
            for name, rule in report.rules.items()
            if rule.get("participants")
        )
        raise AppError(
            f"every participant ({report.participants_total}) was excluded by the exclusion "
            f"rules: {caught}. Relax one with --rule NAME=VALUE|off, or use --no-exclusions"
        )
    scored = main_trials(kept)
    tables = scores(kept, n_resamples=n_resamples, seed=seed, score=score)
    compare_resamples = n_resamples if score == "crossed" else 1000
    comparisons = compare_levels(scored, "condition", n_resamples=compare_resamples, seed=seed)
    unit_tests = {}
    caveat = ""
    if (scored["unit"] != "").any():
        unit_tests["condition"] = unit_rank_tests(scored, "condition")
    elif score == "crossed":
        caveat = NO_UNITS_CAVEAT
    if "by_model" in tables:
        comparisons += compare_levels(scored, "model", n_resamples=compare_resamples, seed=seed)
        unit_tests["model"] = unit_rank_tests(scored, "model")
    return Analysis(
        title=title,
        tables=tables,
        exclusions=report,
        chance=chance_tests(scored, ["condition"], chance),
        comparisons=comparisons,
        glmm=binomial_glmm(scored) if glmm else {"fitted": False, "reason": "not requested"},
        responses=response_summary(scored, ["condition"]),
        score=score,
        n_resamples=n_resamples,
        unit_tests=unit_tests,
        paradigm_tables=occlusion.tables(scored, n_resamples=n_resamples, seed=seed, score=score),
        caveat=caveat,
    )


# A response file without a unit column turns the crossed bootstrap into a participants-only
# one: its interval is then too narrow for a population of units (issue 19), so say so.
NO_UNITS_CAVEAT = (
    "the responses carry no unit, so the interval resamples participants only and treats "
    "the units shown as fixed; map a unit column (unit=COL) to resample units too"
)


SCORE_DESCRIPTIONS = {
    "crossed": "mean of per-participant accuracies; 95% CI from a two-way (participants x "
    "units) bootstrap",
    "imi": "mean of per-unit accuracies; 95% BCa bootstrap CI over units (Zimmermann et al. 2023)",
    "borowski": "mean of per-participant accuracies; interval +-2 SEM over participants "
    "(Borowski et al. 2021)",
}


def score_note(result: Analysis) -> str:
    """One line saying how every number was produced."""
    resamples = f", {result.n_resamples} resamples" if result.n_resamples else ""
    caveat = f"; note: {result.caveat}" if result.caveat else ""
    return f"score: {result.score} ({SCORE_DESCRIPTIONS[result.score]}{resamples}){caveat}"


def _clean(value):
    """JSON has no NaN: missing numbers become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def _clean_nested(value):
    if isinstance(value, dict):
        return {k: _clean_nested(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_nested(v) for v in value]
    return _clean(value)


def _records(table: pd.DataFrame) -> list[dict]:
    return [{k: _clean(v) for k, v in row.items()} for row in table.to_dict("records")]


def to_json(result: Analysis) -> dict:
    """by_condition keyed by condition name; the finer groupings as lists of records."""
    by_condition = {
        row["condition"]: {k: row[k] for k in SCORE_COLUMNS}
        for row in _records(result.tables["by_condition"])
    }
    out: dict = {
        "score": {
            "definition": result.score,
            "n_resamples": result.n_resamples,
            "description": SCORE_DESCRIPTIONS[result.score],
            "caveat": result.caveat or None,
        },
        "by_condition": by_condition,
    }
    for name in ("by_model", "by_layer", "by_unit"):
        if name in result.tables:
            out[name] = _records(result.tables[name])
    out["excluded"] = result.exclusions.as_dict()
    out["chance"] = _records(result.chance)
    out["comparisons"] = [{k: _clean(v) for k, v in c.items()} for c in result.comparisons]
    out["unit_tests"] = _clean_nested(result.unit_tests)
    for name, table in result.paradigm_tables.items():
        out[name] = _records(table)
    out["glmm"] = result.glmm
    out["responses"] = _records(result.responses)
    return out


def to_text(result: Analysis) -> str:
    """Plain tables for a terminal."""
    parts = [f"# {result.title}", score_note(result)]
    report = result.exclusions
    parts.append(
        f"participants kept {report.participants_kept} of {report.participants_total}, "
        f"responses kept {report.responses_kept} of {report.responses_total}"
    )
    for name, rule in report.rules.items():
        caught = rule.get("participants", rule.get("responses"))
        unit = "participant(s)" if "participants" in rule else "response(s)"
        state = "" if rule["applied"] else " (not applicable to this data)"
        parts.append(f"  {name} [{rule['threshold']}]: {caught} {unit}{state}")
    for name in ("by_condition", "by_model", "by_layer"):
        if name in result.tables:
            parts += ["", name, result.tables[name].to_string(index=False, float_format="%.3f")]
    parts += ["", "chance", result.chance.to_string(index=False, float_format="%.4g")]
    if result.comparisons:
        parts += ["", "comparisons", pd.DataFrame(result.comparisons).to_string(index=False)]
    for name, table in result.paradigm_tables.items():
        parts += ["", name, table.to_string(index=False, float_format="%.4g")]
    for factor, tests in result.unit_tests.items():
        parts += ["", f"per-unit tests by {factor}", _kruskal_line(tests)]
        if tests["brunner_munzel"]:
            parts.append(pd.DataFrame(tests["brunner_munzel"]).to_string(index=False))
    return "\n".join(parts)


def _kruskal_line(tests: dict) -> str:
    kruskal = tests["kruskal"]
    if kruskal is None:
        return "Kruskal-Wallis: not applicable (needs two levels with at least 2 units each)"
    return (
        f"Kruskal-Wallis across {', '.join(kruskal['levels'])}: "
        f"H={kruskal['statistic']:.3f}, p={kruskal['p_value']:.4g}"
    )


def figures(result: Analysis, frame: pd.DataFrame | None = None) -> dict:
    """The report's figures, from what the tables allow."""
    out = {"Accuracy by condition": plots.plot_by_condition(result.tables["by_condition"])}
    if "by_model" in result.tables:
        out["Interpretability by model"] = plots.plot_by_model(result.tables["by_model"])
    if "by_layer" in result.tables and frame is not None:
        out["Accuracy by layer depth"] = plots.plot_by_layer(
            result.tables["by_layer"], plots.layer_depths(frame)
        )
    by_unit = result.tables.get("by_unit")
    if by_unit is not None and {"natural", "synthetic"} <= set(by_unit["condition"]):
        out["Per unit: natural vs synthetic"] = plots.plot_unit_scatter(by_unit)
    out |= occlusion.figures(result.paradigm_tables)
    return out


def figure_html(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def to_html(
    result: Analysis, frame: pd.DataFrame | None = None, extra_sections: Iterable[str] = ()
) -> str:
    """One self-contained page: tables and figures inline (PNG as data URIs).

    `extra_sections`: ready HTML appended at the end (issue 22: the machine-score section).
    """
    esc = html.escape
    body = [
        f"<h1>{esc(result.title)}</h1>",
        f"<p data-testid='score-definition'>{esc(score_note(result))}</p>",
        "<h2>Exclusions</h2>",
    ]
    report = result.exclusions
    body.append(
        f"<p>Participants kept {report.participants_kept} of {report.participants_total}; "
        f"responses kept {report.responses_kept} of {report.responses_total}.</p>"
    )
    rules = pd.DataFrame([{"rule": name, **rule} for name, rule in report.rules.items()])
    body.append(rules.to_html(index=False, na_rep=""))
    for title, figure in figures(result, frame).items():
        body += [f"<h2>{esc(title)}</h2>", figure_html(figure)]
    for name, table in result.tables.items():
        body += [f"<h2>{esc(name)}</h2>", table.to_html(index=False, float_format="%.3f")]
    for name, table in result.paradigm_tables.items():
        body += [
            f"<h2 data-testid='{esc(name)}'>{esc(name)}</h2>",
            table.to_html(index=False, float_format="%.4g", na_rep=""),
        ]
    body += ["<h2>Chance-level tests</h2>", result.chance.to_html(index=False)]
    if result.comparisons:
        body += ["<h2>Comparisons</h2>", pd.DataFrame(result.comparisons).to_html(index=False)]
    for factor, tests in result.unit_tests.items():
        body += [
            f"<h2>Per-unit tests by {esc(factor)}</h2>",
            f"<p>{esc(_kruskal_line(tests))}</p>",
        ]
        if tests["brunner_munzel"]:
            pairs = pd.DataFrame(tests["brunner_munzel"])
            body += ["<h3>Brunner-Munzel, pairs</h3>", pairs.to_html(index=False, na_rep="")]
    body += ["<h2>Confidence and reaction time</h2>", result.responses.to_html(index=False)]
    if result.glmm.get("fitted"):
        effects = pd.DataFrame(result.glmm["fixed_effects"]).T
        body += [f"<h2>GLMM: {esc(result.glmm['formula'])}</h2>", effects.to_html()]
    body += list(extra_sections)
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(result.title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )
