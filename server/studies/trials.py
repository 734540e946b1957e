"""Trials from a stimulus set: main slots (unit × condition × batch), catch and practice trials.

Seeded by the study's seed, so the same stimulus set and config give the same trials.
The answer (which query is the max) stays in the Trial row; sides are decided per session.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import Stimulus, Trial
from server.errors import AppError
from server.studies.schema import StudyConfig

ROLES = ("reference_max", "reference_min", "query_max", "query_min")


@dataclass
class UnitStimuli:
    """One unit's images by source, batch and role, each list in rank order."""

    unit_id: int
    natural: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    synthetic: dict[str, list[str]] = field(default_factory=dict)

    @property
    def batches(self) -> list[int]:
        return sorted(self.natural)


def load_unit_stimuli(db: Session, stimulus_set_id: str) -> list[UnitStimuli]:
    rows = db.execute(
        select(
            Stimulus.unit_id,
            Stimulus.role,
            Stimulus.source,
            Stimulus.batch,
            Stimulus.rank,
            Stimulus.image_sha256,
        )
        .where(Stimulus.stimulus_set_id == stimulus_set_id)
        .order_by(Stimulus.unit_id, Stimulus.batch, Stimulus.role, Stimulus.rank)
    ).all()
    units: dict[int, UnitStimuli] = {}
    natural: dict[int, dict[int, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(dict))
    for unit_id, role, source, batch, _rank, sha in rows:
        unit = units.setdefault(unit_id, UnitStimuli(unit_id))
        if source == "synthetic":
            unit.synthetic.setdefault(role, []).append(sha)
        elif source == "natural":
            natural[unit_id][batch].setdefault(role, []).append(sha)
    for unit_id, batches in natural.items():
        units[unit_id].natural = {
            b: roles for b, roles in batches.items() if all(roles.get(r) for r in ROLES)
        }
    return [u for u in units.values() if u.natural]


@dataclass(frozen=True)
class TrialSpec:
    kind: str
    condition: str
    unit_id: int
    slot: int
    query_max: str
    query_min: str
    references_max: list[str]
    references_min: list[str]
    details: dict

    def to_row(self, study_id: int) -> Trial:
        return Trial(
            study_id=study_id,
            unit_id=self.unit_id,
            kind=self.kind,
            condition=self.condition,
            slot=self.slot,
            query_max=self.query_max,
            query_min=self.query_min,
            references_max=self.references_max,
            references_min=self.references_min,
            details=self.details,
        )


def references(unit: UnitStimuli, condition: str, batch: int, n_synthetic: int):
    """(max refs, min refs, first is fixed) for a condition; `mixed` puts FVs first."""
    nat = unit.natural[batch]
    if condition == "none":
        return [], [], False
    if condition == "natural":
        return nat["reference_max"], nat["reference_min"], False
    if not unit.synthetic.get("reference_max") or not unit.synthetic.get("reference_min"):
        raise AppError(f"unit {unit.unit_id} has no feature visualizations for {condition!r}")
    syn_max, syn_min = unit.synthetic["reference_max"], unit.synthetic["reference_min"]
    if condition == "synthetic":
        return syn_max, syn_min, True
    k = len(nat["reference_max"])
    m = min(n_synthetic, k)
    return (
        syn_max[:m] + nat["reference_max"][: k - m],
        syn_min[:m] + nat["reference_min"][: k - m],
        True,
    )


class TrialBuilder:
    def __init__(self, config: StudyConfig, units: list[UnitStimuli]):
        if not units:
            raise AppError("the stimulus set has no usable units (all were invalid or dropped)")
        self.config = config
        self.units = sorted(units, key=lambda u: u.unit_id)
        self.rng = np.random.default_rng(config.seed)
        self.n_syn = config.trials.mixed_synthetic_references

    def _regular(self, kind, unit, condition, batch, slot, extra=None) -> TrialSpec:
        ref_max, ref_min, fixed = references(unit, condition, batch, self.n_syn)
        nat = unit.natural[batch]
        return TrialSpec(
            kind,
            condition,
            unit.unit_id,
            slot,
            nat["query_max"][0],
            nat["query_min"][0],
            list(ref_max),
            list(ref_min),
            {"batch": batch, "fixed_first": fixed, **(extra or {})},
        )

    def _obvious(self, kind, unit, condition, batch, slot, extra=None) -> TrialSpec:
        """The right query is one of the shown max references (and the wrong one a min one)."""
        shown = "natural" if condition == "none" else condition
        ref_max, ref_min, fixed = references(unit, shown, batch, self.n_syn)
        first = 1 if fixed and len(ref_max) > 1 else 0
        i_max = int(self.rng.integers(first, len(ref_max)))
        i_min = int(self.rng.integers(first, len(ref_min)))
        return TrialSpec(
            kind,
            condition,
            unit.unit_id,
            slot,
            ref_max[i_max],
            ref_min[i_min],
            list(ref_max),
            list(ref_min),
            {"batch": batch, "fixed_first": fixed, "shown": shown, **(extra or {})},
        )

    def main(self) -> list[TrialSpec]:
        specs = []
        for unit in self.units:
            for condition in self.config.conditions:
                for batch in unit.batches:
                    specs.append(self._regular("main", unit, condition, batch, len(specs)))
        return specs

    def catch(self) -> list[TrialSpec]:
        """One catch trial per unit and condition (sessions draw theirs from this pool)."""
        specs = []
        for unit in self.units:
            for condition in self.config.conditions:
                batch = unit.batches[-1]
                specs.append(self._obvious("catch", unit, condition, batch, len(specs)))
        return specs

    def practice(self) -> list[TrialSpec]:
        """Obvious trials first, then regular ones; shown in a condition with references."""
        practice = self.config.trials.practice
        with_refs = [c for c in self.config.conditions if c != "none"]
        condition = "natural" if "natural" in with_refs or not with_refs else with_refs[0]
        specs = []
        for i in range(practice.count):
            unit = self.units[i % len(self.units)]
            batch = unit.batches[-1]
            make = self._obvious if i < practice.obvious else self._regular
            specs.append(
                make("practice", unit, condition, batch, i, {"obvious": i < practice.obvious})
            )
        return specs

    def all(self) -> list[TrialSpec]:
        return [*self.practice(), *self.main(), *self.catch()]
