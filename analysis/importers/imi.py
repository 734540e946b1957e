"""Import a task of the IMI dataset (Zimmermann et al. 2023) as a stimulus set.

The layout is what IMI's `create_task_structure_from_json.py` writes: an experiment folder
of `task_N/` folders, each with `index.json` (`task_name`, `n_reference_images` (a string
there: argparse without a type), `n_trials`, `catch_trial_idxs` (1-based trial numbers),
optionally `model`, `layer`, `channel`) and per trial `trials/trial_1 … trial_n/` with
`queries/max.png|min.png` and `references/max_0…8.png|min_0…8.png`. An older layout
numbered from `trial_0` is read too. When a references folder holds more than K images,
IMI's page shows max_8, max_7, … (the K highest numbers) and the K lowest min ones; so do
we. Which image is which comes from the file names (`max…`/`min…`), the one place the
dataset records it; once imported, images are known only by content hash.
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
    catch: bool = False
    folder: str = ""  # trials/trial_N, as named on disk


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


def _int_field(path: Path, index: dict, key: str) -> int:
    try:
        return int(str(index[key]).strip())
    except ValueError:
        raise AppError(f"{path}: {key!r} must be a whole number, found {index[key]!r}") from None


def _catch_numbers(path: Path, index: dict, n_trials: int) -> set[int]:
    """`catch_trial_idxs`: 1-based trial numbers (IMI's page counts trials from 1)."""
    raw = index.get("catch_trial_idxs", [])
    if not isinstance(raw, list) or not all(isinstance(i, int) for i in raw):
        raise AppError(f"{path}: 'catch_trial_idxs' must be a list of trial numbers, found {raw!r}")
    outside = [i for i in raw if not 1 <= i <= n_trials]
    if outside:
        raise AppError(
            f"{path}: catch_trial_idxs {outside} outside 1..{n_trials} (n_trials); "
            "IMI numbers trials from 1"
        )
    return set(raw)


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
    index_path = root / "index.json"
    k = _int_field(index_path, index, "n_reference_images")
    n_trials = _int_field(index_path, index, "n_trials")
    catch = _catch_numbers(index_path, index, n_trials)
    task = ImiTask(
        task_name=str(index["task_name"]),
        model=index.get("model"),
        layer=index.get("layer"),
        channel=int(index["channel"]) if index.get("channel") is not None else None,
        n_reference_images=k,
    )

    def put(path: Path) -> StoredImage:
        return store.put(open_rgb(path), "png")

    # IMI's script writes trial_1 … trial_n; earlier exports started at trial_0.
    first = 0 if (root / "trials" / "trial_0").is_dir() else 1
    for n in range(n_trials):
        trial_dir = root / "trials" / f"trial_{n + first}"
        if not trial_dir.is_dir():
            raise AppError(
                f"{trial_dir}: missing; {index_path} says n_trials={n_trials}, so expected "
                f"trials/trial_{first} … trial_{n_trials - 1 + first}"
            )
        queries = {role: _images(trial_dir / "queries", role) for role in ("max", "min")}
        references = {role: _images(trial_dir / "references", role) for role in ("max", "min")}
        for role in ("max", "min"):
            if len(queries[role]) != 1:
                raise AppError(
                    f"{trial_dir}/queries: expected one {role} query image ({role}.png), "
                    f"found {len(queries[role])}"
                )
            if len(references[role]) < k:
                raise AppError(
                    f"{trial_dir}/references: expected {k} {role} references "
                    f"(n_reference_images), found {len(references[role])}"
                )
        task.trials.append(
            ImiTrial(
                index=n,
                query_max=put(queries["max"][0]),
                query_min=put(queries["min"][0]),
                references_max=[put(p) for p in references["max"][::-1][:k]],
                references_min=[put(p) for p in references["min"][:k]],
                catch=(n + 1) in catch,
                folder=f"trials/{trial_dir.name}",
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
