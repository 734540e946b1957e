"""The researchers' JSON API (`/api/admin/...`): studies, jobs, participants, exclusions, exports.

The dashboard's pages call it with their session cookie (+ `X-CSRF-Token`); scripts call it
with `Authorization: Bearer TOKEN`. Thin handlers: validate, call a service, shape the reply.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from server.api.admin_auth import CurrentResearcher
from server.api.deps import SessionDep, SettingsDep
from server.db.models import Study
from server.jobs import service as jobs
from server.studies import service as studies
from server.studies.loading import StudyConfigError, parse_study_yaml
from server.studies.ownership import delete_study, require_may
from server.studies.participants import list_participants, set_exclusion

router = APIRouter(prefix="/api/admin", tags=["admin api"])

MAX_YAML_CHARS = 200_000


class StudyYaml(BaseModel):
    yaml: str = Field(min_length=1, max_length=MAX_YAML_CHARS, description="The study file.")


class StudyProblem(BaseModel):
    line: int | None
    field: str
    message: str


class Validation(BaseModel):
    ok: bool
    slug: str | None = None
    problems: list[StudyProblem] = []


class StudyPublic(BaseModel):
    slug: str
    title: str
    status: str
    config_hash: str
    stimulus_set_id: str | None
    owner_id: int | None
    created_at: datetime
    launched_at: datetime | None
    closed_at: datetime | None
    has_trials: bool

    @classmethod
    def of(cls, study: Study) -> StudyPublic:
        return cls(
            **{name: getattr(study, name) for name in cls.model_fields if name != "has_trials"},
            has_trials=bool(study.frozen and study.frozen.get("design_rows")),
        )


class JobPublic(BaseModel):
    id: str
    kind: str
    status: str
    study_id: int | None
    params: dict[str, Any]
    step: str
    done: int
    total: int
    fraction: float | None
    eta_s: float | None
    message: str
    error: str | None
    log_tail: str
    attempts: int
    resumable: bool
    cancel_requested: bool
    result: dict[str, Any] | None
    created_by: str | None
    created_at: datetime
    finished_at: datetime | None


class Exclusion(BaseModel):
    excluded: bool
    reason: str = Field(min_length=1, max_length=2000, description="Stored in the audit log.")


class ExclusionPublic(BaseModel):
    id: str
    excluded: bool
    exclusion_reason: str | None


class ParticipantPublic(BaseModel):
    id: str
    platform: str
    status: str
    started_at: datetime
    completed_at: datetime | None
    duration_s: float | None
    responses: int
    excluded: bool
    exclusion_reason: str | None
    catch_accuracy: float | None
    practice_rounds: float | None
    flags: list[str]


def _job(job) -> JobPublic:
    return JobPublic(**jobs.job_view(job))


# --- studies ---------------------------------------------------------------------------------


@router.get("/studies", response_model=list[StudyPublic])
def list_studies(db: SessionDep, researcher: CurrentResearcher) -> list[StudyPublic]:
    return [StudyPublic.of(s) for s in studies.list_studies(db)]


@router.post("/studies/validate", response_model=Validation)
def validate_study(body: StudyYaml, researcher: CurrentResearcher) -> Validation:
    """Check a study YAML without storing it; every problem with its line."""
    try:
        config = parse_study_yaml(body.yaml, "study.yaml")
    except StudyConfigError as exc:
        return Validation(
            ok=False,
            problems=[StudyProblem(line=ln, field=f, message=m) for ln, f, m in exc.problems],
        )
    return Validation(ok=True, slug=config.slug)


@router.post("/studies", response_model=StudyPublic, status_code=201)
def create_study(
    body: StudyYaml, db: SessionDep, settings: SettingsDep, researcher: CurrentResearcher
) -> StudyPublic:
    study = studies.create_study(db, settings, body.yaml, "study.yaml")
    study.owner_id = researcher.user.id
    db.flush()
    return StudyPublic.of(study)


@router.get("/studies/{slug}", response_model=StudyPublic)
def get_study(slug: str, db: SessionDep, researcher: CurrentResearcher) -> StudyPublic:
    return StudyPublic.of(studies.get_study(db, slug))


@router.put("/studies/{slug}", response_model=StudyPublic)
def update_study(
    slug: str, body: StudyYaml, db: SessionDep, researcher: CurrentResearcher
) -> StudyPublic:
    """Replace a draft's YAML (its trials are dropped: generate again)."""
    study = studies.get_study(db, slug)
    return StudyPublic.of(studies.update_draft(db, study, body.yaml, "study.yaml"))


@router.delete("/studies/{slug}", status_code=204)
def remove_study(slug: str, db: SessionDep, researcher: CurrentResearcher) -> None:
    delete_study(db, researcher.user, studies.get_study(db, slug))


@router.post("/studies/{slug}/generate", response_model=JobPublic, status_code=202)
def generate(
    slug: str,
    db: SessionDep,
    researcher: CurrentResearcher,
    runner: Literal["local", "ray"] | None = None,
    address: str | None = None,
) -> JobPublic:
    """Queue the draft's generation job; follow it at /api/admin/jobs/{id}. `runner` and
    `address` (the Ray cluster) choose where it renders; default: the worker's settings."""
    from server.jobs.generation import queue_generation

    study = studies.get_study(db, slug)
    return _job(queue_generation(db, study, researcher.identity, runner, address))


def _transition(db, researcher, slug: str, action: str) -> StudyPublic:
    study = studies.get_study(db, slug)
    require_may(researcher.user, study, action)
    getattr(studies, f"{action}_study")(db, study, actor=researcher.identity)
    return StudyPublic.of(study)


@router.post("/studies/{slug}/launch", response_model=StudyPublic)
def launch(slug: str, db: SessionDep, researcher: CurrentResearcher) -> StudyPublic:
    return _transition(db, researcher, slug, "launch")


@router.post("/studies/{slug}/pause", response_model=StudyPublic)
def pause(slug: str, db: SessionDep, researcher: CurrentResearcher) -> StudyPublic:
    return _transition(db, researcher, slug, "pause")


@router.post("/studies/{slug}/close", response_model=StudyPublic)
def close(slug: str, db: SessionDep, researcher: CurrentResearcher) -> StudyPublic:
    return _transition(db, researcher, slug, "close")


class StudyCounts(BaseModel):
    started: int = Field(description="Sessions started (any status).")
    completed: int = Field(description="Sessions completed.")
    responses: int = Field(description="Responses stored (all trial kinds).")


@router.get("/studies/{slug}/counts", response_model=StudyCounts)
def counts(slug: str, db: SessionDep, researcher: CurrentResearcher) -> dict[str, int]:
    """How many took part so far: cheap, so a live study's page can poll it and re-read its
    results only when they have changed."""
    study = studies.get_study(db, slug)
    return studies.participation_counts(db, study.id)[study.id]


@router.get("/studies/{slug}/results")
def results(
    request: Request, slug: str, db: SessionDep, researcher: CurrentResearcher
) -> dict[str, Any]:
    """Scores per condition, layer and unit with CIs (the dashboard's numbers, no figure)."""
    from analysis.dashboard import study_results

    found = study_results(request.app.state.engine, studies.get_study(db, slug))
    found.pop("figure_html", None)
    return found


@router.get("/studies/{slug}/participants", response_model=list[ParticipantPublic])
def participants(
    request: Request, slug: str, db: SessionDep, researcher: CurrentResearcher
) -> list[dict[str, Any]]:
    return list_participants(db, request.app.state.engine, studies.get_study(db, slug))


@router.put("/studies/{slug}/participants/{session_id}/exclusion", response_model=ExclusionPublic)
def exclusion(
    slug: str, session_id: str, body: Exclusion, db: SessionDep, researcher: CurrentResearcher
) -> ExclusionPublic:
    """Exclude or include a participant, with a reason (audit-logged with your identity).

    Scores and the participants list read the new state from the next request on."""
    study = studies.get_study(db, slug)
    row = set_exclusion(db, study, session_id, body.excluded, body.reason, researcher.identity)
    return ExclusionPublic(id=row.id, excluded=row.excluded, exclusion_reason=row.exclusion_reason)


@router.get("/studies/{slug}/export")
def export(
    request: Request,
    slug: str,
    db: SessionDep,
    researcher: CurrentResearcher,
    background: BackgroundTasks,
    format: Literal["csv", "parquet"] = "csv",
):
    """Every response, one row per trial: CSV streamed, Parquet as a file."""
    from analysis.export import export_study
    from server.api.csv_export import stream_study_csv

    studies.get_study(db, slug)
    engine = request.app.state.engine
    name = f"{slug}-responses.{format}"
    if format == "csv":
        return stream_study_csv(engine, slug, name)
    folder = Path(tempfile.mkdtemp(prefix="psychinterp-export-"))
    result = export_study(engine, slug, "parquet", folder / name)
    background.add_task(lambda: (result.path.unlink(missing_ok=True), folder.rmdir()))
    return FileResponse(result.path, media_type="application/vnd.apache.parquet", filename=name)


# --- jobs ------------------------------------------------------------------------------------


@router.get("/jobs", response_model=list[JobPublic])
def list_jobs(
    db: SessionDep, researcher: CurrentResearcher, study: str | None = None
) -> list[JobPublic]:
    study_id = studies.get_study(db, study).id if study else None
    return [_job(job) for job in jobs.list_jobs(db, study_id)]


@router.get("/jobs/{job_id}", response_model=JobPublic)
def get_job(job_id: str, db: SessionDep, researcher: CurrentResearcher) -> JobPublic:
    return _job(jobs.get_job(db, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, db: SessionDep, researcher: CurrentResearcher) -> JobPublic:
    return _job(jobs.cancel_job(db, jobs.get_job(db, job_id)))


@router.post("/jobs/{job_id}/resume", response_model=JobPublic)
def resume_job(job_id: str, db: SessionDep, researcher: CurrentResearcher) -> JobPublic:
    return _job(jobs.resume_job(db, jobs.get_job(db, job_id)))
