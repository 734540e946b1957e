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
    slug = params.get("slug")
    if not isinstance(slug, str) or not slug:
        raise AppError("a generate_study job needs params {'slug': STUDY_SLUG}")
    unknown = set(params) - {"slug"}
    if unknown:
        raise AppError(f"generate_study takes only 'slug'; unknown: {', '.join(sorted(unknown))}")
    return {"slug": slug}


def run_generation(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from server.stimuli.generate import fv_chunk_cache
    from server.studies.service import generate_study, get_study, study_config

    with session_scope(context.factory) as db:
        generation = study_config(get_study(db, params["slug"])).generation
    cached = fv_chunk_cache(context.settings, generation).directory
    n_cached = len(list(cached.glob("*.pkl"))) if cached.is_dir() else 0
    if n_cached:
        context.log(f"resuming: {n_cached} finished feature-visualization chunk(s) cached")
    # One session for the whole run: generation writes only once the model has finished,
    # and reports no progress while its transaction is open (SQLite: one writer at a time).
    with session_scope(context.factory) as db:
        study = get_study(db, params["slug"])
        generate_study(db, context.settings, study, progress=context.progress)
        result = {
            "slug": study.slug,
            "stimulus_set_id": study.stimulus_set_id,
            "design_rows": len(study.frozen["design_rows"]),
        }
    context.progress("store images", 1, 1)
    context.log(f"stimulus set {result['stimulus_set_id']} ready")
    return result


register_job_kind(KIND, run_generation, check_params, "stimuli and trials of a draft study")


def queue_generation(db, study, created_by: str | None = None):
    """Queue the `generate_study` job of a draft (one at a time per study)."""
    from server.errors import Conflict
    from server.jobs.service import active_job, submit_job

    if study.status != "draft":
        raise Conflict(f"study {study.slug!r} is {study.status}: only drafts can be generated")
    running = active_job(db, study.id, KIND)
    if running is not None:
        raise Conflict(f"study {study.slug!r} is being generated already (job {running.id})")
    return submit_job(db, KIND, {"slug": study.slug}, study.id, created_by)
