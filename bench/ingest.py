"""Response ingest speed: the real server (uvicorn, SQLite WAL) vs a trivial echo route.

Sets up the fast demo study, creates sessions in-process, starts the server in a
subprocess on 127.0.0.1 (uvloop, httptools, no access log), then C keep-alive clients POST
responses for a bounded time, and the same bodies to an echo route of the same app
(registered after the product's routes), alternating in short rounds so that both see
the same machine. Rates are over the time actually used; the server's CPU time per request
is printed too (the server process, and SQLite's writer process apart). Prints
`responses_per_s=… p99_ms=… ratio_vs_echo=…` (goal on 2 cores: ≥1000/s, p99 < 50 ms, ≥ 0.5).
Then C clients start sessions all at once (new Prolific participants) and it prints
`session_starts=… p50_ms=… p99_ms=… p99_vs_echo_p99=…` (issue 25 goal: p99 < 200 ms at 16).

    python bench/ingest.py [--seconds 10] [--concurrency 16] [--sessions 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from fastapi import Request

ROOT = Path(__file__).resolve().parents[1]


def build_app(database_url: str, data_dir: str):
    """The product app plus one echo route (the framework's floor, same process)."""
    from server.app import create_app
    from server.config import Settings

    # Every client is 127.0.0.1: session-start limits out of the way (they are tested).
    settings = Settings(
        database_url=database_url,
        data_dir=data_dir,
        secret_key="bench",
        session_starts_per_address=10**9,
        session_starts_per_study=10**9,
    )
    app = create_app(settings)

    @app.post("/bench/echo", status_code=201)
    async def echo(request: Request) -> dict:
        return {"recorded": True, "bytes": len(await request.body())}

    return app


def prepare(database_url: str, data_dir: str, n_sessions: int) -> list[tuple[str, str, list]]:
    """A live study and sessions: (session id, token, trial ids in order) each."""
    from datetime import UTC, datetime

    from sqlalchemy import select, update

    from server.config import Settings
    from server.db.migrate import upgrade_database
    from server.db.models import Assignment
    from server.db.session import make_engine, make_session_factory, session_scope
    from server.studies.service import create_study, generate_study, launch_study
    from server.studies.sessions import start_session

    config = yaml.safe_load((ROOT / "studies/imi-demo.yaml").read_text())
    config["conditions"] = ["natural", "none"]
    config["generation"]["fv"] = {"enabled": False}
    settings = Settings(database_url=database_url, data_dir=data_dir, secret_key="bench")
    upgrade_database(database_url)
    factory = make_session_factory(make_engine(database_url))
    with session_scope(factory) as db:
        study = create_study(db, settings, yaml.safe_dump(config), "bench.yaml")
        generate_study(db, settings, study)
        launch_study(db, study)
    sessions = []
    for i in range(n_sessions):
        with session_scope(factory) as db:
            body, _ = start_session(db, "bench", "imi-demo", {"PROLIFIC_PID": f"b{i}"}, {})
            # Only trials already shown can be answered (issue 25): these were "shown".
            db.execute(
                update(Assignment)
                .where(Assignment.session_id == body["session_id"])
                .values(served_at=datetime.now(UTC))
            )
            trials = db.scalars(
                select(Assignment.trial_id)
                .where(Assignment.session_id == body["session_id"], Assignment.attempt == 0)
                .order_by(Assignment.position)
            ).all()
        sessions.append((body["session_id"], body["token"], list(trials)))
    return sessions


async def _post(reader, writer, path: str, token: str, body: bytes) -> int:
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status


@dataclass
class Phase:
    """What one route got over all rounds: acknowledged POSTs, seconds used, latencies."""

    count: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    child_cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.seconds


async def drive(
    port: int, work: list, concurrency: int, seconds: float, echo_bodies: list | None = None
) -> Phase:
    """C clients POST for `seconds`; returns the acknowledged count, time used, latencies.

    `work` is a stack of (session id, token, trials left) shared across rounds: a session
    cut off by the deadline goes back with the trials it has left, since each trial can be
    answered once. The echo (`echo_bodies` given) stores nothing and cycles through those.
    The time is the time actually used: if the sessions run out first, dividing by
    `seconds` would understate it.
    """
    echo = echo_bodies is not None
    latencies: list[float] = []
    failures: list[int] = []
    started = time.perf_counter()
    deadline = started + seconds
    borrowed = list(echo_bodies) if echo_bodies is not None else work

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            if not borrowed:
                if not echo:
                    break
                borrowed.extend(echo_bodies)
            session_id, token, trials = borrowed.pop()
            path = "/bench/echo" if echo else f"/api/v1/sessions/{session_id}/responses"
            for i, trial_id in enumerate(trials):
                if time.perf_counter() >= deadline:
                    if not echo:
                        work.append((session_id, token, trials[i:]))
                    break
                body = json.dumps(
                    {
                        "trial_id": trial_id,
                        "choice": "a",
                        "confidence": 2,
                        "rt_ms": 900.0,
                        "idempotency_key": uuid.uuid4().hex,
                        "client_sent_at": "2024-01-01T00:00:00Z",
                    }
                ).encode()
                start = time.perf_counter()
                status = await _post(reader, writer, path, token, body)
                latencies.append((time.perf_counter() - start) * 1000)
                if status not in (200, 201):
                    failures.append(status)
        writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. HTTP {failures[0]}")
    if not echo and elapsed < seconds:
        print(f"all sessions answered after {elapsed:.1f} s: raise --sessions", file=sys.stderr)
    return Phase(count=len(latencies), seconds=elapsed, latencies=latencies)


async def drive_starts(port: int, concurrency: int, per_client: int) -> list[float]:
    """C clients each start `per_client` sessions, all at once: latencies in ms (issue 25:
    16 parallel starts, p99 < 200 ms). Each start is a new Prolific participant."""
    latencies: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(per_client):
            body = json.dumps({"PROLIFIC_PID": uuid.uuid4().hex, "client": {}}).encode()
            start = time.perf_counter()
            status = await _post(reader, writer, "/api/v1/studies/imi-demo/sessions", "", body)
            latencies.append((time.perf_counter() - start) * 1000)
            if status != 201:
                raise SystemExit(f"session start failed: HTTP {status}")
        writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


def run_rounds(port: int, pid: int, sessions: list, args: argparse.Namespace) -> dict[bool, Phase]:
    """Alternate responses and echo in short rounds, so that both see the same machine.

    On a shared machine the speed drifts by tens of percent within a minute; two long
    phases one after the other would turn that drift into the ratio.
    """
    work = [(sid, token, list(trials)) for sid, token, trials in reversed(sessions)]
    echo_bodies = list(work)
    # Warm-up, not counted: first requests pay one-off costs (the writer process starts,
    # statements compile, caches fill). Its sessions are not used again.
    warm_up = [work.pop() for _ in range(min(args.concurrency * 4, len(work) // 10))]
    for bodies in (None, echo_bodies):
        asyncio.run(drive(port, warm_up, args.concurrency, 0.5, bodies))
    phases = {False: Phase(), True: Phase()}
    for _ in range(args.rounds):
        for echo in (False, True):
            before, before_children = _server_cpu_s(pid)
            seconds = args.seconds / args.rounds
            bodies = echo_bodies if echo else None
            got = asyncio.run(drive(port, work, args.concurrency, seconds, bodies))
            phase = phases[echo]
            after, after_children = _server_cpu_s(pid)
            phase.cpu_s += after - before
            phase.child_cpu_s += after_children - before_children
            phase.count += got.count
            phase.seconds += got.seconds
            phase.latencies += got.latencies
    return phases


def _server_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by the server process, and by its
    descendants (SQLite's writer process, forked by multiprocessing's forkserver)."""
    stats = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process has gone (its file reads empty)
            continue
        ticks = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        stats[int(stat.parent.name)] = (int(fields[1]), ticks)  # parent pid, CPU seconds
    descendants, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (parent, _) in stats.items() if parent in frontier} - descendants
        descendants |= frontier
    return stats[pid][1], sum(stats[p][1] for p in descendants)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sessions", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the two routes")
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument("--starts-per-client", type=int, default=8, help="session-start phase")
    parser.add_argument(
        "--data-dir", default=str(Path(tempfile.gettempdir()) / "psychinterp-bench")
    )
    parser.add_argument("--serve", nargs=2, metavar=("DATABASE_URL", "DATA_DIR"), help="internal")
    args = parser.parse_args()
    if args.serve:
        import uvicorn

        app = build_app(*args.serve)
        uvicorn.run(
            app,
            host="127.0.0.1",
            port=args.port,
            loop="uvloop",
            http="httptools",
            log_level="warning",
            access_log=False,
        )
        return

    from server.studies.simulate import free_port

    args.port = args.port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="ingest-"))
    database_url = f"sqlite:///{workdir / 'bench.db'}"
    print(f"preparing study and {args.sessions} sessions...", file=sys.stderr)
    sessions = prepare(database_url, args.data_dir, args.sessions)
    server = subprocess.Popen(
        [sys.executable, __file__, "--port", str(args.port), "--serve", database_url, args.data_dir]
    )
    try:
        import httpx

        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{args.port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        phases = run_rounds(args.port, server.pid, sessions, args)
        starts = asyncio.run(drive_starts(args.port, args.concurrency, args.starts_per_client))
    finally:
        server.terminate()
        server.wait(timeout=10)
    ours, echo = phases[False], phases[True]
    print(
        f"server_cpu_us_per_request responses={ours.cpu_s / ours.count * 1e6:.0f} "
        f"echo={echo.cpu_s / echo.count * 1e6:.0f} "
        f"writer_process={ours.child_cpu_s / ours.count * 1e6:.0f} rounds={args.rounds}"
    )
    print(
        f"responses_per_s={ours.rate:.0f} p99_ms={p99(ours.latencies):.1f} "
        f"echo_per_s={echo.rate:.0f} echo_p99_ms={p99(echo.latencies):.1f} "
        f"ratio_vs_echo={ours.rate / echo.rate:.2f} concurrency={args.concurrency}"
    )
    print(
        f"session_starts={len(starts)} parallel={args.concurrency} "
        f"p50_ms={sorted(starts)[len(starts) // 2]:.1f} p99_ms={p99(starts):.1f} "
        f"p99_vs_echo_p99={p99(starts) / p99(echo.latencies):.1f}"
    )


if __name__ == "__main__":
    main()
