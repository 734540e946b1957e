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

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import Stimulus, Unit
from server.stimuli.store import ImageStore

# Layout in pixels: image cells, the activation label above each, the unit's name on the left.
_CELL = 96
_GAP = 4
_LABEL = 14
_HEADER = 20
_LEFT = 90
_FONT = 11


def _cell_x(column: int) -> int:
    return _LEFT + column * (_CELL + _GAP)


def sheet_size(n_columns: int, n_units: int) -> tuple[int, int]:
    """(width, height) of a sheet with `n_columns` image columns and one row per unit."""
    return _cell_x(n_columns), _HEADER + n_units * (_CELL + _LABEL) + _GAP


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
    # Drawn with PIL on one canvas: a matplotlib grid of one axes per image took seconds per
    # sheet, a large share of a small study's generation.
    sheet = PILImage.new("RGB", sheet_size(sum(widths), len(units)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=_FONT)
    for block, (*_, title, _n) in enumerate(blocks):
        draw.text((_cell_x(starts[block]), 4), title, fill="black", font=font)
    for r, key in enumerate(units):
        top = _HEADER + r * (_CELL + _LABEL)
        draw.text((4, top + _LABEL + _CELL // 2), f"{key[0]}\n#{key[1]}", fill="black",
                  font=font, anchor="lm")  # fmt: skip
        for block in range(len(blocks)):
            for c, stimulus in enumerate(cells[key][block][: widths[block]]):
                x = _cell_x(starts[block] + c)
                file, _ = store.locate(stimulus.image_sha256)
                with PILImage.open(file) as image:
                    thumb = image.convert("RGB").resize((_CELL, _CELL), PILImage.BILINEAR)
                sheet.paste(thumb, (x, top + _LABEL))
                draw.text((x + _CELL // 2, top + _LABEL - 1), f"{stimulus.activation:.1f}",
                          fill="black", font=font, anchor="mb")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path
