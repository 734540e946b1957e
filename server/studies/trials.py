"""Trials from a stimulus set: main slots (unit × condition × batch), catch and practice trials.

Seeded by the study's seed, so the same stimulus set and config give the same trials.
The answer (which query is the max) stays in the Trial row; sides are decided per session.

Practice and catch trials come from material no main trial shows (as in IMI): the units
generation reserved (`generation.reserved_units_per_layer`) or the reserved batches of every
unit (`generation.reserved_batches`), both listed in the stimulus set's manifest. A set with
neither falls back to the last batch of the main units (and says so in `details`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import Stimulus, StimulusSet, Unit
from server.errors import AppError
from server.studies.schema import StudyConfig

ROLES = ("reference_max", "reference_min", "query_max", "query_min")


@dataclass
class UnitStimuli:
    """One unit's images by source, batch and role, each list in rank order."""

    unit_id: int
    natural: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    synthetic: dict[str, list[str]] = field(default_factory=dict)
    reserved: bool = False  # practice and catch material only
    reserved_batches: frozenset[int] = frozenset()  # this unit's practice/catch-only batches

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
    reserved = reserved_material(db, stimulus_set_id)
    for unit_id, layer, index in db.execute(
        select(Unit.id, Unit.layer, Unit.index).where(Unit.id.in_(list(units)))
    ):
        units[unit_id].reserved = (layer, index) in reserved.units
        units[unit_id].reserved_batches = reserved.batches
    return [u for u in units.values() if u.natural]


@dataclass(frozen=True)
class Reserved:
    units: frozenset[tuple[str, int]] = frozenset()  # (layer, unit index)
    batches: frozenset[int] = frozenset()


def reserved_material(db: Session, stimulus_set_id: str) -> Reserved:
    """What the stimulus set's manifest reserves for practice and catch trials."""
    stimulus_set = db.get(StimulusSet, stimulus_set_id)
    listed = ((stimulus_set.manifest or {}) if stimulus_set else {}).get("reserved") or {}
    return Reserved(
        frozenset((u["layer"], int(u["unit"])) for u in listed.get("units", [])),
        frozenset(int(b) for b in listed.get("batches", [])),
    )


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
        ordered = sorted(units, key=lambda u: u.unit_id)
        self.units = [u for u in ordered if not u.reserved]
        if not self.units:
            raise AppError("the stimulus set has no usable units (all were invalid or dropped)")
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.n_syn = config.trials.mixed_synthetic_references
        reserved_batches = frozenset().union(*(u.reserved_batches for u in ordered))
        self.main_batches = {
            u.unit_id: [b for b in u.batches if b not in u.reserved_batches] for u in self.units
        }
        # (unit, batch) pairs for practice and catch trials, never shown in a main trial.
        reserved_units = [u for u in ordered if u.reserved]
        if reserved_units:
            # Batch by batch, so practice cycles through the units before reusing one.
            depth = max(len(u.batches) for u in reserved_units)
            self.material = [
                (u, u.batches[b])
                for b in range(depth)
                for u in reserved_units
                if b < len(u.batches)
            ]
            self.material_source = "reserved_units"
        elif reserved_batches:
            self.material = [
                (u, b) for b in sorted(reserved_batches) for u in self.units if b in u.natural
            ]
            self.material_source = "reserved_batches"
        else:
            self.material = [(u, u.batches[-1]) for u in self.units]
            self.material_source = "last_main_batch"
        if not self.material or any(not self.main_batches[u.unit_id] for u in self.units):
            raise AppError(
                "the stimulus set leaves no material for practice/catch or main trials: "
                "raise generation.reserved_units_per_layer or n_batches"
            )

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
                for batch in self.main_batches[unit.unit_id]:
                    specs.append(self._regular("main", unit, condition, batch, len(specs)))
        return specs

    def catch(self) -> list[TrialSpec]:
        """One catch trial per material unit and condition (sessions draw theirs from this
        pool). Catch trials show references, so `none` gets none (its block has no
        references to be caught on)."""
        specs = []
        extra = {"material": self.material_source}
        conditions = [c for c in self.config.conditions if c != "none"] or ["none"]
        seen: set[int] = set()
        for unit, batch in self.material:
            if unit.unit_id in seen:
                continue
            seen.add(unit.unit_id)
            for condition in conditions:
                specs.append(self._obvious("catch", unit, condition, batch, len(specs), extra))
        return specs

    def practice_conditions(self) -> list[str]:
        """Between participants every condition gets its own practice; within, one
        condition with references."""
        if self.config.counterbalancing.conditions == "between":
            return list(self.config.conditions)
        with_refs = [c for c in self.config.conditions if c != "none"]
        return ["natural" if "natural" in with_refs or not with_refs else with_refs[0]]

    def practice(self) -> list[TrialSpec]:
        """Obvious trials first, then regular ones, per practice condition."""
        practice = self.config.trials.practice
        specs = []
        for condition in self.practice_conditions():
            for i in range(practice.count):
                unit, batch = self.material[i % len(self.material)]
                make = self._obvious if i < practice.obvious else self._regular
                extra = {"obvious": i < practice.obvious, "material": self.material_source}
                specs.append(make("practice", unit, condition, batch, len(specs), extra))
        return specs

    def all(self) -> list[TrialSpec]:
        return [*self.practice(), *self.main(), *self.catch()]
