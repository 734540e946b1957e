"""A draft study from IMI's real output (`psychinterp study import-imi PATH --slug SLUG`).

PATH is an experiment folder of `task_N/` folders, or one task folder, as IMI's
`create_task_structure_from_json.py` writes them (layout: analysis.importers.imi). Every
IMI trial becomes one trial here (IMI's catch trials as catch trials), and every IMI task
becomes one row of the design: a participant gets one task's trials, as in IMI, in an
order shuffled per session with balanced answer sides. The draft is launched with
`study launch` and served like any generated study.

IMI's folders do not say which unit a trial shows. Trials showing the same maximally
activating reference set are one unit (numbered in the order met, layer = the experiment
name); a unit shown with several reference batches counts as several units. IMI's
practice and instruction pages are not part of its task folders, so the study has no
practice block (`trials.practice.count: 0`) unless its YAML is edited.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.importers.imi import ImiTask, ImiTrial, read_imi_task
from server.config import Settings
from server.db import models as m
from server.errors import AppError, Conflict
from server.paradigms.base import trial_row as paradigm_trial_row
from server.paradigms.imi import CHOICES as IMI_CHOICES
from server.stimuli.storage import open_image_store
from server.studies.audit import record_audit_event
from server.studies.service import create_study

IMI_CONDITIONS = ("natural", "synthetic")
INSTRUCTIONS = (
    "Look at the example images on the left and on the right. Then choose which of the two "
    "images in the centre matches the Right Examples better."
)


def task_folders(path: str | Path) -> list[Path]:
    """The task folders under PATH: PATH itself if it has index.json, else its task_N/."""
    root = Path(path)
    if not root.is_dir():
        raise AppError(f"{root}: no such folder (give an IMI experiment or task folder)")
    if (root / "index.json").is_file():
        return [root]
    tasks = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"task_\d+", p.name)]
    tasks = [p for p in tasks if (p / "index.json").is_file()]
    if not tasks:
        raise AppError(
            f"{root}: expected index.json (a task folder) or task_N/index.json folders (an "
            "experiment folder), as IMI's create_task_structure_from_json.py writes them"
        )
    return sorted(tasks, key=lambda p: int(p.name.split("_")[1]))


def _study_yaml(slug: str, title: str, model: str, condition: str, tasks: list[ImiTask]) -> str:
    main = max(sum(not t.catch for t in task.trials) for task in tasks)
    config = {
        "title": title,
        "slug": slug,
        "description": f"Imported from IMI's task folders ({len(tasks)} task(s)).",
        "consent": "By continuing you agree to take part in this study.",
        "instructions": [INSTRUCTIONS],
        # Never generated: recorded so the study says which model the images came from.
        "generation": {
            "model": model,
            "layers": ["imi"],
            "units_per_layer": 1,
            "images": "imi",
            "fv": {"enabled": condition == "synthetic"},
        },
        "conditions": [condition],
        # Catch trials come with each task (in its design row), not from a pool.
        "trials": {"main": main, "catch": {"count": 0}, "practice": {"count": 0, "obvious": 0}},
    }
    return yaml.safe_dump(config, sort_keys=False)


def _reference_key(trial: ImiTrial) -> str:
    return hashlib.sha256("".join(i.sha256 for i in trial.references_max).encode()).hexdigest()


def _units(db: Session, model_name: str, layer: str, tasks: list[ImiTask]) -> dict[str, int]:
    """Reference-set key → unit id (units created as needed, numbered in order met)."""
    model = db.scalar(select(m.VisionModel).where(m.VisionModel.name == model_name))
    if model is None:
        model = m.VisionModel(name=model_name, source="imi", spec={})
        db.add(model)
        db.flush()
    keys = list(dict.fromkeys(_reference_key(t) for task in tasks for t in task.trials))
    units: dict[str, int] = {}
    for number, key in enumerate(keys):
        unit = db.scalar(
            select(m.Unit).where(
                m.Unit.model_id == model.id, m.Unit.layer == layer, m.Unit.index == number
            )
        )
        if unit is None:
            unit = m.Unit(model_id=model.id, layer=layer, index=number)
            db.add(unit)
            db.flush()
        units[key] = unit.id
    return units


def _add_images(db: Session, trial: ImiTrial, condition: str, seen: set[str]) -> None:
    roles = [(trial.query_max, "natural"), (trial.query_min, "natural")]
    roles += [(i, condition) for i in (*trial.references_max, *trial.references_min)]
    for image, kind in roles:
        if image.sha256 not in seen and db.get(m.Image, image.sha256) is None:
            db.add(
                m.Image(
                    sha256=image.sha256,
                    kind=kind,
                    media_type=image.media_type,
                    width=image.width,
                    height=image.height,
                )
            )
        seen.add(image.sha256)


def import_imi_study(
    db: Session,
    settings: Settings,
    path: str | Path,
    slug: str,
    model_name: str | None = None,
    condition: str = "natural",
    title: str | None = None,
) -> m.Study:
    """A draft study with one trial per IMI trial and one design row per IMI task."""
    if condition not in IMI_CONDITIONS:
        raise AppError(f"unknown condition {condition!r}: use {' or '.join(IMI_CONDITIONS)}")
    if db.scalar(select(m.Study.id).where(m.Study.slug == slug)) is not None:
        raise Conflict(f"a study with slug {slug!r} exists already: choose another --slug")
    folders = task_folders(path)
    store = open_image_store(settings)
    tasks = [read_imi_task(folder, store) for folder in folders]
    empty = [str(f) for f, t in zip(folders, tasks, strict=True) if not t.trials]
    if empty:
        raise AppError(f"{empty[0]}/index.json: n_trials is 0: nothing to import")
    experiment = Path(path).resolve().name
    model_name = model_name or tasks[0].model or "imi"
    text = _study_yaml(slug, title or f"IMI: {experiment}", model_name, condition, tasks)
    study = create_study(db, settings, text, f"{path} (import-imi)")
    units = _units(db, model_name, experiment, tasks)
    stimulus_set = m.StimulusSet(
        config_hash=hashlib.sha256(f"imi:{experiment}".encode()).hexdigest(),
        status="ready",
        manifest={"importer": "imi", "experiment": experiment, "tasks": len(tasks)},
    )
    db.add(stimulus_set)
    db.flush()
    seen: set[str] = set()
    rows: list[list[m.Trial]] = []
    for folder, task in zip(folders, tasks, strict=True):
        row = []
        for trial in task.trials:
            _add_images(db, trial, condition, seen)
            # Through the paradigm seam, so the trial stores its images by role and answer.
            trial_row = paradigm_trial_row(
                study.id,
                "imi",
                "catch" if trial.catch else "main",
                condition,
                units[_reference_key(trial)],
                sum(len(r) for r in rows) + len(row),
                {
                    "query_max": trial.query_max.sha256,
                    "query_min": trial.query_min.sha256,
                    "references_max": [i.sha256 for i in trial.references_max],
                    "references_min": [i.sha256 for i in trial.references_min],
                },
                IMI_CHOICES,
                "query_max",
                {"imi_task": folder.name, "imi_trial": trial.folder, "batch": 0},
            )
            row.append(trial_row)
        rows.append(row)
    db.add_all([t for row in rows for t in row])
    db.flush()
    for row in rows:
        for trial_row in row:
            for role, shas in (
                ("query_max", [trial_row.images["query_max"]]),
                ("query_min", [trial_row.images["query_min"]]),
                ("reference_max", trial_row.images["references_max"]),
                ("reference_min", trial_row.images["references_min"]),
            ):
                for rank, sha in enumerate(shas):
                    db.add(
                        m.Stimulus(
                            stimulus_set_id=stimulus_set.id,
                            unit_id=trial_row.unit_id,
                            image_sha256=sha,
                            role=role,
                            source=condition if role.startswith("reference") else "natural",
                            batch=trial_row.slot,
                            rank=rank,
                        )
                    )
    study.stimulus_set_id = stimulus_set.id
    # One design row per IMI task: its main and catch trials (catch sides balanced too).
    study.frozen = {"design_rows": [[t.id for t in row] for row in rows]}
    db.flush()
    n_trials = sum(len(r) for r in rows)
    record_audit_event(
        db,
        "study.import_imi",
        {"path": str(path), "tasks": len(rows), "n_trials": n_trials},
        study.id,
    )
    return study
