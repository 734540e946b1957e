// The outbox: every response (and session event) is written to localStorage before it is
// sent, then sent in order with its idempotency key until the server acknowledges it.
// A reload or a new visit picks the outbox up again, so no answer is lost to the network.

import { ApiError } from "./api.js";
import { retryForever } from "./retry.js";
import { readJSON, writeJSON } from "./storage.js";

export class Outbox {
  /**
   * @param {string} storageKey  localStorage key, one per participant session
   * @param {(item) => Promise<{status, data}>} send  posts one item
   * @param {(state: {pending: number, retrying: boolean}) => void} onState
   */
  constructor(storageKey, send, onState) {
    this.storageKey = storageKey;
    this.send = send;
    this.onState = onState;
    this.items = readJSON(storageKey, []);
    this.waiters = new Map(); // item id -> resolve(result) for items queued by this page
    this.drainWaiters = [];
    this.retrying = false;
    this.running = false;
  }

  get pending() {
    return this.items.length;
  }

  /** Store `item` ({id, kind, body}) durably, start sending; resolves with the server's answer. */
  push(item) {
    this.items.push(item);
    writeJSON(this.storageKey, this.items);
    const acknowledged = new Promise((resolve) => this.waiters.set(item.id, resolve));
    this.flush();
    return acknowledged;
  }

  /** Resolves once every stored item has been acknowledged or refused by the server. */
  drained() {
    if (this.items.length === 0) return Promise.resolve();
    const done = new Promise((resolve) => this.drainWaiters.push(resolve));
    this.flush();
    return done;
  }

  async flush() {
    if (this.running) return;
    this.running = true;
    this.report();
    try {
      while (this.items.length > 0) {
        const item = this.items[0];
        let result;
        try {
          ({ data: result } = await retryForever(() => this.send(item), {
            onRetry: () => this.setRetrying(true),
            onRecover: () => this.setRetrying(false),
          }));
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          // The server refused it for good (e.g. the trial was already answered with another
          // key): keep a note for diagnostics and move on; retrying cannot change the answer.
          result = { refused: true, status: err.status, detail: err.message };
          const refused = readJSON(`${this.storageKey}:refused`, []);
          refused.push({ ...item, refused: result });
          writeJSON(`${this.storageKey}:refused`, refused);
        }
        this.items.shift();
        writeJSON(this.storageKey, this.items);
        const resolve = this.waiters.get(item.id);
        this.waiters.delete(item.id);
        if (resolve) resolve(result);
        this.report();
      }
    } finally {
      this.running = false;
      this.setRetrying(false);
      const waiters = this.drainWaiters.splice(0);
      waiters.forEach((resolve) => resolve());
    }
  }

  setRetrying(value) {
    if (this.retrying !== value) {
      this.retrying = value;
      this.report();
    }
  }

  report() {
    this.onState({ pending: this.items.length, retrying: this.retrying });
  }
}
