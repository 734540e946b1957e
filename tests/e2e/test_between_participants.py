"""A between-participant study in real Chromium (issue 20): each participant sees only
their own condition's instruction page and trials (natural references, or none)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from playwright.sync_api import expect
from sqlalchemy import select

from server.db.models import Assignment, ParticipantSession, Trial
from server.db.session import make_session_factory, session_scope
from server.studies.service import create_study, generate_study, launch_study
from tests.e2e.conftest import STUDY_YAML, _settings, new_context
from tests.e2e.participant import Participant

pytestmark = pytest.mark.e2e

PAGES = {
    "natural": "Each screen shows example images on both sides.",
    "none": "No example images here: follow your intuition.",
}


def between_study(site) -> str:
    config = yaml.safe_load(STUDY_YAML.read_text())
    config["slug"] = "e2e-between"
    config["conditions"] = ["natural", "none"]
    config["counterbalancing"] = {"conditions": "between"}
    config["condition_instructions"] = {c: [text] for c, text in PAGES.items()}
    config["generation"]["reserved_units_per_layer"] = 1
    settings = _settings(Path(site.engine.url.database).parent)
    with session_scope(make_session_factory(site.engine)) as db:
        study = create_study(db, settings, yaml.safe_dump(config), "between.yaml")
        generate_study(db, settings, study)
        launch_study(db, study)
    return "e2e-between"


def walk(page, url: str) -> tuple[list[str], list[int]]:
    """Instruction page texts and the number of reference images of every trial."""
    page.goto(url)
    participant = Participant(page)
    participant.consent()
    texts = []
    comprehension = page.get_by_test_id("comprehension-submit")
    while True:
        # The first page waits for the session start (slow on a loaded 2-core machine).
        expect(page.get_by_test_id("instructions-continue").or_(comprehension)).to_be_visible(
            timeout=30_000
        )
        if comprehension.is_visible():
            break
        texts.append(page.locator("#app").inner_text())
        participant.press("instructions-continue")
    participant.comprehension()
    references: list[int] = []
    participant.on_trial = lambda p: references.append(p.locator(".references img").count())
    participant.finish()
    return texts, references


def test_each_participant_sees_only_their_conditions_pages_and_trials(site, browser):
    slug = between_study(site)
    seen = {}
    for worker in ("p-first", "p-second"):
        context = new_context(browser)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        url = site.study_url(f"PROLIFIC_PID={worker}&STUDY_ID=s1&SESSION_ID={worker}", slug=slug)
        texts, references = walk(page, url)
        context.close()
        assert not errors
        with session_scope(make_session_factory(site.engine)) as db:
            session = db.scalars(
                select(ParticipantSession).order_by(ParticipantSession.started_at.desc())
            ).first()
            kinds = db.execute(
                select(Trial.kind, Trial.condition)
                .join(Assignment, Assignment.trial_id == Trial.id)
                .where(Assignment.session_id == session.id)
                .order_by(Assignment.position)
            ).all()
            seen[session.condition] = (texts, references, kinds)
    assert set(seen) == {"natural", "none"}  # balanced: one participant each
    for condition, (texts, references, kinds) in seen.items():
        other = "none" if condition == "natural" else "natural"
        assert any(PAGES[condition] in text for text in texts)
        assert not any(PAGES[other] in text for text in texts)
        # The how-to-answer page follows trials.feedback_main (false in the browser study).
        assert any("the main trials do not." in text for text in texts)
        assert {c for _kind, c in kinds} == {condition}
        main = [n for n, (kind, _c) in zip(references, kinds, strict=True) if kind != "practice"]
        assert main and set(main) == ({18} if condition == "natural" else {0})
