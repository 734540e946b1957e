"""What a study's stimulus set holds, per unit, for the researcher to look at before launch.

Per unit: validity and the extreme activations from the manifest (FV vs natural), the
images by role (references, queries; natural and synthetic) with their activations, and
the trial kinds it serves in (units kept for practice or catch trials are marked).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import Stimulus, StimulusSet, Study, Trial, Unit


def study_stimuli(db: Session, study: Study) -> dict[str, Any]:
    if study.stimulus_set_id is None:
        return {"stimulus_set": None, "units": []}
    stimulus_set = db.get(StimulusSet, study.stimulus_set_id)
    manifest = {(u["layer"], u["unit"]): u for u in stimulus_set.manifest.get("units", [])}
    kinds: dict[int, set[str]] = defaultdict(set)
    for unit_id, kind in db.execute(
        select(Trial.unit_id, Trial.kind).where(Trial.study_id == study.id).distinct()
    ):
        if unit_id is not None:
            kinds[unit_id].add(kind)
    images: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    units: dict[int, Unit] = {}
    rows = db.execute(
        select(Stimulus, Unit)
        .join(Unit, Unit.id == Stimulus.unit_id)
        .where(Stimulus.stimulus_set_id == stimulus_set.id)
        .order_by(Unit.layer, Unit.index, Stimulus.batch, Stimulus.rank)
    )
    for stimulus, unit in rows:
        units[unit.id] = unit
        key = f"{stimulus.role}:{stimulus.source}"
        images[unit.id][key].append((stimulus.image_sha256, stimulus.activation))
    out = []
    for unit_id, unit in units.items():
        out.append(
            {
                "layer": unit.layer,
                "index": unit.index,
                "manifest": manifest.get((unit.layer, unit.index), {}),
                "trial_kinds": sorted(kinds.get(unit_id, ())),
                "images": dict(images[unit_id]),
            }
        )
    invalid = [u for u in manifest.values() if not u.get("valid", True)]
    return {"stimulus_set": stimulus_set, "units": out, "invalid": invalid}
