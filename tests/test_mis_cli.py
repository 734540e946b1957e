"""`psychinterp mis score`: real model, real database, stored and resumable."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from server.cli import app
from server.db.models import MachineScore

runner = CliRunner()


def _score(database_url, tmp_path, pool, *extra):
    args = ["mis", "score", "--model", "efficientnet-lite0", "--images", str(pool)]
    args += ["--layers", "_blocks.2,_blocks.10", "--tasks", "6", *extra]
    env = {"PSYCHINTERP_DATABASE_URL": database_url, "PSYCHINTERP_DATA_DIR": str(tmp_path / "d")}
    return runner.invoke(app, args, env=env)


def test_score_stores_prints_and_resumes(database_url, tmp_path, demo_pool):
    first = _score(database_url, tmp_path, demo_pool, "--units", "2", "--format", "json")
    assert first.exit_code == 0, first.output
    body = json.loads(first.stdout)
    assert body["scored"] == 4 and body["reused"] == 0
    assert {row["layer"] for row in body["layers"]} == {"_blocks.2", "_blocks.10"}
    assert all(0 <= u["mis"] <= 1 for u in body["units"])
    assert any("recur across tasks" in note for note in body["notes"])
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count(MachineScore.id))) == 4
        assert all(len(d) == 6 for d in conn.scalars(select(MachineScore.deltas)))
    # Same key: nothing is recomputed (a stopped run resumes the same way).
    again = _score(database_url, tmp_path, demo_pool, "--units", "2", "--format", "csv")
    assert again.exit_code == 0, again.output
    lines = again.stdout.strip().splitlines()
    assert lines[0].startswith("model,layer,unit,layer_depth,mis") and len(lines) == 5
    assert "0 unit(s) scored, 4 already stored" in again.stderr
    with engine.connect() as conn:
        assert conn.scalar(select(func.count(MachineScore.id))) == 4
    engine.dispose()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "xml"], "unknown --format"),
        (["--units", "2", "--all-units"], "not both"),
        (["--backend", "nope"], "unknown similarity backend"),
        (["--backend", "dreamsim"], "pip install dreamsim"),
        (["--layers", "_nope"], "layer '_nope' is not in model"),
    ],
)
def test_bad_input_is_one_clear_line(sqlite_url, tmp_path, demo_pool, extra, message):
    result = _score(sqlite_url, tmp_path, demo_pool, *extra)
    assert result.exit_code == 1
    assert message in result.stderr.replace("\n", " ")
