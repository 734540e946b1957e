"""Importers: an IMI task folder into a stimulus set, and earlier experiments' CSVs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import analysis
from analysis.importers.imi import add_imi_task, read_imi_task
from analysis.importers.responses import guess_columns, import_response_file
from server.db import models as m
from server.db.migrate import upgrade_database
from server.db.session import make_engine
from server.errors import AppError
from server.stimuli.store import ImageStore


def make_imi_task(root, n_trials=2, k=3, seed=0):
    """A task folder as the IMI dataset lays it out, with distinct small images."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    index = {
        "task_name": "resnet50_layer3_ch12",
        "n_reference_images": k,
        "n_trials": n_trials,
        "model": "resnet50",
        "layer": "layer3",
        "channel": 12,
    }
    (root / "index.json").write_text(json.dumps(index))
    for n in range(n_trials):
        for folder, count in (("queries", 1), ("references", k)):
            path = root / "trials" / f"trial_{n}" / folder
            path.mkdir(parents=True)
            for role in ("max", "min"):
                for i in range(count):
                    pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(path / f"{role}_{i}.png")
    return root


def test_imi_task_into_stimulus_set(database_url, tmp_path):
    task = read_imi_task(make_imi_task(tmp_path / "task"), ImageStore(tmp_path / "store"))
    assert (task.model, task.layer, task.channel) == ("resnet50", "layer3", 12)
    assert len(task.trials) == 2 and len(task.trials[0].references_max) == 3
    upgrade_database(database_url)
    engine = make_engine(database_url)
    with Session(engine) as db:
        stimulus_set = add_imi_task(db, task, source="synthetic")
        db.commit()
        roles = dict(
            db.execute(
                select(m.Stimulus.role, func.count())
                .where(m.Stimulus.stimulus_set_id == stimulus_set.id)
                .group_by(m.Stimulus.role)
            ).all()
        )
        assert roles == {"query_max": 2, "query_min": 2, "reference_max": 6, "reference_min": 6}
        assert db.scalar(select(func.count()).select_from(m.Image)) == 16
        unit = db.scalar(select(m.Unit))
        assert (unit.layer, unit.index, unit.model.name) == ("layer3", 12, "resnet50")
        first_max = db.scalar(
            select(m.Stimulus).where(m.Stimulus.role == "query_max", m.Stimulus.batch == 0)
        )
        assert first_max.image_sha256 == task.trials[0].query_max.sha256
    engine.dispose()
    # Stored files are named by content hash only.
    stored = [p.name for p in (tmp_path / "store").rglob("*.png")]
    assert len(stored) == 16 and not any("max" in n or "min" in n for n in stored)


def test_imi_task_errors_say_what_is_wrong(tmp_path):
    root = make_imi_task(tmp_path / "task", n_trials=1)
    (root / "trials" / "trial_0" / "references" / "max_2.png").unlink()
    with pytest.raises(AppError, match="expected 3 max references .* found 2"):
        read_imi_task(root, ImageStore(tmp_path / "store"))
    (root / "index.json").write_text(json.dumps({"task_name": "t", "n_trials": 1}))
    with pytest.raises(AppError, match="missing key 'n_reference_images'; keys present"):
        read_imi_task(root, ImageStore(tmp_path / "store"))


def test_earlier_experiment_csv(tmp_path):
    frame = pd.DataFrame(
        {
            "worker_id": ["w1"] * 4 + ["w2"] * 4,
            "mode": ["natural", "synthetic", "natural", "natural"] * 2,
            "is_correct": ["True", "False", "true", "1", "0", "True", "false", "False"],
            "catch_trial": ["False", "False", "True", "False"] * 2,
            "is_demo": ["False", "False", "False", "True"] * 2,
            "task_name": ["t1", "t1", "c", "d"] * 2,
            "rt": [2100, 2500, 900, 3000, 1800, 2200, 1000, 1500],
        }
    )
    path = tmp_path / "imi_responses.csv"
    frame.to_csv(path)
    assert guess_columns(frame.columns) == {
        "participant": "worker_id",
        "condition": "mode",
        "correct": "is_correct",
        "rt_ms": "rt",
        "unit": "task_name",
    }
    tidy = import_response_file(path)
    assert tidy["trial_kind"].tolist() == ["main", "main", "catch", "practice"] * 2
    assert tidy["correct"].tolist() == [True, False, True, True, False, True, False, False]
    table = analysis.score_table(analysis.main_trials(tidy), ["condition"], 100)
    assert table.set_index("condition")["accuracy"].to_dict() == {"natural": 0.5, "synthetic": 0.5}
