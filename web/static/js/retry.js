// Retry without limit: a participant's answers must survive any outage, so we never
// give up while the page is open (JATOS gave up after 5 tries and lost data).

import { TransientError } from "./api.js";

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

/** Resolves after `ms`, or earlier when the browser reports it is back online. */
function pause(ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      window.removeEventListener("online", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    window.addEventListener("online", done);
  });
}

/**
 * Call `fn` until it succeeds or fails for good (an ApiError, thrown to the caller).
 * `onRetry(attempt, error)` is told about each transient failure, `onRecover()` once it works.
 */
export async function retryForever(fn, { onRetry = () => {}, onRecover = () => {} } = {}) {
  let delay = FIRST_DELAY_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await fn();
      if (attempt > 1) onRecover();
      return result;
    } catch (err) {
      if (!(err instanceof TransientError)) throw err;
      onRetry(attempt, err);
      await pause(delay * (0.75 + Math.random() * 0.5));
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }
}
