"""Run Alembic migrations programmatically (no alembic.ini needed by users)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from server.db.session import normalise_database_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' must be escaped for configparser (passwords may contain it).
    config.set_main_option(
        "sqlalchemy.url", normalise_database_url(database_url).replace("%", "%%")
    )
    return config


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to call on every start."""
    command.upgrade(alembic_config(database_url), revision)
