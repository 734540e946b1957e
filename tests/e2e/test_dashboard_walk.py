"""Issue 23's acceptance walk in Chromium: a researcher takes a study from YAML to export.

Log in, paste a broken YAML and see the error at its line, upload a good one, generate it
(a background job in a real worker process), watch the progress, preview, launch, let
simulated participants take part, see counts and plots update by themselves, exclude one and see the scores
change, export CSV, create and revoke an API token, log out.

With PSYCHINTERP_SCREENSHOTS=1 the pages are also saved to docs/screenshots/ (README).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from server.app import create_app
from server.auth import create_admin_user
from server.db.session import make_engine, make_session_factory, session_scope
from server.jobs.local import LocalRunner
from server.studies.simulate import run_simulation
from server.studies.simulate import serve_in_thread as serve
from tests.e2e.conftest import STUDY_YAML, _settings

PASSWORD = "a strong enough password"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def dashboard(study_template: Path, tmp_path: Path):
    """The app + a job worker process on a copy of the template (its activation cache makes
    generating the same images quick); one researcher account."""
    root = tmp_path / "site"
    shutil.copytree(study_template, root)
    settings = _settings(root)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    with session_scope(factory) as db:
        create_admin_user(db, "lead@lab.org", PASSWORD, role="researcher")
    runner = LocalRunner(settings, poll_s=0.3)
    runner.start()
    try:
        with serve(create_app(settings)) as url:
            yield url, factory
    finally:
        runner.stop()
        engine.dispose()


def _shot(page, name: str) -> None:
    if os.environ.get("PSYCHINTERP_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def test_researcher_walk(dashboard, page, tmp_path):
    url, factory = dashboard
    good = STUDY_YAML.read_text().replace("slug: e2e", "slug: walk")
    broken = good.replace("units_per_layer: 3", "units_per_layer: lots")
    line = broken.splitlines().index("  units_per_layer: lots") + 1

    page.goto(f"{url}/")
    page.get_by_test_id("login-email").fill("lead@lab.org")
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("new-study").click()

    page.get_by_test_id("yaml-text").fill(broken)
    page.get_by_test_id("yaml-save").click()
    problem = page.get_by_test_id("yaml-problem")
    assert problem.get_attribute("data-line") == str(line)
    assert (
        f"line {line}" in problem.inner_text()
        and "generation.units_per_layer" in problem.inner_text()
    )
    assert (
        page.get_by_test_id("bad-line").locator("code").inner_text().strip()
        == "units_per_layer: lots"
    )
    _shot(page, "admin-yaml-error")

    study_file = tmp_path / "walk.yaml"
    study_file.write_text(good)
    page.get_by_test_id("yaml-text").fill("")
    page.get_by_test_id("yaml-upload").set_input_files(study_file)
    page.get_by_test_id("yaml-save").click()
    page.wait_for_url(f"{url}/admin/studies/walk")

    page.get_by_test_id("study-generate").click()
    page.get_by_test_id("job").wait_for()
    # The worker process takes the job: the panel shows its step and count as it runs.
    for _ in range(600):  # (no wait_for_function: the dashboard's CSP forbids eval)
        if page.get_by_test_id("job-step").inner_text():
            break
        page.wait_for_timeout(200)
    _shot(page, "admin-job")
    # The panel follows the job and the page reloads when it is done: launch appears.
    page.get_by_test_id("study-launch").wait_for(timeout=300_000)
    assert page.get_by_test_id("job-status").inner_text() == "succeeded"
    assert page.get_by_test_id("job-step").inner_text() == "store images"

    # Counts go through expect(): it waits for the page the click opened to be parsed (a bare
    # count() right after a click can read a half-loaded page; it did on a loaded CI machine).
    page.get_by_test_id("study-stimuli").click()
    page.wait_for_url(f"{url}/admin/studies/walk/stimuli")
    expect(page.get_by_test_id("stimulus-unit")).to_have_count(3)
    _shot(page, "admin-stimuli")
    page.go_back()
    page.get_by_test_id("study-preview").click()
    expect(page.get_by_test_id("preview-trial")).to_have_count(3)
    assert "nothing is stored" in page.get_by_test_id("preview-note").inner_text()
    _shot(page, "admin-preview")
    page.go_back()
    page.get_by_test_id("study-launch").click()
    page.get_by_test_id("study-pause").wait_for()

    expect(page.get_by_test_id("no-results")).to_be_visible()
    run_simulation(url, "walk", 3, "oracle", concurrency=1, seed=4, session_factory=factory)
    # No reload: a live study's page polls its counts and swaps in the new results itself.
    expect(page.get_by_test_id("study-counts")).to_contain_text("finished 3", timeout=60_000)
    expect(page.locator(".figure img")).to_have_count(1)
    expect(page.get_by_test_id("live-status")).to_contain_text("checked")
    assert page.get_by_test_id("by-condition").is_visible()
    _shot(page, "admin-study")

    page.get_by_test_id("study-participants").click()
    expect(page.get_by_test_id("participant-row")).to_have_count(3)
    scores = page.get_by_test_id("participants-scores")
    assert "3 of 3 participants kept" in scores.inner_text()
    first = page.get_by_test_id("participant-row").first
    first.get_by_test_id("exclusion-reason").fill("answered with the window hidden")
    first.get_by_test_id("exclude").click()
    page.get_by_test_id("include").wait_for()
    assert "2 of 3 participants kept" in page.get_by_test_id("participants-scores").inner_text()
    _shot(page, "admin-participants")

    page.goto(f"{url}/admin/studies/walk")
    with page.expect_download() as download:
        page.get_by_test_id("export-csv").click()
    csv = Path(download.value.path()).read_text()
    assert csv.startswith("study,participant") and len(re.findall(r"^walk,", csv, re.MULTILINE)) > 3

    page.goto(f"{url}/admin")
    page.get_by_test_id("api-tokens").click()
    page.get_by_test_id("token-name").fill("nightly export")
    page.get_by_test_id("token-scope").select_option("read")
    page.get_by_test_id("token-create").click()
    token = page.get_by_test_id("token-value").inner_text()
    assert token.startswith("pit_")
    api = page.request.get(f"{url}/api/admin/studies", headers={"Authorization": f"Bearer {token}"})
    assert api.ok and [s["slug"] for s in api.json()].count("walk") == 1
    _shot(page, "admin-tokens")
    page.get_by_test_id("token-revoke").click()
    page.get_by_text("revoked").wait_for()
    api = page.request.get(
        f"{url}/api/admin/studies",
        headers={"Authorization": f"Bearer {token}", "Cookie": ""},
    )
    assert api.status == 401

    page.get_by_test_id("logout").click()
    page.wait_for_url(f"{url}/admin/login")
