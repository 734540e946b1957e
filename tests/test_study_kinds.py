"""Both kinds of study file go through `study validate`, and each command that reads only one
kind says which command reads the other, instead of listing every field as an error."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from server.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_study_validate_accepts_a_machine_study_and_names_its_command():
    result = runner.invoke(app, ["study", "validate", str(ROOT / "studies/scale-demo.yaml")])
    assert result.exit_code == 0, result.output
    assert "machine study: 3 model(s)" in result.output
    assert "psychinterp mis study" in result.output


def test_study_validate_reports_machine_study_errors_with_line(tmp_path):
    text = (ROOT / "studies/scale-demo.yaml").read_text().replace("n_tasks: 20", "n_tasks: 0")
    bad = tmp_path / "machine.yaml"
    bad.write_text(text)
    result = runner.invoke(app, ["study", "validate", str(bad)])
    assert result.exit_code != 0
    assert f"{bad}:" in result.output and "n_tasks" in result.output


def test_mis_study_on_a_participant_study_names_the_right_commands():
    study = ROOT / "studies/imi-demo.yaml"
    result = runner.invoke(app, ["mis", "study", str(study)])
    assert result.exit_code != 0
    assert "participant study" in result.output
    assert f"psychinterp study generate {study}" in result.output
    assert "Extra inputs" not in result.output
