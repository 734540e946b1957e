"""Issue 24: docker-compose.yml deploys what the package can run.

Docker cannot run here, so the file is checked against the code: every `psychinterp ...`
command of a service is a real Typer command with real options, every other command is the
console script of an optional extra the image installs, every PSYCHINTERP_ variable is a
Setting, every required ${VAR} is in .env.example, and `docker compose config` (or v1's
`docker-compose config`) accepts the file when either is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import pytest
import typer.main
import yaml

from server.cli import app
from server.config import Settings

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
_DEFAULTED = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: str) -> str:
    """${VAR:-default} -> default (commands are checked with their default values)."""
    return _DEFAULTED.sub(lambda m: m.group(2) or "1", value)


def _check_cli(args: list[str]) -> None:
    """Resolve `args` through the Typer app's click tree and let click parse the options."""
    command: click.Command = typer.main.get_command(app)
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        assert name in command.commands, f"psychinterp has no command {name!r} ({args})"
        command = command.commands[name]
    assert not isinstance(command, click.Group), f"{args} names a group, not a command"
    command.make_context("psychinterp", rest)  # raises on an unknown option or bad value


def test_the_services_the_issue_asks_for() -> None:
    assert {"db", "app", "worker", "ray-head", "gpu-worker", "minio"} <= set(SERVICES)
    assert SERVICES["db"]["image"].startswith("postgres:16")
    assert "healthcheck" in SERVICES["db"]
    assert any(v.startswith("pgdata:") for v in SERVICES["db"]["volumes"])
    devices = SERVICES["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--workers" in SERVICES["app"]["command"]


def test_every_command_exists() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name, service in SERVICES.items():
        command = service.get("command")
        if command is None or "build" not in service:
            continue  # an upstream image (postgres, minio) runs its own entry point
        args = [_interpolate(str(part)) for part in command]
        if args[0] == "psychinterp":
            _check_cli(args[1:])
        else:
            assert args[0] == "ray", f"{name}: unexpected program {args[0]!r}"
            assert any(dep.startswith("ray") for dep in extras["ray"])
            assert re.search(r"pip install \"\.\[[^\]]*ray", dockerfile), "image lacks [ray]"
            if shutil.which("ray"):
                help_text = subprocess.run(
                    ["ray", "start", "--help"], capture_output=True, text=True, check=True
                ).stdout
                for option in (a for a in args[2:] if a.startswith("--")):
                    assert option in help_text, f"{name}: ray start has no {option}"


def test_every_psychinterp_variable_is_a_setting_and_every_secret_is_documented() -> None:
    fields = set(Settings.model_fields)
    for name, service in SERVICES.items():
        for variable in service.get("environment") or {}:
            if variable.startswith("PSYCHINTERP_"):
                field = variable.removeprefix("PSYCHINTERP_").lower()
                assert field in fields, f"{name}: {variable} is not a Setting"
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^(\w+)=", example, re.MULTILINE))
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yml").read_text()))
    assert required <= documented, f"missing from .env.example: {required - documented}"
    secrets = re.findall(r"^(\w*(?:PASSWORD|SECRET_KEY))=(.*)$", example, re.MULTILINE)
    assert secrets and all(value == "" for _name, value in secrets), "no secrets in the example"


def _compose_command() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose` (v1), whichever is installed."""
    if shutil.which("docker"):
        version = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if version.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        missing = "neither `docker compose` nor `docker-compose` is installed"
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: .ci/run installs docker-compose")
        pytest.skip(missing)
    example = (ROOT / ".env.example").read_text()
    env_file = tmp_path / ".env"
    env_file.write_text(
        re.sub(r"^(\w*(?:PASSWORD|SECRET_KEY))=$", r"\1=x", example, flags=re.MULTILINE)
    )
    result = subprocess.run(
        [*command, "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
