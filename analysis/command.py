"""What `psychinterp analyze` prints, given a loaded frame: one function, so the CLI stays a
parser and notebooks can produce the same outputs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from analysis.exclusions import ExclusionRules
from analysis.report import analyze, to_html, to_json, to_text
from server.errors import AppError

FORMATS = ("json", "table", "html")


def render_analysis(
    frame: pd.DataFrame,
    title: str,
    fmt: str,
    output: str | Path | None = None,
    rules: ExclusionRules | None = None,
    exclude_participants: Iterable[str] = (),
    n_resamples: int | None = None,
    seed: int = 0,
    score: str | None = None,
    extra_sections: Iterable[str] = (),
) -> str:
    """Analyse `frame`; return the text to print (JSON, tables, or the HTML file's path).

    `extra_sections`: HTML appended to the report (issue 22: machine scores).
    """
    if fmt not in FORMATS:
        raise AppError(f"unknown --format {fmt!r}: use {', '.join(FORMATS)}")
    if frame.empty:
        raise AppError(f"{title}: no responses to analyse")
    result = analyze(
        frame,
        title=title,
        rules=rules,
        exclude_participants=exclude_participants,
        n_resamples=n_resamples,
        seed=seed,
        glmm=fmt != "table",
        score=score,
    )
    if fmt == "json":
        return json.dumps(to_json(result), indent=2)
    if fmt == "table":
        return to_text(result)
    path = Path(output or f"{title}-report.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_html(result, frame, extra_sections), encoding="utf-8")
    return str(path)
