"""Machine interpretability scores of a model's units: sample, collect, embed, score, store.

One run = one model on one image set. The units' activations come from the batched,
cached collector (one pass for every layer); the similarity backend embeds every image
once, through the same collector and cache; all tasks of all units are then scored at once
(`server.studies.observers.mis`). Rows are keyed by everything the score depends on, so a
stopped run resumes by skipping stored units, and a second run with the same key is free.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.config import Settings
from server.db.models import MachineScore
from server.errors import AppError
from server.hashing import json_sha256
from server.studies.observers.backends import DEFAULT_BACKEND, make_backend
from server.studies.observers.mis import K_REFERENCES, N_TASKS, score_units
from server.studies.observers.similarity import DEFAULT_ALPHA

Progress = Callable[[str, int, int], None]

SCORE_COLUMNS = (
    "model",
    "layer",
    "unit",
    "layer_depth",
    "mis",
    "ci_low",
    "ci_high",
    "backend",
    "alpha",
    "n_tasks",
    "image_set",
    "note",
)


@dataclass(frozen=True)
class ScoreRequest:
    """What `psychinterp mis score` asks for."""

    model: str
    images: Path
    layers: list[str] | None = None
    units_per_layer: int | None = 8
    all_units: bool = False
    backend: str = DEFAULT_BACKEND
    alpha: float = DEFAULT_ALPHA
    n_tasks: int = N_TASKS
    k: int = K_REFERENCES
    seed: int = 0
    device: str = "cpu"
    weights: str | None = None
    backend_weights: str | None = None
    batch_size: int = 32


@dataclass
class ScoreRun:
    rows: list[MachineScore]
    scored: int = 0  # units scored in this run
    reused: int = 0  # units already stored for the same key
    skipped_images: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def frame(self) -> pd.DataFrame:
        return scores_frame(self.rows)


def default_layers(model) -> list[str]:
    """Every top-level block of a builtin EfficientNet-Lite; other models must name layers."""
    if model.spec.source == "builtin":
        return [n for n in model.layer_names() if n.startswith("_blocks.") and n.count(".") == 1]
    raise AppError(
        f"give --layers for {model.spec.name}; list them with: "
        f"psychinterp models layers {model.spec.name}"
    )


def image_set_key(root: Path, files: list[Path]) -> str:
    """Same files (relative name and size) -> same key, wherever the folder was rebuilt."""
    return json_sha256([[str(p.relative_to(root)), p.stat().st_size] for p in files])


def unit_seed(seed: int, layer: str, index: int) -> int:
    """A unit's task seed depends on the unit only: adding units never changes another's tasks."""
    return (seed * 1_000_003 + zlib.crc32(f"{layer}:{index}".encode())) % 2**31


def _units(loaded, request: ScoreRequest, layers: list[str]):
    from server.stimuli.units import UnitRef, layer_widths, sample_units

    if request.all_units:
        widths = layer_widths(loaded, layers)
        return [
            UnitRef(loaded.spec.name, layer, i) for layer in layers for i in range(widths[layer])
        ]
    if not request.units_per_layer or request.units_per_layer < 1:
        raise AppError("give --units N (units per layer, at least 1) or --all-units")
    return sample_units(loaded, layers, request.units_per_layer, request.seed)


def score_model(
    db: Session,
    settings: Settings,
    request: ScoreRequest,
    progress: Progress | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> ScoreRun:
    """Score the requested units of one model and store them; `checkpoint` runs per layer."""
    from server.stimuli.activations import collect_activations, resolve_image_set
    from server.stimuli.models import load_model
    from server.stimuli.units import layer_depths

    if request.n_tasks < 1 or request.k < 1:
        raise AppError("--tasks and --k must be at least 1")
    if not np.isfinite(request.alpha) or request.alpha < 0:
        raise AppError(f"--alpha must be a number >= 0, got {request.alpha}")
    started = time.perf_counter()
    image_set = resolve_image_set(request.images)
    loaded = load_model(request.model, request.device, request.weights)
    layers = list(dict.fromkeys(request.layers or default_layers(loaded)))
    depths = layer_depths(loaded, layers)
    units = _units(loaded, request, layers)
    key = {
        "model": loaded.spec.name,
        "backend": request.backend,
        "alpha": float(request.alpha),
        "n_tasks": request.n_tasks,
        "k": request.k,
        "seed": request.seed,
        "image_set": image_set_key(image_set.root, image_set.files),
    }
    stored = {(r.layer, r.unit_index): r for r in _stored(db, key, layers)}
    todo = [u for u in units if (u.layer, u.index) not in stored]
    run = ScoreRun(rows=[], reused=len(units) - len(todo))
    if todo:
        backend = make_backend(request.backend, request.device, request.backend_weights)
        table = collect_activations(
            loaded,
            image_set.files,
            todo,
            cache_dir=settings.data_dir / "activations",
            batch_size=request.batch_size,
            progress=progress,
        )
        run.skipped_images = table.skipped
        files, embeddings = backend.embed_files(
            table.files, settings.data_dir / "embeddings", progress
        )
        if files != [str(p) for p in table.files]:
            raise AppError(
                "the similarity backend could not read every image the model read; "
                "remove the unreadable files from the folder"
            )
        for done, layer in enumerate(dict.fromkeys(u.layer for u in todo)):
            layer_units = [u for u in todo if u.layer == layer]
            activations = np.stack([table.of(u) for u in layer_units], axis=1)
            seeds = [unit_seed(request.seed, u.layer, u.index) for u in layer_units]
            scores = score_units(
                activations, embeddings, request.alpha, request.k, request.n_tasks, seeds
            )
            for unit, score in zip(layer_units, scores, strict=True):
                row = MachineScore(
                    **key,
                    layer=unit.layer,
                    unit_index=unit.index,
                    layer_depth=depths[unit.layer],
                    images=str(image_set.root),
                    mis=score.mis,
                    ci_low=score.ci_low,
                    ci_high=score.ci_high,
                    deltas=score.deltas,
                    note=score.note,
                )
                db.add(row)
                stored[unit.layer, unit.index] = row
            db.flush()
            run.scored += len(layer_units)
            if checkpoint is not None:
                checkpoint()
            if progress is not None:
                progress("scoring", done + 1, len({u.layer for u in todo}))
    run.rows = [stored[u.layer, u.index] for u in units]
    run.seconds = time.perf_counter() - started
    return run


def _stored(db: Session, key: dict, layers: list[str]) -> list[MachineScore]:
    query = select(MachineScore).where(
        *(getattr(MachineScore, name) == value for name, value in key.items()),
        MachineScore.layer.in_(layers),
    )
    return list(db.scalars(query))


def scores_frame(rows: list[MachineScore]) -> pd.DataFrame:
    """One row per unit, tidy (NaN MIS for dropped units, the reason in `note`)."""
    records = [
        {
            "model": r.model,
            "layer": r.layer,
            "unit": r.unit_index,
            "layer_depth": r.layer_depth,
            "mis": r.mis,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
            "backend": r.backend,
            "alpha": r.alpha,
            "n_tasks": r.n_tasks,
            "image_set": r.image_set,
            "note": r.note,
        }
        for r in rows
    ]
    frame = pd.DataFrame(records, columns=list(SCORE_COLUMNS))
    return frame.astype({"mis": float, "ci_low": float, "ci_high": float})


def stored_scores(
    db: Session,
    models: list[str] | None = None,
    backend: str | None = None,
    alpha: float | None = None,
) -> pd.DataFrame:
    """Stored machine scores, optionally for some models / one backend / one alpha."""
    query = select(MachineScore).order_by(
        MachineScore.model, MachineScore.layer_depth, MachineScore.unit_index
    )
    if models:
        query = query.where(MachineScore.model.in_(models))
    if backend:
        query = query.where(MachineScore.backend == backend)
    if alpha is not None:
        query = query.where(MachineScore.alpha == float(alpha))
    return scores_frame(list(db.scalars(query)))
