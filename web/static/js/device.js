// Device check: phones and tablets are turned away unless the study allows them, and a
// window too small for the layout is covered by a message until it is enlarged.

export function isMobileDevice() {
  if (navigator.userAgentData && typeof navigator.userAgentData.mobile === "boolean") {
    if (navigator.userAgentData.mobile) return true;
  }
  if (/Android|iPhone|iPad|iPod|Mobile|Silk|Opera Mini/i.test(navigator.userAgent)) return true;
  // iPadOS reports a desktop UA; a coarse-only pointer without hover gives it away.
  return window.matchMedia("(pointer: coarse)").matches && !window.matchMedia("(any-pointer: fine)").matches;
}

function windowFits(min) {
  return window.innerWidth >= min.width && window.innerHeight >= min.height;
}

/**
 * Keep the window-size overlay in sync with the window; `onChange(tooSmall)` reports
 * changes (recorded as events). Returns a promise that resolves once the window fits.
 */
export function watchWindowSize(min, onChange = () => {}) {
  const overlay = document.getElementById("window-overlay");
  const text = document.getElementById("window-overlay-text");
  let tooSmall = null;
  let waiters = [];
  const update = () => {
    const small = !windowFits(min);
    text.textContent = `This study needs a browser window of at least ${min.width} × ${min.height} pixels; `
      + `yours is ${window.innerWidth} × ${window.innerHeight}. Please make the window larger `
      + "(or zoom out with Ctrl and −). The study continues when it fits.";
    overlay.hidden = !small;
    if (small !== tooSmall) {
      if (tooSmall !== null) onChange(small);
      tooSmall = small;
    }
    if (!small) {
      waiters.forEach((resolve) => resolve());
      waiters = [];
    }
  };
  window.addEventListener("resize", update);
  update();
  return {
    fits: () => (windowFits(min) ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve))),
  };
}
