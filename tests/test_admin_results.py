"""The dashboard on a real study: live scores after simulated participants, lifecycle, export."""

from __future__ import annotations

import csv
import io
import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.app import create_app
from server.auth import create_admin_user
from server.db.models import Response, Study
from server.db.session import session_scope
from server.studies.simulate import run_simulation, serve_in_thread


def _logged_in(client: TestClient, factory) -> str:
    with session_scope(factory) as db:
        create_admin_user(db, "lead@lab.org", "a strong enough password")
    page = client.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    client.post("/admin/login", data={"email": "lead@lab.org", "csrf": csrf,
                                      "password": "a strong enough password"})  # fmt: skip
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/admin").text).group(1)


def test_dashboard_scores_export_and_lifecycle(live_study):
    settings, factory, study = live_study
    app = create_app(settings)
    with serve_in_thread(app) as url:
        run_simulation(url, study.slug, 6, "oracle", concurrency=3, seed=5, session_factory=factory)
    with session_scope(factory) as db:
        stored = db.scalar(select(func.count()).select_from(Response))

    with TestClient(app) as client:
        csrf = _logged_in(client, factory)
        listing = client.get("/admin")
        assert study.slug in listing.text and ">6<" in listing.text  # 6 started, 6 finished

        page = client.get(f"/admin/studies/{study.slug}")
        assert page.status_code == 200
        # Simulated participants finish in seconds, below the study's minimum total time:
        # the page says so and shows the scores without exclusions.
        assert 'data-testid="results-note"' in page.text
        # The rule is named as in the YAML, where the researcher would change it.
        assert re.search(r"total_time_s: \[[0-9., ]+\] excludes 6", page.text), page.text
        table = page.text[page.text.index('data-testid="by-condition"') :]
        for condition in ("natural", "none"):
            assert re.search(rf"<td>{condition}</td><td>1\.000</td>", table), condition
        assert "data:image/png;base64," in page.text  # the plot
        # Which score definition and how many resamples produced the numbers (issue 19).
        assert "Score <strong>crossed</strong>" in page.text and "(1000 resamples)" in page.text

        export = client.get(f"/admin/studies/{study.slug}/export.csv")
        assert export.status_code == 200
        rows = list(csv.DictReader(io.StringIO(export.text)))
        assert len(rows) == stored and len({r["participant"] for r in rows}) == 6

        assert 'data-testid="study-launch"' not in page.text  # live: pause or close only
        paused = client.post(f"/admin/studies/{study.slug}/pause", data={"csrf": csrf})
        assert paused.status_code == 200 and "Resume" in paused.text
        with session_scope(factory) as db:
            assert db.scalar(select(Study.status).where(Study.id == study.id)) == "paused"
        client.post(f"/admin/studies/{study.slug}/launch", data={"csrf": csrf})
        with session_scope(factory) as db:
            assert db.scalar(select(Study.status).where(Study.id == study.id)) == "live"
