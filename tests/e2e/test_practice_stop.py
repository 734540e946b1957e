"""Practice that does not end (issue 19), in real Chromium: a participant who gets a
practice trial wrong in every round is asked to practise again, and after the study's
max_attempts rounds is stopped with a polite message (also after a reload) when the
study says `practice.on_fail: stop`."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from server.db.models import Assignment, Response
from server.db.session import make_session_factory, session_scope
from server.studies.service import create_study, generate_study, launch_study
from tests.e2e.conftest import STUDY_YAML, _settings
from tests.e2e.participant import Participant

pytestmark = pytest.mark.e2e


def wrong_choice(site) -> str:
    """The side of the current trial's min query: the one unanswered trial lowest in order."""
    with session_scope(make_session_factory(site.engine)) as db:
        max_is_a = db.scalar(
            select(Assignment.max_is_a)
            .outerjoin(Response, Response.assignment_id == Assignment.id)
            .where(Response.id.is_(None))
            .order_by(Assignment.position)
            .limit(1)
        )
    return "b" if max_is_a else "a"


def stop_study(site) -> str:
    """The browser test study again, as `e2e-stop`, stopping those who fail practice."""
    settings = _settings(Path(site.engine.url.database).parent)
    text = (
        STUDY_YAML.read_text()
        .replace("slug: e2e", "slug: e2e-stop")
        .replace("    max_attempts: 3", "    max_attempts: 3\n    on_fail: stop")
    )
    with session_scope(make_session_factory(site.engine)) as db:
        study = create_study(db, settings, text, "stop.yaml")
        generate_study(db, settings, study)
        launch_study(db, study)
    return "e2e-stop"


def test_failing_practice_every_round_stops_politely(site, page):
    slug = stop_study(site)
    page.goto(site.study_url("PROLIFIC_PID=p-fails&STUDY_ID=s1&SESSION_ID=x1", slug=slug))
    participant = Participant(page)
    participant.start()
    trial = page.get_by_test_id("trial")
    between = page.locator(".page .actions button.primary")
    stopped = page.get_by_test_id("practice-stopped")
    repeats = 0
    for _ in range(30):
        expect(trial.or_(between).or_(stopped).first).to_be_visible()
        if stopped.is_visible():
            break
        if trial.count() and trial.is_visible():
            participant.answer_trial(wrong_choice(site), 2)
        else:
            screen = between.first.get_attribute("data-testid")
            repeats += screen == "practice-repeat"
            participant.press(screen)
    expect(stopped).to_contain_text("not all answered correctly after 3 rounds")
    assert repeats == 2  # rounds 2 and 3 were announced; none after the third
    assert all(seen.feedback == "Incorrect!" for seen in participant.seen)
    assert len(participant.seen) == 6  # 3 rounds x 2 practice trials, no main trial
    (session,) = site.sessions()
    assert (session.status, session.practice_attempts, session.practice_passed) == (
        "screened_out",
        3,
        False,
    )
    page.reload()
    expect(page.get_by_test_id("practice-stopped")).to_be_visible()
