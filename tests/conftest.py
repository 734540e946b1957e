"""Shared fixtures: a real database (SQLite file, and PostgreSQL when configured), the app,
and the real EfficientNet-Lite0 model.

PostgreSQL tests run when PSYCHINTERP_TEST_POSTGRES_URL points at a server whose user may
create databases (`.ci/run` sets it). Each test gets its own fresh database.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DBAPIError

from server.app import create_app
from server.config import Settings

POSTGRES_URL = os.environ.get("PSYCHINTERP_TEST_POSTGRES_URL")
DATABASE_BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])

if os.environ.get("CI") and not POSTGRES_URL:
    raise RuntimeError("CI must test PostgreSQL too: set PSYCHINTERP_TEST_POSTGRES_URL (.ci/run)")


def import_or_skip(module: str, reason: str):
    """The module, or a skip on a developer's machine without that optional extra. On CI
    (the dev extra is installed) a missing module is a failure, not a skip that would hide a
    missing install step."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=reason)


def _postgres_database() -> Iterator[str]:
    name = f"pi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        _drop_database(admin, name)
        admin.dispose()


def _drop_database(admin, name: str, patience_s: float = 60.0) -> None:
    """Drop a test database, waiting out an autovacuum worker that is on it.

    WITH (FORCE) terminates the other sessions, but PostgreSQL only lets a non-superuser
    terminate sessions of its own role, and an autovacuum worker has none: the drop then
    fails with InsufficientPrivilege (it did on CI, after a migration test created every
    table). The worker finishes a small database in moments, so the drop is retried."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except DBAPIError as error:
            waiting_on_autovacuum = getattr(error.orig, "sqlstate", None) in {
                "42501",  # insufficient_privilege: a session without our role
                "55006",  # object_in_use
            }
            if not waiting_on_autovacuum or time.monotonic() > deadline:
                raise
            time.sleep(0.25)


@pytest.fixture(params=DATABASE_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each configured backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url, data_dir=tmp_path / "data", secret_key="test-secret-key"
    )


@pytest.fixture
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def lite0():
    """The real EfficientNet-Lite0 with its ImageNet weights, loaded once."""
    from server.stimuli.models import load_model

    return load_model("efficientnet-lite0", "cpu")


@pytest.fixture(scope="session")
def demo_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small pool of real photos (crops/flips of scikit-image's images)."""
    from server.stimuli.demo_images import build_demo_pool

    return build_demo_pool(tmp_path_factory.mktemp("pool"), per_photo=6, size=160)


# --- live studies (used by the study, participant API and simulation tests) -----------------


@pytest.fixture(scope="session")
def study_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for all study tests: its activation cache makes each generation fast."""
    return tmp_path_factory.mktemp("study-data")


@pytest.fixture(scope="session")
def fast_study_yaml() -> str:
    """studies/imi-demo.yaml with natural + none and no feature visualizations (fast on CPU)."""
    import yaml

    config = yaml.safe_load((Path(__file__).parents[1] / "studies/imi-demo.yaml").read_text())
    config["conditions"] = ["natural", "none"]
    config["generation"]["fv"] = {"enabled": False}
    return yaml.safe_dump(config, sort_keys=False)


def open_test_database(url: str, data_dir: Path):
    """(settings, engine, session factory) on a migrated database. Tests start many sessions
    from one address: generous limits (the defaults are tested in
    tests/test_hardening_participant.py)."""
    from server.db.migrate import upgrade_database
    from server.db.session import make_engine, make_session_factory

    settings = Settings(
        database_url=url,
        data_dir=data_dir,
        secret_key="test-secret-key",
        session_starts_per_address=100_000,
        session_starts_per_study=100_000,
    )
    upgrade_database(url)
    engine = make_engine(url)
    return settings, engine, make_session_factory(engine)


@contextlib.contextmanager
def backend_database(backend: str, tmp_path_factory, data_dir: Path, name: str):
    """`open_test_database` on a fresh SQLite file or PostgreSQL database (dropped after)."""
    if backend == "sqlite":
        urls = iter([f"sqlite:///{tmp_path_factory.mktemp(name) / f'{name}.db'}"])
    else:
        urls = _postgres_database()
    settings, engine, factory = open_test_database(next(urls), data_dir)
    try:
        yield settings, engine, factory
    finally:
        engine.dispose()
        next(urls, None)  # drops the PostgreSQL database


def launched_study(factory, settings: Settings, text: str, source: str):
    """Create, generate and launch a study from YAML text; the Study row."""
    from server.db.session import session_scope
    from server.studies.service import create_study, generate_study, launch_study

    with session_scope(factory) as db:
        study = create_study(db, settings, text, source)
        generate_study(db, settings, study)
        launch_study(db, study)
    return study


@pytest.fixture(scope="module", params=DATABASE_BACKENDS)
def live_study(request: pytest.FixtureRequest, tmp_path_factory, study_data_dir, fast_study_yaml):
    """(settings, session factory, study) for a launched fast demo study, per backend."""
    with backend_database(request.param, tmp_path_factory, study_data_dir, "live") as opened:
        settings, _, factory = opened
        study = launched_study(factory, settings, fast_study_yaml, "imi-demo-fast.yaml")
        yield settings, factory, study


class PinnedDraws:
    """A simulated observer (random, similarity) whose coin flips are pinned to the trials,
    for tests that assert a statistic of its answers.

    Unpinned, which draw meets which trial hangs on the sessions' seeds (secrets.randbelow,
    drawn by the server) and on which thread claims which place, so every run is a new
    sample. Here the k-th answer to a trial (known by its images) uses the draw u(trial, k),
    mirrored when the max query is b, so that it is right iff u < p(right): however the
    answers are ordered, each trial gets the same right/wrong answers in every run."""

    def __init__(self, observer, session_factory):
        self.observer, self.session_factory = observer, session_factory
        self._answered: Counter = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.observer, name)

    def choose(self, client, session_id, trial, headers, rng):
        from server.db.models import Assignment, Trial

        with self.session_factory.kw["bind"].connect() as conn:
            images, max_is_a = conn.execute(
                select(Trial.images, Assignment.max_is_a)
                .join(Assignment, Assignment.trial_id == Trial.id)
                .where(Assignment.session_id == session_id, Trial.id == trial["trial_id"])
                .order_by(Assignment.attempt.desc())  # a practice round's latest attempt
                .limit(1)
            ).one()
        key = hashlib.sha256(json.dumps(images, sort_keys=True).encode()).hexdigest()
        with self._lock:
            k = self._answered[key]
            self._answered[key] += 1
        u = np.random.default_rng([int(key[:15], 16), k]).random()
        return self.observer.choose(client, session_id, trial, headers, _Draw(u, max_is_a))


class _Draw:
    """An rng whose one draw is given (mirrored for a trial whose max query is b)."""

    def __init__(self, u: float, max_is_a: bool):
        self.value = u if max_is_a else 1 - u

    def random(self) -> float:
        return self.value
