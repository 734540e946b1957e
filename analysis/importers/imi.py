"""Import a task of the IMI dataset (Zimmermann et al. 2023) as a stimulus set.

A task folder holds `index.json` (`task_name`, `n_reference_images`, `n_trials`, and
optionally `model`, `layer`, `channel`) and, per trial, `trials/trial_N/queries/` (the
maximally and minimally activating query) and `trials/trial_N/references/` (K max and K
min references). Which image is which comes from the file names (`max…`/`min…`), the one
place the dataset records it; once imported, images are known only by content hash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db import models as m
from server.errors import AppError
from server.stimuli.images import open_rgb
from server.stimuli.store import ImageStore, StoredImage

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


@dataclass
class ImiTrial:
    index: int
    query_max: StoredImage
    query_min: StoredImage
    references_max: list[StoredImage]
    references_min: list[StoredImage]


@dataclass
class ImiTask:
    task_name: str
    model: str | None
    layer: str | None
    channel: int | None
    n_reference_images: int
    trials: list[ImiTrial] = field(default_factory=list)


def _number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else 0


def _images(folder: Path, role: str) -> list[Path]:
    """Files of `folder` whose name starts with `role` (max/min), in numeric order."""
    if not folder.is_dir():
        raise AppError(f"IMI task: missing folder {folder}")
    found = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.lower().startswith(role)
    ]
    return sorted(found, key=_number)


def _read_index(root: Path) -> dict:
    path = root / "index.json"
    if not path.exists():
        raise AppError(f"{root} is not an IMI task: it has no index.json")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AppError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    missing = [k for k in ("task_name", "n_reference_images", "n_trials") if k not in index]
    if missing:
        present = ", ".join(index) or "none"
        raise AppError(f"{path}: missing key {missing[0]!r}; keys present: {present}")
    return index


def read_imi_task(root: str | Path, store: ImageStore) -> ImiTask:
    """Every trial of the task, its images re-encoded into `store` (no names, no EXIF)."""
    root = Path(root)
    index = _read_index(root)
    k = int(index["n_reference_images"])
    task = ImiTask(
        task_name=str(index["task_name"]),
        model=index.get("model"),
        layer=index.get("layer"),
        channel=int(index["channel"]) if index.get("channel") is not None else None,
        n_reference_images=k,
    )

    def put(path: Path) -> StoredImage:
        return store.put(open_rgb(path), "png")

    for n in range(int(index["n_trials"])):
        trial_dir = root / "trials" / f"trial_{n}"
        queries = {role: _images(trial_dir / "queries", role) for role in ("max", "min")}
        references = {role: _images(trial_dir / "references", role) for role in ("max", "min")}
        for role in ("max", "min"):
            if len(queries[role]) != 1:
                raise AppError(f"{trial_dir}/queries: expected one {role} query image")
            if len(references[role]) != k:
                raise AppError(
                    f"{trial_dir}/references: expected {k} {role} references "
                    f"(n_reference_images), found {len(references[role])}"
                )
        task.trials.append(
            ImiTrial(
                index=n,
                query_max=put(queries["max"][0]),
                query_min=put(queries["min"][0]),
                references_max=[put(p) for p in references["max"]],
                references_min=[put(p) for p in references["min"]],
            )
        )
    return task


def _unit(db: Session, task: ImiTask, model_name: str | None) -> m.Unit:
    name = model_name or task.model or "imi"
    model = db.scalar(select(m.VisionModel).where(m.VisionModel.name == name))
    if model is None:
        model = m.VisionModel(name=name, source="imi", spec={})
        db.add(model)
        db.flush()
    layer, channel = task.layer or task.task_name, task.channel or 0
    unit = db.scalar(
        select(m.Unit).where(
            m.Unit.model_id == model.id, m.Unit.layer == layer, m.Unit.index == channel
        )
    )
    if unit is None:
        unit = m.Unit(model_id=model.id, layer=layer, index=channel)
        db.add(unit)
        db.flush()
    return unit


def add_imi_task(
    db: Session, task: ImiTask, source: str = "natural", model_name: str | None = None
) -> m.StimulusSet:
    """The task as a ready stimulus set: images, and per trial (batch) its four roles.

    `source` is natural or synthetic (what the references are). Only adds and flushes.
    """
    unit = _unit(db, task, model_name)
    stimulus_set = m.StimulusSet(
        config_hash=task.task_name,
        status="ready",
        manifest={"importer": "imi", "task_name": task.task_name, "trials": len(task.trials)},
    )
    db.add(stimulus_set)
    db.flush()
    seen: set[str] = set()
    for trial in task.trials:
        roles = [("query_max", [trial.query_max]), ("query_min", [trial.query_min])]
        roles += [("reference_max", trial.references_max), ("reference_min", trial.references_min)]
        for role, images in roles:
            for rank, image in enumerate(images):
                if image.sha256 not in seen and db.get(m.Image, image.sha256) is None:
                    db.add(
                        m.Image(
                            sha256=image.sha256,
                            kind=source if role.startswith("reference") else "natural",
                            media_type=image.media_type,
                            width=image.width,
                            height=image.height,
                        )
                    )
                seen.add(image.sha256)
                db.add(
                    m.Stimulus(
                        stimulus_set_id=stimulus_set.id,
                        unit_id=unit.id,
                        image_sha256=image.sha256,
                        role=role,
                        source=source if role.startswith("reference") else "natural",
                        batch=trial.index,
                        rank=rank,
                    )
                )
    db.flush()
    return stimulus_set
