"""A contact sheet of a stimulus set: look at the stimuli before anyone else does.

One row per unit: its feature visualizations (max, then min) beside its most and least
activating natural references, each labelled with the unit's activation. Written next
to `manifest.json` as `overview.png` at the end of generation, because a broken
visualization (grey, saturated, or noise) is obvious to the eye and invisible in numbers.
A set with occlusion stimuli (issue 21) shows per unit the base image, its max and min
occlusions and the references an occlusion trial shows, so a patch that lands nowhere
sensible is seen before launch.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import Stimulus, Unit
from server.stimuli.store import ImageStore

# Columns per block: (role, source, title, images shown; None: `per_block`).
_BLOCKS = [
    ("reference_max", "synthetic", "max visualizations", None),
    ("reference_max", "natural", "most activating photos", None),
    ("reference_min", "natural", "least activating photos", None),
    ("reference_min", "synthetic", "min visualizations", None),
]
OCCLUSION_BLOCKS = [
    ("base", "occlusion", "base image", 1),
    ("occlusion_max", "occlusion", "max occlusion", 1),
    ("occlusion_min", "occlusion", "min occlusion", 1),
    ("reference_max", "natural", "most activating photos", None),
    ("reference_max", "synthetic", "max visualizations", None),
]


def write_overview(
    db: Session, store: ImageStore, stimulus_set_id: str, path: Path, per_block: int = 4
) -> Path | None:
    """Draw the sheet to `path` (PNG); None when the set has no stimuli (all units invalid)."""
    rows = db.execute(
        select(Stimulus, Unit)
        .join(Unit, Unit.id == Stimulus.unit_id)
        .where(Stimulus.stimulus_set_id == stimulus_set_id, Stimulus.batch == 0)
        .order_by(Unit.layer_depth, Unit.index, Stimulus.rank)
    ).all()
    if not rows:
        return None
    occlusion = any(stimulus.source == "occlusion" for stimulus, _ in rows)
    blocks = OCCLUSION_BLOCKS if occlusion else _BLOCKS
    if occlusion:  # the base is also the top natural reference: show the ones after it
        rows = [(s, u) for s, u in rows if not (s.source == "natural" and s.rank == 0)]
    cells: dict[tuple[str, int], dict[int, list[Stimulus]]] = defaultdict(lambda: defaultdict(list))
    for stimulus, unit in rows:
        for block, (role, source, _title, _n) in enumerate(blocks):
            if stimulus.role == role and stimulus.source == source:
                cells[(unit.layer, unit.index)][block].append(stimulus)
    units = list(cells)
    widths = [n or per_block for *_, n in blocks]
    starts = [sum(widths[:b]) for b in range(len(blocks))]
    n_cols = sum(widths)
    # Figure, not pyplot: no global backend state, safe in a server thread.
    fig = Figure(figsize=(n_cols * 1.05, len(units) * 1.25 + 0.5))
    axes = fig.subplots(len(units), n_cols, squeeze=False)
    for r, key in enumerate(units):
        for block, (_role, _source, title, _n) in enumerate(blocks):
            images = cells[key][block][: widths[block]]
            for c in range(widths[block]):
                ax = axes[r][starts[block] + c]
                ax.set_axis_off()
                if c < len(images):
                    file, _ = store.locate(images[c].image_sha256)
                    ax.imshow(PILImage.open(file).convert("RGB"))
                    ax.set_title(f"{images[c].activation:.1f}", fontsize=6, pad=1)
                if r == 0 and c == 0:
                    ax.text(0, 1.22, title, transform=ax.transAxes, fontsize=8, ha="left")
        axes[r][0].text(
            -0.08, 0.5, f"{key[0]}\n#{key[1]}", transform=axes[r][0].transAxes,
            fontsize=7, ha="right", va="center",
        )  # fmt: skip
    fig.subplots_adjust(left=0.06, right=0.995, top=1 - 0.45 / fig.get_figheight(), bottom=0.01,
                        wspace=0.05, hspace=0.35)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
