"""A simulated participant that walks the task page by keyboard only or by mouse only.

It never knows the right answer (it picks answers by a fixed rule) and records what the
page showed after each trial (feedback text, whether a Continue button appeared), so the
tests can compare that with what the server stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from playwright.sync_api import Page, expect

# Answer rule: alternate rows and confidences, so both rows and all levels get used.
ANSWERS = [("a", 3), ("b", 1), ("a", 2), ("b", 3), ("a", 1), ("b", 2)]
KEYS = {"a": ["1", "2", "3"], "b": ["q", "w", "e"]}
MAX_TABS = 60


@dataclass
class TrialSeen:
    index: int
    choice: str
    confidence: int
    feedback: str
    had_continue: bool


@dataclass
class Participant:
    page: Page
    keyboard: bool = False
    on_trial: Callable[[Page], None] | None = None  # called when a trial is ready to answer
    seen: list[TrialSeen] = field(default_factory=list)

    # --- low-level input ------------------------------------------------------------------
    def focused_testid(self) -> str | None:
        focused = self.page.locator(":focus")
        return focused.get_attribute("data-testid") if focused.count() else None

    def tab_to(self, testid: str) -> None:
        """Press Tab until the element with `testid` has the keyboard focus."""
        expect(self.page.get_by_test_id(testid)).to_be_visible()
        for _ in range(MAX_TABS):
            if self.focused_testid() == testid:
                return
            self.page.keyboard.press("Tab")
        raise AssertionError(f"{testid} cannot be reached with the Tab key")

    def press(self, testid: str) -> None:
        """Activate a button: Tab + Enter with the keyboard, a click with the mouse."""
        if self.keyboard:
            self.tab_to(testid)
            self.page.keyboard.press("Enter")
        else:
            self.page.get_by_test_id(testid).click()

    def press_away(self, testid: str) -> None:
        """Press a button that ends its screen, then wait until that screen has gone. The
        next one can come a moment after the press (the first one after the instructions
        asks for fullscreen first): read before then, the page still shows the old screen,
        and its button would be pressed again as it goes away."""
        pressed = self.page.get_by_test_id(testid).element_handle()
        self.press(testid)
        pressed.wait_for_element_state("hidden")

    # --- screens --------------------------------------------------------------------------
    def consent(self) -> None:
        self.press("consent-accept")

    def instructions(self) -> None:
        """Through the instruction pages, up to the comprehension check or, for a study
        that asks none (`study.comprehension` empty), whatever comes after."""
        onward = self.page.get_by_test_id("instructions-continue")
        after = self.page.locator(
            "[data-testid=comprehension-submit], [data-testid=practice-start], "
            "[data-testid=trial], [data-testid=main-start]"
        )
        while True:
            expect(onward.or_(after).first).to_be_visible()
            if not onward.is_visible():
                return
            self.press_away("instructions-continue")

    def comprehension(self, answers: tuple[int, ...] = (1, 2, 0)) -> None:
        for question, option in enumerate(answers):
            if self.keyboard:
                # Tab enters a radio group on its first option; arrows move and select.
                self.tab_to(f"comprehension-q{question}-0")
                self.page.keyboard.press("Space")
                for _ in range(option):
                    self.page.keyboard.press("ArrowDown")
            else:
                self.page.get_by_test_id(f"comprehension-q{question}-{option}").check()
            expect(self.page.get_by_test_id(f"comprehension-q{question}-{option}")).to_be_checked()
        self.press_away("comprehension-submit")

    def start(self) -> None:
        self.consent()
        self.instructions()
        if self.page.get_by_test_id("comprehension-submit").is_visible():
            self.comprehension()

    def current_screen(self) -> str:
        """'trial', 'end' or the testid of the Continue button of an in-between screen."""
        trial = self.page.get_by_test_id("trial")
        end = self.page.get_by_test_id("completion-code")
        between = self.page.locator(".page .actions button.primary")
        expect(trial.or_(end).or_(between).first).to_be_visible()
        if end.is_visible():
            return "end"
        if trial.count() and trial.is_visible():
            return "trial"
        return between.first.get_attribute("data-testid")

    def answer_trial(self, choice: str, confidence: int) -> TrialSeen:
        trial = self.page.get_by_test_id("trial")
        index = int(trial.get_attribute("data-trial-index"))
        button = self.page.get_by_test_id(f"choice-{choice}-{confidence}")
        expect(button).to_be_enabled()
        if self.on_trial:
            self.on_trial(self.page)
        if self.keyboard:
            self.page.keyboard.press(KEYS[choice][confidence - 1])
        else:
            button.click()
        this_trial = f"[data-trial-index='{index}']"
        # Either the feedback's Continue button appears, or the trial is replaced at once.
        expect(
            self.page.locator(
                f"[data-testid=feedback-continue], main:not(:has({this_trial}))"
            ).first
        ).to_be_attached()
        had_continue = (
            self.page.locator(f"{this_trial} [data-testid=feedback-continue]").count() > 0
        )
        feedback = ""
        if had_continue:
            feedback = self.page.locator(f"{this_trial} [data-testid=feedback]").inner_text()
            self.press("feedback-continue")
        expect(self.page.locator(f"[data-trial-index='{index}']")).to_have_count(0)
        seen = TrialSeen(index, choice, confidence, feedback, had_continue)
        self.seen.append(seen)
        return seen

    def step(self) -> str:
        """Do whatever the current screen asks (one trial or one Continue); returns the screen."""
        screen = self.current_screen()
        if screen == "trial":
            choice, confidence = ANSWERS[len(self.seen) % len(ANSWERS)]
            self.answer_trial(choice, confidence)
        elif screen != "end":
            self.press_away(screen)
        return screen

    def finish(self, max_steps: int = 80) -> str:
        """Walk until the end screen; returns the completion code."""
        for _ in range(max_steps):
            if self.step() == "end":
                return self.page.get_by_test_id("completion-code").inner_text()
        raise AssertionError("the study did not end")
