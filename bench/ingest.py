"""Response ingest speed: the real server (uvicorn, SQLite WAL) vs a trivial echo route.

Sets up the fast demo study, creates sessions in-process, starts the server in a
subprocess on 127.0.0.1 (uvloop, httptools, no access log), then C keep-alive clients POST
responses for a bounded time, and the same bodies to an echo route of the same app
(registered after the product's routes). Rates are over the time actually used. Prints
`responses_per_s=… p99_ms=… ratio_vs_echo=…` (goal on 2 cores: ≥1000/s, p99 < 50 ms, ≥ 0.5).

    python bench/ingest.py [--seconds 10] [--concurrency 16] [--sessions 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from fastapi import Request

ROOT = Path(__file__).resolve().parents[1]


def build_app(database_url: str, data_dir: str):
    """The product app plus one echo route (the framework's floor, same process)."""
    from server.app import create_app
    from server.config import Settings

    app = create_app(Settings(database_url=database_url, data_dir=data_dir, secret_key="bench"))

    @app.post("/bench/echo", status_code=201)
    async def echo(request: Request) -> dict:
        return {"recorded": True, "bytes": len(await request.body())}

    return app


def prepare(database_url: str, data_dir: str, n_sessions: int) -> list[tuple[str, str, list]]:
    """A live study and sessions: (session id, token, trial ids in order) each."""
    from sqlalchemy import select

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


async def drive(port: int, sessions, concurrency: int, seconds: float, echo: bool):
    """(acknowledged POSTs per second, latencies in ms) over `seconds` of C clients.

    The rate is over the time actually used: if the sessions' trials run out first (each
    can be answered once), dividing by `seconds` would understate it. The echo stores
    nothing, so it reuses the sessions' bodies and never runs out.
    """
    queue = list(reversed(sessions))
    latencies: list[float] = []
    failures: list[int] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            if not queue:
                if not echo:
                    break
                queue.extend(reversed(sessions))
            session_id, token, trials = queue.pop()
            path = "/bench/echo" if echo else f"/api/v1/sessions/{session_id}/responses"
            for trial_id in trials:
                if time.perf_counter() >= deadline:
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
    return len(latencies) / elapsed, latencies


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sessions", type=int, default=1500)
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
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
        rate, lat = asyncio.run(drive(args.port, sessions, args.concurrency, args.seconds, False))
        echo_rate, lat_echo = asyncio.run(
            drive(args.port, sessions, args.concurrency, args.seconds, True)
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(
        f"responses_per_s={rate:.0f} p99_ms={p99(lat):.1f} echo_per_s={echo_rate:.0f} "
        f"echo_p99_ms={p99(lat_echo):.1f} ratio_vs_echo={rate / echo_rate:.2f} "
        f"concurrency={args.concurrency}"
    )


if __name__ == "__main__":
    main()
