// Follows the study page's generation job: polls the admin API while it is queued or running,
// updates the panel, and reloads the page once the job ends (trials, buttons and results change).
const panel = document.querySelector('[data-testid="job"]');
const ACTIVE = new Set(["queued", "running"]);

function show(job) {
  const text = (id, value) => { panel.querySelector(`[data-testid="${id}"]`).textContent = value; };
  text("job-status", job.status);
  text("job-step", job.step);
  text("job-count", `${job.done}/${job.total}`);
  text("job-eta", job.eta_s == null ? "" : `ETA ${Math.round(job.eta_s)} s`);
  text("job-log", job.log_tail);
  const bar = panel.querySelector('[data-testid="job-progress"]');
  bar.max = job.total || 1;
  bar.value = job.done;
}

async function poll() {
  const response = await fetch(`/api/admin/jobs/${panel.dataset.jobId}`, { credentials: "same-origin" });
  if (!response.ok) return;
  const job = await response.json();
  show(job);
  if (ACTIVE.has(job.status)) setTimeout(poll, 1000);
  else window.location.reload();
}

if (panel && ACTIVE.has(panel.dataset.jobStatus)) setTimeout(poll, 1000);
