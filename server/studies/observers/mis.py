"""Machine interpretability score (MIS) per unit: the similarity observer's mean chance of
answering IMI-style tasks right (Zimmermann, Klindt & Brendel, NeurIPS 2024).

Tasks are chosen as IMI chooses a human trial's images (`server.stimuli.exemplars`): K
references from the top / bottom of the unit's ranking, queries from the band just inside.
N tasks use the top and bottom N * (K + 1) images. IMI drew them from 50,000 ImageNet
images, so its queries are extreme (top 0.4%); a pool smaller than 4 * N * (K + 1) would
put them near the median and turn every task into a coin flip. So tasks only ever use the
top and bottom quarter of the ranking: a smaller pool (the demo photos) repeats IMI's
selection on that quarter with fresh seeds, images recur across tasks but never within one,
and the result says so.

Units whose activation is constant on the image set (max - min < 1e-8) cannot be ranked and
are dropped with a note, as in the paper. The batched path embeds every image once and
scores all tasks of all units in one einsum; `score_units_naive` is the per-task loop the
benchmark compares against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from server.errors import AppError
from server.stimuli.exemplars import ExemplarBatch, images_needed, select_exemplars
from server.studies.observers.similarity import delta_differences, p_correct

N_TASKS = 20
K_REFERENCES = 9
CONSTANT_RANGE = 1e-8


@dataclass(frozen=True)
class TaskSet:
    """N tasks of one unit as positions into the image set."""

    reference_max: np.ndarray  # (N, K)
    reference_min: np.ndarray  # (N, K)
    query_max: np.ndarray  # (N,)
    query_min: np.ndarray  # (N,)
    images_reused: bool

    def __len__(self) -> int:
        return len(self.query_max)

    def image_positions(self, task: int) -> list[int]:
        return [
            *self.reference_max[task],
            *self.reference_min[task],
            int(self.query_max[task]),
            int(self.query_min[task]),
        ]


@dataclass
class UnitScore:
    """MIS of one unit with a 95% CI over its tasks, or why it has none."""

    mis: float | None
    ci_low: float | None
    ci_high: float | None
    deltas: list[float] = field(default_factory=list)  # Delta_right - Delta_wrong per task
    note: str = ""


def is_constant(activations: np.ndarray) -> bool:
    values = np.asarray(activations, dtype=np.float64)
    return bool(values.max() - values.min() < CONSTANT_RANGE)


def sample_tasks(
    activations: np.ndarray, k: int = K_REFERENCES, n_tasks: int = N_TASKS, seed: int = 0
) -> TaskSet:
    """N IMI-style tasks for a unit from its activation per image."""
    if n_tasks < 1:
        raise AppError("the number of tasks per unit must be at least 1")
    n_images = len(activations)
    if n_images >= 2 * images_needed(k, n_tasks):
        batches = select_exemplars(activations, k, n_tasks, seed)
        reused = False
    else:
        # Tasks from the top/bottom quarter only (one task's worth at the very least).
        fits = max(n_images // (2 * images_needed(k, 1)), min(1, n_images // images_needed(k, 1)))
        if fits < 1:
            raise AppError(
                f"{n_images} readable images, but one task with {k} references per side and "
                f"two queries needs {images_needed(k, 1)}; use more images or a smaller K"
            )
        batches = []
        for round_ in range(math.ceil(n_tasks / fits)):
            batches += select_exemplars(activations, k, fits, seed + 7919 * round_)
        batches = batches[:n_tasks]
        reused = True
    return _as_arrays(batches, reused)


def _as_arrays(batches: list[ExemplarBatch], reused: bool) -> TaskSet:
    return TaskSet(
        reference_max=np.array([b.reference_max for b in batches], dtype=np.int64),
        reference_min=np.array([b.reference_min for b in batches], dtype=np.int64),
        query_max=np.array([b.query_max for b in batches], dtype=np.int64),
        query_min=np.array([b.query_min for b in batches], dtype=np.int64),
        images_reused=reused,
    )


def task_differences(embeddings: np.ndarray, tasks: TaskSet) -> np.ndarray:
    """Delta(max query) - Delta(min query) per task; the max references are the positives."""
    return delta_differences(
        embeddings, tasks.reference_max, tasks.reference_min, tasks.query_max, tasks.query_min
    )


def mis_with_ci(
    differences: np.ndarray, alpha: float, n_resamples: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MIS and percentile-bootstrap 95% CI over tasks for (units, tasks) differences."""
    p = p_correct(np.atleast_2d(differences), alpha)
    mis = p.mean(axis=1)
    if p.shape[1] < 2:
        return mis, mis.copy(), mis.copy()
    ci = stats.bootstrap(
        (p,),
        np.mean,
        axis=-1,
        vectorized=True,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return mis, np.asarray(ci.low), np.asarray(ci.high)


def _constant_note(values: np.ndarray) -> str:
    return (
        f"dropped: constant on this image set (max - min = {values.max() - values.min():.2g} "
        f"< {CONSTANT_RANGE:g}), its images cannot be ranked"
    )


def score_units(
    activations: np.ndarray,
    embeddings: np.ndarray,
    alpha: float,
    k: int = K_REFERENCES,
    n_tasks: int = N_TASKS,
    seeds: Sequence[int] | None = None,
) -> list[UnitScore]:
    """MIS of every column of `activations` (images x units); `embeddings` unit length.

    Every image is embedded once for all units; the tasks of all units are scored at once.
    `seeds` (one per unit, default its column) make a unit's tasks independent of the others.
    """
    activations = np.asarray(activations, dtype=np.float64)
    if activations.ndim != 2 or len(activations) != len(embeddings):
        raise AppError(
            f"activations ({activations.shape}) and embeddings ({np.shape(embeddings)}) must "
            "cover the same images"
        )
    seeds = list(range(activations.shape[1])) if seeds is None else list(seeds)
    scores: list[UnitScore | None] = [None] * activations.shape[1]
    live: list[int] = []
    task_sets: list[TaskSet] = []
    for column in range(activations.shape[1]):
        values = activations[:, column]
        if is_constant(values):
            scores[column] = UnitScore(None, None, None, note=_constant_note(values))
            continue
        live.append(column)
        task_sets.append(sample_tasks(values, k, n_tasks, seeds[column]))
    if live:
        stacked = TaskSet(
            reference_max=np.concatenate([t.reference_max for t in task_sets]),
            reference_min=np.concatenate([t.reference_min for t in task_sets]),
            query_max=np.concatenate([t.query_max for t in task_sets]),
            query_min=np.concatenate([t.query_min for t in task_sets]),
            images_reused=any(t.images_reused for t in task_sets),
        )
        differences = task_differences(embeddings, stacked).reshape(len(live), n_tasks)
        mis, low, high = mis_with_ci(differences, alpha)
        note = _reuse_note(len(embeddings), k, n_tasks) if stacked.images_reused else ""
        for i, column in enumerate(live):
            scores[column] = UnitScore(
                float(mis[i]), float(low[i]), float(high[i]), differences[i].tolist(), note
            )
    return scores  # type: ignore[return-value]


def _reuse_note(n_images: int, k: int, n_tasks: int) -> str:
    return (
        f"{n_images} images < {2 * images_needed(k, n_tasks)} for {n_tasks} disjoint tasks "
        "from the top/bottom quarter: images recur across tasks (never within one)"
    )


def score_units_naive(
    activations: np.ndarray,
    embed: Callable[[Sequence[int]], np.ndarray],
    alpha: float,
    k: int = K_REFERENCES,
    n_tasks: int = N_TASKS,
    seeds: Sequence[int] | None = None,
) -> list[UnitScore]:
    """The per-task loop: embed each task's 2K + 2 images on their own (benchmark baseline)."""
    activations = np.asarray(activations, dtype=np.float64)
    seeds = list(range(activations.shape[1])) if seeds is None else list(seeds)
    out = []
    for column in range(activations.shape[1]):
        values = activations[:, column]
        if is_constant(values):
            out.append(UnitScore(None, None, None, note=_constant_note(values)))
            continue
        tasks = sample_tasks(values, k, n_tasks, seeds[column])
        differences = []
        for task in range(len(tasks)):
            local = embed(tasks.image_positions(task))  # 2K + 2 rows, in that order
            ref_max, ref_min = np.arange(k)[None], np.arange(k, 2 * k)[None]
            diff = delta_differences(
                local, ref_max, ref_min, np.array([2 * k]), np.array([2 * k + 1])
            )
            differences.append(float(diff[0]))
        mis, low, high = mis_with_ci(np.array(differences), alpha)
        out.append(UnitScore(float(mis[0]), float(low[0]), float(high[0]), differences))
    return out


def shuffle_reference_labels(tasks: TaskSet, seed: int = 0) -> TaskSet:
    """The control: each task's 2K references split into max / min sides at random.

    With the labels carrying no information the observer's MIS must sit near 0.5.
    """
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([tasks.reference_max, tasks.reference_min], axis=1)
    order = np.argsort(rng.random(pooled.shape), axis=1)
    shuffled = np.take_along_axis(pooled, order, axis=1)
    k = tasks.reference_max.shape[1]
    return TaskSet(
        shuffled[:, :k], shuffled[:, k:], tasks.query_max, tasks.query_min, tasks.images_reused
    )
