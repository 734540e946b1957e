"""The `psychinterp` command line. Thin: each command parses, calls a library function, prints.

Errors a user can fix (AppError) print one line and exit 1, never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from server.config import Settings
from server.errors import AppError

warnings.filterwarnings("ignore", category=FutureWarning, module="torch")

app = typer.Typer(
    help="psychinterp: measure how well people understand vision-model units.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_app = typer.Typer(help="Admin accounts.", no_args_is_help=True)
models_app = typer.Typer(
    help="Vision models: list, inspect layers, evaluate.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(models_app, name="models")

# Piped output (scripts, tests) should not wrap table cells at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

DatabaseUrlOption = Annotated[
    str | None, typer.Option("--database-url", help="Overrides PSYCHINTERP_DATABASE_URL.")
]


def settings_from(database_url: str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, with command-line overrides."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if database_url:
        values["database_url"] = database_url
    return Settings(**values)


def friendly_errors(func: Callable) -> Callable:
    """Turn user-fixable failures into one line on stderr and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import OperationalError

        from server.db.session import describe_database_error

        try:
            return func(*args, **kwargs)
        except AppError as exc:
            # escape: messages hold literal brackets (pip extras, lists) that rich would eat.
            err_console.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False)
            raise typer.Exit(1) from None
        except OperationalError as exc:
            reason = describe_database_error(exc)
            err_console.print(
                f"[red]error:[/red] database unreachable: {escape(reason)}", highlight=False
            )
            raise typer.Exit(1) from None

    return wrapper


def open_database(settings: Settings, migrate: bool = True):
    """Upgrade the schema (unless told not to) and return a session factory."""
    from server.db.migrate import upgrade_database
    from server.db.session import check_database, make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    problem = check_database(engine)
    if problem:
        raise AppError(f"database unreachable ({settings.database_url.split('@')[-1]}): {problem}")
    if migrate:
        upgrade_database(settings.database_url)
    return make_session_factory(engine)


# --- server ------------------------------------------------------------------------------------


@app.command()
@friendly_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    database_url: DatabaseUrlOption = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Stimuli and caches (PSYCHINTERP_DATA_DIR).")
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Reverse proxies whose X-Forwarded-For to believe, e.g. 127.0.0.1 "
            "(PSYCHINTERP_FORWARDED_ALLOW_IPS; default: none)."
        ),
    ] = None,
    worker: Annotated[
        bool, typer.Option(help="Also run a local job worker process (generation jobs).")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="App processes behind the port (uvicorn workers; more than 1 needs PostgreSQL).",
        ),
    ] = 1,
) -> None:
    """Run the web server (participant pages, admin, API) and, by default, a job worker."""
    import uvicorn

    from server.app import create_app
    from server.jobs.local import LocalRunner
    from server.serve_workers import check_workers, prepare_worker_settings

    settings = settings_from(
        database_url, data_dir=data_dir, forwarded_allow_ips=forwarded_allow_ips
    )
    check_workers(settings, workers)
    open_database(settings, migrate=False)  # a clear error if unreachable; the app migrates
    if workers > 1:  # migrated once here, before the worker looks at the jobs table
        settings = prepare_worker_settings(settings)
        web_app = "server.serve_workers:app_from_environment"
    else:
        web_app = create_app(settings)  # migrates before the worker looks at the jobs table
    runner = LocalRunner(settings) if worker else None
    if runner is not None:
        runner.start()
    try:
        uvicorn.run(
            web_app,
            host=host,
            port=port,
            log_level="info",
            **({"factory": True, "workers": workers} if workers > 1 else {}),
            **proxy_options(settings),
        )
    finally:
        if runner is not None:
            runner.stop()


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy settings from ours: uvicorn by default believes X-Forwarded-For from
    127.0.0.1, so any local process (or a proxy that passes the header through) could pick
    the client address that login throttling and rate limits key on. Trust only the proxies
    the researcher names."""
    if not settings.forwarded_allow_ips:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": settings.forwarded_allow_ips}


@app.command()
@friendly_errors
def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="Stimuli and caches (default ./psychinterp-data).")
    ] = None,
    database_url: DatabaseUrlOption = None,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Prepare everything, then exit.")
    ] = False,
) -> None:
    """Run the whole loop offline: model, demo photos, exemplars, a 2AFC study, the server."""
    from server.demo import prepare_demo

    settings = settings_from(database_url, data_dir=data_dir, public_url=f"http://{host}:{port}")
    factory = open_database(settings)
    console.print("preparing the demo study (EfficientNet-Lite0, scikit-image photos)...")
    info = prepare_demo(factory, settings)
    base = f"http://{host}:{port}"
    console.print(f"participant URL: {base}/s/{info.study_slug}", highlight=False)
    console.print(f"admin URL:       {base}/admin", highlight=False)
    if info.admin_password:
        console.print(
            f"admin login:     {info.admin_email} / {info.admin_password}  (shown once)",
            highlight=False,
        )
    else:
        console.print(
            f"admin login:     {info.admin_email} (password shown when first created)",
            highlight=False,
        )
    if no_serve:
        return
    import uvicorn

    from server.app import create_app

    served = settings.model_copy(update={"run_migrations_on_start": False})  # migrated above
    uvicorn.run(
        create_app(served), host=host, port=port, log_level="warning", **proxy_options(served)
    )


# --- db ----------------------------------------------------------------------------------------


@db_app.command("upgrade")
@friendly_errors
def db_upgrade(database_url: DatabaseUrlOption = None) -> None:
    """Create or migrate the schema to the latest version."""
    settings = settings_from(database_url)
    open_database(settings)
    console.print(f"database at head: {settings.database_url.split('@')[-1]}")


# --- admin -------------------------------------------------------------------------------------


@admin_app.command("create-user")
@friendly_errors
def admin_create_user(
    email: Annotated[str, typer.Option(help="Login email.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    role: Annotated[str, typer.Option(help="admin or researcher.")] = "admin",
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create a dashboard account (password hashed with argon2)."""
    from server.auth import create_admin_user
    from server.db.session import session_scope

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    factory = open_database(settings_from(database_url))
    with session_scope(factory) as db:
        user = create_admin_user(db, email, password, role)
        console.print(f"created {user.role} {user.email}")


# --- models ------------------------------------------------------------------------------------


@models_app.command("list")
def models_list() -> None:
    """Builtin models (offline weights) and the other sources."""
    from server.stimuli.models import list_models

    table = Table("name", "source", "input", "mean", "std")
    for spec in list_models():
        p = spec.preprocessing
        table.add_row(
            spec.name, spec.source, f"{p.resize_size}->{p.image_size}", str(p.mean), str(p.std)
        )
    console.print(table)
    console.print("Also: torchvision:ARCH [--weights FILE], python:module:factory")


@models_app.command("layers")
@friendly_errors
def models_layers(
    model: Annotated[str, typer.Argument(help="Model name, e.g. efficientnet-lite0.")],
    weights: Annotated[str | None, typer.Option(help="Weights file.")] = None,
) -> None:
    """Every layer of MODEL with its type and output shape."""
    from server.stimuli.models import describe_layers, load_model

    loaded = load_model(model, "cpu", weights)
    table = Table("layer", "type", "output shape")
    for info in describe_layers(loaded):
        shape = "x".join(map(str, info.output_shape)) if info.output_shape else "-"
        table.add_row(info.name, info.type, shape)
    console.print(table)


@models_app.command("evaluate")
@friendly_errors
def models_evaluate(
    model: Annotated[str, typer.Argument(help="Model name.")],
    images: Annotated[Path, typer.Option(help="ImageFolder: one folder per class, sorted.")],
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps.")] = None,
    weights: Annotated[str | None, typer.Option(help="Weights file.")] = None,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader workers.")] = 0,
) -> None:
    """Top-1 accuracy on an ImageFolder; checks the preprocessing matches the weights."""
    from server.stimuli.evaluate import evaluate_top1
    from server.stimuli.models import load_model

    settings = settings_from(device=device)
    loaded = load_model(model, settings.device, weights)
    result = evaluate_top1(loaded, images, batch_size=batch_size, num_workers=workers)
    if result.skipped:
        err_console.print(f"skipped {result.skipped} unreadable image(s):", highlight=False)
        for name in result.skipped_files[:20]:
            err_console.print(f"  {name}", highlight=False)
    if result.n == 0:
        raise AppError("no readable images: nothing to evaluate")
    print(f"top1={result.top1:.3f} n={result.n}")


# --- generate ----------------------------------------------------------------------------------


def _load_generation_section(path: Path):
    """The `generation:` section of a study file, validated; errors say file, line and field."""
    from pydantic import ValidationError

    from server.stimuli.generate import GenerationConfig
    from server.studies.loading import _field_name, _node_line, read_yaml_file

    root, data = read_yaml_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("generation"), dict):
        raise AppError(f"{path}: needs a `generation:` section (model, layers, units_per_layer)")
    try:
        return GenerationConfig.model_validate(data["generation"])
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = ("generation", *error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{path}:{_node_line(root, loc)}: {_field_name(loc)}: {message}")
        raise AppError("; ".join(problems)) from None


def _fv_vs_natural(unit: dict[str, Any], side: str) -> str:
    fv = unit[f"fv_{side}_activation"]
    return "-" if fv is None else f"{fv:.2f}/{unit[f'natural_{side}_activation']:.2f}"


@app.command()
@friendly_errors
def generate(
    study: Annotated[Path, typer.Argument(help="Study YAML file with a `generation:` section.")],
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps.")] = None,
    database_url: DatabaseUrlOption = None,
    limit_units: Annotated[
        int | None,
        typer.Option(min=1, help="Smoke run: at most this many units per layer (and 1 reserved)."),
    ] = None,
) -> None:
    """Generate a stimulus set (units, exemplars, feature visualizations) from STUDY.yaml."""
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

    from server.stimuli.generate import (
        GenerationFailed,
        generate_stimuli,
        manifest_path,
        overview_path,
    )

    config = _load_generation_section(study)
    if limit_units is not None:
        config = config.model_copy(
            update={
                "units_per_layer": min(limit_units, config.units_per_layer),
                "reserved_units_per_layer": min(1, config.reserved_units_per_layer),
            }
        )
    settings = settings_from(database_url, device=device)
    factory = open_database(settings)
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        db = factory()
        try:
            stimulus_set = generate_stimuli(db, settings, config, progress=progress)
            db.commit()
        except GenerationFailed:
            db.commit()  # records the set as failed; no stimuli of it are visible
            raise
        finally:
            db.close()
    table = Table("layer", "units", "valid", "max FV / natural", "min FV / natural")
    points = stimulus_set.manifest.get("layer_points", {})
    for layer in config.layers:
        read = points.get(layer, {}).get("module", layer)  # layer_point: pre_relu
        rows = [u for u in stimulus_set.manifest["units"] if u["layer"] == read]
        n_valid = sum(u["valid"] for u in rows)
        table.add_row(
            layer,
            str(len(rows)),
            str(n_valid),
            " ".join(_fv_vs_natural(u, "max") for u in rows),
            " ".join(_fv_vs_natural(u, "min") for u in rows),
        )
    console.print(table)
    if stimulus_set.manifest["skipped_images"]:
        err_console.print(
            f"skipped {len(stimulus_set.manifest['skipped_images'])} unreadable image(s)",
            highlight=False,
        )
    print(
        f"stimulus set {stimulus_set.id} ready; manifest: {manifest_path(settings, stimulus_set.id)}"
    )
    overview = overview_path(settings, stimulus_set.id)
    if overview.exists():
        print(f"look at the stimuli: {overview}")


# --- studies -----------------------------------------------------------------------------------

study_app = typer.Typer(
    help="Studies: validate, generate, launch, pause, close, list.", no_args_is_help=True
)
app.add_typer(study_app, name="study")


@study_app.command("validate")
@friendly_errors
def study_validate(file: Annotated[Path, typer.Argument(help="Study YAML file.")]) -> None:
    """Check a study file (participant or machine study); errors name the file, line and
    field."""
    from server.studies.loading import load_study_file, read_yaml_file
    from server.studies.machine_study import is_machine_study, load_machine_study

    if is_machine_study(read_yaml_file(file)[1]):
        machine = load_machine_study(file)
        print(
            f"ok: {machine.slug} (machine study: {len(machine.models)} model(s), "
            f"{machine.n_tasks} tasks per unit, observer {machine.backend}); "
            f"run it with `psychinterp mis study {file}`"
        )
        return
    config, _ = load_study_file(file)
    print(
        f"ok: {config.slug} ({config.paradigm}, conditions {', '.join(config.conditions)}, "
        f"{config.trials.main} main + {config.n_catch} catch trials per participant)"
    )


def _study_transition(slug: str, database_url: str | None, action: str) -> None:
    from server.db.session import session_scope
    from server.studies import service

    with session_scope(open_database(settings_from(database_url))) as db:
        study = getattr(service, f"{action}_study")(db, service.get_study(db, slug))
        print(f"{study.slug}: {study.status}")


@study_app.command("launch")
@friendly_errors
def study_launch(slug: str, database_url: DatabaseUrlOption = None) -> None:
    """Freeze the study (config hash, seeds, stimulus hashes) and open it to participants."""
    _study_transition(slug, database_url, "launch")


@study_app.command("pause")
@friendly_errors
def study_pause(slug: str, database_url: DatabaseUrlOption = None) -> None:
    """Stop new sessions; running sessions may finish."""
    _study_transition(slug, database_url, "pause")


@study_app.command("close")
@friendly_errors
def study_close(slug: str, database_url: DatabaseUrlOption = None) -> None:
    """Close for good: no new sessions, no more responses."""
    _study_transition(slug, database_url, "close")


@study_app.command("import-imi")
@friendly_errors
def study_import_imi(
    path: Annotated[Path, typer.Argument(help="IMI experiment folder (task_N/) or task folder.")],
    slug: Annotated[str, typer.Option(help="Slug of the new draft study.")],
    model: Annotated[
        str | None, typer.Option(help="Model name the images came from (default: imi).")
    ] = None,
    condition: Annotated[
        str, typer.Option(help="What the references are: natural or synthetic.")
    ] = "natural",
    database_url: DatabaseUrlOption = None,
) -> None:
    """A draft study from IMI's task folders: one trial per IMI trial, one row per task."""
    from server.db.session import session_scope
    from server.studies.imi_study import import_imi_study

    settings = settings_from(database_url)
    with session_scope(open_database(settings)) as db:
        study = import_imi_study(db, settings, path, slug, model, condition)
        rows = study.frozen["design_rows"]
        print(
            f"imported {study.slug}: {len(rows)} task(s), {sum(map(len, rows))} trials; "
            f"launch with: psychinterp study launch {study.slug}"
        )


@study_app.command("list")
@friendly_errors
def study_list(database_url: DatabaseUrlOption = None) -> None:
    """Every study with its status and config hash."""
    from server.db.session import session_scope
    from server.studies.service import list_studies

    table = Table("slug", "status", "title", "config hash", "launched")
    with session_scope(open_database(settings_from(database_url))) as db:
        for s in list_studies(db):
            launched = s.launched_at.strftime("%Y-%m-%d %H:%M") if s.launched_at else "-"
            table.add_row(s.slug, s.status, s.title, s.config_hash[:12], launched)
    console.print(table)


@app.command()
@friendly_errors
def simulate(
    study: Annotated[str, typer.Argument(help="Study slug, or a YAML file (set up if new).")],
    participants: Annotated[int, typer.Option(min=1)] = 10,
    url: Annotated[str | None, typer.Option(help="A running server; default: in-process.")] = None,
    concurrency: Annotated[int, typer.Option(min=1)] = 4,
    observer: Annotated[str, typer.Option(help="random, oracle or similarity.")] = "random",
    backend: Annotated[
        str | None, typer.Option(help="Similarity observer's backend (efficientnet-lite2).")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="Similarity observer's alpha.")] = None,
    drop_rate: Annotated[float, typer.Option(help="Share of acknowledgements lost.")] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Simulated participants through the real HTTP API; prints sent/acknowledged/duplicates."""
    from contextlib import nullcontext

    from server.studies.service import ensure_live_study
    from server.studies.simulate import run_simulation, serve_in_thread

    if observer not in ("random", "oracle", "similarity"):
        raise AppError("--observer must be random, oracle or similarity")
    settings = settings_from(database_url)
    factory = open_database(settings)
    slug = ensure_live_study(factory, settings, study)
    if url:
        server = nullcontext(url)
    else:
        from server.app import create_app

        # The simulated participants all arrive from 127.0.0.1: the in-process server lets
        # them all start (a --url server keeps its own configured limits; 429s are waited out).
        generous = {
            "session_starts_per_address": max(settings.session_starts_per_address, participants),
            "session_starts_per_study": max(settings.session_starts_per_study, participants),
        }
        server = serve_in_thread(create_app(settings.model_copy(update=generous)))
    with server as base_url:
        result = run_simulation(
            base_url,
            slug,
            participants,
            observer,
            concurrency,
            drop_rate,
            seed,
            factory,
            backend=backend,
            alpha=alpha,
        )
    print(result.summary())


# --- analysis ----------------------------------------------------------------------------------


@app.command()
@friendly_errors
def analyze(
    study: Annotated[
        str | None, typer.Argument(help="Study slug (read from the database).")
    ] = None,
    responses: Annotated[
        Path | None, typer.Option(help="A CSV/Parquet response file instead of a study.")
    ] = None,
    columns: Annotated[
        str,
        typer.Option(
            help="participant=COL,condition=COL,correct=COL[,unit=COL,layer=COL,model=COL,"
            "confidence=COL,rt=COL,trial_kind=COL]"
        ),
    ] = "",
    unit: Annotated[
        str | None, typer.Option(help="Unit column (as unit=COL in --columns).")
    ] = None,
    where: Annotated[
        list[str] | None, typer.Option(help="Keep only rows with COL=VALUE (repeatable).")
    ] = None,
    bootstrap: Annotated[
        int | None,
        typer.Option(min=10, help="Bootstrap resamples (default: the score's, 1000 or 10000)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    score: Annotated[
        str | None,
        typer.Option(
            help="Score definition: crossed (default), imi or borowski (default: the study's)."
        ),
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(help="Exclusion rule NAME=VALUE|off, e.g. min_catch_accuracy=0.6."),
    ] = None,
    no_exclusions: Annotated[bool, typer.Option(help="Keep every participant.")] = False,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Participant id to exclude (repeatable).")
    ] = None,
    output_format: Annotated[str, typer.Option("--format", help="json, table or html.")] = "table",
    output: Annotated[
        Path | None, typer.Option(help="HTML file (default SLUG-report.html).")
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Scores with CIs for a study (database) or a response file; JSON, tables or HTML."""
    from analysis.columns import parse_column_mapping
    from analysis.command import render_analysis
    from analysis.exclusions import ExclusionRules, rules_from_options, rules_from_study_config
    from analysis.load import load_responses, load_study, study_config

    if (study is None) == (responses is None):
        raise AppError("give either a study slug or --responses FILE (not both)")
    if responses is not None:
        mapping = parse_column_mapping(columns) | ({"unit": unit} if unit else {})
        frame = load_responses(responses, mapping, where or [])
        title = responses.stem
        base_rules = ExclusionRules()
        study_analysis: dict = {}
    else:
        engine = open_database(settings_from(database_url), migrate=False).kw["bind"]
        frame = load_study(engine, study)
        title = study
        # The study's own `exclusion:` section, unless --rule overrides a rule.
        stored = study_config(engine, study)
        base_rules = rules_from_study_config(stored.get("exclusion"))
        study_analysis = stored.get("analysis") or {}
    extra_sections = []
    if study is not None and output_format == "html":  # issue 22: the study model's MIS
        from analysis.machine_report import study_machine_section

        extra_sections.append(study_machine_section(engine, stored, frame))
    text = render_analysis(
        frame,
        title,
        output_format,
        output,
        rules_from_options(rule or [], no_exclusions, base_rules),
        exclude or [],
        bootstrap if bootstrap is not None or score else study_analysis.get("n_resamples"),
        seed,
        score or study_analysis.get("score"),
        extra_sections=extra_sections,
    )
    print(text)


@app.command()
@friendly_errors
def export(
    study: Annotated[str, typer.Argument(help="Study slug.")],
    output_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    output: Annotated[Path | None, typer.Option(help="Default: SLUG-responses.FORMAT.")] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Every response of STUDY, one row per trial (long format), streamed to a file."""
    from analysis.export import export_study

    factory = open_database(settings_from(database_url), migrate=False)
    result = export_study(factory.kw["bind"], study, output_format, output)
    print(f"wrote {result.rows} responses of {result.participants} participants to {result.path}")


from server.cli_mis import mis_app  # after the helpers it imports from this module

app.add_typer(mis_app, name="mis")


# Jobs (issue 23): `worker`, `jobs ...` and `study generate` through the job machinery.
from server.cli_jobs import generate_study_command, jobs_app, worker

study_app.command("generate")(generate_study_command)
app.add_typer(jobs_app, name="jobs")
app.command("worker")(worker)


def main() -> None:  # pragma: no cover - console-script entry point
    app()
