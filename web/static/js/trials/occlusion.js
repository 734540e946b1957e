// Trial module of the occlusion task (Zimmermann et al. 2021): "Favorite Images" (the
// unit's maximally activating references) on the left; on the right the base image
// ("Another Favorite Image") and below it the two occluded copies side by side, each with
// its confidence buttons (3 2 1 | 1 2 3, pointing outward). Answering, timing and
// feedback are the shared engine's (trial.js, task.js); nothing here knows the answer.
//
// Test hooks as in the 2AFC task: data-testid="trial", choice-a-1..3 (left occlusion),
// choice-b-1..3 (right occlusion).

import { h } from "../ui.js";
import { answerScale } from "../trial.js";
import { feedbackSentence, keysTable } from "../screens.js";

/** The instructions' "How to answer" page for this layout (left and right occluded copies). */
export function howToAnswer(study) {
  const task = study.task || {};
  const levels = study.layout.confidence_levels || 3;
  const base = task.base_title || "Another Favorite Image";
  return h("div", { class: "prose", testid: "how-to-answer-occlusion" },
    h("h2", {}, "How to answer"),
    h("p", {}, `Each trial asks: “${study.layout.question}”`),
    h("p", {}, `Under “${base}” you see two copies of that image, each with a grey square `
      + "hiding a different part. Choose the copy the unit still favours more: hiding the part "
      + "it cares about lowers its response most. "
      + `Click one of the buttons ${levels} … 1 under the left copy or 1 … ${levels} under the `
      + `right copy. The number says how confident you are: 1 = not sure, ${levels} = very confident.`),
    h("p", {}, `Where “${task.references_title || "Favorite Images"}” are shown beside it, they `
      + "tell you what the unit responds to strongly."),
    keysTable(study, { a: "Left occluded copy", b: "Right occluded copy" }),
    h("p", {}, `The buttons can be used after ${((study.layout.answer_delay_ms ?? 1500) / 1000).toFixed(1)} s. `
      + feedbackSentence(study)));
}

function favorites(title, images) {
  const columns = Math.max(1, Math.ceil(Math.sqrt(images.length)));
  return h("div", { class: "references references-max" },
    h("h2", { class: "column-title" }, title),
    h("div", { class: "reference-grid", style: `--columns: ${columns}` },
      images.map((img, i) => {
        img.alt = `${title}, image ${i + 1}`;
        return h("div", { class: "cell" }, img);
      })));
}

/** Build the trial's DOM from already-decoded images (nothing is fetched after this). */
export function buildTrial(trial, images, study) {
  const layout = study.layout;
  const task = study.task || {};
  const levels = layout.confidence_levels || 3;
  images.base.alt = task.base_title || "Another Favorite Image";
  images.query_a.alt = "Left occluded image";
  images.query_b.alt = "Right occluded image";
  const queryA = h("figure", { class: "query query-a" }, images.query_a);
  const queryB = h("figure", { class: "query query-b" }, images.query_b);
  const scaleA = answerScale("a", levels);
  scaleA.querySelector(".scale-buttons").style.flexDirection = "row-reverse"; // 3 2 1 | 1 2 3
  scaleA.querySelector(".more-confident").textContent = "← More confident"; // pointing outward
  const scaleB = answerScale("b", levels);
  scaleB.style.flexDirection = "column"; // both under their image (the 2AFC's b sits above)
  for (const element of [scaleA, scaleB, ...scaleA.children[0].children, ...scaleB.children[0].children]) {
    // side by side here: the shared scale's labels say upper/lower (the 2AFC layout)
    const label = element.getAttribute("aria-label") || "";
    element.setAttribute("aria-label", label.replace("upper", "left").replace("lower", "right"));
  }
  const refs = images.references_max || [];
  const root = h("section", {
    class: "trial trial-occlusion",
    testid: "trial",
    "data-trial-index": String(trial.index),
    "aria-labelledby": "trial-question",
  },
  h("h1", { id: "trial-question", class: "question" }, layout.question),
  h("div", { class: "trial-grid" },
    refs.length ? favorites(task.references_title || "Favorite Images", refs) : null,
    h("div", { class: "occlusion" },
      h("h2", { class: "column-title" }, task.base_title || "Another Favorite Image"),
      h("figure", { class: "base", testid: "base-image" }, images.base),
      h("div", { class: "occluded-pair", style: "display: flex; gap: 1.5rem; justify-content: center" },
        h("div", { class: "occluded" }, queryA, scaleA),
        h("div", { class: "occluded" }, queryB, scaleB)))),
  h("p", { class: "feedback", testid: "feedback", role: "status", "aria-live": "polite" }));
  root.style.setProperty("--max-image-px", `${layout.max_image_px || 224}px`);
  // Practice feedback (shared engine): the right copy turns green, with the task's explanation.
  return { root, queries: { a: queryA, b: queryB }, explanation: task.practice_explanation || null };
}
