// Focus, visibility and fullscreen changes (jsPsych's "interaction data"): a participant
// who left the tab during a trial is visible in the data, per trial.

export function startInteractionLog() {
  const log = [];
  const record = (type) => log.push({ type, t: performance.now() });
  window.addEventListener("blur", () => record("blur"));
  window.addEventListener("focus", () => record("focus"));
  document.addEventListener("visibilitychange", () => record(`visibility_${document.visibilityState}`));
  document.addEventListener("fullscreenchange", () =>
    record(document.fullscreenElement ? "fullscreen_enter" : "fullscreen_exit"));
  return {
    /** Events since `start` (a performance.now() time), with times relative to it. */
    since(start) {
      return log
        .filter((e) => e.t >= start)
        .map((e) => ({ type: e.type, t_ms: Math.round(e.t - start) }));
    },
  };
}

export function isFullscreen() {
  return Boolean(document.fullscreenElement);
}

/** Ask for fullscreen (only works inside a click/key handler); never fails the task. */
export async function requestFullscreen() {
  if (!document.fullscreenEnabled || document.fullscreenElement) return;
  try {
    await document.documentElement.requestFullscreen({ navigationUI: "hide" });
  } catch {
    /* refused (e.g. iframe without permission): the task still runs in the window */
  }
}
