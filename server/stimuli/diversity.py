"""IMI's search for the diversity weight alpha, per unit and direction.

A stronger diversity term gives more varied visualizations but weaker ones; IMI keeps the
largest alpha for which even the weakest diverse visualization still beats the unit's most
extreme natural exemplar (PARADIGMS.md): start at 1, multiply by 10 until too strong,
then 7 steps of bisection between the last good and the first too-strong value.

`AlphaSearch` is the control flow alone (testable without a model); `search_diversity`
runs all searches in lockstep, so each round is one batched render of every (unit,
direction) still searching, each with its own alpha.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from server.stimuli.generate import DiversitySearchConfig
    from server.stimuli.units import UnitRef
    from server.stimuli.visualize import Visualization


@dataclass
class AlphaSearch:
    """Grow alpha by `factor` while good, then bisect between the last good and first bad."""

    start: float
    factor: float
    max_increases: int
    bisect_steps: int
    alpha: float = field(init=False)
    best: float | None = field(default=None, init=False)  # largest alpha found good
    too_strong: float | None = field(default=None, init=False)  # smallest alpha found bad
    tried: list[tuple[float, bool]] = field(default_factory=list, init=False)
    done: bool = field(default=False, init=False)
    _increases: int = field(default=0, init=False)
    _bisections: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.alpha = self.start

    @classmethod
    def from_config(cls, config: DiversitySearchConfig) -> AlphaSearch:
        return cls(config.start, config.factor, config.max_increases, config.bisect_steps)

    def record(self, good: bool) -> None:
        """The result for the current alpha; moves to the next alpha or finishes."""
        self.tried.append((self.alpha, good))
        if good:
            self.best = self.alpha
        else:
            self.too_strong = self.alpha
        if self.too_strong is None:
            if self._increases >= self.max_increases:
                self.done = True
            else:
                self._increases += 1
                self.alpha = self.alpha * self.factor
            return
        if self._bisections >= self.bisect_steps:
            self.done = True
            return
        self._bisections += 1
        self.alpha = ((self.best or 0.0) + self.too_strong) / 2


def diverse_images_beat_natural(vis: Visualization, natural: np.ndarray) -> bool:
    """IMI's rule for the diverse batch: its weakest image still beats the extreme exemplar."""
    diverse = vis.activations[1:]
    if diverse.size == 0:
        return True
    if vis.direction == "max":
        return bool(diverse.min() > natural.max())
    return bool(diverse.max() < natural.min())


@dataclass
class SearchResult:
    visualization: Visualization  # rendered with `alpha`
    alpha: float
    tried: list[tuple[float, bool]]


def search_diversity(
    keys: Sequence[tuple[UnitRef, str]],
    natural: Callable[[UnitRef], np.ndarray],
    render: Callable[[dict[tuple[UnitRef, str], float]], list[Visualization]],
    config: DiversitySearchConfig,
) -> dict[tuple[UnitRef, str], SearchResult]:
    """Run every (unit, direction) search to the end; `render({key: alpha})` renders a round.

    Each key keeps the render of its largest good alpha; where no alpha was good, the
    smallest alpha tried (the diverse images then fail IMI's rule, which the manifest shows).
    """
    searches = {key: AlphaSearch.from_config(config) for key in keys}
    kept: dict[tuple[UnitRef, str], tuple[float, bool, Visualization]] = {}
    while active := {k: s.alpha for k, s in searches.items() if not s.done}:
        for vis in render(active):
            key = (vis.unit, vis.direction)
            alpha = active[key]
            good = diverse_images_beat_natural(vis, natural(vis.unit))
            searches[key].record(good)
            previous = kept.get(key)
            if previous is None or _better(alpha, good, previous[0], previous[1]):
                kept[key] = (alpha, good, vis)
    return {
        key: SearchResult(visualization=vis, alpha=alpha, tried=searches[key].tried)
        for key, (alpha, _good, vis) in kept.items()
    }


def _better(alpha: float, good: bool, kept_alpha: float, kept_good: bool) -> bool:
    """Good beats bad; among good the larger alpha, among bad the smaller."""
    if good != kept_good:
        return good
    return alpha > kept_alpha if good else alpha < kept_alpha
