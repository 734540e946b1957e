// DOM helpers shared by the screens: element builder, screen switching with focus
// management (keyboard and screen-reader users land on the new heading), progress bar,
// and the small connection note.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "html") el.innerHTML = value;
    else if (name === "style") el.style.cssText = value; // CSSOM: allowed by the page's CSP
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "testid") el.dataset.testid = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const app = () => document.getElementById("app");

/** Replace the page content; focus the first heading (or the main region). */
export function showScreen(...children) {
  const root = app();
  root.replaceChildren(...children);
  root.className = "";
  const heading = root.querySelector("h1, h2");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  } else {
    root.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
  return root;
}

/** A screen with a title, body nodes and an optional row of buttons. */
export function page(title, body, buttons = []) {
  return showScreen(
    h("section", { class: "page" },
      h("h1", {}, title),
      body,
      buttons.length ? h("div", { class: "actions" }, buttons) : null),
  );
}

/** Resolves with the button the participant pressed (mouse, Enter or Space). */
export function waitForButton(...buttons) {
  return new Promise((resolve) => {
    for (const button of buttons) {
      button.addEventListener("click", () => resolve(button), { once: true });
    }
  });
}

export function setProgress(done, total) {
  const bar = document.querySelector("[data-testid=progress]");
  const fraction = total > 0 ? Math.min(1, done / total) : 0;
  bar.setAttribute("aria-valuemax", String(total));
  bar.setAttribute("aria-valuenow", String(done));
  bar.setAttribute("aria-valuetext", `${done} of ${total} trials done`);
  bar.querySelector(".progress-fill").style.width = `${(fraction * 100).toFixed(1)}%`;
  document.getElementById("topbar").hidden = false;
}

export function setScore(text) {
  const score = document.getElementById("score");
  score.hidden = text === null;
  score.textContent = text || "";
}

/** The "reconnecting" note: shown while any request is being retried. */
export const connection = {
  failing: new Set(),
  pending: 0,
  set(source, isFailing) {
    if (isFailing) this.failing.add(source);
    else this.failing.delete(source);
    this.render();
  },
  setPending(count) {
    this.pending = count;
    this.render();
  },
  render() {
    const note = document.getElementById("connection");
    if (this.failing.size === 0) {
      note.hidden = true;
      return;
    }
    const waiting = this.pending > 0
      ? ` ${this.pending} answer${this.pending === 1 ? " is" : "s are"} saved on this device and will be sent.`
      : "";
    note.textContent = `Reconnecting…${waiting} Please keep this page open.`;
    note.hidden = false;
  },
};
