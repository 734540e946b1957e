"""The CLI as a user runs it: real subprocess-free invocations through Typer's runner."""

from __future__ import annotations

from typer.testing import CliRunner

from server.cli import app

runner = CliRunner()


def test_db_upgrade_then_create_user(database_url):
    result = runner.invoke(app, ["db", "upgrade", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    create = ["admin", "create-user", "--email", "r@lab.org", "--password-stdin",
              "--database-url", database_url]  # fmt: skip
    result = runner.invoke(app, create, input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert "created admin r@lab.org" in result.output
    again = runner.invoke(app, create, input="a long enough password\n")
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_unreachable_database_is_one_line_error():
    url = "postgresql+psycopg://nobody:x@127.0.0.1:1/none"
    result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 1
    assert "database unreachable" in result.output
    assert "Traceback" not in result.output


def test_models_list_names_builtins():
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0
    for name in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
        assert name in result.output


def test_unknown_model_lists_valid_names():
    result = runner.invoke(app, ["models", "layers", "efficientnet-lite9"])
    assert result.exit_code == 1
    assert "unknown model" in result.output and "efficientnet-lite0" in result.output


def test_models_layers_shows_shapes():
    result = runner.invoke(app, ["models", "layers", "efficientnet-lite0"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "_blocks.15" in result.output and "320x7x7" in result.output


def test_evaluate_rejects_missing_and_flat_dirs(tmp_path):
    missing = runner.invoke(
        app, ["models", "evaluate", "efficientnet-lite0", "--images", str(tmp_path / "nope")]
    )
    assert missing.exit_code == 1 and "does not exist" in missing.output
    (tmp_path / "flat").mkdir()
    empty = runner.invoke(
        app, ["models", "evaluate", "efficientnet-lite0", "--images", str(tmp_path / "flat")]
    )
    assert empty.exit_code == 1 and "no images" in empty.output


def test_error_messages_keep_their_brackets(tmp_path):
    """Rich markup must not eat literal brackets (pip extras, paths) in one-line errors."""
    missing = tmp_path / "study[dreamsim].yaml"
    result = runner.invoke(app, ["study", "validate", str(missing)])
    assert result.exit_code == 1
    assert "study[dreamsim].yaml" in result.output
