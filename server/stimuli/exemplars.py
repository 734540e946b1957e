"""Natural exemplars: which images a trial shows as references and as queries (IMI's rule).

References come from the extremes: the top (bottom) `n_batches * k` images, cut into k
bins of `n_batches` consecutive ranks; batch b takes one image from every bin, so each
trial's references span the whole extreme range. Queries come from the band just inside
the references (the next `n_batches` ranks on each side): close enough to the extremes
to be answerable, not so extreme that the task is trivial. The assignment of bin members
and queries to batches is a seeded permutation; no image appears twice in a batch, nor in
two batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.errors import AppError


class NotEnoughImages(AppError):
    status_code = 422


@dataclass(frozen=True)
class ExemplarBatch:
    """One trial's worth of natural images for a unit (positions into the activation table)."""

    batch: int
    reference_max: list[int]  # strongest first
    reference_min: list[int]  # weakest first
    query_max: int
    query_min: int

    def all_images(self) -> list[int]:
        return [*self.reference_max, *self.reference_min, self.query_max, self.query_min]


def images_needed(k: int, n_batches: int) -> int:
    return 2 * n_batches * (k + 1)


def _split(ranked: np.ndarray, k: int, n_batches: int, rng: np.random.Generator):
    """Per batch: k references (one per bin, bin order = rank order) and one query."""
    bins = ranked[: k * n_batches].reshape(k, n_batches)
    bins = np.stack([row[rng.permutation(n_batches)] for row in bins])
    queries = ranked[k * n_batches : (k + 1) * n_batches][rng.permutation(n_batches)]
    return [(bins[:, b].tolist(), int(queries[b])) for b in range(n_batches)]


def select_exemplars(
    activations: np.ndarray, k: int, n_batches: int, seed: int
) -> list[ExemplarBatch]:
    """Reference and query images per batch for one unit, from its activations per image."""
    values = np.asarray(activations, dtype=np.float64)
    needed = images_needed(k, n_batches)
    if k < 1 or n_batches < 1:
        raise AppError("k and n_batches must be at least 1")
    if len(values) < needed:
        raise NotEnoughImages(
            f"{len(values)} readable images, but {n_batches} batch(es) of {k} references "
            f"plus a query per side need {needed} distinct images; use more images, "
            "fewer batches (n_batches) or fewer references (k_references)"
        )
    if not np.isfinite(values).all():
        raise AppError("activations contain NaN or infinity; check the model and the images")
    descending = np.argsort(-values, kind="stable")
    rng = np.random.default_rng(seed)
    tops = _split(descending, k, n_batches, rng)
    bottoms = _split(descending[::-1], k, n_batches, rng)
    return [
        ExemplarBatch(b, refs_max, refs_min, q_max, q_min)
        for b, ((refs_max, q_max), (refs_min, q_min)) in enumerate(zip(tops, bottoms, strict=True))
    ]
