"""Issue 23's small fixes: `/` leads somewhere, page-worded banner, bars from 0, audit actor."""

from __future__ import annotations

import re

import pandas as pd
from fastapi.testclient import TestClient
from sqlalchemy import select

from analysis.plots import plot_by_condition
from server.app import create_app
from server.auth import create_admin_user
from server.db.models import AuditEvent
from server.db.session import session_scope
from server.studies.simulate import run_simulation, serve_in_thread


def test_root_leads_to_login_or_dashboard(client):
    page = client.get("/", headers={"accept": "text/html"})
    assert page.status_code == 200 and 'data-testid="login-submit"' in page.text


def test_bar_chart_starts_at_zero():
    table = pd.DataFrame(
        {"condition": ["natural", "none"], "accuracy": [0.375, 0.9],
         "ci_low": [0.3, 0.85], "ci_high": [0.45, 0.95]}
    )  # fmt: skip
    low, high = plot_by_condition(table).axes[0].get_ylim()
    assert low == 0.0 and high >= 1.0


def test_banner_is_worded_for_the_page_and_actor_is_the_researcher(live_study):
    settings, factory, study = live_study
    app = create_app(settings)
    with serve_in_thread(app) as url:
        run_simulation(url, study.slug, 2, "oracle", concurrency=2, seed=3, session_factory=factory)
    with session_scope(factory) as db:
        create_admin_user(db, "lead@lab.org", "a strong enough password")
    with TestClient(app) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin/login").text)[1]
        client.post("/admin/login", data={"email": "lead@lab.org", "csrf": csrf,
                                          "password": "a strong enough password"})  # fmt: skip
        assert client.get("/", headers={"accept": "text/html"}).url.path == "/admin"
        page = client.get(f"/admin/studies/{study.slug}").text
        note = re.search(r'data-testid="results-note">([^<]+)<', page)[1]
        assert "--" not in note and "exclude all 2 participants" in note, note
        kept = re.search(r'data-testid="kept-line">([^<]+)<', page)[1]
        assert "none excluded" not in kept and "rules suspended" in kept, kept
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]
        client.post(f"/admin/studies/{study.slug}/pause", data={"csrf": csrf})
        client.post(f"/admin/studies/{study.slug}/launch", data={"csrf": csrf})
    with session_scope(factory) as db:
        actors = db.scalars(
            select(AuditEvent.actor).where(
                AuditEvent.study_id == study.id, AuditEvent.action == "study.pause"
            )
        ).all()
    assert actors == ["lead@lab.org"]
