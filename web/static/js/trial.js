// One 2AFC trial of the natural-vs-synthetic task (IMI layout): minimally activating
// references on one side, maximally activating on the other, two queries in the centre,
// and one click (or key) that gives choice and confidence together.
//
// Test hooks: the trial root has data-testid="trial" and data-trial-index; the answer
// buttons are choice-a-1..3 (upper query, confidence 1..3) and choice-b-1..3 (lower
// query); their groups are choice-a and choice-b. Nothing here knows the right answer.

import { h } from "./ui.js";
import { paintedAt } from "./timing.js";

/** Keys (KeyboardEvent.code, i.e. physical positions) → [query, confidence]. */
export const ANSWER_KEYS = {
  Digit1: ["a", 1], Digit2: ["a", 2], Digit3: ["a", 3],
  Numpad1: ["a", 1], Numpad2: ["a", 2], Numpad3: ["a", 3],
  KeyQ: ["b", 1], KeyW: ["b", 2], KeyE: ["b", 3],
};
export const KEY_LABELS = { a: ["1", "2", "3"], b: ["Q", "W", "E"] };
const POSITION = { a: "upper", b: "lower" };

function referenceColumn(title, images, side) {
  const columns = Math.max(1, Math.ceil(Math.sqrt(images.length)));
  return h("div", { class: `references references-${side}` },
    h("h2", { class: "column-title" }, title),
    h("div", { class: "reference-grid", style: `--columns: ${columns}` },
      images.map((img, i) => {
        img.alt = `${title}, image ${i + 1}`;
        return h("div", { class: "cell" }, img);
      })));
}

export function answerScale(query, levels) {
  const buttons = [];
  for (let confidence = 1; confidence <= levels; confidence++) {
    const key = KEY_LABELS[query][confidence - 1];
    buttons.push(h("button", {
      type: "button",
      class: "scale-button",
      testid: `choice-${query}-${confidence}`,
      "data-choice": query,
      "data-confidence": String(confidence),
      "aria-label": `${POSITION[query]} image, confidence ${confidence} of ${levels}` +
        (key ? ` (key ${key})` : ""),
      disabled: true,
    }, h("span", { class: "confidence" }, String(confidence)), key ? h("kbd", {}, key) : null));
  }
  return h("div", {
    class: `scale scale-${query}`,
    role: "group",
    testid: `choice-${query}`,
    "aria-label": `Choose the ${POSITION[query]} image: how confident are you?`,
  }, h("div", { class: "scale-buttons" }, buttons),
  h("span", { class: "more-confident", "aria-hidden": "true" }, "More confident →"));
}

/** Build the trial's DOM from already-decoded images (nothing is fetched after this). */
export function buildTrial(trial, images, study) {
  const layout = study.layout;
  const titles = layout.reference_columns_titles;
  const maxOnRight = layout.max_side !== "left"; // layout.max_side: "right" (IMI) or "left"
  const minColumn = referenceColumn(titles.min, images.references_min, "min");
  const maxColumn = referenceColumn(titles.max, images.references_max, "max");
  images.query_a.alt = "Upper image at the center";
  images.query_b.alt = "Lower image at the center";
  const queryA = h("figure", { class: "query query-a" }, images.query_a);
  const queryB = h("figure", { class: "query query-b" }, images.query_b);
  const levels = layout.confidence_levels || 3;
  const root = h("section", {
    class: "trial",
    testid: "trial",
    "data-trial-index": String(trial.index),
    "aria-labelledby": "trial-question",
  },
  h("h1", { id: "trial-question", class: "question" }, layout.question),
  h("div", { class: "trial-grid" },
    maxOnRight ? minColumn : maxColumn,
    h("div", { class: "queries" }, queryA, answerScale("a", levels), answerScale("b", levels), queryB),
    maxOnRight ? maxColumn : minColumn),
  h("p", { class: "feedback", testid: "feedback", role: "status", "aria-live": "polite" }));
  const maxPx = layout.max_image_px || 224;
  root.style.setProperty("--max-image-px", `${maxPx}px`);
  if (window.devicePixelRatio >= 2 && Number.isInteger(window.devicePixelRatio)) {
    root.classList.add("crisp"); // integer upscaling on HiDPI screens: nearest neighbour, not blur
  }
  return { root, queries: { a: queryA, b: queryB } };
}

/**
 * Show the trial (already in the DOM) and wait for one answer.
 * Resolves {choice, confidence, rt_ms, onset, input, button} or {timedOut: true, onset}.
 */
export async function collectAnswer(view, study) {
  const layout = study.layout;
  const buttons = [...view.root.querySelectorAll("button.scale-button")];
  const onset = await paintedAt();
  const enableAt = onset + (layout.answer_delay_ms ?? 1500);
  return new Promise((resolve) => {
    let finished = false;
    const timers = [];
    const finish = (result) => {
      if (finished) return; // a trial ends exactly once (click, key or timeout)
      finished = true;
      timers.forEach(clearTimeout);
      document.removeEventListener("keydown", onKey);
      buttons.forEach((b) => { b.disabled = true; });
      resolve({ ...result, onset });
    };
    const answer = (choice, confidence, at, input) => {
      if (at < enableAt) return;
      finish({ choice, confidence, rt_ms: Math.round((at - onset) * 10) / 10, input, button: `${choice}-${confidence}` });
    };
    const onKey = (event) => {
      const mapped = ANSWER_KEYS[event.code];
      if (!mapped || event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
      event.preventDefault();
      answer(mapped[0], mapped[1], event.timeStamp || performance.now(), "key");
    };
    for (const button of buttons) {
      button.addEventListener("click", (event) => {
        const input = event.detail === 0 ? "keyboard-button" : "mouse"; // detail 0: Enter/Space
        answer(button.dataset.choice, Number(button.dataset.confidence), event.timeStamp || performance.now(), input);
      });
    }
    document.addEventListener("keydown", onKey);
    const delay = Math.max(0, enableAt - performance.now());
    timers.push(setTimeout(() => {
      if (finished) return;
      buttons.forEach((b) => { b.disabled = false; });
      view.root.classList.add("answerable");
    }, delay));
    if (study.trial_timeout_ms) {
      timers.push(setTimeout(() => finish({ timedOut: true }), Math.max(0, onset + study.trial_timeout_ms - performance.now())));
    }
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * IMI feedback: a black frame on the chosen image at once; after `frame` ms it turns
 * green or red with "Correct!"/"Incorrect!"; `continue` ms after that (IMI: 350 + 1150 ms
 * after the click) a Continue button.
 * `verdict` is a promise of the server's grading (the browser never knows the answer).
 * `explanation` (practice trials of a trial module that has one, e.g. the occlusion task):
 * the right image turns green whichever was chosen, and the text follows the verdict.
 */
export async function showFeedback(view, choice, verdict, study, explanation = null) {
  const timing = study.layout.feedback_ms || { frame: 350, continue: 1150 };
  const chosen = view.queries[choice];
  chosen.classList.add("chosen");
  const [result] = await Promise.all([verdict, sleep(timing.frame)]);
  const feedback = view.root.querySelector(".feedback");
  if (result && result.feedback) {
    const correct = Boolean(result.feedback.correct);
    chosen.classList.add(correct ? "correct" : "incorrect");
    feedback.textContent = correct ? "Correct!" : "Incorrect!";
    feedback.classList.add(correct ? "is-correct" : "is-incorrect");
    if (explanation) {
      view.queries[correct ? choice : (choice === "a" ? "b" : "a")].classList.add("correct");
      feedback.append(" ", h("span", { class: "explanation", testid: "feedback-explanation" }, explanation));
    }
  }
  await sleep(timing.continue);
  const next = h("button", { type: "button", class: "primary", testid: "feedback-continue" }, "Continue");
  feedback.after(h("div", { class: "actions center" }, next));
  next.focus();
  await new Promise((resolve) => next.addEventListener("click", resolve, { once: true }));
}
