// The participant's run, start to end: consent → device check → instructions and
// comprehension check → practice with feedback → main trials → completion code.
// The server holds the design and the answers; this page plays the trials it is given,
// keeps every response in a durable outbox, and resumes after a reload.

import { ApiError, TransientError, createApi } from "./api.js";
import { watchWindowSize, isMobileDevice } from "./device.js";
import { isFullscreen, requestFullscreen, startInteractionLog } from "./interactions.js";
import { Outbox } from "./queue.js";
import { retryForever } from "./retry.js";
import * as screens from "./screens.js";
import { readJSON, remove, sessionKey, writeJSON } from "./storage.js";
import { decodedImage, epochMs, estimateRefreshRate } from "./timing.js";
import { collectAnswer, showFeedback } from "./trial.js";
import { connection, setProgress, setScore, showScreen } from "./ui.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const config = JSON.parse(document.getElementById("page-config").textContent);
const api = createApi(config.api);
const interactions = startInteractionLog();
const storageKey = sessionKey(config.slug, config.params);

/** retryForever with the "reconnecting" note shown while `source` keeps failing. */
// The trial's layout comes from its paradigm's module, web/static/js/trials/<type>.js
// (issue 21); answering, timing, feedback, resume and the queue stay in this engine.
const TRIAL_TYPE = /^[a-z][a-z0-9_]{0,39}$/;
const trialModules = new Map();

/** The study's trial module's "How to answer" page, if it has one (issue 21: the occlusion
 * task's layout differs from the 2AFC's); its trial type is the paradigm's name. */
async function answerPageOf(study) {
  if (!TRIAL_TYPE.test(study.paradigm || "")) return null;
  const module = await import(`./trials/${study.paradigm}.js`).catch(() => null);
  return module && module.howToAnswer ? module.howToAnswer(study) : null;
}

function loadTrialModule(type) {
  if (!TRIAL_TYPE.test(type || "")) throw new Error(`unknown trial type ${JSON.stringify(type)}`);
  if (!trialModules.has(type)) {
    const load = () => import(`./trials/${type}.js`).catch((err) => {
      throw new TransientError(`trial module ${type}: ${err.message}`);
    });
    trialModules.set(type, persistent("trial-module", load).catch((err) => {
      trialModules.delete(type);
      throw err;
    }));
  }
  return trialModules.get(type);
}

async function persistent(source, fn) {
  try {
    return await retryForever(fn, { onRetry: () => connection.set(source, true) });
  } finally {
    connection.set(source, false);
  }
}

function clientInfo(refreshHz) {
  return {
    user_agent: navigator.userAgent,
    screen_w: window.screen.width,
    screen_h: window.screen.height,
    window_w: window.innerWidth,
    window_h: window.innerHeight,
    device_pixel_ratio: window.devicePixelRatio,
    refresh_hz: refreshHz,
  };
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

class Run {
  constructor(study, state, refreshHz) {
    this.study = study;
    this.state = state; // {session_id, token, stage, started_at, completion?}
    this.refreshHz = refreshHz;
    this.outbox = new Outbox(`psychinterp:outbox:${state.session_id}`, (item) => this.send(item), (s) => {
      connection.setPending(s.pending);
      connection.set("outbox", s.retrying);
    });
  }

  save() {
    writeJSON(storageKey, this.state);
  }

  send(item) {
    return item.kind === "events" ? api.events(this.state, item.body.events) : api.respond(this.state, item.body);
  }

  logEvent(type, detail = {}) {
    this.outbox.push({ id: uuid(), kind: "events", body: { events: [{ type, t_ms: Math.round(this.elapsed()), detail }] } });
  }

  elapsed() {
    return epochMs() - this.state.started_at;
  }

  async instructions() {
    const started = epochMs();
    for (let attempt = 1; ; attempt++) {
      // Between participants the server adds the session's condition pages (issue 20).
      const study = { ...this.study, instructions: this.state.instructions || this.study.instructions };
      await screens.instructionsScreens(study, await answerPageOf(study));
      if (!this.study.comprehension.length) break; // the study's paradigm asks nothing
      const result = await screens.comprehensionScreen(this.study, attempt);
      this.logEvent("comprehension", { attempt, passed: result.passed, wrong: result.wrong || 0 });
      if (result.passed) break;
      await screens.continueScreen("Not quite", "Some answers were not right. Please read the instructions again.",
        "comprehension-retry", "Read the instructions again");
    }
    this.logEvent("instructions_done", { duration_ms: Math.round(epochMs() - started) });
    if (this.study.fullscreen) await requestFullscreen();
    this.state.stage = "trials";
    this.save();
  }

  /** Every image of the trial decoded, by the served role names (lists stay lists). */
  async loadImages(trial) {
    const entries = Object.entries(trial.images);
    const decode = (value) => (Array.isArray(value) ? Promise.all(value.map(decodedImage)) : decodedImage(value));
    const load = async () => {
      try {
        const decoded = await Promise.all(entries.map(([, value]) => decode(value)));
        return Object.fromEntries(entries.map(([role], i) => [role, decoded[i]]));
      } catch (err) {
        throw new TransientError(`image: ${err.message}`);
      }
    };
    return persistent("images", load);
  }

  async betweenTrials(trial, previous) {
    const study = this.study;
    const practiceCount = study.practice ? study.practice.n_trials : 0;
    if (trial.block === "practice" && this.answeredPractice.has(trial.trial_id)) {
      this.answeredPractice.clear();
      this.logEvent("practice_repeat", {});
      await screens.continueScreen("Practice again",
        "Not all practice answers were right. Please do the practice trials once more.", "practice-repeat");
    } else if (previous === "practice" && trial.block === "main") {
      await screens.continueScreen("Practice finished",
        screens.mainStartText(study),
        "main-start", "Start the main trials");
      if (study.fullscreen && !isFullscreen()) await requestFullscreen();
    } else if (previous === null && trial.block === "practice" && trial.index === 0) {
      await screens.continueScreen("Practice",
        "First a few practice trials. After each one you will see whether your answer was right.",
        "practice-start", "Start the practice");
      if (study.fullscreen && !isFullscreen()) await requestFullscreen();
    } else if (trial.block === "main" && previous !== null && study.break_every) {
      const mainIndex = trial.index - practiceCount;
      if (mainIndex > 0 && mainIndex % study.break_every === 0) {
        this.logEvent("break_start", { main_index: mainIndex });
        await screens.continueScreen("Take a short break",
          `You have done ${mainIndex} of ${trial.n_trials - practiceCount} main trials. Continue when you are ready.`,
          "break-continue");
      }
    }
  }

  async trials() {
    this.answeredPractice = new Set();
    const showMainFeedback = Boolean(this.study.feedback_main); // trials.feedback_main
    const iti = this.study.layout.iti_ms; // the fixation screen between trials
    let previous = null;
    for (;;) {
      screens.fixation();
      await this.outbox.drained(); // the next trial depends on what the server has recorded
      const fixationStart = performance.now();
      const next = await persistent("next", () => api.nextTrial(this.state));
      if (next.status === 204) return;
      const trial = next.data;
      setProgress(trial.index, trial.n_trials);
      await this.betweenTrials(trial, previous);
      previous = trial.block;
      screens.fixation();
      const [images, trialModule] = await Promise.all([this.loadImages(trial), loadTrialModule(trial.type)]);
      await sleep(Math.max(0, iti - (performance.now() - fixationStart)));
      const view = trialModule.buildTrial(trial, images, this.study);
      showScreen(view.root);
      const answer = await collectAnswer(view, this.study);
      const isPractice = trial.block === "practice";
      if (answer.timedOut) {
        this.logEvent("trial_timeout", { trial_id: trial.trial_id, index: trial.index });
        await screens.continueScreen("Time is up", "Please answer a little faster. The trial will be shown again.",
          "timeout-continue");
        continue;
      }
      const body = {
        trial_id: trial.trial_id,
        choice: answer.choice,
        confidence: answer.confidence,
        rt_ms: answer.rt_ms,
        client_sent_at: new Date().toISOString(),
        idempotency_key: uuid(),
        data: {
          button: answer.button,
          input: answer.input,
          trial_index: trial.index,
          block: trial.block,
          time_elapsed_ms: Math.round(this.elapsed()),
          refresh_hz: this.refreshHz,
          events: interactions.since(answer.onset),
          fullscreen: isFullscreen(),
          window_w: window.innerWidth,
          window_h: window.innerHeight,
          device_pixel_ratio: window.devicePixelRatio,
          image_px: Math.round(view.queries.a.querySelector("img").getBoundingClientRect().width),
        },
      };
      const verdict = this.outbox.push({ id: body.idempotency_key, kind: "response", body });
      if (isPractice) this.answeredPractice.add(trial.trial_id);
      if (isPractice || showMainFeedback) {
        await showFeedback(view, answer.choice, verdict, this.study, isPractice ? view.explanation : null);
      } else {
        view.queries[answer.choice].classList.add("chosen");
      }
      if (isPractice) {
        // The end of a practice round: the server says repeat, go on, or (study's choice)
        // stop a participant who needed more rounds than allowed.
        const result = await verdict;
        // A stopped session takes no more posts: the server has recorded the outcome.
        if (result && result.practice && result.practice.stopped) return result.practice;
      }
      verdict.then((result) => {
        if (result && typeof result.n_correct === "number" && this.study.layout.show_running_score && !isPractice) {
          setScore(`Correct so far: ${result.n_correct}`);
        }
      });
      setProgress(trial.index + 1, trial.n_trials);
    }
  }

  async complete() {
    screens.message("Saving your answers", "Please keep this page open while your answers are saved.");
    await this.outbox.drained();
    // A 409 here means trials remain (e.g. a response the server refused): go back to them.
    const completion = (await persistent("complete", () => api.complete(this.state))).data;
    this.state.stage = "done";
    this.state.completion = completion;
    this.save();
    return completion;
  }

  async run() {
    this.outbox.flush(); // answers left from an earlier visit go first
    if (this.state.stage === "instructions") await this.instructions();
    for (;;) {
      const stopped = await this.trials();
      if (stopped) return this.stop(stopped);
      try {
        return this.finish(await this.complete());
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 409)) throw err;
      }
    }
  }

  stop(practice) {
    this.state.stage = "stopped";
    this.state.stopped_message = practice.message;
    this.save();
    document.getElementById("topbar").hidden = true;
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    stoppedScreen(practice.message);
  }

  finish(completion) {
    document.getElementById("topbar").hidden = true;
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    screens.endScreen(completion, this.study);
    if (completion.redirect_url && !(completion.mturk && completion.mturk.submit_url)) {
      setTimeout(() => window.location.assign(completion.redirect_url), this.study.completion.redirect_delay_ms);
    }
  }
}

async function startSession(study, refreshHz) {
  const body = { ...config.params, client: clientInfo(refreshHz) };
  const { data } = await persistent("session", () => api.startSession(config.slug, body));
  const state = { session_id: data.session_id, token: data.token, stage: "instructions", started_at: epochMs(),
    instructions: data.instructions };
  writeJSON(storageKey, state);
  return state;
}

function stoppedScreen(text) {
  screens.message("Thank you", text || "The study ends here for you. Thank you for your time.");
  document.querySelector("#app .page").dataset.testid = "practice-stopped";
}

function explain(err) {
  if (err.status === 403) {
    return ["You cannot take part", `${err.message}. If you think this is a mistake, please contact the researchers.`];
  }
  if (err.status === 409) return ["The study is not open", `${err.message}.`];
  if (err.status === 401 || err.status === 404) {
    return ["Your session was not found", "Please reload the page to start again."];
  }
  return ["Something went wrong", err.message];
}

async function main() {
  const refreshHzPromise = estimateRefreshRate();
  let study;
  try {
    study = (await persistent("study", () => api.study(config.slug))).data;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      screens.message("Study not found", "This link does not lead to a study. Please check the address.");
      return;
    }
    throw err;
  }
  document.title = study.title;
  if (config.mode === "preview") {
    screens.previewScreen(study);
    return;
  }
  let state = readJSON(storageKey);
  if (state && state.stage === "done" && state.completion) {
    screens.endScreen(state.completion, study);
    return;
  }
  if (state && state.stage === "stopped") {
    stoppedScreen(state.stopped_message);
    return;
  }
  if (isMobileDevice() && !study.allow_mobile) {
    screens.message(study.title, "This study cannot be done on a phone or tablet. Please open this link on a computer.");
    document.querySelector("#app .page").dataset.testid = "device-blocked";
    return;
  }
  if (!state) {
    if (study.status !== "live") {
      screens.message(study.title, "This study is not accepting participants at the moment. Please try again later.");
      return;
    }
    if (!(await screens.consentScreen(study))) {
      screens.declinedScreen(study, config.params);
      return;
    }
  }
  let run = null;
  const sizeWatch = watchWindowSize(study.min_window || { width: 940, height: 600 }, (tooSmall) => {
    if (run) run.logEvent(tooSmall ? "window_too_small" : "window_ok", { w: window.innerWidth, h: window.innerHeight });
  });
  await sizeWatch.fits();
  const refreshHz = await refreshHzPromise;
  try {
    state = state || (await startSession(study, refreshHz));
    run = new Run(study, state, refreshHz);
    await run.run();
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.status === 401 || err.status === 404) remove(storageKey);
    const [title, text] = explain(err);
    screens.message(title, text);
  }
}

main().catch((err) => {
  console.error(err);
  screens.message("Something went wrong", "Please reload the page. Your answers so far are saved.");
});
