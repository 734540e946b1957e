"""Machine scores in reports and on the dashboard: the cross-model figure, MIS vs humans."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from analysis.dashboard import study_report_html
from analysis.machine_report import machine_section_html
from server.app import create_app
from server.auth import create_admin_user
from server.cli import app as cli
from server.db.session import session_scope
from server.studies.machine_scores import ScoreRequest, score_model
from server.studies.observers import make_observer
from server.studies.simulate import run_simulation, serve_in_thread


def _scores(rng) -> pd.DataFrame:
    rows = []
    for model in ("m-small", "m-large"):
        for depth, layer in enumerate(("a", "b", "c")):
            for unit in range(4):
                mis = float(rng.uniform(0.6, 0.9))
                rows.append(
                    {"model": model, "layer": layer, "unit": unit, "layer_depth": depth / 2,
                     "mis": mis, "ci_low": 0.5, "ci_high": 0.95, "backend": "efficientnet-lite2",
                     "alpha": 16.0, "n_tasks": 20, "image_set": "x", "note": ""}
                )  # fmt: skip
    rows[0].update(mis=None, ci_low=None, ci_high=None, note="dropped: constant")
    return pd.DataFrame(rows).astype({"mis": float, "ci_low": float, "ci_high": float})


def test_section_has_the_figure_layers_and_the_human_comparison():
    scores = _scores(np.random.default_rng(0))
    human = scores.dropna(subset=["mis"])[["model", "layer", "unit", "mis"]].copy()
    human["human_accuracy"] = human["mis"] * 0.9 + 0.05
    human["n_responses"] = 30
    html = machine_section_html(scores, human.drop(columns=["mis"]))
    assert "data:image/png;base64," in html and "1 dropped" in html and "dropped: constant" in html
    rho = re.search(r"Spearman rho = ([0-9.]+) \(95% CI ([0-9.]+) to ([0-9.]+)", html)
    assert rho and float(rho.group(1)) == 1.0
    assert machine_section_html(scores.iloc[:0]) == ""


STUDY = """
title: tiny cross-model
slug: tiny-scale
images: {images}
models:
  - {{model: efficientnet-lite0, layers: ["_blocks.3", "_blocks.12"], units_per_layer: 2}}
  - {{model: efficientnet-lite1, layers: ["_blocks.3", "_blocks.14"], units_per_layer: 2}}
n_tasks: 5
"""


def test_mis_study_scores_every_model_and_writes_the_report(sqlite_url, tmp_path, demo_pool):
    path = tmp_path / "tiny.yaml"
    path.write_text(STUDY.format(images=demo_pool))
    env = {"PSYCHINTERP_DATABASE_URL": sqlite_url, "PSYCHINTERP_DATA_DIR": str(tmp_path / "d")}
    report = tmp_path / "tiny.html"
    args = ["mis", "study", str(path), "--format", "json", "--report", str(report)]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    layers = json.loads(result.stdout)["layers"]
    assert {(r["model"], r["layer"]) for r in layers} == {
        ("efficientnet-lite0", "_blocks.3"), ("efficientnet-lite0", "_blocks.12"),
        ("efficientnet-lite1", "_blocks.3"), ("efficientnet-lite1", "_blocks.14"),
    }  # fmt: skip
    assert all(0 < r["layer_depth"] < 1 and 0 <= r["mis"] <= 1 for r in layers)
    page = report.read_text()
    assert "data-testid='machine-scores'" in page and "data:image/png;base64," in page

    path.write_text(STUDY.format(images=demo_pool).replace("n_tasks: 5", "n_tasks: 0"))
    bad = CliRunner().invoke(cli, ["mis", "study", str(path)], env=env)
    assert bad.exit_code == 1 and "tiny.yaml:8: n_tasks" in bad.stderr.replace("\n", "")


# Machine scores are stored and read through the same ORM paths the PostgreSQL runs of
# tests/test_mis_cli.py cover; one backend here keeps CI short.
@pytest.mark.parametrize("live_study", ["sqlite"], indirect=True)
def test_study_page_and_report_show_machine_scores(live_study):
    settings, factory, study = live_study
    generation = study.config["generation"]
    request = ScoreRequest(
        model=generation["model"],
        images=settings.data_dir / "demo-images" / "10x192",
        layers=generation["layers"],
        units_per_layer=generation["units_per_layer"],
        seed=generation["seed"],  # the study's own units
    )
    with session_scope(factory) as db:
        run = score_model(db, settings, request)
        assert run.scored == 6
    app = create_app(settings)
    with serve_in_thread(app) as url:
        # Machine "participants" (random ones fail practice and are screened out).
        observer = make_observer("similarity", alpha=30.0)
        run_simulation(url, study.slug, 6, observer, concurrency=2, seed=9, session_factory=factory)
    report = study_report_html(factory.kw["bind"], study)
    assert "data-testid='machine-scores'" in report and "data-testid='mis-human'" in report
    with TestClient(app) as client:
        with session_scope(factory) as db:
            create_admin_user(db, "mis@lab.org", "a strong enough password")
        page = client.get("/admin/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        client.post("/admin/login", data={"email": "mis@lab.org", "csrf": csrf,
                                          "password": "a strong enough password"})  # fmt: skip
        page = client.get(f"/admin/studies/{study.slug}")
    assert page.status_code == 200 and "data-testid='machine-scores'" in page.text
