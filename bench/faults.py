"""Fault injection: no acknowledged answer is lost or stored twice when the server is killed.

Sets up a generated demo study (studies/imi-demo.yaml with natural + none and no feature
visualizations, under a fresh slug) in DATABASE_URL, starts the real `psychinterp serve` in a
subprocess, and runs `simulate`'s participants against it: 200 participants, 50 at a time,
5% of acknowledgements dropped (the client sends the answer again with the same idempotency
key, as the browser's queue does). Meanwhile it kills the server's whole process group
(server and SQLite writer process) with SIGKILL twice, at a third and two thirds of the
expected answers, and starts it again on the same port; participants retry through the
outage. Then it compares what the server acknowledged with what is stored:

    acknowledged=… stored=… lost=… duplicates=… kills=2 completed=… http_500=… seconds=…

lost: acknowledged idempotency keys with no stored row. duplicates: keys acknowledged as
created twice, plus stored rows beyond the acknowledged ones. http_500: server errors in the
server's log (clients retry them, but each is a bug). Goal: all three 0, on
SQLite (default: a fresh file) and PostgreSQL (`--database-url postgresql+psycopg://...`).

    python bench/faults.py [--database-url URL] [--participants 200] [--concurrency 50]
        [--drop-rate 0.05] [--kills 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
SECRET = "faults-bench"  # the same key across restarts: tokens and image URLs stay valid


def write_study(workdir: Path) -> Path:
    """The fast demo study under a slug of its own (a PostgreSQL database may be reused)."""
    config = yaml.safe_load((ROOT / "studies/imi-demo.yaml").read_text())
    config["slug"] = f"faults-{uuid.uuid4().hex[:8]}"
    config["conditions"] = ["natural", "none"]
    config["generation"]["fv"] = {"enabled": False}
    path = workdir / "faults-study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Server:
    """`psychinterp serve` in a process group of its own, killed and restarted on demand."""

    def __init__(self, database_url: str, data_dir: str, port: int, log: Path) -> None:
        self.command = [
            str(Path(sys.executable).with_name("psychinterp")),
            "serve",
            "--port",
            str(port),
            "--database-url",
            database_url,
            "--data-dir",
            data_dir,
        ]
        # A load test from one address: raise the per-address session-start limit.
        self.env = os.environ | {
            "PSYCHINTERP_SECRET_KEY": SECRET,
            "PSYCHINTERP_SESSION_STARTS_PER_ADDRESS": "100000",
            "PSYCHINTERP_SESSION_STARTS_PER_STUDY": "100000",
        }
        self.url = f"http://127.0.0.1:{port}"
        self.log = log.open("ab")
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        """Start and wait until it answers; the seconds that took."""
        began = time.monotonic()
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while time.monotonic() - began < 120:
            if self.process.poll() is not None:
                raise SystemExit(f"psychinterp serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - began
            except httpx.TransportError:
                time.sleep(0.1)
        raise SystemExit("psychinterp serve did not answer within 120 s")

    def kill(self) -> None:
        """SIGKILL to the server and every process it started (the SQLite writer)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        self.log.close()


def stored_count(engine, slug: str) -> int:
    from sqlalchemy import func, select

    from server.db.models import ParticipantSession, Response, Study

    with engine.connect() as connection:
        return connection.scalar(
            select(func.count(Response.id))
            .join(ParticipantSession, ParticipantSession.id == Response.session_id)
            .join(Study, Study.id == ParticipantSession.study_id)
            .where(Study.slug == slug)
        )


def killer(server: Server, engine, slug: str, expected: int, kills: int, log: list) -> None:
    """Kill the server at 1/(kills+1), 2/(kills+1), ... of the expected answers; restart."""
    for k in range(1, kills + 1):
        while stored_count(engine, slug) < expected * k / (kills + 1):
            time.sleep(0.1)
        at = stored_count(engine, slug)
        server.kill()
        log.append((at, server.start()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument(
        "--data-dir", default=str(Path(tempfile.gettempdir()) / "psychinterp-faults")
    )
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--drop-rate", type=float, default=0.05)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from sqlalchemy import func, select

    from server.config import Settings
    from server.db.migrate import upgrade_database
    from server.db.models import Response
    from server.db.session import make_engine, make_session_factory, session_scope
    from server.studies.service import ensure_live_study
    from server.studies.simulate import free_port, run_simulation

    workdir = Path(tempfile.mkdtemp(prefix="faults-"))
    database_url = args.database_url or f"sqlite:///{workdir / 'faults.db'}"
    settings = Settings(database_url=database_url, data_dir=args.data_dir, secret_key=SECRET)
    print(f"preparing the study in {database_url.split('@')[-1]}...", file=sys.stderr)
    upgrade_database(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    slug = ensure_live_study(factory, settings, str(write_study(workdir)))

    server = Server(database_url, args.data_dir, free_port(), workdir / "server.log")
    server.start()
    try:
        n_trials = httpx.get(f"{server.url}/api/v1/studies/{slug}").json()["n_trials"]
        kills: list[tuple[int, float]] = []
        thread = threading.Thread(
            target=killer,
            args=(server, engine, slug, args.participants * n_trials, args.kills, kills),
            daemon=True,
        )
        began = time.monotonic()
        thread.start()
        result = run_simulation(
            server.url,
            slug,
            args.participants,
            "oracle",  # passes the practice block, so every participant answers every trial
            concurrency=args.concurrency,
            drop_rate=args.drop_rate,
            seed=args.seed,
            session_factory=factory,
        )
        seconds = time.monotonic() - began
        thread.join(timeout=300)
    finally:
        server.stop()
    with session_scope(factory) as db:
        stored_keys = set(
            db.scalars(
                select(Response.idempotency_key).where(Response.session_id.in_(result.session_ids))
            )
        )
        stored = db.scalar(
            select(func.count(Response.id)).where(Response.session_id.in_(result.session_ids))
        )
    lost = len(result.acknowledged_keys - stored_keys)
    # The clients retried them, but a 500 is a bug (a 503 from the restarting writer is not).
    errors_500 = (workdir / "server.log").read_text(errors="replace").count('" 500 ')
    for i, (at, restart_s) in enumerate(kills, 1):
        print(f"kill {i}: SIGKILL at {at} stored answers, restarted in {restart_s:.1f} s")
    print(
        f"acknowledged={result.acknowledged} stored={stored} lost={lost} "
        f"duplicates={result.duplicates} kills={len(kills)} completed={result.completed} "
        f"sent={result.sent} http_500={errors_500} seconds={seconds:.0f}"
    )
    if lost or result.duplicates or errors_500 or len(kills) < args.kills:
        sys.exit(1)


if __name__ == "__main__":
    main()
