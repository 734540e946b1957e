// localStorage helpers that never throw: private modes and full quotas must not break
// the task (the server remains the source of truth; storage only adds resilience).

export function readJSON(key, fallback = null) {
  try {
    const raw = window.localStorage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

export function writeJSON(key, value) {
  try {
    window.localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch {
    return false;
  }
}

export function remove(key) {
  try {
    window.localStorage.removeItem(key);
  } catch {
    /* storage unavailable: nothing to remove */
  }
}

/** Where this participant's run of this study is remembered (token, stage, start time). */
export function sessionKey(slug, params) {
  const who = params.PROLIFIC_PID || params.workerId || "anonymous";
  return `psychinterp:session:${slug}:${who}`;
}
