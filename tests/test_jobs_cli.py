"""`study generate` runs through the job machinery; `jobs list/show/resume` read the same rows."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from server.cli import app

E2E_STUDY = Path(__file__).parent / "e2e" / "study.yaml"


def test_study_generate_runs_as_a_job_with_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("PSYCHINTERP_DATA_DIR", str(tmp_path / "data"))
    url = ["--database-url", f"sqlite:///{tmp_path / 'cli.db'}"]
    runner = CliRunner()
    queued = runner.invoke(app, ["study", "generate", str(E2E_STUDY), "--background", *url])
    assert queued.exit_code == 0, queued.output
    job_id = queued.output.split("queued job ")[1].split(";")[0]
    again = runner.invoke(app, ["study", "generate", "e2e", *url])
    assert again.exit_code == 1 and f"being generated already (job {job_id})" in again.output
    cancelled = runner.invoke(app, ["jobs", "cancel", job_id, *url])
    assert cancelled.exit_code == 0 and f"{job_id}: cancelled" in cancelled.output

    generated = runner.invoke(app, ["study", "generate", "e2e", *url])
    assert generated.exit_code == 0, generated.output
    assert "generated e2e: stimulus set" in generated.output
    for step in ("load model", "activations", "exemplars"):  # the progress bars
        assert step in generated.output, step
    listing = runner.invoke(app, ["jobs", "list", *url])
    assert "succeeded" in listing.output and "cancelled" in listing.output
    resumed = runner.invoke(app, ["jobs", "resume", "nope", *url])
    assert resumed.exit_code == 1 and "no job 'nope'" in resumed.output
