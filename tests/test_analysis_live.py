"""analyze/export on responses written by the real participant API (simulated observers)."""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import func, select
from typer.testing import CliRunner

import analysis
from server.app import create_app
from server.cli import app
from server.db.models import Response
from server.db.session import session_scope
from server.studies.simulate import run_simulation, serve_in_thread

runner = CliRunner()


def test_analyze_and_export_a_simulated_study(live_study, tmp_path):
    settings, factory, study = live_study
    with serve_in_thread(create_app(settings)) as url:
        result = run_simulation(
            url, study.slug, 8, "oracle", concurrency=4, seed=3, session_factory=factory
        )
    assert result.completed == 8
    with session_scope(factory) as db:
        stored = db.scalar(select(func.count()).select_from(Response))

    frame = analysis.load_study(settings, study.slug)
    assert len(frame) == stored
    assert frame["participant"].nunique() == 8
    assert frame["correct"].all()  # oracle observers
    assert {"main", "practice", "catch"} >= set(frame["trial_kind"]) >= {"main"}

    args = ["--database-url", settings.database_url]
    out = runner.invoke(
        app,
        ["analyze", study.slug, *args, "--format", "json", "--bootstrap", "100", "--no-exclusions"],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert set(data["by_condition"]) == set(frame.loc[frame["trial_kind"] == "main", "condition"])
    for scores in data["by_condition"].values():
        assert scores["accuracy"] == 1.0 and scores["n_participants"] == 8

    # Without --no-exclusions the study's own `exclusion:` section applies (--rule overrides).
    out = runner.invoke(
        app,
        ["analyze", study.slug, *args, "--format", "json", "--bootstrap", "100",
         "--rule", "min_duration_s=off"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    rules = json.loads(out.output)["excluded"]["rules"]
    exclusion = study.config["exclusion"]
    assert rules["total_time_s"]["threshold"] == [None, exclusion["total_time_s"][1]]
    assert rules["min_catch_accuracy"]["threshold"] == exclusion["min_catch_accuracy"] != 0.8

    path = tmp_path / "export.csv"
    out = runner.invoke(app, ["export", study.slug, *args, "--output", str(path)])
    assert out.exit_code == 0, out.output
    assert f"wrote {stored} responses of 8 participants" in out.output
    exported = pd.read_csv(path)
    assert exported["stimulus_a"].str.len().eq(64).all()
    assert exported.groupby("participant")["trial_index"].is_monotonic_increasing.all()
