"""The machine-score part of reports and of the dashboard's study page (issue 22).

`machine_section_html` renders stored machine scores: the IMI-style figure (MIS against
relative layer depth, one line per model, CIs over units), the per-layer table and, where the
study has human responses on the same units, MIS against human accuracy per unit (Spearman
with a bootstrap CI). `study_machine_section` finds the scores that belong to a study.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from analysis.machine import layer_summary, spearman_with_ci
from analysis.plots import plot_mis_by_depth
from analysis.report import figure_html
from server.studies.machine_scores import stored_scores

KEY = ["backend", "alpha", "n_tasks", "image_set"]


def human_unit_accuracy(frame: pd.DataFrame, condition: str = "natural") -> pd.DataFrame:
    """Proportion correct per unit on main trials of `condition` (the MIS's human target)."""
    rows = frame[(frame["trial_kind"] == "main") & (frame["condition"] == condition)]
    rows = rows.dropna(subset=["unit_index"])
    grouped = rows.groupby(["model", "layer", "unit_index"])["correct"]
    out = grouped.agg(human_accuracy="mean", n_responses="size").reset_index()
    return out.rename(columns={"unit_index": "unit"}).astype({"unit": int})


def mis_vs_human(scores: pd.DataFrame, human: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Units with both scores, and Spearman's rho between them with a bootstrap CI."""
    merged = scores.dropna(subset=["mis"]).merge(human, on=["model", "layer", "unit"])
    return merged, spearman_with_ci(merged["mis"], merged["human_accuracy"])


def machine_section_html(scores: pd.DataFrame, human: pd.DataFrame | None = None) -> str:
    """HTML for one set of machine scores (one observer key), with human comparison if given."""
    esc = html.escape
    if scores.empty:
        return ""
    layers = layer_summary(scores)
    first = scores.iloc[0]
    dropped = scores[scores["mis"].isna()]
    body = [
        "<section data-testid='machine-scores'>",
        "<h2>Machine interpretability score (MIS)</h2>",
        (
            f"<p>Similarity observer: backend {esc(str(first['backend']))}, alpha "
            f"{first['alpha']:g}, {int(first['n_tasks'])} tasks per unit; "
            f"{scores['mis'].notna().sum()} unit(s) scored, {len(dropped)} dropped.</p>"
        ),
        figure_html(plot_mis_by_depth(layers)),
        layers.to_html(index=False, float_format="%.3f"),
    ]
    notes = sorted(set(scores["note"]) - {""})
    if notes:
        body.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    if human is not None and not human.empty:
        merged, rho = mis_vs_human(scores, human)
        if rho["rho"] is None:
            body.append(
                f"<p data-testid='mis-human'>MIS vs human accuracy: {rho['n_units']} unit(s) "
                "with both; Spearman's "
                "rho is undefined (fewer than 3 units, or one score the same for all).</p>"
            )
        else:
            body.append(
                f"<h3>MIS vs human accuracy per unit</h3><p data-testid='mis-human'>Spearman "
                f"rho = {rho['rho']:.3f} (95% CI {rho['ci_low']:.3f} to {rho['ci_high']:.3f}, "
                f"bootstrap over {rho['n_units']} units)</p>"
            )
            columns = ["model", "layer", "unit", "mis", "human_accuracy", "n_responses"]
            body.append(merged[columns].to_html(index=False, float_format="%.3f"))
    body.append("</section>")
    return "".join(body)


def machine_report_html(scores: pd.DataFrame, title: str) -> str:
    """A self-contained page for a cross-model machine-score study (`psychinterp mis study`)."""
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}"
    )
    per_unit = scores.to_html(index=False, float_format="%.3f", na_rep="")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
        f"{machine_section_html(scores)}<h2>Per unit</h2>{per_unit}</body></html>"
    )


def study_scores(engine: Engine, model: str) -> pd.DataFrame:
    """Stored scores of `model`'s observer key with most units, plus every other model
    scored with that same key (same images, backend, alpha, N): comparable lines."""
    with Session(engine) as db:
        own = stored_scores(db, models=[model])
        if own.empty:
            return own
        key = own.groupby(KEY).size().idxmax()
        every = stored_scores(db)
    chosen = (every[KEY] == pd.Series(key, index=KEY)).all(axis=1)
    return every[chosen].reset_index(drop=True)


def study_machine_section(
    engine: Engine, config: dict[str, Any] | None, frame: pd.DataFrame | None = None
) -> str:
    """The study page's / report's machine-score section ('' when its model has none).

    `config` is the stored study config (its generation.model names the model).
    """
    model = ((config or {}).get("generation") or {}).get("model")
    if not model:
        return ""
    scores = study_scores(engine, model)
    human = human_unit_accuracy(frame) if frame is not None and not frame.empty else None
    return machine_section_html(scores, human)
