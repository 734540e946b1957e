"""Screenshots of the participant pages for the README, from the real demo study.

    python -m tests.e2e.make_screenshots [OUT_DIR]
    python -m tests.e2e.make_screenshots --occlusion


Generates `server/demo_study.yaml` into a temporary directory (real model, demo photos),
serves it, walks a participant through it in Chromium and saves landing, trial and end
screens at 1280×800 into docs/screenshots/; OUT_DIR gets those, the instruction and
comprehension pages, and 1920×1080 copies, for checking the layout by eye. The trial screenshot also becomes the example
image the instructions show (web/static/img/example-trial.jpg).

`--occlusion` generates studies/occlusion-demo.yaml instead (issue 21) and saves its first
trial with Favorite Images, and a practice trial's feedback with the task's explanation,
as docs/screenshots/participant-occlusion-trial.png and participant-occlusion-feedback.png.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from PIL import Image
from playwright.sync_api import Browser, expect, sync_playwright

from server.app import create_app
from server.config import Settings
from server.db.migrate import upgrade_database
from server.db.session import make_engine, make_session_factory, session_scope
from server.studies.simulate import serve_in_thread as serve
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.participant import Participant

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "screenshots"
EXAMPLE = REPO / "web" / "static" / "img" / "example-trial.jpg"
SIZES = {"": (1280, 800), "-1920": (1920, 1080)}


def _walk(browser, url: str, out: Path, suffix: str, size: tuple[int, int]) -> None:
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(url)
    page.get_by_test_id("consent-accept").wait_for()
    page.screenshot(path=out / f"participant-landing{suffix}.png")
    participant = Participant(page)
    participant.consent()
    while not page.locator("table.keys").count():
        page.get_by_test_id("instructions-continue").click()
    page.screenshot(path=out / f"participant-instructions{suffix}.png", full_page=True)
    participant.instructions()
    page.screenshot(path=out / f"participant-comprehension{suffix}.png", full_page=True)
    participant.comprehension()
    shot_taken = False
    while participant.current_screen() != "end":
        if not shot_taken and participant.current_screen() == "trial":
            page.get_by_test_id("choice-a-1").wait_for()
            page.wait_for_timeout(2000)  # past the answer delay: buttons shown enabled
            page.screenshot(path=out / f"participant-trial{suffix}.png")
            shot_taken = True
        participant.step()
    page.screenshot(path=out / f"participant-end{suffix}.png")
    page.close()


def _occlusion_walk(browser, url: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url)
    participant = Participant(page)
    participant.start()
    feedback_taken = trial_taken = in_main = False
    while not (trial_taken and feedback_taken) and participant.current_screen() != "end":
        screen = participant.current_screen()
        in_main = in_main or screen == "main-start"
        shows_references = page.locator(".references-max").count() > 0
        if screen == "trial" and in_main and not trial_taken and shows_references:
            page.get_by_test_id("choice-a-1").wait_for()
            page.wait_for_timeout(2000)  # past the answer delay: buttons shown enabled
            page.screenshot(path=DOCS / "participant-occlusion-trial.png")
            trial_taken = True
        if screen == "trial" and not feedback_taken:  # practice comes first: its feedback
            expect(page.get_by_test_id("choice-a-3")).to_be_enabled()
            page.get_by_test_id("choice-a-3").click()
            page.get_by_test_id("feedback-continue").wait_for()
            page.screenshot(path=DOCS / "participant-occlusion-feedback.png")
            page.get_by_test_id("feedback-continue").click()
            feedback_taken = True
            continue
        participant.step()
    page.close()


@contextlib.contextmanager
def _browser_on(study_file: Path) -> Iterator[tuple[Browser, str]]:
    """(Chromium, the study's page URL) for a study set up from `study_file` in a throwaway
    SQLite database and served on 127.0.0.1."""
    from server.studies.service import setup_study_from_file

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(
            database_url=f"sqlite:///{root / 'screens.db'}", data_dir=root / "data", secret_key="x"
        )
        upgrade_database(settings.database_url)
        engine = make_engine(settings.database_url)
        with session_scope(make_session_factory(engine)) as db:
            slug = setup_study_from_file(db, settings, study_file).slug
        engine.dispose()
        DOCS.mkdir(parents=True, exist_ok=True)
        with serve(create_app(settings)) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield browser, f"{url}/s/{slug}"
            finally:
                browser.close()


def occlusion_main() -> None:
    """The occlusion demo's trial and practice feedback (README, occlusion section)."""
    with _browser_on(REPO / "studies" / "occlusion-demo.yaml") as (browser, page_url):
        _occlusion_walk(browser, page_url)


def main(extra_dir: Path) -> None:
    extra_dir.mkdir(parents=True, exist_ok=True)
    with _browser_on(REPO / "server" / "demo_study.yaml") as (browser, page_url):
        for suffix, size in SIZES.items():
            _walk(browser, page_url, extra_dir, suffix, size)
    for name in ("landing", "trial", "end"):
        shutil.copy(extra_dir / f"participant-{name}.png", DOCS / f"participant-{name}.png")
    EXAMPLE.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(DOCS / "participant-trial.png") as shot:
        shot.convert("RGB").resize((960, 600), Image.LANCZOS).save(EXAMPLE, quality=85)


if __name__ == "__main__":
    if sys.argv[1:] == ["--occlusion"]:
        occlusion_main()
    else:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.gettempdir()) / "screens")
