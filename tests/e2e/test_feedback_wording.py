"""Issue 20: what participants are told about feedback follows the study's settings. The
page's own modules (web/static/js/screens.js) render the how-to-answer instruction page and
the practice-to-main screen in Chromium for each combination of `trials.feedback_main` and
`trials.practice.feedback`; the files are served straight from web/static (no study needed)."""

from __future__ import annotations

import mimetypes

import pytest

from web import STATIC_DIR

ORIGIN = "http://psychinterp.test"
SHELL = '<!doctype html><html><body><main id="app"></main></body></html>'


def _serve_static(route) -> None:
    path = route.request.url.removeprefix(ORIGIN)
    if path.startswith("/static/"):
        file = STATIC_DIR / path.removeprefix("/static/")
        if file.is_file():
            route.fulfill(body=file.read_bytes(), content_type=mimetypes.guess_type(file.name)[0])
            return
    route.fulfill(body=SHELL, content_type="text/html")


def _study(feedback_main: bool, practice_feedback: bool) -> dict:
    return {
        "feedback_main": feedback_main,
        "practice": {"n_trials": 5, "feedback": practice_feedback, "max_attempts": 3},
        "instructions": [],
        "layout": {
            "reference_columns_titles": {"min": "Left Examples", "max": "Right Examples"},
            "question": "Which image at the center matches the Right Examples better?",
            "confidence_levels": 3,
            "answer_delay_ms": 1500,
            "example_image_url": "/static/img/example-trial.jpg",
        },
    }


@pytest.fixture
def screens_page(page):
    page.route(f"{ORIGIN}/**", _serve_static)
    page.goto(f"{ORIGIN}/")
    return page


RENDER = """async (study) => {
  const screens = await import("/static/js/screens.js");
  screens.instructionsScreens(study);  // waits for Continue: the page is on screen now
  return {howTo: document.getElementById("app").innerText, mainStart: screens.mainStartText(study)};
}"""


@pytest.mark.parametrize(
    ("feedback_main", "practice_feedback", "how_to", "main_start"),
    [
        (True, True, "tell you whether you were right; the main trials do too.", "You will still see"),
        (False, True, "tell you whether you were right; the main trials do not.", "will not be told"),
        (True, False, "do not tell you whether you were right; the main trials do.", "You will still"),
        (False, False, "do not tell you whether you were right; the main trials do not either.",
         "will not be told"),
    ],
)  # fmt: skip
def test_instructions_say_what_feedback_is_given(
    screens_page, feedback_main, practice_feedback, how_to, main_start
):
    shown = screens_page.evaluate(RENDER, _study(feedback_main, practice_feedback))
    assert "How to answer" in shown["howTo"]
    assert f"Practice trials come first and {how_to}" in shown["howTo"]
    assert main_start in shown["mainStart"]
    # The example picture is the layout's (a file the page may load).
    src = screens_page.locator("figure.example img").get_attribute("src")
    assert src == "/static/img/example-trial.jpg"
    assert (
        screens_page.locator("figure.example img").evaluate(
            "img => img.decode().then(() => img.naturalWidth)"
        )
        > 0
    )
