"""The `generate_study` job kind: a draft's stimuli and trials, with progress for every step.

Resuming reuses what earlier attempts finished: activations are cached per image chunk
(server/stimuli/activations.py) and rendered feature-visualization chunks per generation
config (server/stimuli/fv_cache.py); generation is seeded, so the resumed job produces the
same stimulus hashes as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

from server.db.session import session_scope
from server.errors import AppError
from server.jobs.context import JobContext
from server.jobs.kinds import register_job_kind

KIND = "generate_study"


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """{'slug'} plus, optionally, where to render (issue 24): 'runner' local|ray (default:
    the worker's PSYCHINTERP_GENERATION_RUNNER) and the Ray cluster's 'address'."""
    from server.jobs.ray_runner import RUNNERS

    slug = params.get("slug")
    if not isinstance(slug, str) or not slug:
        raise AppError("a generate_study job needs params {'slug': STUDY_SLUG}")
    unknown = set(params) - {"slug", "runner", "address"}
    if unknown:
        raise AppError(
            "generate_study takes 'slug', 'runner' and 'address'; "
            f"unknown: {', '.join(sorted(unknown))}"
        )
    checked: dict[str, Any] = {"slug": slug}
    runner, address = params.get("runner"), params.get("address")
    if runner is not None:
        if runner not in RUNNERS:
            raise AppError(f"runner must be {' or '.join(RUNNERS)}, got {runner!r}")
        checked["runner"] = runner
    if address is not None:
        if not isinstance(address, str) or not address.strip():
            raise AppError("address must be auto, local or ray://HOST:PORT")
        if (runner or "ray") != "ray":
            raise AppError("address is the Ray cluster's: give it with runner ray")
        checked["address"] = address.strip()
    return checked


def chunk_executor_for(context: JobContext, params: dict[str, Any]):
    """The Ray chunk executor when the job renders on Ray, else None (local)."""
    settings = context.settings
    if params.get("runner", settings.generation_runner) != "ray":
        return None
    from server.jobs.ray_runner import RayChunkExecutor

    address = params.get("address", settings.ray_address)
    context.log(f"rendering feature visualizations on the Ray cluster at {address}")
    return RayChunkExecutor(address=address, device=settings.device)


def run_generation(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from server.stimuli.generate import fv_chunk_cache
    from server.stimuli.visualize import chunk_executor
    from server.studies.service import generate_study, get_study, study_config

    with session_scope(context.factory) as db:
        generation = study_config(get_study(db, params["slug"])).generation
    cached = fv_chunk_cache(context.settings, generation).directory
    n_cached = len(list(cached.glob("*.pkl"))) if cached.is_dir() else 0
    if n_cached:
        context.log(f"resuming: {n_cached} finished feature-visualization chunk(s) cached")
    # One session for the whole run: generation writes only once the model has finished,
    # and reports no progress while its transaction is open (SQLite: one writer at a time).
    executor = chunk_executor_for(context, params)
    try:
        with session_scope(context.factory) as db, chunk_executor(executor):
            study = get_study(db, params["slug"])
            generate_study(db, context.settings, study, progress=context.progress)
            result = {
                "slug": study.slug,
                "stimulus_set_id": study.stimulus_set_id,
                "design_rows": len(study.frozen["design_rows"]),
            }
    finally:
        if executor is not None:
            executor.shutdown()
    context.progress("store images", 1, 1)
    context.log(f"stimulus set {result['stimulus_set_id']} ready")
    return result


register_job_kind(KIND, run_generation, check_params, "stimuli and trials of a draft study")


def queue_generation(
    db, study, created_by: str | None = None, runner: str | None = None, address: str | None = None
):
    """Queue the `generate_study` job of a draft (one at a time per study); `runner` and
    `address` choose where it renders (default: the worker's settings)."""
    from server.errors import Conflict
    from server.jobs.service import active_job, submit_job

    if study.status != "draft":
        raise Conflict(f"study {study.slug!r} is {study.status}: only drafts can be generated")
    running = active_job(db, study.id, KIND)
    if running is not None:
        raise Conflict(f"study {study.slug!r} is being generated already (job {running.id})")
    params = {"slug": study.slug, "runner": runner, "address": address}
    params = {key: value for key, value in params.items() if value is not None}
    return submit_job(db, KIND, params, study.id, created_by)
