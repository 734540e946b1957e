"""Foundation: settings, database on both backends, health, migrations, admin accounts."""

from __future__ import annotations

from sqlalchemy import inspect, select

from server.auth import create_admin_user, keyed_hash, verify_password
from server.config import Settings
from server.db.models import AdminUser
from server.db.session import make_engine, make_session_factory, session_scope


def test_healthz_reports_database_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_healthz_503_when_database_unreachable(tmp_path):
    from fastapi.testclient import TestClient

    from server.app import create_app

    db_file = tmp_path / "gone" / "x.db"
    settings = Settings(
        database_url=f"sqlite:///{db_file}",
        data_dir=tmp_path / "d",
        secret_key="k",
        run_migrations_on_start=False,
    )
    app = create_app(settings)
    # Point the engine at a directory SQLite cannot open as a file.
    app.state.engine = make_engine(f"sqlite:///{tmp_path}")
    with TestClient(app) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "unreachable" and body["reason"]


def test_migrations_create_every_table(settings, app):
    engine = make_engine(settings.database_url)
    tables = set(inspect(engine).get_table_names())
    assert {
        "studies",
        "trials",
        "responses",
        "participant_sessions",
        "admin_users",
        "images",
        "units",
        "jobs",
        "audit_events",
    } <= tables
    engine.dispose()


def test_sqlite_uses_wal_and_foreign_keys(sqlite_url):
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_admin_password_is_argon2_hashed(settings, app):
    factory = make_session_factory(make_engine(settings.database_url))
    with session_scope(factory) as db:
        create_admin_user(db, "Ada@Example.org", "correct horse battery")
    with session_scope(factory) as db:
        user = db.scalar(select(AdminUser))
        assert user.email == "ada@example.org"
        assert user.password_hash.startswith("$argon2")
        assert "correct horse" not in user.password_hash
        assert verify_password(user.password_hash, "correct horse battery")
        assert not verify_password(user.password_hash, "wrong password!")


def test_keyed_hash_depends_on_secret():
    assert keyed_hash("a", "worker1", "worker") == keyed_hash("a", "worker1", "worker")
    assert keyed_hash("a", "worker1", "worker") != keyed_hash("b", "worker1", "worker")
    assert "worker1" not in keyed_hash("a", "worker1", "worker")


def test_migrations_match_the_models(database_url, tmp_path):
    """A model change without a migration fails here, not in production."""
    from alembic import command

    from server.db.migrate import alembic_config, upgrade_database

    upgrade_database(database_url)
    command.check(alembic_config(database_url))  # raises if autogenerate finds a difference
