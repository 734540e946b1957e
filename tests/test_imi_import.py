"""IMI's real output into a study (issue 19): `study import-imi` on folders laid out
exactly as IMI's create_task_structure_from_json.py writes them, then `study launch`,
then `simulate --observer random`, through the CLI on a real SQLite database."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from analysis.importers.imi import read_imi_task
from server.cli import app
from server.db import models as m
from server.db.session import make_engine
from server.errors import AppError
from server.stimuli.store import ImageStore

runner = CliRunner()
K = 9


def _png(path, rng) -> None:
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)


def make_imi_experiment(root, n_tasks=3, n_trials=6, catch=(2, 5), n_units=4, seed=0):
    """What create_task_structure_from_json.py writes (IMI, brendel-group/imi):

    ROOT/task_{index}/trials/trial_{i + 1}/queries/{max,min}.png (copies of the source
    max_9/min_0 queries, or max_8/min_1 for catch trials) and references/* (the source's
    max_0..8.png / min_0..8.png), and ROOT/task_{index}/index.json with task_name
    "{experiment}/task_{index}", n_reference_images as given on the command line (a
    string: argparse has no type there), n_trials, catch_trial_idxs (1-based).
    """
    rng = np.random.default_rng(seed)
    # The source stimuli: per unit one batch of references and its queries.
    source = root.parent / f"{root.name}-source"
    for unit in range(n_units):
        for folder, names in (
            ("references", [f"{r}_{i}.png" for r in ("max", "min") for i in range(K)]),
            ("queries", ["max_9.png", "min_0.png", "max_8.png", "min_1.png"]),
        ):
            (source / f"unit_{unit}" / folder).mkdir(parents=True)
            for name in names:
                _png(source / f"unit_{unit}" / folder / name, rng)
        # A catch trial's max query is one of the shown references (IMI: max_8).
        shutil.copy(
            source / f"unit_{unit}" / "references" / "max_8.png",
            source / f"unit_{unit}" / "queries" / "max_8.png",
        )
    for index in range(n_tasks):
        task_folder = root / f"task_{index}"
        trials = []
        for i in range(n_trials):
            unit = (index + i) % n_units
            mode = "catch_trial" if (i + 1) in catch else "natural"
            trials.append({"mode": mode, "unit": unit})
            trial_folder = task_folder / "trials" / f"trial_{i + 1}"
            (trial_folder / "queries").mkdir(parents=True)
            (trial_folder / "references").mkdir()
            queries = source / f"unit_{unit}" / "queries"
            pair = ("max_8", "min_1") if mode == "catch_trial" else ("max_9", "min_0")
            shutil.copy(queries / f"{pair[0]}.png", trial_folder / "queries" / "max.png")
            shutil.copy(queries / f"{pair[1]}.png", trial_folder / "queries" / "min.png")
            for reference in (source / f"unit_{unit}" / "references").glob("*.png"):
                shutil.copy(reference, trial_folder / "references" / reference.name)
        index_json = {
            "task_name": f"{root.name}/task_{index}",
            "n_reference_images": str(K),
            "n_trials": len(trials),
            "catch_trial_idxs": [
                idx + 1 for idx in range(len(trials)) if trials[idx]["mode"] == "catch_trial"
            ],
        }
        (task_folder / "index.json").write_text(json.dumps(index_json))
    return root


def test_reader_follows_imis_layout(tmp_path):
    root = make_imi_experiment(tmp_path / "natural_exp", n_tasks=1)
    task = read_imi_task(root / "task_0", ImageStore(tmp_path / "store"))
    assert task.n_reference_images == K and len(task.trials) == 6
    assert [t.catch for t in task.trials] == [False, True, False, False, True, False]
    assert [t.folder for t in task.trials][:2] == ["trials/trial_1", "trials/trial_2"]
    catch = task.trials[1]
    assert catch.query_max.sha256 in {r.sha256 for r in catch.references_max}
    assert len(catch.references_max) == len(catch.references_min) == K


def test_reader_errors_name_the_file_and_what_was_expected(tmp_path):
    root = make_imi_experiment(tmp_path / "exp", n_tasks=1)
    store = ImageStore(tmp_path / "store")
    (root / "task_0" / "trials" / "trial_3" / "references" / "min_4.png").unlink()
    with pytest.raises(AppError, match=r"trial_3/references: expected 9 min references"):
        read_imi_task(root / "task_0", store)
    references = root / "task_0" / "trials" / "trial_3" / "references"
    shutil.copy(references / "min_3.png", references / "min_4.png")
    index = json.loads((root / "task_0" / "index.json").read_text())
    shutil.rmtree(root / "task_0" / "trials" / "trial_6")
    with pytest.raises(AppError, match=r"trial_6: missing; .*index.json says n_trials=6"):
        read_imi_task(root / "task_0", store)
    index["catch_trial_idxs"] = [0, 2]
    (root / "task_0" / "index.json").write_text(json.dumps(index))
    with pytest.raises(AppError, match=r"catch_trial_idxs \[0\] outside 1..6 .* from 1"):
        read_imi_task(root / "task_0", store)
    index["n_reference_images"] = "nine"
    (root / "task_0" / "index.json").write_text(json.dumps(index))
    with pytest.raises(AppError, match=r"index.json: 'n_reference_images' must be a whole"):
        read_imi_task(root / "task_0", store)


def test_import_launch_simulate(tmp_path, monkeypatch):
    monkeypatch.setenv("PSYCHINTERP_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'imi.db'}"
    root = make_imi_experiment(tmp_path / "natural_exp")
    db = ["--database-url", url]

    bad = runner.invoke(app, ["study", "import-imi", str(tmp_path), "--slug", "x", *db])
    assert bad.exit_code == 1 and "expected index.json (a task folder)" in bad.output

    imported = runner.invoke(
        app, ["study", "import-imi", str(root), "--slug", "imi-nat", "--model", "resnet50", *db]
    )
    assert imported.exit_code == 0, imported.output
    assert "imported imi-nat: 3 task(s), 18 trials" in imported.output
    again = runner.invoke(app, ["study", "import-imi", str(root), "--slug", "imi-nat", *db])
    assert again.exit_code == 1 and "exists already" in again.output

    launched = runner.invoke(app, ["study", "launch", "imi-nat", *db])
    assert launched.exit_code == 0 and "imi-nat: live" in launched.output, launched.output

    simulated = runner.invoke(
        app, ["simulate", "imi-nat", "--participants", "4", "--observer", "random", *db]
    )
    assert simulated.exit_code == 0, simulated.output
    assert "sent=24 acknowledged=24" in simulated.output and "completed=4" in simulated.output

    engine = make_engine(url)
    with Session(engine) as session:
        study = session.scalar(select(m.Study).where(m.Study.slug == "imi-nat"))
        kinds = dict(
            session.execute(
                select(m.Trial.kind, func.count())
                .where(m.Trial.study_id == study.id)
                .group_by(m.Trial.kind)
            ).all()
        )
        assert kinds == {"main": 12, "catch": 6}
        units = session.scalars(
            select(m.Unit).join(m.VisionModel).where(m.VisionModel.name == "resnet50")
        ).all()
        assert len(units) == 4  # trials sharing a reference set are one unit
        # Each participant got exactly one IMI task: its 6 trials, 2 of them catch.
        per_session = session.execute(
            select(
                m.Response.session_id, func.count(), func.count().filter(m.Trial.kind == "catch")
            )
            .join(m.Trial, m.Trial.id == m.Response.trial_id)
            .where(m.Trial.study_id == study.id)
            .group_by(m.Response.session_id)
        ).all()
        assert sorted((n, c) for _, n, c in per_session) == [(6, 2)] * 4
    engine.dispose()

    analyzed = runner.invoke(
        app, ["analyze", "imi-nat", "--no-exclusions", "--format", "json", *db]
    )
    assert analyzed.exit_code == 0, analyzed.output
    result = json.loads(analyzed.output)
    assert result["by_condition"]["natural"]["n_participants"] == 4
    assert result["by_condition"]["natural"]["n_responses"] == 16
