"""Dashboard pages for the study lifecycle: create/edit by YAML, generate (a job), preview,
participants with exclusions, API tokens. Study list, study page, login and exports are in
admin.py; this router is mounted before it, so its `/admin/studies/{slug}/...` forms win.

Every page needs a dashboard session; every form carries the session's CSRF token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from server.api.admin import CurrentAdmin, _page, check_csrf
from server.api.deps import SessionDep, SettingsDep
from server.api_tokens import create_token, list_tokens, revoke_token
from server.errors import AppError
from server.jobs.generation import KIND as GENERATION
from server.jobs.generation import queue_generation
from server.jobs.service import job_view, list_jobs
from server.studies import service as studies
from server.studies.loading import StudyConfigError
from server.studies.ownership import delete_study
from server.studies.participants import bar_participant, list_participants, set_exclusion

router = APIRouter(prefix="/admin", tags=["admin"], include_in_schema=False)

MAX_UPLOAD_BYTES = 200_000


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def _yaml_from(text: str, upload: UploadFile | None) -> str:
    """The pasted YAML, or the uploaded file's when one was chosen."""
    if upload is not None and upload.filename:
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise AppError(f"study file too large: keep it under {MAX_UPLOAD_BYTES // 1000} kB")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise AppError("the study file is not UTF-8 text: save it as UTF-8") from None
    return text


# --- create / edit ---------------------------------------------------------------------------


def _lines_near_problems(text: str, problems, around: int = 3) -> list[tuple[int, str, bool]]:
    """(number, text, at fault) of the lines within `around` of a problem's line."""
    bad = {line for line, _, _ in problems if line}
    return [
        (number, line, number in bad)
        for number, line in enumerate(text.splitlines(), start=1)
        if any(abs(number - b) <= around for b in bad)
    ]


def _editor(request, admin, yaml_text: str, problems=(), study=None, status_code=200):
    response = _page(
        request,
        admin,
        "admin/study_edit.html",
        yaml_text=yaml_text,
        problems=list(problems),
        study=study,
        lines=_lines_near_problems(yaml_text, problems),
    )
    response.status_code = status_code
    return response


@router.get("/new-study")
def new_study_form(request: Request, admin: CurrentAdmin) -> Response:
    return _editor(request, admin, "")


@router.post("/new-study")
async def new_study_submit(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    admin: CurrentAdmin,
    csrf: Annotated[str, Form()],
    yaml_text: Annotated[str, Form()] = "",
    upload: UploadFile | None = None,
) -> Response:
    check_csrf(admin[1], csrf)
    text = await _yaml_from(yaml_text, upload)
    try:
        study = studies.create_study(db, settings, text, "study.yaml")
    except StudyConfigError as exc:
        return _editor(request, admin, text, exc.problems, status_code=422)
    study.owner_id = admin[0].id
    db.flush()
    return _redirect(f"/admin/studies/{study.slug}")


@router.get("/studies/{slug}/edit")
def edit_study_form(request: Request, slug: str, db: SessionDep, admin: CurrentAdmin) -> Response:
    study = studies.get_study(db, slug)
    return _editor(request, admin, study.config_yaml, study=study)


@router.post("/studies/{slug}/edit")
async def edit_study_submit(
    request: Request,
    slug: str,
    db: SessionDep,
    admin: CurrentAdmin,
    csrf: Annotated[str, Form()],
    yaml_text: Annotated[str, Form()] = "",
    upload: UploadFile | None = None,
) -> Response:
    check_csrf(admin[1], csrf)
    study = studies.get_study(db, slug)
    text = await _yaml_from(yaml_text, upload)
    try:
        studies.update_draft(db, study, text, "study.yaml")
    except StudyConfigError as exc:
        return _editor(request, admin, text, exc.problems, study=study, status_code=422)
    return _redirect(f"/admin/studies/{slug}")


@router.post("/studies/{slug}/generate")
def generate(
    slug: str,
    db: SessionDep,
    admin: CurrentAdmin,
    csrf: Annotated[str, Form()],
    runner: Annotated[str, Form()] = "",
):
    check_csrf(admin[1], csrf)
    # The job's params check the runner's name (local or ray), with a clear error.
    queue_generation(db, studies.get_study(db, slug), admin[0].email, runner=runner or None)
    return _redirect(f"/admin/studies/{slug}")


@router.post("/studies/{slug}/delete")
def delete(slug: str, db: SessionDep, admin: CurrentAdmin, csrf: Annotated[str, Form()]):
    check_csrf(admin[1], csrf)
    delete_study(db, admin[0], studies.get_study(db, slug))
    return _redirect("/admin")


@router.get("/studies/{slug}/jobs")
def jobs_page(request: Request, slug: str, db: SessionDep, admin: CurrentAdmin) -> Response:
    study = studies.get_study(db, slug)
    found = [job_view(job) for job in list_jobs(db, study.id)]
    return _page(request, admin, "admin/jobs.html", study=study, jobs=found, kind=GENERATION)


# --- preview ---------------------------------------------------------------------------------


@router.get("/studies/{slug}/preview")
def preview(request: Request, slug: str, db: SessionDep, admin: CurrentAdmin) -> Response:
    """What a participant sees, built from the draft's trials; no session, nothing stored."""
    from server.studies.preview import study_preview

    study = studies.get_study(db, slug)
    return _page(request, admin, "admin/preview.html", study=study, **study_preview(db, study))


# --- participants ----------------------------------------------------------------------------


@router.get("/studies/{slug}/participants")
def participants_page(request: Request, slug: str, db: SessionDep, admin: CurrentAdmin) -> Response:
    from analysis.dashboard import study_results

    study = studies.get_study(db, slug)
    engine = request.app.state.engine
    rows = list_participants(db, engine, study)
    results = study_results(engine, study)
    return _page(request, admin, "admin/participants.html", study=study, rows=rows, results=results)


@router.post("/studies/{slug}/participants/{session_id}/exclusion")
def exclusion(
    slug: str,
    session_id: str,
    db: SessionDep,
    admin: CurrentAdmin,
    csrf: Annotated[str, Form()],
    excluded: Annotated[bool, Form()],
    reason: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(admin[1], csrf)
    study = studies.get_study(db, slug)
    set_exclusion(db, study, session_id, excluded, reason, admin[0].email)
    return _redirect(f"/admin/studies/{slug}/participants")


@router.post("/studies/{slug}/participants/{session_id}/bar")
def bar(
    slug: str,
    session_id: str,
    db: SessionDep,
    admin: CurrentAdmin,
    csrf: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(admin[1], csrf)
    bar_participant(db, studies.get_study(db, slug), session_id, reason, admin[0].email)
    return _redirect(f"/admin/studies/{slug}/participants")


# --- stimuli ---------------------------------------------------------------------------------


@router.get("/studies/{slug}/stimuli")
def stimuli_page(request: Request, slug: str, db: SessionDep, admin: CurrentAdmin) -> Response:
    from server.studies.stimuli_browser import study_stimuli

    study = studies.get_study(db, slug)
    return _page(request, admin, "admin/stimuli.html", study=study, **study_stimuli(db, study))


@router.get("/studies/{slug}/overview.png")
def overview(slug: str, db: SessionDep, settings: SettingsDep, admin: CurrentAdmin) -> Response:
    """The contact sheet generation drew next to the manifest."""
    from fastapi.responses import FileResponse

    from server.errors import NotFound
    from server.stimuli.generate import overview_path

    study = studies.get_study(db, slug)
    path = overview_path(settings, study.stimulus_set_id) if study.stimulus_set_id else None
    if path is None or not path.is_file():
        raise NotFound(f"study {slug!r} has no overview sheet: generate its stimuli first")
    return FileResponse(path, media_type="image/png")


# --- API tokens ------------------------------------------------------------------------------


@router.get("/tokens")
def tokens_page(request: Request, db: SessionDep, admin: CurrentAdmin) -> Response:
    return _page(request, admin, "admin/tokens.html", tokens=list_tokens(db, admin[0]), new=None)


@router.post("/tokens")
def tokens_create(
    request: Request,
    db: SessionDep,
    admin: CurrentAdmin,
    csrf: Annotated[str, Form()],
    name: Annotated[str, Form()],
    scope: Annotated[str, Form()] = "read",
) -> Response:
    """The new token is in this one response only; the database keeps its digest."""
    check_csrf(admin[1], csrf)
    token, _ = create_token(db, admin[0], name, scope)
    return _page(request, admin, "admin/tokens.html", tokens=list_tokens(db, admin[0]), new=token)


@router.post("/tokens/{token_id}/revoke")
def tokens_revoke(
    token_id: int, db: SessionDep, admin: CurrentAdmin, csrf: Annotated[str, Form()]
) -> Response:
    check_csrf(admin[1], csrf)
    revoke_token(db, admin[0], token_id)
    return _redirect("/admin/tokens")


@router.post("/jobs/{job_id}/{action}")
def job_action(
    job_id: str, action: str, db: SessionDep, admin: CurrentAdmin, csrf: Annotated[str, Form()]
) -> Response:
    """Cancel or resume a job from the study page."""
    from server.db.models import Study
    from server.errors import NotFound
    from server.jobs import service as jobs

    check_csrf(admin[1], csrf)
    if action not in ("cancel", "resume"):
        raise NotFound(f"unknown job action {action!r}: use cancel or resume")
    job = getattr(jobs, f"{action}_job")(db, jobs.get_job(db, job_id))
    study = db.get(Study, job.study_id) if job.study_id else None
    return _redirect(f"/admin/studies/{study.slug}" if study else "/admin")
