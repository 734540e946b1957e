"""The README's first commands, as a new user runs them: `demo`, `simulate`, `analyze`.

The demo study's own exclusion rules must keep simulated participants (they finish in
seconds): with a 10 s minimum total time, `analyze demo` after `simulate` failed with
"every participant was excluded", the first thing the README asks a new user to run.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from server.cli import app

runner = CliRunner()


def test_demo_then_simulate_then_analyze(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # demo writes ./psychinterp-data, like a user's shell would
    database_url = f"sqlite:///{tmp_path / 'psychinterp.db'}"
    demo = runner.invoke(app, ["demo", "--no-serve", "--database-url", database_url])
    assert demo.exit_code == 0, demo.output
    assert "participant URL: http://127.0.0.1:8000/s/demo" in demo.output

    simulate = ["simulate", "demo", "--participants", "4", "--database-url", database_url]
    for observer in ("oracle", "random"):
        result = runner.invoke(app, [*simulate, "--observer", observer, "--seed", "1"])
        assert result.exit_code == 0, result.output
        assert "completed=4" in result.output and "duplicates=0" in result.output

    analyze = runner.invoke(app, ["analyze", "demo", "--format", "json", "--database-url",
                                  database_url])  # fmt: skip
    assert analyze.exit_code == 0, analyze.output
    report = json.loads(analyze.output)
    assert report["excluded"]["participants_total"] == 8
    # The oracle passes every rule; random answerers may fail catch trials or practice.
    assert 4 <= report["excluded"]["participants_kept"] <= 8
    assert set(report["by_condition"]) == {"natural", "none"}
