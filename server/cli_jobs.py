"""`psychinterp worker`, `psychinterp jobs ...` and `study generate` through the job machinery.

Kept apart from server/cli.py (which mounts these with one line each) so the job commands
live next to each other. Like every command: parse, call a service, print.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from server.cli import (
    DatabaseUrlOption,
    console,
    err_console,
    friendly_errors,
    open_database,
    settings_from,
)

jobs_app = typer.Typer(help="Background jobs: list, show, cancel, resume.", no_args_is_help=True)


@friendly_errors
def worker(
    database_url: DatabaseUrlOption = None,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the queue.")] = 1.0,
) -> None:
    """Run queued jobs (stimulus generation, ...) in this process until Ctrl-C."""
    from server.jobs.local import run_worker

    settings = settings_from(database_url)
    open_database(settings)
    err_console.print("worker started; waiting for jobs (Ctrl-C stops)", highlight=False)
    run_worker(settings, poll)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


@jobs_app.command("list")
@friendly_errors
def jobs_list(database_url: DatabaseUrlOption = None) -> None:
    """Recent jobs with their state and progress."""
    from server.db.session import session_scope
    from server.jobs.service import job_view, list_jobs

    table = Table("id", "kind", "params", "status", "step", "progress", "eta", "error")
    with session_scope(open_database(settings_from(database_url))) as db:
        for job in map(job_view, list_jobs(db)):
            table.add_row(
                job["id"], job["kind"], str(job["params"]), job["status"], job["step"],
                f"{job['done']}/{job['total']}", _eta(job["eta_s"]), job["error"] or "",
            )  # fmt: skip
    console.print(table)


@jobs_app.command("show")
@friendly_errors
def jobs_show(job_id: str, database_url: DatabaseUrlOption = None) -> None:
    """One job's state, progress and log tail."""
    from server.db.session import session_scope
    from server.jobs.service import get_job, job_view

    with session_scope(open_database(settings_from(database_url))) as db:
        job = job_view(get_job(db, job_id))
    for key in ("id", "kind", "status", "step", "message", "error", "attempts", "worker"):
        print(f"{key}: {job[key]}")
    print(f"progress: {job['done']}/{job['total']}  eta: {_eta(job['eta_s'])}")
    print(job["log_tail"])


def _job_action(job_id: str, database_url: str | None, action: str) -> None:
    from server.db.session import session_scope
    from server.jobs import service

    with session_scope(open_database(settings_from(database_url))) as db:
        job = getattr(service, f"{action}_job")(db, service.get_job(db, job_id))
        print(f"{job.id}: {job.status}{' (cancel requested)' if job.cancel_requested else ''}")


@jobs_app.command("cancel")
@friendly_errors
def jobs_cancel(job_id: str, database_url: DatabaseUrlOption = None) -> None:
    """Cancel a queued job, or ask a running one to stop at its next progress report."""
    _job_action(job_id, database_url, "cancel")


@jobs_app.command("resume")
@friendly_errors
def jobs_resume(job_id: str, database_url: DatabaseUrlOption = None) -> None:
    """Queue a failed or cancelled job again; it reuses what it had finished."""
    _job_action(job_id, database_url, "resume")


@friendly_errors
def generate_study_command(
    study: Annotated[str, typer.Argument(help="Study YAML file, or the slug of a draft.")],
    database_url: DatabaseUrlOption = None,
    background: Annotated[
        bool,
        typer.Option(
            "--background",
            help="Only queue the job: a worker (`psychinterp serve` or `psychinterp worker`) "
            "runs it; follow it with `psychinterp jobs show ID`.",
        ),
    ] = False,
    runner: Annotated[
        str | None,
        typer.Option(
            "--runner",
            help="Where feature visualizations render: local (this process / the worker) or "
            "ray (a Ray cluster; pip install -e '.[ray]'). Default: "
            "PSYCHINTERP_GENERATION_RUNNER (local).",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="The Ray cluster for --runner ray: auto, local or ray://HOST:10001 "
            "(default: PSYCHINTERP_RAY_ADDRESS, auto).",
        ),
    ] = None,
) -> None:
    """Create (or update) the draft from FILE, generate its stimuli and build its trials.

    Runs as a job (resumable with `psychinterp jobs resume ID` if interrupted), here with a
    progress bar per step, or in a worker with --background.
    """
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from server.db.session import session_scope
    from server.jobs.generation import queue_generation
    from server.jobs.runner import run_claimed_job
    from server.jobs.service import claim_next_job, job_view, worker_name
    from server.studies.service import draft_for

    settings = settings_from(database_url)
    factory = open_database(settings)
    with session_scope(factory) as db:
        job = queue_generation(
            db, draft_for(db, settings, study), "cli", runner=runner, address=address
        )
    if background:
        print(f"queued job {job.id}; follow it with: psychinterp jobs show {job.id}")
        return
    with session_scope(factory) as db:  # claim this very job (a worker may race us for it)
        claimed = claim_next_job(db, worker_name(), kinds=[job.kind])
    if claimed is None or claimed.id != job.id:
        print(f"a worker took job {job.id}; follow it with: psychinterp jobs show {job.id}")
        return
    columns = (
        *Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=err_console) as bar:
        tasks: dict[str, Any] = {}

        def progress(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        status = run_claimed_job(factory, settings, claimed, on_progress=progress)
    with session_scope(factory) as db:
        view = job_view(db.get(type(claimed), claimed.id))
    if status != "succeeded":
        err_console.print(
            f"[red]error:[/red] job {view['id']} {status}: {view['error'] or ''}\n"
            f"resume it with: psychinterp jobs resume {view['id']}",
            highlight=False,
        )
        raise typer.Exit(1)
    result = view["result"]
    print(
        f"generated {result['slug']}: stimulus set {result['stimulus_set_id']}, "
        f"{result['design_rows']} design rows; launch with: psychinterp study launch "
        f"{result['slug']}"
    )
