"""Generation of a stimulus set from a study's `generation:` section (pipeline steps 1-5).

`GenerationConfig` is plain pydantic (importing this module loads no model and no torch);
`generate_stimuli` is the service: units -> activations -> natural exemplars -> feature
visualizations -> validity -> images in the store + rows in the database.

Atomicity: heavy work happens before any Stimulus row exists; the rows and the status
change to "ready" are added in one savepoint at the end. On failure the savepoint is
rolled back, the set is marked "failed" (commit the session to record that) and
`GenerationFailed` is raised, so no half-written set is ever "ready".
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.config import Settings
from server.db.models import Image, Stimulus, StimulusSet, Unit, VisionModel, new_id
from server.errors import AppError
from server.hashing import json_sha256
from server.stimuli.presets import LUCID_ANGLES, LUCID_SCALES, FVPresetName, apply_fv_preset

if TYPE_CHECKING:
    from server.stimuli.activations import ActivationTable
    from server.stimuli.models import LoadedModel
    from server.stimuli.storage import ImageStorage
    from server.stimuli.units import UnitRef
    from server.stimuli.visualize import Visualization
    from server.studies.machine_study import MachineStudyConfig

Progress = Callable[[str, int, int], None]


class DiversitySearchConfig(BaseModel):
    """IMI's per-unit search for the diversity weight (PARADIGMS.md; `diversity.py`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    start: float = Field(1.0, gt=0, description="First alpha tried.")
    factor: float = Field(10.0, gt=1, description="Growth while the images stay strong.")
    max_increases: int = Field(6, ge=0, description="At most start * factor**max_increases.")
    bisect_steps: int = Field(7, ge=0)


class FVConfig(BaseModel):
    """Feature visualization settings: a named `preset` (presets.py, docs/fidelity.md) with
    any field set explicitly overriding it; `fast` (the default) is the laptop setting."""

    model_config = ConfigDict(extra="forbid")

    preset: FVPresetName = Field(
        "fast", description="imi | borowski | fast: the original studies' values or laptop ones."
    )
    enabled: bool = True
    steps: int = Field(512, ge=1, le=100_000, description="Maximum optimisation steps.")
    lr: float = Field(0.05, gt=0, description="Adam learning rate.")
    image_size: int = Field(224, ge=16, le=1024, description="Canvas size in pixels.")
    crop_size: int | None = Field(
        None,
        ge=16,
        le=1024,
        description="Central crop of the canvas the network sees and participants are shown "
        "(IMI: a 256 px canvas cropped to 224); none: the whole canvas.",
    )
    render_size: int | None = Field(
        None,
        ge=16,
        le=1024,
        description="Network input size while rendering and when measuring the result "
        "(default: the model's, where the natural exemplars are measured); smaller is faster "
        "for fully convolutional models but features then appear at another scale.",
    )
    n_diverse: int = Field(8, ge=0, le=64, description="Diverse images per unit and direction.")
    diversity_weight: float = Field(1.0, ge=0, description="alpha, unless searched.")
    diversity_search: DiversitySearchConfig = Field(default_factory=DiversitySearchConfig)
    batch_size: int = Field(64, ge=1, description="Images per forward/backward pass.")
    pad: int = Field(12, ge=0)
    jitter: int = Field(8, ge=0)
    scales: list[float] = Field(default_factory=lambda: list(LUCID_SCALES), min_length=1)
    angles: list[float] = Field(default_factory=lambda: list(LUCID_ANGLES), min_length=1)
    jitter_after: int = Field(4, ge=0)
    cuda_graphs: bool = Field(
        True,
        description="On CUDA, capture each optimisation step once as a CUDA graph and replay "
        "it (same maths, far fewer kernel launches); falls back to eager with a warning.",
    )
    cpu_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="On CPU, torch threads per chunk while rendering and measuring. None: "
        "the process's (torch's default, all cores: fastest on an idle machine). CPU results "
        "(hence stimulus hashes) depend on this count: set it to make hashes the same on "
        "every machine and runner; 1 pays on a machine busier than its cores (README).",
    )
    early_stop: bool = True
    stop_rule: Literal["objective_plateau", "gradient_norm"] = Field(
        "objective_plateau",
        description="objective_plateau: the objective's gain per window fell below "
        "plateau_tolerance; gradient_norm (IMI): the gradient norm's mean over the window "
        "before, divided by its mean over the last window, is at most gradient_ratio.",
    )
    plateau_min_steps: int = Field(256, ge=1)
    plateau_window: int = Field(64, ge=1)
    plateau_tolerance: float = Field(0.01, ge=0, description="Relative gain per window.")
    gradient_ratio: float = Field(1.1, ge=1.0, description="For stop_rule gradient_norm.")
    non_diverse_runs: int = Field(
        1, ge=1, le=64, description="Non-diverse renders per unit and direction; the best is kept."
    )
    no_alpha_fallback: Literal["keep_diverse", "non_diverse"] = Field(
        "keep_diverse",
        description="When the alpha search finds no alpha whose diverse images beat the "
        "natural ones: keep them anyway, or (IMI) show the non-diverse runs instead.",
    )
    rerender_factor: int = Field(2, ge=1, description="Step multiplier for invalid units.")

    @model_validator(mode="before")
    @classmethod
    def _preset_values(cls, data: object) -> object:
        return apply_fv_preset(data)

    @field_validator("scales")
    @classmethod
    def _positive_scales(cls, value: list[float]) -> list[float]:
        if any(s <= 0 for s in value):
            raise ValueError("scales must all be positive (1.0 = unchanged)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FVConfig:
        if self.crop_size is not None and self.crop_size > self.image_size:
            raise ValueError(
                f"crop_size ({self.crop_size}) cannot exceed image_size ({self.image_size})"
            )
        if self.no_alpha_fallback == "non_diverse" and self.non_diverse_runs < 1 + self.n_diverse:
            raise ValueError(
                f"no_alpha_fallback non_diverse replaces the {self.n_diverse} diverse images by "
                f"non-diverse runs: set non_diverse_runs to at least {1 + self.n_diverse}"
            )
        return self


class GenerationConfig(BaseModel):
    """What to generate: model, units, image set, exemplar counts and visualizations."""

    model_config = ConfigDict(extra="forbid")

    model: str = "efficientnet-lite0"
    weights: str | None = None
    layers: list[str] = Field(min_length=1)
    units_per_layer: int = Field(ge=1)
    seed: int = 0
    images: str = Field(
        "demo", description='Image directory, or "demo" for the scikit-image demo pool.'
    )
    demo_pool_per_photo: int = Field(12, ge=1, le=200)
    demo_pool_size: int = Field(256, ge=64, le=1024)
    k_references: int = Field(9, ge=1, le=64)
    n_batches: int = Field(1, ge=1, description="Trial variants (batches) per unit.")
    queries: Literal["extreme", "p99", "p95", "p85"] = Field(
        "extreme",
        description="Query band: next to the references (extreme) or IMI's harder "
        "99th/95th/85th percentile ranges.",
    )
    layer_point: Literal["pre_relu", "output"] | dict[str, Literal["pre_relu", "output"]] = Field(
        "output",
        description="Read units at the layer's output or before its ReLU; one value for all "
        "layers or a mapping layer -> point (layers not named: output).",
    )
    reserved_units_per_layer: int = Field(
        0,
        ge=0,
        description="Extra units per layer used only for practice and catch trials "
        "(IMI: practice and catch material no main trial shows).",
    )
    reserved_batches: int = Field(
        0, ge=0, description="The first N batches of every unit: practice and catch only."
    )
    batch_size: int = Field(32, ge=1, description="Images per forward pass (activations).")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    natural_format: Literal["jpg", "webp"] = "jpg"
    fv: FVConfig = Field(default_factory=FVConfig)
    invalid_units: Literal["exclude", "rerender"] = "exclude"

    @field_validator("layers")
    @classmethod
    def _distinct_layers(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("layers must be distinct")
        if any(not name.strip() for name in value):
            raise ValueError("layer names must not be empty (see: psychinterp models layers)")
        return value

    @model_validator(mode="after")
    def _images_given(self) -> GenerationConfig:
        if not self.images.strip():
            raise ValueError('images must be a directory or "demo"')
        if isinstance(self.layer_point, dict):
            unknown = sorted(set(self.layer_point) - set(self.layers))
            if unknown:
                raise ValueError(f"layer_point names layers not in `layers`: {unknown}")
        if self.reserved_batches >= self.n_batches:
            raise ValueError(
                f"reserved_batches ({self.reserved_batches}) must leave main batches: "
                f"raise n_batches above it (now {self.n_batches})"
            )
        return self

    def layer_points(self) -> dict[str, Literal["pre_relu", "output"]]:
        if isinstance(self.layer_point, dict):
            return {layer: self.layer_point.get(layer, "output") for layer in self.layers}
        return dict.fromkeys(self.layers, self.layer_point)

    def config_hash(self) -> str:
        """sha256 of the canonical JSON: identical configs -> identical hash (cite it)."""
        return json_sha256(self.model_dump(mode="json"))


class GenerationFailed(AppError):
    """Generation stopped; the set is marked failed in the session (commit to record it)."""

    status_code = 500

    def __init__(self, message: str, stimulus_set_id: str):
        super().__init__(message)
        self.stimulus_set_id = stimulus_set_id


# --- service -----------------------------------------------------------------------------------


def resolve_images(settings: Settings, config: GenerationConfig | MachineStudyConfig) -> Path:
    """The image folder a config names; "demo" builds (once) the demo pool of its size."""
    if config.images != "demo":
        return Path(config.images)
    from server.stimuli.demo_images import build_demo_pool

    folder = f"{config.demo_pool_per_photo}x{config.demo_pool_size}"
    return build_demo_pool(
        settings.data_dir / "demo-images" / folder,
        per_photo=config.demo_pool_per_photo,
        size=config.demo_pool_size,
    )


def generate_stimuli(
    db: Session,
    settings: Settings,
    config: GenerationConfig,
    progress: Progress | None = None,
    device: str | None = None,
) -> StimulusSet:
    """Generate a stimulus set; returns it with status "ready" (flushed, not committed).

    Nothing is written while the model computes (minutes): on SQLite a write would hold
    the database's write lock all that time, and a job's progress rows could not be saved.
    """
    stimulus_set = StimulusSet(
        id=new_id(), config_hash=config.config_hash(), status="building", manifest={}
    )
    try:
        computed = _compute(settings, config, progress, device or settings.device)
        if progress is not None:  # not while writing: a job's report would wait for our lock
            progress("store images", 0, 1)
        db.add(stimulus_set)
        db.flush()
        with db.begin_nested():
            _write(db, settings, config, stimulus_set, computed)
        _write_overview(db, settings, stimulus_set.id)
        fv_chunk_cache(settings, config).clear()  # stored now; the cache only served resumes
    except Exception as exc:
        db.add(stimulus_set)
        stimulus_set.status = "failed"
        message = exc.message if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
        stimulus_set.manifest = {"error": message}
        db.flush()
        raise GenerationFailed(message, stimulus_set.id) from exc
    return stimulus_set


class _Computed:
    """Everything generation produced before touching the database."""

    def __init__(self, model: LoadedModel, units: list[UnitRef], table: ActivationTable):
        self.model = model
        self.units = units
        self.table = table
        self.layers: dict[str, str] = {}  # layer asked for -> module read (layer_point)
        self.reserved_units: set[UnitRef] = set()  # practice and catch material only
        self.exemplars: dict[UnitRef, list] = {}
        self.visualizations: dict[tuple[UnitRef, str], Visualization] = {}
        self.valid: dict[UnitRef, bool] = {}
        self.alphas: dict[tuple[UnitRef, str], float] = {}
        self.alpha_trials: dict[tuple[UnitRef, str], list[tuple[float, bool]]] = {}
        self.fallbacks: dict[tuple[UnitRef, str], bool] = {}  # non-diverse shown instead
        self.depths: dict[str, float] = {}


def fv_chunk_cache(settings: Settings, config: GenerationConfig):
    """Rendered FV chunks of this generation config, kept until its set is stored."""
    from server.stimuli.fv_cache import ChunkCache

    return ChunkCache(settings.data_dir / "fv-cache" / config.config_hash())


def _compute(
    settings: Settings, config: GenerationConfig, progress: Progress | None, device: str
) -> _Computed:
    from server.stimuli.activations import collect_activations
    from server.stimuli.exemplars import select_exemplars
    from server.stimuli.layer_points import resolve_layers
    from server.stimuli.models import load_model
    from server.stimuli.units import layer_depths

    report = progress or (lambda stage, done, total: None)
    report("load model", 0, 1)
    model = load_model(config.model, device, config.weights)
    report("load model", 1, 1)
    layers = resolve_layers(model, config.layers, config.layer_points())
    units, reserved = _sample_main_and_reserved(model, config, list(layers.values()))
    table = collect_activations(
        model,
        resolve_images(settings, config),
        units,
        cache_dir=settings.data_dir / "activations",
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        progress=progress,
    )
    computed = _Computed(model, units, table)
    computed.layers = layers
    computed.reserved_units = reserved
    computed.depths = layer_depths(model, list(layers.values()))
    for i, unit in enumerate(units):
        computed.exemplars[unit] = select_exemplars(
            table.of(unit),
            config.k_references,
            config.n_batches,
            seed=config.seed * 7919 + i,
            queries=config.queries,
        )
        report("exemplars", i + 1, len(units))
    if config.fv.enabled:
        _visualize(computed, config, progress, fv_chunk_cache(settings, config))
    else:
        computed.valid = {unit: True for unit in units}
    return computed


def _sample_main_and_reserved(
    model: LoadedModel, config: GenerationConfig, layers: list[str]
) -> tuple[list[UnitRef], set[UnitRef]]:
    """All units, and the reserved ones among them: per layer a seeded choice of
    `reserved_units_per_layer` of the `units_per_layer + reserved` sampled."""
    from server.stimuli.units import sample_units

    extra = config.reserved_units_per_layer
    units = sample_units(model, layers, config.units_per_layer + extra, config.seed)
    reserved: set[UnitRef] = set()
    if extra:
        rng = random.Random(config.seed * 31 + 7)
        for layer in layers:
            of_layer = [u for u in units if u.layer == layer]
            reserved.update(rng.sample(of_layer, extra))
    return units, reserved


def _visualize(
    computed: _Computed, config: GenerationConfig, progress: Progress | None, chunk_cache=None
) -> None:
    """Render max+min FVs (alpha searched or fixed), apply IMI's validity rule, re-render."""
    from server.stimuli.folding import fold_for_rendering
    from server.stimuli.visualize import render_visualizations

    # Folded once: the alpha search and the re-render call the renderer many times.
    render_model = fold_for_rendering(computed.model, list(computed.layers.values()))

    def render(units: list[UnitRef], steps: int, weights=None) -> list[Visualization]:
        return render_visualizations(
            computed.model,
            units,
            config.fv,
            config.seed,
            steps=steps,
            progress=progress,
            diversity_weights=weights,
            render_model=render_model,
            chunk_cache=chunk_cache,
        )

    def keep(visualizations: list[Visualization]) -> None:
        for vis in visualizations:
            computed.visualizations[(vis.unit, vis.direction)] = vis

    def plain_runs(units: list[UnitRef], steps: int) -> list[list[Visualization]]:
        """Runs 2..n of the non-diverse image, each from its own seed (IMI: best of 9)."""
        plain = config.fv.model_copy(update={"n_diverse": 0})
        return [
            render_visualizations(
                computed.model,
                units,
                plain,
                config.seed + 104_729 * run,
                steps=steps,
                progress=progress,
                render_model=render_model,
                chunk_cache=chunk_cache,
            )
            for run in range(1, config.fv.non_diverse_runs)
        ]

    search = config.fv.diversity_search
    if search.enabled and config.fv.n_diverse > 1:
        _search_alphas(computed, config, lambda w: render(computed.units, config.fv.steps, w))
    else:
        keep(render(computed.units, config.fv.steps))
        computed.alphas = {key: config.fv.diversity_weight for key in computed.visualizations}
    _use_non_diverse_runs(
        computed, config.fv, computed.units, plain_runs(computed.units, config.fv.steps)
    )
    computed.valid = {u: _is_valid(computed, u) for u in computed.units}
    invalid = [u for u, ok in computed.valid.items() if not ok]
    if invalid and config.invalid_units == "rerender":
        steps = config.fv.steps * config.fv.rerender_factor
        weights = {(u, d): computed.alphas[(u, d)] for u in invalid for d in ("max", "min")}
        keep(render(invalid, steps, weights))
        _use_non_diverse_runs(computed, config.fv, invalid, plain_runs(invalid, steps))
        computed.valid.update({u: _is_valid(computed, u) for u in invalid})


def _use_non_diverse_runs(
    computed: _Computed, fv: FVConfig, units: list[UnitRef], runs: list[list[Visualization]]
) -> None:
    """Keep the strongest non-diverse image of all runs first; where the alpha search found
    no passing alpha and the study asks for IMI's fallback, show the runs instead of the
    failing diverse images (strongest first)."""
    by_key = {
        (v.unit, v.direction): [v]
        for v in (computed.visualizations[(u, d)] for u in units for d in ("max", "min"))
    }
    for run in runs:
        for vis in run:
            by_key[(vis.unit, vis.direction)].append(vis)
    for key, visualizations in by_key.items():
        main = visualizations[0]
        sign = 1.0 if key[1] == "max" else -1.0
        plain = sorted(
            ((v.images[0], float(v.activations[0])) for v in visualizations),
            key=lambda image_act: -sign * image_act[1],
        )
        trials = computed.alpha_trials.get(key)
        fallback = (
            fv.no_alpha_fallback == "non_diverse"
            and trials is not None
            and not any(ok for _alpha, ok in trials)
        )
        chosen = plain[: 1 + fv.n_diverse] if fallback else plain[:1]
        images = np.concatenate([np.stack([im for im, _ in chosen]), main.images[len(chosen) :]])
        acts = np.concatenate(
            [np.array([a for _, a in chosen], np.float32), main.activations[len(chosen) :]]
        )
        computed.visualizations[key] = dataclasses.replace(main, images=images, activations=acts)
        computed.fallbacks[key] = fallback


def _search_alphas(computed: _Computed, config: GenerationConfig, render_round) -> None:
    """Per (unit, direction), IMI's largest alpha whose diverse images beat every exemplar."""
    from server.stimuli.diversity import search_diversity

    keys = [(u, d) for u in computed.units for d in ("max", "min")]
    results = search_diversity(keys, computed.table.of, render_round, config.fv.diversity_search)
    for key, result in results.items():
        computed.visualizations[key] = result.visualization
        computed.alphas[key] = result.alpha
        computed.alpha_trials[key] = result.tried


def _is_valid(computed: _Computed, unit: UnitRef) -> bool:
    """IMI: the plain max FV beats the strongest natural image; the min FV the weakest."""
    natural = computed.table.of(unit)
    fv_max = computed.visualizations[(unit, "max")].activations[0]
    fv_min = computed.visualizations[(unit, "min")].activations[0]
    return bool(fv_max > natural.max() and fv_min < natural.min())


def manifest_entries(computed: _Computed) -> list[dict[str, Any]]:
    rows = []
    for unit in computed.units:
        natural = computed.table.of(unit)
        vmax = computed.visualizations.get((unit, "max"))
        vmin = computed.visualizations.get((unit, "min"))
        rows.append(
            {
                "model": unit.model,
                "layer": unit.layer,
                "unit": unit.index,
                "fv_max_activation": float(vmax.activations[0]) if vmax else None,
                "fv_min_activation": float(vmin.activations[0]) if vmin else None,
                "fv_steps": max(vmax.steps, vmin.steps) if vmax and vmin else None,
                "natural_max_activation": float(natural.max()),
                "natural_min_activation": float(natural.min()),
                "valid": computed.valid[unit],
                "reserved": unit in computed.reserved_units,
                "diversity_weight_max": computed.alphas.get((unit, "max")),
                "diversity_weight_min": computed.alphas.get((unit, "min")),
                "diverse_max_beat_natural": _diverse_ok(vmax, natural),
                "diverse_min_beat_natural": _diverse_ok(vmin, natural),
                "non_diverse_fallback": {
                    d: computed.fallbacks.get((unit, d), False) for d in ("max", "min")
                },
                "diversity_search": {
                    direction: [[a, ok] for a, ok in computed.alpha_trials[(unit, direction)]]
                    for direction in ("max", "min")
                    if (unit, direction) in computed.alpha_trials
                }
                or None,
            }
        )
    return rows


def _diverse_ok(vis: Visualization | None, natural) -> bool | None:
    from server.stimuli.diversity import diverse_images_beat_natural

    return None if vis is None else diverse_images_beat_natural(vis, natural)


def _get_or_create_units(db: Session, computed: _Computed) -> dict[UnitRef, Unit]:
    spec = computed.model.spec
    vision_model = db.scalar(select(VisionModel).where(VisionModel.name == spec.name))
    if vision_model is None:
        vision_model = VisionModel(name=spec.name, source=spec.source, spec=spec.to_dict())
        db.add(vision_model)
        db.flush()
    rows: dict[UnitRef, Unit] = {}
    for unit in computed.units:
        row = db.scalar(
            select(Unit).where(
                Unit.model_id == vision_model.id, Unit.layer == unit.layer, Unit.index == unit.index
            )
        )
        if row is None:
            row = Unit(model_id=vision_model.id, layer=unit.layer, index=unit.index)
            db.add(row)
        row.layer_depth = computed.depths[unit.layer]
        rows[unit] = row
    db.flush()
    return rows


class ImageWriter:
    """Puts pixels in the content-addressed store and adds one Image row per new hash."""

    def __init__(self, db: Session, store: ImageStorage):
        self.db = db
        self.store = store
        self.known: set[str] = set()

    def put(self, pixels, kind: str, fmt: str, source: str | None = None) -> str:
        stored = self.store.put(pixels, fmt)
        if stored.sha256 not in self.known and self.db.get(Image, stored.sha256) is None:
            self.db.add(
                Image(
                    sha256=stored.sha256,
                    kind=kind,
                    media_type=stored.media_type,
                    width=stored.width,
                    height=stored.height,
                    source=source,
                )
            )
        self.known.add(stored.sha256)
        return stored.sha256


def _natural_pixels(computed: _Computed, position: int):
    """The image as the model saw it (resized and centre-cropped), so participants see that."""
    from server.stimuli.images import open_rgb

    to_tensor = computed.model.preprocessing.pil_to_unit_tensor()
    return to_tensor(open_rgb(computed.table.files[position])).permute(1, 2, 0).numpy()


def _write(
    db: Session,
    settings: Settings,
    config: GenerationConfig,
    stimulus_set: StimulusSet,
    computed: _Computed,
) -> None:
    from server.stimuli.storage import open_image_store

    units = _get_or_create_units(db, computed)
    writer = ImageWriter(db, open_image_store(settings))
    natural_hashes: dict[int, str] = {}
    values = {unit: computed.table.of(unit) for unit in computed.units}

    def natural(position: int) -> str:
        if position not in natural_hashes:
            natural_hashes[position] = writer.put(
                _natural_pixels(computed, position),
                "natural",
                config.natural_format,
                source=computed.table.image_ids[position],
            )
        return natural_hashes[position]

    def add(unit: UnitRef, sha: str, role: str, source: str, batch: int, rank: int, act: float):
        db.add(
            Stimulus(
                stimulus_set_id=stimulus_set.id,
                unit_id=units[unit].id,
                image_sha256=sha,
                role=role,
                source=source,
                batch=batch,
                rank=rank,
                activation=float(act),
            )
        )

    # Files are written in random order (issue 25): no write time, inode or directory order
    # can tell a query_max from a query_min. The rows below keep their deterministic order.
    shuffle = random.SystemRandom().shuffle
    positions = sorted(
        {
            pos
            for unit in computed.units
            if computed.valid[unit]
            for ex in computed.exemplars[unit]
            for pos in (*ex.reference_max, *ex.reference_min, ex.query_max, ex.query_min)
        }
    )
    shuffle(positions)
    for pos in positions:
        natural(pos)
    synthetic: list[tuple[UnitRef, str, int]] = [
        (unit, direction, rank)
        for unit in computed.units
        if computed.valid[unit]
        for direction in (("max", "min") if config.fv.enabled else ())
        for rank in range(len(computed.visualizations[(unit, direction)].images))
    ]
    shuffle(synthetic)
    synthetic_hashes = {
        key: writer.put(computed.visualizations[key[:2]].images[key[2]], "synthetic", "png")
        for key in synthetic
    }

    for unit in computed.units:
        if not computed.valid[unit]:
            continue
        acts = values[unit]
        for ex in computed.exemplars[unit]:
            for role, positions in (
                ("reference_max", ex.reference_max),
                ("reference_min", ex.reference_min),
                ("query_max", [ex.query_max]),
                ("query_min", [ex.query_min]),
            ):
                for rank, pos in enumerate(positions):
                    add(unit, natural(pos), role, "natural", ex.batch, rank, acts[pos])
        for direction in ("max", "min") if config.fv.enabled else ():
            vis = computed.visualizations[(unit, direction)]
            for rank, act in enumerate(vis.activations):
                sha = synthetic_hashes[(unit, direction, rank)]
                add(unit, sha, f"reference_{direction}", "synthetic", 0, rank, act)
    manifest = {
        "stimulus_set": stimulus_set.id,
        "config_hash": stimulus_set.config_hash,
        "model": computed.model.spec.to_dict(),
        "n_images": len(computed.table.image_ids),
        "skipped_images": computed.table.skipped,
        "units": manifest_entries(computed),
        "layer_points": {
            layer: {"point": config.layer_points()[layer], "module": module}
            for layer, module in computed.layers.items()
        },
        "queries": config.queries,
        "reserved": {
            "units": [
                {"layer": u.layer, "unit": u.index}
                for u in sorted(computed.reserved_units)
                if computed.valid[u]
            ],
            "batches": list(range(config.reserved_batches)),
        },
    }
    stimulus_set.manifest = manifest
    stimulus_set.status = "ready"
    write_manifest(settings, stimulus_set.id, manifest)
    db.flush()


def overview_path(settings: Settings, stimulus_set_id: str) -> Path:
    return manifest_path(settings, stimulus_set_id).with_name("overview.png")


def _write_overview(db: Session, settings: Settings, stimulus_set_id: str) -> None:
    """The contact sheet next to the manifest (a figure failing must not fail generation)."""
    from server.stimuli.overview import write_overview
    from server.stimuli.storage import open_image_store

    path = overview_path(settings, stimulus_set_id)
    try:
        write_overview(db, open_image_store(settings), stimulus_set_id, path)
    except Exception as exc:  # noqa: BLE001 - report, keep the generated set
        warnings.warn(f"could not draw {path}: {type(exc).__name__}: {exc}", stacklevel=2)


def manifest_path(settings: Settings, stimulus_set_id: str) -> Path:
    return settings.data_dir / "stimulus-sets" / stimulus_set_id / "manifest.json"


def write_manifest(settings: Settings, stimulus_set_id: str, manifest: dict[str, Any]) -> Path:
    path = manifest_path(settings, stimulus_set_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=2)
    os.replace(tmp, path)
    return path
