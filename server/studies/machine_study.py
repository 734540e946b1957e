"""A cross-model machine-score study (e.g. `studies/scale-demo.yaml`): several models, one
image set, one similarity observer; MIS per unit, layer and model.

It needs no participants, so it has its own small schema instead of a study's: the models
with their layers and units per layer, the images, and the observer (backend, alpha, N, K).
Each model is one `score_model` run, so the whole study resumes unit by unit.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from server.config import Settings
from server.errors import AppError
from server.studies.machine_scores import Progress, ScoreRequest, score_model
from server.studies.observers.backends import DEFAULT_BACKEND
from server.studies.observers.mis import K_REFERENCES, N_TASKS
from server.studies.observers.similarity import DEFAULT_ALPHA


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MachineModel(_Strict):
    model: str = Field(description="efficientnet-lite0|1|2, torchvision:ARCH, python:mod:fn")
    weights: str | None = None
    layers: list[str] | None = Field(None, description="Default: every block (builtin models).")
    units_per_layer: int = Field(4, ge=1, le=10_000)


class MachineStudyConfig(_Strict):
    title: str = Field(min_length=1, max_length=300)
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")
    description: str = ""
    images: str = Field("demo", description='Image folder, or "demo" (scikit-image photos).')
    demo_pool_per_photo: int = Field(12, ge=1, le=200)
    demo_pool_size: int = Field(256, ge=64, le=1024)
    models: list[MachineModel] = Field(min_length=1)
    backend: str = DEFAULT_BACKEND
    alpha: float = Field(DEFAULT_ALPHA, ge=0)
    n_tasks: int = Field(N_TASKS, ge=1, le=1000)
    k: int = Field(K_REFERENCES, ge=1, le=100)
    seed: int = Field(0, ge=0, lt=2**31)


def is_machine_study(data: object) -> bool:
    """A machine study lists `models` and has no participant task (`generation`): the two
    kinds of study file share title/slug, so this tells the commands which schema applies."""
    return isinstance(data, dict) and "models" in data and "generation" not in data


def load_machine_study(path: str | Path) -> MachineStudyConfig:
    """The validated file; errors name file, line and field, as for participant studies."""
    from server.studies.loading import _field_name, _node_line, read_yaml_file

    path = Path(path)
    root, data = read_yaml_file(path)
    if not isinstance(data, dict):
        raise AppError(f"{path}:1: a study file must be a mapping of fields")
    if not is_machine_study(data):
        raise AppError(
            f"{path}: this is a participant study (it has `generation`, no `models` list): "
            f"check it with `psychinterp study validate {path}` and generate it with "
            f"`psychinterp study generate {path}`; `mis study` reads machine-study files "
            "(a `models` list, e.g. studies/scale-demo.yaml)"
        )
    try:
        return MachineStudyConfig.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{path}:{_node_line(root, e['loc'])}: {_field_name(e['loc'])}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise AppError("; ".join(problems)) from None


def run_machine_study(
    db: Session,
    settings: Settings,
    config: MachineStudyConfig,
    progress: Progress | None = None,
    checkpoint=None,
) -> tuple[pd.DataFrame, float]:
    """Score every model of the study; per-unit scores of all models and the seconds taken."""
    from server.stimuli.generate import resolve_images

    started = time.perf_counter()
    images = resolve_images(settings, config)
    frames = []
    for entry in config.models:
        request = ScoreRequest(
            model=entry.model,
            images=images,
            layers=entry.layers,
            units_per_layer=entry.units_per_layer,
            backend=config.backend,
            alpha=config.alpha,
            n_tasks=config.n_tasks,
            k=config.k,
            seed=config.seed,
            device=settings.device,
            weights=entry.weights,
        )
        frames.append(score_model(db, settings, request, progress, checkpoint).frame())
    return pd.concat(frames, ignore_index=True), time.perf_counter() - started
