"""What the page must not do or allow: leak answers, run on a phone, run in a tiny window,
redirect to the platform before the server has every answer."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from server.db.models import ParticipantSession, Response
from tests.e2e.conftest import new_context
from tests.e2e.participant import Participant

pytestmark = pytest.mark.e2e

OPAQUE_IMAGE = re.compile(r"^/stimuli/[0-9a-f]{32}/[0-9a-f]{32}$")  # per session
# `type` names the paradigm's trial module (the same for every trial of a study).
TRIAL_KEYS = {"trial_id", "index", "n_trials", "kind", "block", "images", "type"}
IMAGE_KEYS = {"query_a", "query_b", "references_max", "references_min"}
ANSWER_WORDS = re.compile(r"max|min|correct|answer|catch|target|right|wrong", re.IGNORECASE)

# Attributes of every element of the centre column (queries and answer buttons).
CENTRE_ATTRIBUTES = """() => [...document.querySelectorAll('.queries, .queries *')]
  .flatMap(el => [...el.attributes].map(a => [el.tagName, a.name, a.value]))"""


def test_nothing_reveals_the_right_answer(site, page):
    traffic: list[tuple[str, str, str]] = []  # (url, content-type, body)

    def keep(response):
        body = ""
        if "json" in (response.headers.get("content-type") or ""):
            body = response.text()
        traffic.append((response.url, response.headers.get("content-type", ""), body))

    page.on("response", keep)
    centre: list[list] = []
    participant = Participant(page, on_trial=lambda p: centre.append(p.evaluate(CENTRE_ATTRIBUTES)))
    page.goto(site.study_url())
    participant.start()
    participant.finish()

    trials = [json.loads(b) for u, _, b in traffic if u.endswith("/trials/next") and b]
    assert len(trials) == len(participant.seen)
    for trial in trials:
        assert set(trial) == TRIAL_KEYS and set(trial["images"]) == IMAGE_KEYS
        assert trial["kind"] in {"practice", "main"}  # catch trials look like main ones
        images = trial["images"]
        urls = [images["query_a"], images["query_b"], *images["references_max"]]
        urls += images["references_min"]
        assert all(OPAQUE_IMAGE.match(u) for u in urls), urls
    for url, content_type, _ in traffic:
        if "/stimuli/" in url:
            assert content_type.startswith("image/")
            assert OPAQUE_IMAGE.match(urlsplit(url).path), url
    # The public study info names no stimulus or trial at all.
    info = next(b for u, _, b in traffic if u.endswith("/studies/e2e"))
    assert not re.search(r"[0-9a-f]{64}", info)
    assert not any(trial["trial_id"] in info for trial in trials)
    # Main-trial acknowledgements carry no grading (no main feedback, no running score).
    main_acks = [json.loads(b) for u, _, b in traffic if u.endswith("/responses")][-4:]
    assert main_acks == [{"recorded": True}] * 4
    # The centre column is the same markup for both queries: no attribute hints at the answer.
    for attributes in centre:
        for tag, name, value in attributes:
            if tag == "IMG" and name == "src":
                assert OPAQUE_IMAGE.match(urlsplit(value).path), value
                continue
            assert not ANSWER_WORDS.search(f"{name}={value}"), (tag, name, value)


def test_phone_is_turned_away(site, browser):
    iphone = new_context(
        browser,
        viewport={"width": 390, "height": 844},
        user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        is_mobile=True,
        has_touch=True,
    )
    page = iphone.new_page()
    page.goto(site.study_url())
    expect(page.get_by_test_id("device-blocked")).to_contain_text("phone or tablet")
    expect(page.get_by_test_id("consent-accept")).to_have_count(0)
    iphone.close()
    assert site.count(ParticipantSession) == 0


def test_small_window_waits_until_enlarged(site, page):
    page.set_viewport_size({"width": 800, "height": 500})
    page.goto(site.study_url())
    Participant(page).consent()
    overlay = page.get_by_role("alertdialog")
    expect(overlay).to_be_visible()
    expect(overlay).to_contain_text("at least 940 × 600")
    assert site.count(ParticipantSession) == 0  # nothing starts behind the message
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(overlay).to_be_hidden()
    expect(page.get_by_test_id("instructions-continue")).to_be_visible()


def test_completion_waits_for_every_queued_answer(site, page, context):
    """Offline at the last trial: no code and no end screen until the server has it all."""
    page.goto(site.study_url())
    participant = Participant(page)
    participant.start()
    while participant.step() != "main-start":
        pass
    for _ in range(3):
        while participant.current_screen() != "trial":
            participant.step()
        participant.answer_trial("a", 1)
    while participant.current_screen() != "trial":
        participant.step()
    context.set_offline(True)
    participant.answer_trial("b", 3)
    expect(page.get_by_test_id("connection-status")).to_be_visible()
    expect(page.get_by_test_id("completion-code")).to_have_count(0)
    # The unsent answer is kept on the device (survives a crash of the tab).
    outbox = page.evaluate(
        "() => Object.keys(localStorage).filter(k => k.startsWith('psychinterp:outbox:'))"
        ".map(k => JSON.parse(localStorage.getItem(k)).length)"
    )
    assert outbox == [1]
    context.set_offline(False)
    expect(page.get_by_test_id("completion-code")).to_be_visible()
    assert site.count(Response) == len(participant.seen)
