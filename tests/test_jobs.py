"""Background jobs: the queue's states, dead workers reaped, and a killed generation resumed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from server.config import Settings
from server.db.migrate import upgrade_database
from server.db.models import Job, Stimulus, Unit
from server.db.session import make_engine, make_session_factory, session_scope
from server.errors import AppError, Conflict
from server.jobs import service
from server.jobs.local import LocalRunner
from server.jobs.runner import work_once

JOB_STUDY = Path(__file__).with_name("job_study.yaml")


@pytest.fixture
def factory(database_url):
    upgrade_database(database_url)
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def test_submit_claim_cancel_reap_resume(factory):
    with session_scope(factory) as db:
        with pytest.raises(AppError, match="unknown job kind 'nope': use one of generate_study"):
            service.submit_job(db, "nope", {})
        with pytest.raises(AppError, match="needs params"):
            service.submit_job(db, "generate_study", {})
        first = service.submit_job(db, "generate_study", {"slug": "a"}, created_by="lead@lab.org")
        second = service.submit_job(db, "generate_study", {"slug": "b"})
        assert first.status == "queued" and service.job_view(first)["resumable"] is False
    with session_scope(factory) as db:
        claimed = service.claim_next_job(db, "elsewhere:1")
        assert claimed.id == first.id and claimed.status == "running" and claimed.attempts == 1
        service.cancel_job(db, claimed)
        assert claimed.cancel_requested and claimed.status == "running"
        service.cancel_job(db, db.get(Job, second.id))
        assert db.get(Job, second.id).status == "cancelled"
        assert service.claim_next_job(db, "elsewhere:2") is None  # nothing queued any more
    with session_scope(factory) as db:
        # A worker on another host is only declared dead once its heartbeat is stale.
        assert service.reap_dead_jobs(db) == []
        db.get(Job, first.id).heartbeat_at = datetime.now(UTC) - timedelta(minutes=5)
        (dead,) = service.reap_dead_jobs(db)
        assert dead.status == "failed" and "no heartbeat from worker elsewhere:1" in dead.error
        assert "resume" in dead.error
        with pytest.raises(Conflict, match="only queued or running"):
            service.cancel_job(db, dead)
        service.resume_job(db, dead)
        assert dead.status == "queued" and dead.error is None
        with pytest.raises(Conflict, match="only failed or cancelled"):
            service.resume_job(db, dead)
        again = service.claim_next_job(db, "elsewhere:3")
        assert again.id == first.id and again.attempts == 2


def _wait_for(predicate, what: str, timeout_s: float = 600):
    """Poll until `predicate()` is truthy (a guard against hanging, not a speed limit)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _stimuli(db, stimulus_set_id: str) -> list[tuple]:
    rows = db.execute(
        select(Unit.layer, Unit.index, Stimulus.role, Stimulus.source, Stimulus.batch,
               Stimulus.rank, Stimulus.image_sha256)
        .join(Unit, Unit.id == Stimulus.unit_id)
        .where(Stimulus.stimulus_set_id == stimulus_set_id)
    )  # fmt: skip
    return sorted(tuple(row) for row in rows)


def test_killed_worker_job_resumes_to_the_same_stimulus_hashes(tmp_path):
    from server.stimuli.generate import fv_chunk_cache
    from server.studies.service import create_study, get_study, study_config

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = Settings(database_url=url, data_dir=tmp_path / "data", secret_key="test-key")
    upgrade_database(url)
    factory = make_session_factory(make_engine(url))
    text = JOB_STUDY.read_text()
    with session_scope(factory) as db:
        reference = create_study(db, settings, text, "job_study.yaml")
        resumed = create_study(db, settings, text.replace("slug: jobs", "slug: jobs-b"), "b.yaml")
        reference_job = service.submit_job(db, "generate_study", {"slug": "jobs"}, reference.id)
        cache = fv_chunk_cache(settings, study_config(reference).generation).directory

    # Uninterrupted: the reference hashes.
    assert work_once(factory, settings, "test:reference") == "succeeded"
    with session_scope(factory) as db:
        job = db.get(Job, reference_job.id)
        assert (
            job.status == "succeeded" and job.progress == job.total and job.step == "store images"
        )
        for step in ("load model", "activations", "exemplars", "visualizations", "store images"):
            assert f"{step}: started" in job.log_tail, step
        expected = _stimuli(db, job.result["stimulus_set_id"])
        job = service.submit_job(db, "generate_study", {"slug": "jobs-b"}, resumed.id)
    assert expected and not cache.exists()  # the FV cache only lives until the set is stored

    # A worker process, killed while it renders feature visualizations.
    runner = LocalRunner(settings, poll_s=0.2)
    runner.start()
    _wait_for(lambda: cache.is_dir() and any(cache.glob("*.pkl")), "a finished FV chunk")
    with session_scope(factory) as db:
        assert db.get(Job, job.id).step == "visualizations"
    runner.process.kill()
    runner.process.join()

    # The next worker finds the job's worker dead, marks it failed and says why.
    runner = LocalRunner(settings, poll_s=0.2)
    runner.start()
    try:

        def failed():
            with session_scope(factory) as db:
                row = db.get(Job, job.id)
                return row if row.status == "failed" else None

        dead = _wait_for(failed, "the dead worker's job to be marked failed")
        assert "died during visualizations" in dead.error and "resume" in dead.error
        with session_scope(factory) as db:
            service.resume_job(db, db.get(Job, job.id))

        def finished():
            with session_scope(factory) as db:
                row = db.get(Job, job.id)
                return row if row.status in service.FINISHED else None

        done = _wait_for(finished, "the resumed job")
    finally:
        runner.stop()
    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and "finished feature-visualization chunk(s) cached" in done.log_tail
    with session_scope(factory) as db:
        assert _stimuli(db, done.result["stimulus_set_id"]) == expected
        assert get_study(db, "jobs-b").stimulus_set_id == done.result["stimulus_set_id"]


def test_running_job_stops_at_its_next_report_when_cancelled(factory, tmp_path):
    """A kind is a function + params: this one counts until its job is cancelled."""
    from server.jobs.kinds import register_job_kind

    def count(context, params):
        for done in range(params["n"]):
            if done == 3:
                with session_scope(factory) as db:  # the researcher presses Cancel
                    service.cancel_job(db, db.get(Job, context.job_id))
            context.progress("counting", done, params["n"])
            time.sleep(0.01)  # work; reports are written (and cancels seen) every 0.5 s
        return {"counted": params["n"]}

    register_job_kind("count", count, lambda params: {"n": int(params["n"])})
    settings = Settings(database_url="sqlite://", data_dir=tmp_path, secret_key="k")
    with session_scope(factory) as db:
        job = service.submit_job(db, "count", {"n": "1000"})
    assert work_once(factory, settings, "test:1") == "cancelled"
    with session_scope(factory) as db:
        row = db.get(Job, job.id)
        assert row.status == "cancelled" and row.result is None and row.progress < 999
        assert "counting: started (1000 units)" in row.log_tail
        assert service.job_view(row)["resumable"]


def _process_gone(pid: int) -> bool:
    """Exited (no such process, or a zombie nobody has reaped yet)."""
    return not Path(f"/proc/{pid}").exists() or service._is_zombie(pid)


def test_servers_worker_exits_when_the_server_is_killed(tmp_path):
    """`psychinterp serve` starts a job worker; a server killed with SIGKILL runs no shutdown,
    and its worker used to stay behind, polling the database for ever."""
    import os
    import signal
    import subprocess
    import sys

    server = (
        "import time\n"
        "from server.config import Settings\n"
        "from server.jobs.local import LocalRunner\n"
        f"settings = Settings(database_url='sqlite:///{tmp_path / 'w.db'}', "
        f"data_dir='{tmp_path}', secret_key='k')\n"
        "runner = LocalRunner(settings, poll_s=0.2)\n"
        "runner.start()\n"
        "print(runner.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert not _process_gone(worker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=60)
        _wait_for(lambda: _process_gone(worker), "the orphaned worker to exit", timeout_s=120)
    finally:
        parent.kill()
        parent.wait()
