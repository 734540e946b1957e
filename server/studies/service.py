"""Study lifecycle: create (draft) → generate → launch (live, frozen) → pause → close.

The CLI, the admin API and the demo call these. Every status change is an audit event.
Once launched, a study's config, seed, trials and stimulus hashes never change.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.orm import Session

from server import paradigms
from server.config import Settings
from server.db.models import ParticipantSession, Response, Study, Trial
from server.errors import AppError, Conflict, NotFound
from server.hashing import json_sha256
from server.studies.assignment import SlotInfo, design_rows
from server.studies.audit import record_audit_event
from server.studies.loading import load_study_file, parse_study_yaml
from server.studies.schema import StudyConfig

_configs: dict[tuple[int, str], StudyConfig] = {}


def config_hash(config: StudyConfig) -> str:
    return json_sha256(config.model_dump(mode="json"))


def study_config(study: Study) -> StudyConfig:
    """The validated config of a stored study (parsed once per process and config hash)."""
    key = (study.id, study.config_hash)
    if key not in _configs:
        _configs[key] = StudyConfig.model_validate(study.config)
    return _configs[key]


def cached_config(db: Session | Connection, study_id: int, config_hash: str) -> StudyConfig:
    """`study_config` by id: the hot path skips loading the study row once it is cached.

    Takes a bare Connection too: the response path runs on one, without an ORM session.
    """
    key = (study_id, config_hash)
    if key not in _configs:
        config = db.execute(
            select(Study.config).where(Study.id == study_id, Study.config_hash == config_hash)
        ).scalar_one()
        _configs[key] = StudyConfig.model_validate(config)
    return _configs[key]


def study_not_found(slug: str) -> NotFound:
    return NotFound(f"no study {slug!r} (see: psychinterp study list)")


def get_study(db: Session, slug: str) -> Study:
    study = db.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        raise study_not_found(slug)
    return study


def list_studies(db: Session) -> list[Study]:
    return list(db.scalars(select(Study).order_by(Study.created_at, Study.id)))


def create_study(db: Session, settings: Settings, yaml_text: str, source_name: str) -> Study:
    """Validate and insert a draft; a slug that exists already is a Conflict."""
    config = parse_study_yaml(yaml_text, source_name)
    if db.scalar(select(Study.id).where(Study.slug == config.slug)) is not None:
        raise Conflict(f"a study with slug {config.slug!r} exists already: change `slug`")
    study = Study(
        slug=config.slug,
        title=config.title,
        status="draft",
        config_yaml=yaml_text,
        config=config.model_dump(mode="json", by_alias=True),
        config_hash=config_hash(config),
        seed=config.seed,
    )
    db.add(study)
    db.flush()
    record_audit_event(
        db, "study.create", {"slug": study.slug, "config_hash": study.config_hash}, study.id
    )
    return study


def update_draft(db: Session, study: Study, yaml_text: str, source_name: str) -> Study:
    """Replace a draft's config (its trials are dropped: generate again)."""
    _require(study, {"draft"}, "change its config")
    config = parse_study_yaml(yaml_text, source_name)
    if config.slug != study.slug:
        raise AppError(
            f"{source_name}: slug {config.slug!r} differs from the study's {study.slug!r}"
        )
    db.execute(delete(Trial).where(Trial.study_id == study.id))
    study.title, study.config_yaml = config.title, yaml_text
    study.config = config.model_dump(mode="json", by_alias=True)
    study.config_hash, study.seed = config_hash(config), config.seed
    study.stimulus_set_id, study.frozen = None, None
    db.flush()
    record_audit_event(db, "study.update", {"config_hash": study.config_hash}, study.id)
    return study


def _require(study: Study, allowed: set[str], action: str) -> None:
    if study.status not in allowed:
        raise Conflict(
            f"study {study.slug!r} is {study.status}: cannot {action} "
            f"(only when {' or '.join(sorted(allowed))})"
        )


def slot_info(trial: Trial) -> SlotInfo:
    return SlotInfo(
        trial.id,
        trial.kind,
        trial.condition,
        trial.unit_id or 0,
        list(trial.images.get("references_max", [])),
        list(trial.images.get("references_min", [])),
        bool(trial.details.get("fixed_first")),
        int(trial.details.get("batch", 0)),
    )


def generate_study(db: Session, settings: Settings, study: Study, progress=None) -> None:
    """Stimuli for the draft's `generation:` section, then its trials and design rows."""
    _require(study, {"draft"}, "generate stimuli")
    config = study_config(study)
    stimulus_set = paradigms.get(config.paradigm).generate(db, settings, config, progress)
    build_trials(db, study, stimulus_set.id)


def build_trials(db: Session, study: Study, stimulus_set_id: str) -> None:
    """(Re)build a draft's trials from a ready stimulus set; stores the design rows."""
    config = study_config(study)
    db.execute(delete(Trial).where(Trial.study_id == study.id))
    rows = paradigms.get(config.paradigm).build_trials(db, config, study.id, stimulus_set_id)
    db.add_all(rows)
    db.flush()
    main = [slot_info(t) for t in rows if t.kind == "main"]
    study.stimulus_set_id = stimulus_set_id
    study.frozen = {"design_rows": design_rows(config, main)}
    db.flush()
    record_audit_event(
        db, "study.generate", {"stimulus_set_id": stimulus_set_id, "n_trials": len(rows)}, study.id
    )


def _trial_images(trial: Trial) -> list[str]:
    """Every image of a trial, from its images by role (the paradigm seam)."""
    return [
        sha
        for value in trial.images.values()
        for sha in (value if isinstance(value, list) else [value])
    ]


_TWO_AFC_ROLES = {"references_max", "references_min"}


def _trial_record(trial: Trial) -> list:
    """What pins a trial: ids are random, so its content and design position. The right
    choice, the other, the 2AFC reference sets, then any other role (the occlusion task's
    base image); a 2AFC trial's record is the same as before the seam (issue 21)."""
    images, answer = trial.images, trial.answer
    other = next(r for r in trial.choices if r != answer)
    rest = {r: v for r, v in sorted(images.items()) if r not in {answer, other, *_TWO_AFC_ROLES}}
    record = [trial.kind, trial.condition, trial.unit_id, trial.slot, images[answer], images[other]]
    record += [images.get("references_max", []), images.get("references_min", [])]
    return [*record, rest] if rest else record


def stimulus_fingerprint(db: Session, study: Study) -> dict:
    """Hashes that pin what participants see: every trial's images and answer."""
    trials = db.scalars(
        select(Trial).where(Trial.study_id == study.id).order_by(Trial.kind, Trial.slot)
    ).all()
    images = sorted({sha for t in trials for sha in _trial_images(t)})
    trial_records = [_trial_record(t) for t in trials]
    return {
        "n_trials": len(trials),
        "n_images": len(images),
        "images_sha256": hashlib.sha256("\n".join(images).encode()).hexdigest(),
        "trials_sha256": json_sha256(trial_records),
    }


def launch_study(db: Session, study: Study, actor: str = "cli") -> Study:
    """Draft → live (freezing it), or paused → live again."""
    _require(study, {"draft", "paused"}, "launch")
    if study.status == "draft":
        if not study.frozen or not study.frozen.get("design_rows"):
            raise Conflict(
                f"study {study.slug!r} has no trials yet: run `psychinterp study "
                f"generate {study.slug}` first"
            )
        study.frozen = {
            **study.frozen,
            "config_hash": study.config_hash,
            "seed": study.seed,
            "stimulus_set_id": study.stimulus_set_id,
            **stimulus_fingerprint(db, study),
        }
        study.launched_at = datetime.now(UTC)
    study.status = "live"
    db.flush()
    frozen = {k: v for k, v in study.frozen.items() if k != "design_rows"}
    record_audit_event(db, "study.launch", frozen, study.id, actor)
    return study


def pause_study(db: Session, study: Study, actor: str = "cli") -> Study:
    _require(study, {"live"}, "pause")
    study.status = "paused"
    db.flush()
    record_audit_event(db, "study.pause", {}, study.id, actor)
    return study


def close_study(db: Session, study: Study, actor: str = "cli") -> Study:
    _require(study, {"draft", "live", "paused"}, "close")
    study.status = "closed"
    study.closed_at = datetime.now(UTC)
    db.flush()
    record_audit_event(db, "study.close", {}, study.id, actor)
    return study


def setup_study_from_file(
    db: Session, settings: Settings, path: str | Path, launch: bool = True
) -> Study:
    """Create + generate (+ launch): one call for demos and tests."""
    _, text = load_study_file(path)
    study = create_study(db, settings, text, str(path))
    generate_study(db, settings, study)
    if launch:
        launch_study(db, study)
    return study


def prepare_draft(db: Session, settings: Settings, file_or_slug: str, progress=None) -> Study:
    """`study generate`: create or update the draft from a file (or take a draft by slug)."""
    study = draft_for(db, settings, file_or_slug)
    generate_study(db, settings, study, progress=progress)
    return study


def draft_for(db: Session, settings: Settings, file_or_slug: str) -> Study:
    """The draft a file defines (created, or updated from the file) or the study of a slug."""
    path = Path(file_or_slug)
    if path.is_file():
        config, text = load_study_file(path)
        study = db.scalar(select(Study).where(Study.slug == config.slug))
        if study is None:
            study = create_study(db, settings, text, str(path))
        else:
            update_draft(db, study, text, str(path))
    else:
        study = get_study(db, file_or_slug)
    return study


def ensure_live_study(factory, settings: Settings, file_or_slug: str) -> str:
    """The slug of a live study: a file whose study does not exist yet is set up and launched."""
    from server.db.session import session_scope

    path = Path(file_or_slug)
    slug = load_study_file(path)[0].slug if path.is_file() else file_or_slug
    with session_scope(factory) as db:
        study = db.scalar(select(Study).where(Study.slug == slug))
        if study is None and path.is_file():
            study = setup_study_from_file(db, settings, path, launch=True)
        elif study is None:
            raise NotFound(f"no study {slug!r}: give its YAML file to set it up")
        if study.status != "live":
            raise Conflict(f"study {slug!r} is {study.status}: launch it first")
    return slug


def participation_counts(
    db: Session, study_id: int | None = None
) -> defaultdict[int, dict[str, int]]:
    """Sessions started and completed and responses stored, per study (one study's, or all;
    a study nobody has started reads as zeros).

    Two aggregate queries: the dashboard lists them for every study, and a live study's page
    polls them to know when its results have changed."""
    counts: defaultdict[int, dict[str, int]] = defaultdict(
        lambda: {"started": 0, "completed": 0, "responses": 0}
    )
    which = [] if study_id is None else [ParticipantSession.study_id == study_id]
    for sid, status, n in db.execute(
        select(ParticipantSession.study_id, ParticipantSession.status, func.count())
        .where(*which)
        .group_by(ParticipantSession.study_id, ParticipantSession.status)
    ):
        counts[sid]["started"] += n
        if status == "completed":
            counts[sid]["completed"] += n
    for sid, n in db.execute(
        select(ParticipantSession.study_id, func.count(Response.id))
        .join(Response, Response.session_id == ParticipantSession.id)
        .where(*which)
        .group_by(ParticipantSession.study_id)
    ):
        counts[sid]["responses"] = n
    return counts
