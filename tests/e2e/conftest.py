"""Browser fixtures: one generated live study per test session (copied per test), the real
app served by uvicorn on 127.0.0.1, and Debian's Chromium driven by Playwright.

The study is generated once (real EfficientNet-Lite0 on the demo photos, natural exemplars
only) into a template directory; each test gets a fresh copy of its SQLite file and
stimulus store, so tests cannot see each other's sessions.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from server.app import create_app
from server.config import Settings
from server.db.migrate import upgrade_database
from server.db.models import ParticipantSession, Response, Trial
from server.db.session import make_engine, make_session_factory, session_scope
from server.studies.sessions import session_events
from server.studies.simulate import serve_in_thread as serve

STUDY_YAML = Path(__file__).with_name("study.yaml")
SLUG = "e2e"
PROLIFIC_SLUG = "e2e-prolific"  # the same study, completed on Prolific
# The same study with a 3 s limit per trial (with 1 s, the trial the test answers was
# answered ~0.4 s after it appeared: ~0.6 s to spare on a loaded machine).
TIMEOUT_SLUG = "e2e-timeout"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]
# CI runs these beside other test workers on a loaded machine: Playwright's defaults (5 s for
# an expect, 30 s for an action) are tuned for idle desktops. A passing wait ends as soon as
# its condition holds, so longer limits only cost time when a test is failing anyway.
EXPECT_TIMEOUT_MS = 20_000
ACTION_TIMEOUT_MS = 60_000
expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def _settings(root: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{root / 'e2e.db'}",
        data_dir=root / "data",
        secret_key="e2e-secret-key",
        # Every browser arrives from 127.0.0.1: limits that let the tests start their sessions.
        session_starts_per_address=10_000,
        session_starts_per_study=10_000,
    )


@pytest.fixture(scope="session")
def study_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir + SQLite DB holding the live test study (generated once per run)."""
    from server.studies.service import setup_study_from_file

    root = tmp_path_factory.mktemp("e2e-template")
    settings = _settings(root)
    upgrade_database(settings.database_url)
    engine = make_engine(settings.database_url)
    prolific_yaml = root / "prolific.yaml"
    prolific_yaml.write_text(
        STUDY_YAML.read_text()
        .replace(f"slug: {SLUG}", f"slug: {PROLIFIC_SLUG}")
        .replace("  platform: plain", "  platform: prolific\n  code: C0DE1234")
    )
    timeout_yaml = root / "timeout.yaml"
    timeout_yaml.write_text(
        STUDY_YAML.read_text()
        .replace(f"slug: {SLUG}", f"slug: {TIMEOUT_SLUG}")
        .replace("completion:", "time_limits:\n  trial_timeout_ms: 3000\ncompletion:")
    )
    with session_scope(make_session_factory(engine)) as db:
        setup_study_from_file(db, settings, STUDY_YAML)
        # Same generation config: the activations are cached, so these are quick.
        setup_study_from_file(db, settings, prolific_yaml)
        setup_study_from_file(db, settings, timeout_yaml)
    engine.dispose()
    return root


@dataclass
class LiveSite:
    """The running app and a handle on its database, for assertions."""

    url: str
    engine: Engine

    def study_url(self, query: str = "", slug: str = SLUG) -> str:
        return f"{self.url}/s/{slug}" + (f"?{query}" if query else "")

    def count(self, model) -> int:
        with session_scope(make_session_factory(self.engine)) as db:
            return db.scalar(select(func.count()).select_from(model))

    def responses(self) -> list[dict]:
        """Stored responses in arrival order, with the trial kind (practice|main|catch)."""
        with session_scope(make_session_factory(self.engine)) as db:
            rows = db.execute(
                select(Response, Trial.kind)
                .join(Trial, Trial.id == Response.trial_id)
                .order_by(Response.id)
            ).all()
            return [
                {
                    "trial_id": r.trial_id,
                    "kind": kind,
                    "choice": r.choice,
                    "confidence": r.confidence,
                    "rt_ms": r.rt_ms,
                    "key": r.idempotency_key,
                    "data": dict(r.client_data),
                }
                for r, kind in rows
            ]

    def sessions(self) -> list[ParticipantSession]:
        with session_scope(make_session_factory(self.engine)) as db:
            found = list(db.scalars(select(ParticipantSession)))
            events = {s.id: session_events(db, s.id) for s in found}
            db.expunge_all()
        for session in found:  # detached: the events are read from their own table
            session.events = events[session.id]
        return found


@pytest.fixture
def site(study_template: Path, tmp_path: Path) -> Iterator[LiveSite]:
    """The real app on a fresh copy of the template study, served on 127.0.0.1."""
    root = tmp_path / "site"
    shutil.copytree(study_template, root)
    settings = _settings(root)
    engine = make_engine(settings.database_url)
    try:
        with serve(create_app(settings)) as url:
            yield LiveSite(url=url, engine=engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


def new_context(browser, **options):
    """A browser context with the suite's action timeout (desktop viewport unless given)."""
    options.setdefault("viewport", {"width": 1280, "height": 800})
    ctx = browser.new_context(**options)
    ctx.set_default_timeout(ACTION_TIMEOUT_MS)
    return ctx


@pytest.fixture
def context(browser):
    ctx = new_context(browser)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert not errors, f"JavaScript errors on the page: {errors}"
