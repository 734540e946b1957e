// The non-trial screens: landing/consent, instructions with the answer keys, the
// comprehension check, practice/main transitions, breaks and the end screen.

import { renderMarkdown } from "./markdown.js";
import { h, page, waitForButton } from "./ui.js";
import { KEY_LABELS } from "./trial.js";

const md = (text) => h("div", { class: "prose", html: renderMarkdown(text) });
const button = (label, testid, primary = false) =>
  h("button", { type: "button", class: primary ? "primary" : "secondary", testid }, label);

export function message(title, text, ...extra) {
  page(title, h("div", { class: "prose" }, h("p", {}, text), ...extra));
}

export function previewScreen(study) {
  page(study.title, h("div", {},
    md(study.description),
    h("p", { class: "meta" }, `About ${study.estimated_minutes} minutes.`),
    h("p", { class: "notice" }, "Accept the HIT to start the study.")));
}

/** Landing + consent. Resolves true (consent given) or false (declined). */
export async function consentScreen(study) {
  const accept = button("I agree, start the study", "consent-accept", true);
  const decline = button("I do not agree", "consent-decline");
  page(study.title, h("div", {},
    h("p", { class: "meta" }, `This study takes about ${study.estimated_minutes} minutes.`),
    study.description ? md(study.description) : null,
    h("h2", {}, "Consent"),
    h("div", { class: "consent" }, md(study.consent))), [decline, accept]);
  return (await waitForButton(accept, decline)) === accept;
}

export function declinedScreen(study, params) {
  const parts = [h("p", {}, "You chose not to take part. Thank you for your time; nothing was recorded.")];
  if (study.decline_redirect_url) {
    parts.push(h("p", {}, h("a", { href: study.decline_redirect_url, class: "button-link", testid: "decline-return" },
      "Return to the study platform")));
    setTimeout(() => window.location.assign(study.decline_redirect_url), 3000);
  } else if (study.completion.platform === "prolific" || params.PROLIFIC_PID) {
    parts.push(h("p", {}, "Please return your submission on Prolific so the place goes to someone else."));
  } else if (study.completion.platform === "mturk" || params.assignmentId) {
    parts.push(h("p", {}, "Please return the HIT on Mechanical Turk."));
  }
  page("Thank you", h("div", { class: "prose", testid: "declined" }, parts));
}

/** The answer keys; `where` names the two choices' places (the 2AFC task's by default). */
export function keysTable(study, where = { a: "Upper image at the center", b: "Lower image at the center" }) {
  const levels = study.layout.confidence_levels || 3;
  const row = (query, where) => h("tr", {},
    h("th", { scope: "row" }, where),
    h("td", {}, KEY_LABELS[query].slice(0, levels).map((k) => h("kbd", {}, k)).reduce((a, k) => [...a, a.length ? " " : "", k], [])));
  return h("table", { class: "keys" },
    h("caption", {}, "Keys (you can also click the buttons)"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Your choice"),
      h("th", { scope: "col" }, `Confidence 1 … ${levels}`))),
    h("tbody", {}, row("a", where.a), row("b", where.b)));
}

function howToAnswerPage(study) {
  const titles = study.layout.reference_columns_titles;
  return h("div", { class: "prose" },
    h("h2", {}, "How to answer"),
    h("p", {}, `Each trial asks: “${study.layout.question}”`),
    h("p", {}, `Pick one of the two images at the center by clicking one of the buttons 1, 2, 3 `
      + "under the upper image or above the lower image. The number says how confident you are: "
      + "1 = not sure, 3 = very confident."),
    h("figure", { class: "example" },
      h("img", { src: study.layout.example_image_url,
        alt: `An example trial: ${titles.min} on one side, ${titles.max} on the other, two images at the center with buttons 1 2 3.` }),
      h("figcaption", {}, "An example trial.")),
    keysTable(study),
    h("p", {}, `The buttons can be used after ${((study.layout.answer_delay_ms ?? 1500) / 1000).toFixed(1)} s. `
      + feedbackSentence(study)));
}

/** What the participant is told about feedback: it follows trials.feedback_main. */
export function feedbackSentence(study) {
  const practice = study.practice.feedback ? "tell you whether you were right" : "do not tell you whether you were right";
  const same = Boolean(study.practice.feedback) === Boolean(study.feedback_main);
  return `Practice trials come first and ${practice}; `
    + (study.feedback_main ? `the main trials do${same ? " too" : ""}.` : `the main trials do not${same ? " either" : ""}.`);
}

/** The screen between practice and main trials, worded from trials.feedback_main. */
export function mainStartText(study) {
  return "Now the main trials begin. " + (study.feedback_main
    ? "You will still see after each one whether your answer was right."
    : "From here on you will not be told whether your answers are right.");
}

/** The study's instruction pages, then the answer page (the trial module's own, when it
 * has one: `howToAnswer(study)`, else the 2AFC task's); Back/Continue between them. */
export async function instructionsScreens(study, answerPage = null) {
  const pages = [...(study.instructions || []).map(md), answerPage || howToAnswerPage(study)];
  let i = 0;
  while (i < pages.length) {
    const back = i > 0 ? button("Back", "instructions-back") : null;
    const next = button("Continue", "instructions-continue", true);
    page(`Instructions (${i + 1} of ${pages.length})`, pages[i], [back, next].filter(Boolean));
    const pressed = await waitForButton(...[back, next].filter(Boolean));
    i += pressed === next ? 1 : -1;
  }
}

/**
 * Multiple-choice check that the instructions were understood. Resolves {passed, attempt};
 * on a wrong answer the participant is sent back to the instructions by the caller.
 * The questions are the server's (`study.comprehension`: the study's YAML or its
 * paradigm's); the caller skips this screen when there are none.
 */
export async function comprehensionScreen(study, attempt) {
  const questions = study.comprehension;
  const fieldsets = questions.map((q, qi) => h("fieldset", { class: "question-set", "data-question": String(qi) },
    h("legend", {}, q.question),
    q.options.map((option, oi) => h("label", { class: "option" },
      h("input", { type: "radio", name: `q${qi}`, value: String(oi), testid: `comprehension-q${qi}-${oi}` }),
      h("span", {}, option)))));
  const submit = button("Check my answers", "comprehension-submit", true);
  const note = h("p", { class: "form-error", role: "alert", testid: "comprehension-error" });
  page("Check your understanding", h("form", { class: "comprehension", onsubmit: (e) => e.preventDefault() },
    attempt > 1 ? h("p", {}, "Please answer again after reading the instructions.") : null, fieldsets, note), [submit]);
  for (;;) {
    await waitForButton(submit);
    const wrong = questions.filter((q, qi) => {
      const checked = document.querySelector(`input[name=q${qi}]:checked`);
      const isWrong = !checked || Number(checked.value) !== q.answer;
      fieldsets[qi].setAttribute("aria-invalid", isWrong ? "true" : "false");
      return isWrong;
    });
    if (wrong.length === 0) return { passed: true };
    const unanswered = questions.some((_q, qi) => !document.querySelector(`input[name=q${qi}]:checked`));
    if (unanswered) {
      note.textContent = "Please answer every question.";
      continue;
    }
    return { passed: false, wrong: wrong.length };
  }
}

export async function continueScreen(title, text, testid = "screen-continue", label = "Continue") {
  const next = button(label, testid, true);
  page(title, h("div", { class: "prose" }, h("p", {}, text)), [next]);
  next.focus();
  await waitForButton(next);
}

export function fixation() {
  const root = document.getElementById("app");
  root.replaceChildren(h("div", { class: "fixation", "aria-hidden": "true" }, "+"));
  root.className = "";
}

/** The end screen: completion code, then the platform's redirect or submit form. */
export function endScreen(completion, study) {
  const code = h("strong", { class: "code", testid: "completion-code" }, completion.completion_code);
  const parts = [h("p", {}, "Thank you! All your answers have been saved."),
    h("p", {}, "Your completion code: ", code)];
  if (completion.mturk && completion.mturk.submit_url) {
    const form = h("form", { method: "POST", action: completion.mturk.submit_url, testid: "mturk-form" },
      h("input", { type: "hidden", name: "assignmentId", value: completion.mturk.assignmentId }),
      h("input", { type: "hidden", name: "completion_code", value: completion.completion_code }),
      h("button", { type: "submit", class: "primary", testid: "mturk-submit" }, "Submit the HIT"));
    parts.push(h("p", {}, "Press the button to submit your work on Mechanical Turk."), form);
  } else if (completion.redirect_url) {
    parts.push(h("p", {}, "You will be taken back to ", study.completion.platform === "prolific" ? "Prolific" : "the study platform",
      " in a few seconds. If nothing happens, ",
      h("a", { href: completion.redirect_url, testid: "completion-redirect" }, "follow this link"), "."));
  } else {
    parts.push(h("p", {}, "Please copy the code into the study platform. You can close this page now."));
  }
  page("Study complete", h("div", { class: "prose end" }, parts));
}
