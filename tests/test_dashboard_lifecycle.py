"""The study lifecycle from the dashboard and the admin JSON API (issue 23): YAML with line
errors, generation as a job, launch, participants and exclusions, exports, tokens and roles."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.api_tokens import create_token, revoke_token
from server.auth import create_admin_user
from server.db.models import AdminUser, AuditEvent
from server.db.session import session_scope
from server.jobs.runner import work_once
from server.studies.simulate import run_simulation, serve_in_thread

STUDY_YAML = (Path(__file__).parent / "e2e" / "study.yaml").read_text()
PASSWORD = "a strong enough password"
PUBLIC = {("/admin/login", "GET"), ("/admin/login", "POST")}


def _routes(app):
    for route in app.routes:
        for inner in (
            getattr(route, "original_router", None) and route.original_router.routes or [route]
        ):
            for method in getattr(inner, "methods", None) or ():
                yield inner.path, method


def _login(client: TestClient, email: str) -> str:
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin/login").text)[1]
    client.post("/admin/login", data={"email": email, "password": PASSWORD, "csrf": csrf})
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/admin").text)[1]


def test_every_admin_route_refuses_anonymous_and_revoked_tokens(app, client):
    with session_scope(app.state.session_factory) as db:
        user = create_admin_user(db, "lead@lab.org", PASSWORD, role="researcher")
        revoked, row = create_token(db, user, "old script", "write")
        revoke_token(db, user, row.id)
        live, _ = create_token(db, user, "reader", "read")
    routes = [
        (path, method)
        for path, method in _routes(app)
        if path.startswith(("/admin", "/api/admin")) and (path, method) not in PUBLIC
        and method != "HEAD"
    ]  # fmt: skip
    assert len([r for r in routes if r[0].startswith("/api/admin")]) >= 15
    assert len([r for r in routes if r[0].startswith("/admin")]) >= 15
    for path, method in routes:
        url = re.sub(r"\{[^}]+\}", "x", path)
        for headers in ({}, {"Authorization": f"Bearer {revoked}"}, {"Authorization": "Bearer"}):
            response = client.request(method, url, headers=headers, follow_redirects=False)
            assert response.status_code == 401, (method, path, headers, response.status_code)
    # The live read token reads, and may not write.
    reader = {"Authorization": f"Bearer {live}"}
    assert client.get("/api/admin/studies", headers=reader).json() == []
    refused = client.post("/api/admin/studies", headers=reader, json={"yaml": STUDY_YAML})
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    schema = client.get("/openapi.json").json()
    assert "/api/admin/studies/{slug}/participants" in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_lifecycle_through_pages_and_api(app, settings):
    factory = app.state.session_factory
    with session_scope(factory) as db:
        create_admin_user(db, "lead@lab.org", PASSWORD, role="researcher")
        create_admin_user(db, "other@lab.org", PASSWORD, role="researcher")
        create_admin_user(db, "boss@lab.org", PASSWORD, role="admin")
    with TestClient(app) as client:
        csrf = _login(client, "lead@lab.org")
        # A broken YAML: the error is shown at its line, nothing stored.
        broken = STUDY_YAML.replace("units_per_layer: 3", "units_per_layer: -3")
        page = client.post("/admin/new-study", data={"csrf": csrf, "yaml_text": broken})
        line = broken.splitlines().index("  units_per_layer: -3") + 1
        assert page.status_code == 422
        assert re.search(
            rf'data-line="{line}">.*line {line}</a>: <code>generation.units_per_layer', page.text
        )
        assert f'id="line-{line}" class="bad"' in page.text
        api_check = client.post(
            "/api/admin/studies/validate", json={"yaml": "slug: [unclosed"},
            headers={"X-CSRF-Token": csrf},
        ).json()  # fmt: skip
        assert api_check["ok"] is False and api_check["problems"][0]["line"] == 1
        # The good one, uploaded as a file.
        created = client.post(
            "/admin/new-study", data={"csrf": csrf},
            files={"upload": ("study.yaml", STUDY_YAML.encode(), "text/yaml")},
            follow_redirects=False,
        )  # fmt: skip
        assert created.status_code == 303 and created.headers["location"] == "/admin/studies/e2e"
        assert client.post("/admin/studies/e2e/generate", data={"csrf": csrf}).status_code == 200
        page = client.get("/admin/studies/e2e").text
        assert 'data-job-status="queued"' in page and 'data-testid="study-launch"' not in page
        assert work_once(factory, settings, "test:worker") == "succeeded"
        job = client.get("/api/admin/jobs", params={"study": "e2e"}).json()[0]
        assert job["status"] == "succeeded" and job["created_by"] == "lead@lab.org"
        stimuli = client.get("/admin/studies/e2e/stimuli").text
        assert stimuli.count('data-testid="stimulus-unit"') == 3
        assert ">practice</span>" in stimuli and ">main</span>" in stimuli
        overview = client.get("/admin/studies/e2e/overview.png")
        assert overview.status_code == 200 and overview.content[:4] == b"\x89PNG"
        preview = client.get("/admin/studies/e2e/preview").text
        assert preview.count('data-testid="preview-trial"') == 3 and "nothing is stored" in preview
        client.post("/admin/studies/e2e/launch", data={"csrf": csrf})

        with serve_in_thread(app) as url:
            run_simulation(url, "e2e", 3, "oracle", concurrency=1, seed=2, session_factory=factory)
        people = client.get("/api/admin/studies/e2e/participants").json()
        assert len(people) == 3 and all(p["status"] == "completed" for p in people)
        assert all(p["catch_accuracy"] == 1.0 and p["responses"] > 0 for p in people)
        counts = client.get("/api/admin/studies/e2e/counts").json()  # what a live page polls
        assert counts == {
            "started": 3,
            "completed": 3,
            "responses": sum(p["responses"] for p in people),
        }
        before = client.get("/api/admin/studies/e2e/results").json()["summary"]["excluded"]
        target = people[0]["id"]
        client.post(
            f"/admin/studies/e2e/participants/{target}/exclusion",
            data={"csrf": csrf, "excluded": "true", "reason": "left the tab for 10 minutes"},
        )
        after = client.get("/api/admin/studies/e2e/results").json()["summary"]["excluded"]
        assert after["participants_kept"] == before["participants_kept"] - 1
        assert "yes: left the tab" in client.get("/admin/studies/e2e/participants").text
        client.post(
            f"/admin/studies/e2e/participants/{target}/bar",
            data={"csrf": csrf, "reason": "answered at random"},
        )
        listing = client.get("/admin/studies/e2e/participants").text
        assert "barred by lead@lab.org: answered at random" in listing
        missing = client.put(
            f"/api/admin/studies/e2e/participants/{target}/exclusion",
            json={"excluded": False, "reason": ""}, headers={"X-CSRF-Token": csrf},
        )  # fmt: skip
        assert missing.status_code == 422 and "reason" in missing.json()["detail"]

        csv = client.get("/admin/studies/e2e/export.csv").text
        parquet = client.get("/api/admin/studies/e2e/export", params={"format": "parquet"})
        frame = pd.read_parquet(io.BytesIO(parquet.content))
        assert len(frame) == csv.count("\n") - 1 and frame["participant"].nunique() == 3

        # Tokens: created in the dashboard (shown once), usable, revocable.
        made = client.post("/admin/tokens", data={"csrf": csrf, "name": "sync", "scope": "write"})
        token = re.search(r'data-testid="token-value">([^<]+)<', made.text)[1]
        assert token not in client.get("/admin/tokens").text  # shown once only
        bearer = TestClient(app, headers={"Authorization": f"Bearer {token}"})
        assert bearer.post("/api/admin/studies/e2e/pause").json()["status"] == "paused"
        token_id = re.search(r"/admin/tokens/(\d+)/revoke", made.text)[1]
        client.post(f"/admin/tokens/{token_id}/revoke", data={"csrf": csrf})
        assert bearer.get("/api/admin/studies").status_code == 401

    # Roles: another researcher may not close this study; an admin may.
    with TestClient(app) as other:
        other_csrf = _login(other, "other@lab.org")
        refused = other.post("/admin/studies/e2e/close", data={"csrf": other_csrf})
        assert refused.status_code == 403 and "another researcher" in refused.json()["detail"]
    with TestClient(app) as boss:
        boss_csrf = _login(boss, "boss@lab.org")
        closed = boss.post("/api/admin/studies/e2e/close", headers={"X-CSRF-Token": boss_csrf})
        assert closed.status_code == 200 and closed.json()["status"] == "closed"
    with session_scope(factory) as db:
        actors = dict(
            db.execute(
                select(AuditEvent.action, AuditEvent.actor).where(
                    AuditEvent.action.in_(
                        ["participant.exclude", "study.pause", "study.close", "study.launch"]
                    )
                )
            ).all()
        )
        owner = db.scalar(select(AdminUser.id).where(AdminUser.email == "lead@lab.org"))
    assert actors == {
        "study.launch": "lead@lab.org",
        "participant.exclude": "lead@lab.org",
        "study.pause": "lead@lab.org (API token)",
        "study.close": "boss@lab.org",
    }
    assert owner
