"""`psychinterp mis ...`: machine interpretability scores (MIS) from the command line.

Thin, like the rest of the CLI: each command parses, calls a library function, prints.
Mounted in `server/cli.py` with one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from server.cli import console, err_console, friendly_errors, open_database, settings_from
from server.errors import AppError
from server.studies.observers.backends import DEFAULT_BACKEND
from server.studies.observers.similarity import DEFAULT_ALPHA

mis_app = typer.Typer(
    help="Machine interpretability scores: score units without humans, fit alpha to humans.",
    no_args_is_help=True,
)

FORMATS = ("table", "json", "csv")
DatabaseUrlOption = Annotated[
    str | None, typer.Option("--database-url", help="Overrides PSYCHINTERP_DATABASE_URL.")
]
FormatOption = Annotated[str, typer.Option("--format", help="table, json or csv.")]


def _check_format(output_format: str) -> None:
    if output_format not in FORMATS:
        raise AppError(f"unknown --format {output_format!r}: use {', '.join(FORMATS)}")


def _progress_bar():
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=err_console, transient=True)


def _reporter(bar) -> Any:
    tasks: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return progress


def render_scores(frame, fmt: str, extra: dict[str, Any] | None = None) -> str:
    """Per-unit scores as CSV or JSON, or per-layer and per-unit tables for a terminal."""
    from analysis.machine import layer_summary

    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    layers = layer_summary(frame)
    if fmt == "json":
        units = json.loads(frame.to_json(orient="records"))
        body = {"units": units, "layers": json.loads(layers.to_json(orient="records"))}
        return json.dumps(body | (extra or {}), indent=2)
    parts = [
        "per layer (mean MIS over units, 95% bootstrap CI over units)",
        layers.to_string(index=False, float_format="%.3f"),
        "",
        "per unit (95% bootstrap CI over tasks)",
        frame.drop(columns=["backend", "alpha", "n_tasks", "image_set"])
        .assign(note=[n if n.startswith("dropped") else "" for n in frame["note"]])
        .to_string(index=False, float_format="%.3f"),
    ]
    return "\n".join(parts)


def _split_layers(values: list[str] | None) -> list[str] | None:
    """`--layers a --layers b` and `--layers a,b` both work; none given -> default layers."""
    names = [name.strip() for value in values or [] for name in value.split(",")]
    return [name for name in names if name] or None


@mis_app.command("score")
@friendly_errors
def mis_score(
    model: Annotated[str, typer.Option(help="Model name, e.g. efficientnet-lite0.")],
    images: Annotated[Path, typer.Option(help="Image folder (flat or ImageFolder-style).")],
    layers: Annotated[
        list[str] | None,
        typer.Option("--layers", help="Layers, repeatable or comma-separated; default all blocks."),
    ] = None,
    units: Annotated[
        int | None, typer.Option("--units", min=1, help="Units sampled per layer (8).")
    ] = None,
    all_units: Annotated[
        bool, typer.Option("--all-units", help="Every unit of the layers.")
    ] = False,
    backend: Annotated[
        str, typer.Option(help="Similarity: efficientnet-lite0|1|2 (offline), dreamsim, clip.")
    ] = DEFAULT_BACKEND,
    alpha: Annotated[
        float, typer.Option(help="Observer sharpness; fit it with `mis fit STUDY`.")
    ] = DEFAULT_ALPHA,
    tasks: Annotated[int, typer.Option("--tasks", min=1, help="Tasks per unit (N).")] = 20,
    k: Annotated[int, typer.Option(min=1, help="References per side (K).")] = 9,
    seed: Annotated[int, typer.Option(help="Unit sampling and task seed.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps.")] = None,
    weights: Annotated[str | None, typer.Option(help="Weights file of the model.")] = None,
    backend_weights: Annotated[
        str | None, typer.Option(help="Weights of a dreamsim/clip backend.")
    ] = None,
    output_format: FormatOption = "table",
    database_url: DatabaseUrlOption = None,
) -> None:
    """Score units of MODEL on IMAGES with the similarity observer; store and print them."""
    from server.studies.machine_scores import ScoreRequest, score_model

    _check_format(output_format)
    if all_units and units is not None:
        raise AppError("give either --units N or --all-units, not both")
    settings = settings_from(database_url, device=device)
    request = ScoreRequest(
        model=model,
        images=images,
        layers=_split_layers(layers),
        units_per_layer=units or 8,
        all_units=all_units,
        backend=backend,
        alpha=alpha,
        n_tasks=tasks,
        k=k,
        seed=seed,
        device=settings.device,
        weights=weights,
        backend_weights=backend_weights,
    )
    factory = open_database(settings)
    db = factory()
    try:
        with _progress_bar() as bar:
            run = score_model(db, settings, request, _reporter(bar), checkpoint=db.commit)
        db.commit()
        frame = run.frame()
    finally:
        db.close()
    if run.skipped_images:
        err_console.print(f"skipped {len(run.skipped_images)} unreadable image(s)")
    notes = sorted({n for n in frame["note"] if n})
    summary = {
        "scored": run.scored,
        "reused": run.reused,
        "seconds": round(run.seconds, 2),
        "notes": notes,
    }
    print(render_scores(frame, output_format, summary))
    for note in notes:  # stderr: stdout stays machine-readable for json/csv
        err_console.print(f"note: {note}", highlight=False)
    err_console.print(
        f"{run.scored} unit(s) scored, {run.reused} already stored, {run.seconds:.1f} s "
        f"(backend {backend}, alpha {alpha:g})",
        highlight=False,
    )


@mis_app.command("fit")
@friendly_errors
def mis_fit(
    study: Annotated[str, typer.Argument(help="Study slug with human responses.")],
    backend: Annotated[str, typer.Option(help="Similarity backend.")] = DEFAULT_BACKEND,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps.")] = None,
    backend_weights: Annotated[str | None, typer.Option(help="dreamsim/clip weights.")] = None,
    no_exclusions: Annotated[
        bool, typer.Option(help="Use every participant, not only those the study's rules keep.")
    ] = False,
    output_format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    database_url: DatabaseUrlOption = None,
) -> None:
    """Fit alpha by maximum likelihood to STUDY's human answers on trials with references."""
    from analysis.machine_fit import fit_study_alpha

    settings = settings_from(database_url, device=device)
    factory = open_database(settings, migrate=False)
    fit = fit_study_alpha(
        factory, settings, study, backend, settings.device, backend_weights, not no_exclusions
    )
    if output_format == "json":
        print(json.dumps(fit.as_dict(), indent=2))
        return
    table = Table("alpha", "SE", "responses", "human accuracy", "predicted accuracy")
    table.add_row(
        f"{fit.alpha:.3f}",
        f"{fit.se:.3f}",
        str(fit.n_responses),
        f"{fit.human_accuracy:.3f}",
        f"{fit.predicted_accuracy:.3f}",
    )
    console.print(table)
    print(f"use it with: psychinterp mis score --backend {backend} --alpha {fit.alpha:.3f} ...")


@mis_app.command("study")
@friendly_errors
def mis_study(
    file: Annotated[Path, typer.Argument(help="Cross-model study YAML, e.g. scale-demo.yaml.")],
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps.")] = None,
    report: Annotated[
        Path | None, typer.Option(help="HTML report (default SLUG-mis.html).")
    ] = None,
    figure: Annotated[
        Path | None, typer.Option(help="Also save the MIS-by-depth figure (.png or .svg).")
    ] = None,
    output_format: FormatOption = "table",
    database_url: DatabaseUrlOption = None,
) -> None:
    """Score every model of a cross-model study file; print per-layer MIS, write the report."""
    from analysis.machine_report import machine_report_html
    from server.studies.machine_study import load_machine_study, run_machine_study

    _check_format(output_format)
    config = load_machine_study(file)
    settings = settings_from(database_url, device=device)
    factory = open_database(settings)
    db = factory()
    try:
        with _progress_bar() as bar:
            frame, seconds = run_machine_study(
                db, settings, config, _reporter(bar), checkpoint=db.commit
            )
        db.commit()
    finally:
        db.close()
    print(render_scores(frame, output_format, {"seconds": round(seconds, 2)}))
    path = Path(report or f"{config.slug}-mis.html")
    path.write_text(machine_report_html(frame, config.title), encoding="utf-8")
    if figure is not None:
        from analysis.machine import layer_summary
        from analysis.plots import plot_mis_by_depth, save_figure

        save_figure(plot_mis_by_depth(layer_summary(frame)), figure)
    err_console.print(f"{seconds:.1f} s; report: {path}", highlight=False)
