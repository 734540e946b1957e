"""A participant in Chromium through an occlusion study (issue 21): the occlusion trial
module is loaded by `trial.type`, keyboard answers, a reload mid-way resumes at the next
unanswered trial, then mouse answers to the end; every answer is stored once. The
instructions end with the occlusion task's own answer page, no 2AFC comprehension check
follows, and practice feedback carries the task's explanation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from playwright.sync_api import expect
from sqlalchemy import func, select

from server.app import create_app
from server.db.migrate import upgrade_database
from server.db.models import Response
from server.db.session import make_engine, make_session_factory, session_scope
from server.studies.simulate import serve_in_thread
from tests.e2e.conftest import _settings
from tests.e2e.participant import Participant

STUDY = Path(__file__).parents[2] / "studies/occlusion-demo.yaml"


@pytest.fixture(scope="module")
def occlusion_site(tmp_path_factory):
    from server.studies.service import create_study, generate_study, launch_study

    config = yaml.safe_load(STUDY.read_text())
    config["task"]["stride_px"] = 60  # 3 x 3 positions: quick on a CPU
    config["generation"] |= {"layers": ["_blocks.4"], "demo_pool_per_photo": 6,
                             "demo_pool_size": 160}  # fmt: skip
    config["trials"]["main"] = 4
    root = tmp_path_factory.mktemp("occlusion-e2e")
    settings = _settings(root)
    upgrade_database(settings.database_url)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    with session_scope(factory) as db:
        study = create_study(db, settings, yaml.safe_dump(config), "occlusion.yaml")
        generate_study(db, settings, study)
        launch_study(db, study)
    with serve_in_thread(create_app(settings)) as url:
        yield url, factory
    engine.dispose()


def _answered(factory) -> int:
    with session_scope(factory) as db:
        return db.scalar(select(func.count()).select_from(Response))


def test_occlusion_session_keyboard_mouse_and_reload(occlusion_site, page):
    url, factory = occlusion_site
    page.goto(f"{url}/s/occlusion-demo?PROLIFIC_PID=occ-1&STUDY_ID=s&SESSION_ID=x")
    participant = Participant(page, keyboard=True)
    participant.consent()
    # The study's 3 instruction pages, then the occlusion module's answer page (left/right
    # occluded copies, not the 2AFC's upper/lower), and no 2AFC comprehension check.
    for number in (1, 2, 3):
        expect(page.get_by_text(f"Instructions ({number} of 4)")).to_be_visible()
        participant.press("instructions-continue")
    answer_page = page.get_by_test_id("how-to-answer-occlusion")
    expect(answer_page).to_contain_text("Left occluded copy")
    expect(answer_page).to_contain_text("Which image is more favored?")
    participant.instructions()
    expect(page.get_by_test_id("comprehension-submit")).to_have_count(0)
    while len(participant.seen) < 3:
        participant.step()
    assert _answered(factory) == 3
    # Practice feedback: the verdict with the original's explanation (the right copy green).
    assert "hides less of what the unit responds to" in participant.seen[0].feedback

    page.reload()
    participant.keyboard = False
    screen = participant.current_screen()
    while screen != "trial":
        participant.press(screen)
        screen = participant.current_screen()
    assert page.get_by_test_id("trial").get_attribute("data-trial-index") == "3"
    expect(page.get_by_test_id("base-image")).to_be_visible()  # js/trials/occlusion.js
    expect(page.get_by_role("heading", name="Which image is more favored?")).to_be_visible()
    expect(page.locator(".trial-occlusion")).to_have_count(1)
    participant.finish()
    # no feedback on main trials: not even a running score (layout.show_running_score: false)
    expect(page.locator("#score")).to_have_text("")
    assert _answered(factory) == len(participant.seen)
