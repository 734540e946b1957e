"""Issue 24: several app processes on one PostgreSQL database behave like one.

Two real `psychinterp serve` commands (one of them with `--workers 2`, so three app
processes) serve one live study; simulated participants drive both ports at once, the same
answer is sent to both processes at the same moment, and the same Prolific participant
arrives at both. No place is given twice and no response is stored twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from server.config import Settings
from server.db.models import ParticipantSession, Response, Study
from server.db.session import session_scope
from tests.conftest import POSTGRES_URL, _postgres_database

ROOT = Path(__file__).parents[1]
SECRET = "scale-test-secret"


def test_workers_above_one_refuse_sqlite(tmp_path: Path) -> None:
    from server.cli import app

    result = CliRunner().invoke(
        app,
        ["serve", "--workers", "2", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"],
    )
    assert result.exit_code == 1
    assert "--workers 2 needs PostgreSQL" in result.output


def _serve(url: str, data_dir: Path, port: int, log: Path, workers: int) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).with_name("psychinterp")),
        "serve",
        "--no-worker",
        "--port",
        str(port),
        "--database-url",
        url,
        "--data-dir",
        str(data_dir),
        "--workers",
        str(workers),
    ]
    env = os.environ | {
        "PSYCHINTERP_SECRET_KEY": SECRET,
        "PSYCHINTERP_SESSION_STARTS_PER_ADDRESS": "100000",
        "PSYCHINTERP_SESSION_STARTS_PER_STUDY": "100000",
    }
    return subprocess.Popen(
        command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait_ready(process: subprocess.Popen, base: str, log: Path) -> None:
    began = time.monotonic()
    while time.monotonic() - began < 180:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} did not answer: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    """(factory, slug, [url_a, url_b]) for a live fast study on a fresh PostgreSQL database."""
    if not POSTGRES_URL:
        pytest.skip("needs PSYCHINTERP_TEST_POSTGRES_URL (several processes need PostgreSQL)")
    from server.db.migrate import upgrade_database
    from server.db.session import make_engine, make_session_factory
    from server.studies.service import ensure_live_study
    from server.studies.simulate import free_port

    workdir = tmp_path_factory.mktemp("scale")
    urls = _postgres_database()
    url = next(urls)
    config = yaml.safe_load((ROOT / "studies/imi-demo.yaml").read_text())
    config["slug"] = f"scale-{uuid.uuid4().hex[:8]}"
    config["conditions"] = ["natural", "none"]
    config["generation"]["fv"] = {"enabled": False}
    study_file = workdir / "study.yaml"
    study_file.write_text(yaml.safe_dump(config, sort_keys=False))
    data_dir = workdir / "data"
    settings = Settings(database_url=url, data_dir=data_dir, secret_key=SECRET)
    upgrade_database(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    slug = ensure_live_study(factory, settings, str(study_file))
    ports = [free_port(), free_port()]
    logs = [workdir / "a.log", workdir / "b.log"]
    processes = [
        _serve(url, data_dir, ports[0], logs[0], workers=1),
        _serve(url, data_dir, ports[1], logs[1], workers=2),
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for process, base, log in zip(processes, bases, logs, strict=True):
            _wait_ready(process, base, log)
        yield factory, slug, bases, logs
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, 15)
                process.wait(timeout=30)
        engine.dispose()
        next(urls, None)


@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_participants_on_two_servers(two_servers) -> None:
    from server.studies.simulate import run_simulation

    factory, slug, bases, logs = two_servers
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [
            pool.submit(
                run_simulation,
                base,
                slug,
                6,
                "oracle",
                concurrency=3,
                drop_rate=0.2,  # a lost ack is sent again: stored once
                seed=i,
                session_factory=factory,
            )
            for i, base in enumerate(bases)
        ]
        results = [run.result() for run in runs]
    session_ids = [s for r in results for s in r.session_ids]
    with session_scope(factory) as db:
        study_id = db.scalar(select(Study.id).where(Study.slug == slug))
        claims = list(
            db.scalars(
                select(ParticipantSession.design_claim).where(
                    ParticipantSession.study_id == study_id
                )
            )
        )
        stored_keys = list(
            db.scalars(select(Response.idempotency_key).where(Response.session_id.in_(session_ids)))
        )
        per_trial = db.execute(
            select(Response.session_id, Response.trial_id, func.count())
            .where(Response.session_id.in_(session_ids))
            .group_by(Response.session_id, Response.trial_id)
            .having(func.count() > 1)
        ).all()
    assert sum(r.completed for r in results) == 12
    assert len(claims) == len(set(claims)) == 12  # no place given twice
    assert sorted(claims) == list(range(12))  # and none skipped
    acknowledged = set().union(*(r.acknowledged_keys for r in results))
    assert len(stored_keys) == len(set(stored_keys)) == len(acknowledged)
    assert set(stored_keys) == acknowledged
    assert per_trial == []
    assert all(r.duplicates == 0 for r in results)
    for log in logs:
        assert '" 500 ' not in log.read_text(errors="replace")


@pytest.mark.postgres
@pytest.mark.slow
def test_same_arrival_and_same_answer_at_both_servers(two_servers) -> None:
    """One Prolific participant opens the link in two processes at once; the browser's
    retry queue sends one answer to both at once: one session, one response."""
    factory, slug, bases, _logs = two_servers
    worker = f"both-{uuid.uuid4().hex[:8]}"
    body = {"PROLIFIC_PID": worker, "STUDY_ID": "s", "SESSION_ID": worker, "client": {}}
    barrier = threading.Barrier(2)

    def start(base: str) -> httpx.Response:
        barrier.wait()
        return httpx.post(f"{base}/api/v1/studies/{slug}/sessions", json=body, timeout=30)

    with ThreadPoolExecutor(max_workers=2) as pool:
        starts = list(pool.map(start, bases))
    assert all(reply.status_code in (200, 201) for reply in starts), [r.text for r in starts]
    session_id = starts[0].json()["session_id"]
    assert starts[1].json()["session_id"] == session_id
    # The later start replaced the token (resume): the latest reply's token is the valid one.
    token = next(
        r.json()["token"]
        for r in starts
        if httpx.get(
            f"{bases[0]}/api/v1/sessions/{session_id}/trials/next",
            headers={"Authorization": f"Bearer {r.json()['token']}"},
            timeout=30,
        ).status_code
        == 200
    )
    headers = {"Authorization": f"Bearer {token}"}
    trial = httpx.get(
        f"{bases[1]}/api/v1/sessions/{session_id}/trials/next", headers=headers, timeout=30
    ).json()
    answer = {
        "trial_id": trial["trial_id"],
        "choice": "a",
        "confidence": 2,
        "rt_ms": 900.0,
        "idempotency_key": uuid.uuid4().hex,
        "client_sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    barrier = threading.Barrier(2)

    def send(base: str) -> httpx.Response:
        barrier.wait()
        return httpx.post(
            f"{base}/api/v1/sessions/{session_id}/responses",
            json=answer,
            headers=headers,
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        replies = list(pool.map(send, bases))
    assert sorted(r.status_code for r in replies) == [200, 201], [r.text for r in replies]
    with session_scope(factory) as db:
        n_sessions = db.scalar(select(func.count()).where(ParticipantSession.id == session_id))
        n_responses = db.scalar(
            select(func.count()).where(Response.idempotency_key == answer["idempotency_key"])
        )
    assert (n_sessions, n_responses) == (1, 1)
