"""Occlusion stimuli for a stimulus set, and occlusion trials from them.

Generation runs the usual pipeline first (activations, natural exemplars in batches,
feature visualizations when a condition shows them), then, per unit and batch, occludes the
batch's most activating image (the base, as in the paper) on the grid of the study's
`task:` section. It stores the base, both occluded images (PNG, exact pixels) and their
activations as stimuli of source `occlusion`, blurred natural references when the
`natural_blurred` condition is used, and the ground truth in the manifest. Any failure
marks the set failed, so a half-generated study never gets trials (and never goes live).

Trials reuse the 2AFC builder's material logic (reserved units/batches for practice and
catch, the main batches for main trials); only what a trial shows differs:
- regular: the max and min occlusion of the batch's base; references are the batch's next
  most activating images (`natural`), feature visualizations (`synthetic`), 4 of them + 5
  natural (`mixed`), blurred naturals (`natural_blurred`) or none (`none`).
- obvious (catch, first practice trials): the unoccluded base against the min occlusion.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFilter
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.config import Settings
from server.db.models import Stimulus, StimulusSet, Trial, Unit, VisionModel
from server.errors import AppError
from server.paradigms.base import trial_row
from server.stimuli.generate import (
    GenerationFailed,
    ImageWriter,
    generate_stimuli,
    write_manifest,
)
from server.stimuli.occlusion import occlude_unit
from server.stimuli.storage import ImageStorage, open_image_store
from server.stimuli.units import UnitRef
from server.studies.schema import StudyConfig
from server.studies.trials import TrialBuilder, load_unit_stimuli

CHOICES = ("query_max", "query_min")
N_MIXED_SYNTHETIC = 4  # the paper's mixed condition: 5 natural + 4 synthetic


def _pixels(store: ImageStorage, sha: str, side: int, min_px: int = 1) -> np.ndarray:
    path, _ = store.locate(sha)
    if path is None:
        raise AppError(f"stimulus image {sha[:12]} is missing from the store")
    image = PILImage.open(io.BytesIO(path.read_bytes())).convert("RGB")
    if min(image.size) < min_px:
        raise AppError(
            f"task.min_base_px: base image {sha[:12]} is {image.size[0]}x{image.size[1]} px, "
            f"smaller than {min_px} px: use a model with larger inputs or larger images"
        )
    if image.size != (side, side):
        image = image.resize((side, side), PILImage.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def generate(db: Session, settings: Settings, config: StudyConfig, progress=None) -> StimulusSet:
    """The usual stimulus set plus its occlusions (see the module doc)."""
    stimulus_set = generate_stimuli(db, settings, config.generation, progress=progress)
    # The stimulus set is written (not committed) now. On SQLite that transaction holds the
    # database's only write lock, so a job's progress row could not be saved until it ends
    # ("database is locked"): the occlusion step reports progress on other databases only.
    if progress is not None and db.get_bind().dialect.name == "sqlite":
        progress = None
    try:
        with db.begin_nested():
            add_occlusions(db, settings, config, stimulus_set, progress)
    except Exception as exc:
        stimulus_set.status = "failed"
        message = exc.message if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
        stimulus_set.manifest = {**stimulus_set.manifest, "error": message}
        db.flush()
        raise GenerationFailed(message, stimulus_set.id) from exc
    # The contact sheet again, now with each unit's base image and its two occlusions.
    from server.stimuli.generate import _write_overview

    _write_overview(db, settings, stimulus_set.id)
    return stimulus_set


def add_occlusions(
    db: Session, settings: Settings, config: StudyConfig, stimulus_set: StimulusSet, progress
) -> None:
    from server.stimuli.models import load_model

    task = config.task
    store = open_image_store(settings)  # local directory, or S3 with a local copy (issue 24)
    writer = ImageWriter(db, store)
    rows = db.execute(
        select(Stimulus, Unit.layer, Unit.index, VisionModel.name)
        .join(Unit, Unit.id == Stimulus.unit_id)
        .join(VisionModel, VisionModel.id == Unit.model_id)
        .where(
            Stimulus.stimulus_set_id == stimulus_set.id,
            Stimulus.source == "natural",
            Stimulus.role == "reference_max",
        )
        .order_by(Stimulus.unit_id, Stimulus.batch, Stimulus.rank)
    ).all()
    batches: dict[tuple[int, int], list[Stimulus]] = defaultdict(list)
    names: dict[int, UnitRef] = {}
    for stim, layer, index, model_name in rows:
        batches[(stim.unit_id, stim.batch)].append(stim)
        names[stim.unit_id] = UnitRef(model_name, layer, index)
    if not batches:
        raise AppError("the stimulus set has no natural exemplars to occlude")
    model = load_model(config.generation.model, settings.device, config.generation.weights)
    blur = "natural_blurred" in config.conditions
    ground_truth = []
    for done, ((unit_id, batch), refs) in enumerate(sorted(batches.items())):
        if progress is not None:
            progress("occlusions", done, len(batches))
        unit = names[unit_id]
        base_stim = refs[0]  # the most activating image of the batch
        base = _pixels(store, base_stim.image_sha256, task.image_px, task.min_base_px)
        try:
            occ = occlude_unit(
                model,
                unit,
                base,
                task.patch_fraction,
                task.stride_px,
                task.batch_size,
                task.min_base_px,
            )
        except AppError as exc:
            raise AppError(f"task.patch_fraction / generation.layers: {exc.message}") from None
        base_sha = writer.put(base, "natural", "png")
        entries = [
            ("base", base_sha, occ.base_activation),
            ("occlusion_max", writer.put(occ.max_image, "occlusion", "png"), occ.activation_max),
            ("occlusion_min", writer.put(occ.min_image, "occlusion", "png"), occ.activation_min),
        ]
        if blur:
            for ref in refs[1:]:
                pixels = _pixels(store, ref.image_sha256, task.image_px)
                blurred = PILImage.fromarray(pixels).filter(
                    ImageFilter.GaussianBlur(task.blur_sigma)
                )
                sha = writer.put(np.asarray(blurred), "natural", "png")
                db.add(
                    Stimulus(
                        stimulus_set_id=stimulus_set.id,
                        unit_id=unit_id,
                        image_sha256=sha,
                        role="reference_max",
                        source="natural_blurred",
                        batch=batch,
                        rank=ref.rank,
                        activation=ref.activation,
                    )
                )
        for role, sha, act in entries:
            db.add(
                Stimulus(
                    stimulus_set_id=stimulus_set.id,
                    unit_id=unit_id,
                    image_sha256=sha,
                    role=role,
                    source="occlusion",
                    batch=batch,
                    rank=0,
                    activation=float(act),
                )
            )
        ground_truth.append(
            {
                "layer": unit.layer,
                "unit": unit.index,
                "batch": batch,
                "base": base_sha,
                "activation_base": occ.base_activation,
                "activation_max": occ.activation_max,
                "activation_min": occ.activation_min,
                "max_position": list(occ.max_position),
                "min_position": list(occ.min_position),
            }
        )
    if progress is not None:
        progress("occlusions", len(batches), len(batches))
    grid = occ.grid
    stimulus_set.manifest = {
        **stimulus_set.manifest,
        "occlusion": {
            "patch_fraction": task.patch_fraction,
            "patch_px": grid.patch,
            "stride_px": grid.stride,
            "image_px": grid.side,
            "positions_per_side": grid.per_side,
            "trials": ground_truth,
        },
    }
    write_manifest(settings, stimulus_set.id, stimulus_set.manifest)
    db.flush()


@dataclass
class _Occ:
    base: str
    query_max: str
    query_min: str
    activation: dict[str, float] = field(default_factory=dict)


def _load_occlusions(db: Session, stimulus_set_id: str):
    occ: dict[tuple[int, int], dict[str, tuple[str, float]]] = defaultdict(dict)
    blurred: dict[tuple[int, int], list[str]] = defaultdict(list)
    for unit_id, batch, role, source, sha, act in db.execute(
        select(
            Stimulus.unit_id,
            Stimulus.batch,
            Stimulus.role,
            Stimulus.source,
            Stimulus.image_sha256,
            Stimulus.activation,
        )
        .where(
            Stimulus.stimulus_set_id == stimulus_set_id,
            Stimulus.source.in_(["occlusion", "natural_blurred"]),
        )
        .order_by(Stimulus.unit_id, Stimulus.batch, Stimulus.rank)
    ):
        if source == "occlusion":
            occ[(unit_id, batch)][role] = (sha, float(act))
        else:
            blurred[(unit_id, batch)].append(sha)
    return occ, blurred


class OcclusionTrialBuilder(TrialBuilder):
    """The 2AFC builder's material and design logic, with occlusion trials as its trials."""

    def __init__(self, config, units, occlusions, blurred, geometry=None):
        super().__init__(config, units)
        self.occlusions = occlusions
        self.blurred = blurred
        # (unit_id, batch) -> patch size and positions, from the manifest (export columns)
        self.geometry = geometry or {}
        self.k = 9

    def _references(self, unit, condition: str, batch: int) -> tuple[list[str], bool]:
        natural = unit.natural[batch]["reference_max"][1:]  # [0] is the base image
        if condition == "none":
            return [], False
        if condition == "natural":
            return natural[: self.k], False
        if condition == "natural_blurred":
            return self.blurred[(unit.unit_id, batch)][: self.k], False
        synthetic = unit.synthetic.get("reference_max") or []
        if not synthetic:
            raise AppError(f"unit {unit.unit_id} has no feature visualizations for {condition!r}")
        if condition == "synthetic":
            return synthetic[: self.k], True
        m = min(N_MIXED_SYNTHETIC, len(synthetic))
        return synthetic[:m] + natural[: self.k - m], True

    def _make(self, kind, unit, condition, batch, slot, extra, obvious: bool):
        occ = self.occlusions.get((unit.unit_id, batch))
        if occ is None:
            raise AppError(f"unit {unit.unit_id} batch {batch} has no occlusion stimuli")
        shown = "natural" if obvious and condition == "none" else condition
        refs, fixed = self._references(unit, shown, batch)
        (base, a_base), (q_max, a_max), (q_min, a_min) = (
            occ["base"],
            occ["occlusion_max"],
            occ["occlusion_min"],
        )
        geometry = dict(self.geometry.get((unit.unit_id, batch), {}))
        if obvious:  # the unoccluded favourite against the least favoured occlusion
            q_max, a_max = base, a_base
            geometry.pop("occlusion_max_top", None)
            geometry.pop("occlusion_max_left", None)
        details = {
            "batch": batch,
            "fixed_first": fixed,
            "obvious": obvious,
            "activation_base": a_base,
            "activation_max": a_max,
            "activation_min": a_min,
            "activation_diff": a_max - a_min,
            **geometry,
            **(extra or {}),
        }
        images = {"query_max": q_max, "query_min": q_min, "base": base, "references_max": refs}
        return (kind, condition, unit.unit_id, slot, images, details)

    def _regular(self, kind, unit, condition, batch, slot, extra=None):
        return self._make(kind, unit, condition, batch, slot, extra, obvious=False)

    def _obvious(self, kind, unit, condition, batch, slot, extra=None):
        return self._make(kind, unit, condition, batch, slot, extra, obvious=True)


def _geometry(db: Session, stimulus_set_id: str) -> dict[tuple[int, int], dict[str, Any]]:
    """(unit_id, batch) -> patch fraction and size and the two occlusions' positions, as the
    manifest's ground truth records them."""
    manifest = db.get(StimulusSet, stimulus_set_id).manifest.get("occlusion") or {}
    units = {
        (layer, index): unit_id
        for unit_id, layer, index in db.execute(
            select(Unit.id, Unit.layer, Unit.index).where(
                Unit.id.in_(
                    select(Stimulus.unit_id).where(Stimulus.stimulus_set_id == stimulus_set_id)
                )
            )
        )
    }
    out = {}
    for entry in manifest.get("trials", []):
        unit_id = units.get((entry["layer"], entry["unit"]))
        if unit_id is None:
            continue
        (max_top, max_left), (min_top, min_left) = entry["max_position"], entry["min_position"]
        out[(unit_id, entry["batch"])] = {
            "patch_fraction": manifest.get("patch_fraction"),
            "patch_px": manifest.get("patch_px"),
            "occlusion_max_top": max_top,
            "occlusion_max_left": max_left,
            "occlusion_min_top": min_top,
            "occlusion_min_left": min_left,
        }
    return out


def build_occlusion_trials(
    db: Session, config: StudyConfig, study_id: int, stimulus_set_id: str
) -> list[Trial]:
    occlusions, blurred = _load_occlusions(db, stimulus_set_id)
    if not occlusions:
        raise AppError(
            "the stimulus set has no occlusion stimuli: generate it with `paradigm: occlusion`"
        )
    builder = OcclusionTrialBuilder(
        config,
        load_unit_stimuli(db, stimulus_set_id),
        occlusions,
        blurred,
        _geometry(db, stimulus_set_id),
    )
    return [
        trial_row(
            study_id,
            "occlusion",
            kind,
            condition,
            unit_id,
            slot,
            images,
            CHOICES,
            "query_max",
            details,
        )
        for kind, condition, unit_id, slot, images, details in builder.all()
    ]


def occlusion_ground_truth(details: dict[str, Any]) -> float:
    """The activation difference a trial's answer rests on (analysis)."""
    return float(details.get("activation_diff", 0.0))
