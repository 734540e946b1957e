"""Natural exemplars: which images a trial shows as references and as queries (IMI's rule).

References come from the extremes: the top (bottom) `n_batches * k` images, cut into k
bins of `n_batches` consecutive ranks; batch b takes one image from every bin, so each
trial's references span the whole extreme range. Queries come from the band just inside
the references (the next `n_batches` ranks on each side): close enough to the extremes
to be answerable, not so extreme that the task is trivial (`queries: extreme`); IMI's
harder conditions take them from the 99th/95th/85th percentile instead (`p99`, `p95`,
`p85`: the `n_batches` images around that rank on each side). The assignment of bin members
and queries to batches is a seeded permutation; no image appears twice in a batch, nor in
two batches.

Ties (many images at exactly 0 on a post-ReLU layer) are broken by a seeded random order,
never by file order: otherwise the file names would pick the "least activating" images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from server.errors import AppError


class NotEnoughImages(AppError):
    status_code = 422


QueryRange = Literal["extreme", "p99", "p95", "p85"]
QUERY_PERCENTILES = {"p99": 99.0, "p95": 95.0, "p85": 85.0}


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


def _query_start(n_images: int, k: int, n_batches: int, queries: QueryRange) -> int:
    """First rank (from the extreme) of the query band on each side."""
    after_references = k * n_batches
    if queries == "extreme":
        return after_references
    # The p-th percentile from the top is rank (1 - p/100) * (n - 1) counted from the max.
    centre = round((1 - QUERY_PERCENTILES[queries] / 100) * (n_images - 1))
    start = centre - n_batches // 2
    if start < after_references or 2 * (start + n_batches) > n_images:
        raise NotEnoughImages(
            f"{n_images} readable images are too few for queries at the {queries[1:]}th "
            f"percentile with {n_batches} batch(es) of {k} references (that rank lies among "
            "the references, or the max and min query bands would overlap): use more images, "
            "fewer batches, or queries: extreme"
        )
    return start


def ranked_by_activation(values: np.ndarray, seed: int) -> np.ndarray:
    """Image positions from most to least activating; ties in a seeded random order."""
    tie_break = np.random.default_rng([seed, 17]).permutation(len(values))
    return np.lexsort((tie_break, -values))


def _split(ranked: np.ndarray, k: int, n_batches: int, query_start: int, rng: np.random.Generator):
    """Per batch: k references (one per bin, bin order = rank order) and one query."""
    bins = ranked[: k * n_batches].reshape(k, n_batches)
    bins = np.stack([row[rng.permutation(n_batches)] for row in bins])
    band = ranked[query_start : query_start + n_batches]
    queries = band[rng.permutation(n_batches)]
    return [(bins[:, b].tolist(), int(queries[b])) for b in range(n_batches)]


def select_exemplars(
    activations: np.ndarray, k: int, n_batches: int, seed: int, queries: QueryRange = "extreme"
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
    descending = ranked_by_activation(values, seed)
    query_start = _query_start(len(values), k, n_batches, queries)
    rng = np.random.default_rng(seed)
    tops = _split(descending, k, n_batches, query_start, rng)
    bottoms = _split(descending[::-1], k, n_batches, query_start, rng)
    return [
        ExemplarBatch(b, refs_max, refs_min, q_max, q_min)
        for b, ((refs_max, q_max), (refs_min, q_min)) in enumerate(zip(tops, bottoms, strict=True))
    ]
