// The participant JSON API (/api/v1): one fetch wrapper that sorts failures into
// "try again later" (network down, 5xx, 429) and "the server said no" (other 4xx).

/** The server refused the request; retrying the same request will not help. */
export class ApiError extends Error {
  constructor(status, detail, code) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code || "";
  }
}

/** The request may succeed later (offline, server restarting, overloaded). */
export class TransientError extends Error {}

/** The server's reason: a string, or FastAPI's list of validation errors. */
function describe(data) {
  const detail = data && data.detail;
  if (Array.isArray(detail)) return detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  return typeof detail === "string" ? detail : "";
}

export function createApi(base) {
  async function request(method, path, { token, body } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (err) {
      throw new TransientError(`network: ${err.message}`);
    }
    if (response.status === 204) return { status: 204, data: null };
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (response.ok) return { status: response.status, data };
    if (response.status >= 500 || response.status === 429 || response.status === 408) {
      throw new TransientError(`HTTP ${response.status}`);
    }
    throw new ApiError(response.status, describe(data), data && data.code);
  }

  return {
    study: (slug) => request("GET", `/studies/${encodeURIComponent(slug)}`),
    startSession: (slug, body) =>
      request("POST", `/studies/${encodeURIComponent(slug)}/sessions`, { body }),
    nextTrial: (s) => request("GET", `/sessions/${s.session_id}/trials/next`, { token: s.token }),
    respond: (s, body) =>
      request("POST", `/sessions/${s.session_id}/responses`, { token: s.token, body }),
    events: (s, events) =>
      request("POST", `/sessions/${s.session_id}/events`, { token: s.token, body: { events } }),
    complete: (s) => request("POST", `/sessions/${s.session_id}/complete`, { token: s.token }),
  };
}
