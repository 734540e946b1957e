// A live study's page follows its data (issue 23: results "live while the study runs").
// Every POLL_MS it asks the admin API how many sessions and responses there are (a cheap
// count); only when that changed does it re-read this page and swap in the new counts line
// and results. No full reload: the scroll position and anything typed elsewhere stay.
const POLL_MS = 5000;
const status = document.querySelector('[data-testid="live-status"]');
const counts = () => document.querySelector('[data-testid="study-counts"]');

const shown = () => {
  const line = counts();
  return `${line.dataset.started}/${line.dataset.completed}/${line.dataset.responses}`;
};

async function swapInFreshResults() {
  const page = await fetch(window.location.href, { credentials: "same-origin" });
  if (!page.ok) return;
  const fresh = new DOMParser().parseFromString(await page.text(), "text/html");
  for (const id of ["study-counts", "live-results"]) {
    const incoming = fresh.querySelector(`[data-testid="${id}"]`);
    const here = document.querySelector(`[data-testid="${id}"]`);
    if (incoming && here) here.replaceWith(document.adoptNode(incoming));
  }
}

async function poll() {
  try {
    if (document.visibilityState === "visible") {
      const reply = await fetch(`/api/admin/studies/${status.dataset.slug}/counts`, {
        credentials: "same-origin",
      });
      if (reply.ok) {
        const now = await reply.json();
        if (`${now.started}/${now.completed}/${now.responses}` !== shown()) {
          await swapInFreshResults();
        }
        status.textContent =
          `Updates by itself while the study is live · checked ${new Date().toLocaleTimeString()}`;
      }
    }
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

if (status && counts()) setTimeout(poll, POLL_MS);
