"""Designs as the original studies ran them: Williams squares (first-order carry-over
balanced), Borowski's no-reference split, and between-participant assignment balanced
under concurrent session starts (SQLite and PostgreSQL), with per-condition instructions
and practice."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from server.app import create_app
from server.db.models import Assignment, ParticipantSession, Trial
from server.db.session import session_scope
from server.studies.assignment import SlotInfo, balanced_latin_square, design_rows, plan_session
from server.studies.loading import parse_study_yaml
from server.studies.simulate import serve_in_thread

STUDIES = Path(__file__).parents[1] / "studies"


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_williams_squares_balance_first_order_carry_over(n):
    square = balanced_latin_square(n)
    assert len(square) == (n if n % 2 == 0 else 2 * n)
    assert all(sorted(row) == list(range(n)) for row in square)
    pairs = Counter((row[i], row[i + 1]) for row in square for i in range(n - 1))
    assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1  # every ordered pair
    positions = Counter((row.index(c), c) for row in square for c in row)
    assert len(set(positions.values())) == 1  # every condition equally often at each place


def test_borowski_runs_none_trials_23_before_and_22_after_the_reference_blocks():
    config = parse_study_yaml((STUDIES / "borowski2021-exp1.yaml").read_text(), "b.yaml")
    assert config.counterbalancing.none_split == (23, 22)
    slots = [
        SlotInfo(f"{u}-{c}-{b}", "main", c, u, ["r"] * 9, ["r"] * 9, c == "synthetic", b)
        for u in range(45)
        for c in config.conditions
        for b in range(1)
    ]
    catch = [
        SlotInfo(f"catch-{c}-{u}", "catch", c, 100 + u, ["r"], ["r"], False)
        for u in range(9)
        for c in config.conditions
        if c != "none"
    ]
    rows = design_rows(config, slots)
    by_id = {s.trial_id: s for s in [*slots, *catch]}
    orders = set()
    for claim in range(6):
        planned = plan_session(config, rows, by_id, catch, [], claim, seed=claim)
        sequence = [by_id[p.trial_id] for p in sorted(planned, key=lambda p: p.position)]
        conditions = [s.condition for s in sequence]
        assert conditions[:23] == ["none"] * 23 and conditions[-22:] == ["none"] * 22
        middle = sequence[23:-22]
        assert "none" not in {s.condition for s in middle}
        assert sum(s.kind == "catch" for s in middle) == 18  # catch only in reference blocks
        blocks = [c for i, c in enumerate(conditions[23:-22]) if i == 0 or c != conditions[22 + i]]
        orders.add(tuple(dict.fromkeys(blocks)))
    assert orders == {("natural", "synthetic"), ("synthetic", "natural")}


def _between_yaml() -> str:
    config = yaml.safe_load((STUDIES / "imi-demo.yaml").read_text())
    config["slug"] = "between"
    config["conditions"] = ["natural", "none"]
    config["generation"]["fv"] = {"enabled": False}
    config["counterbalancing"] = {"conditions": "between", "order": "interleaved"}
    config["condition_instructions"] = {
        "natural": ["You will see example images on both sides."],
        "none": ["You will see no example images: follow your intuition."],
    }
    return yaml.safe_dump(config, sort_keys=False)


def test_between_participants_balanced_under_concurrent_starts(database_url, study_data_dir):
    from tests.conftest import launched_study, open_test_database

    settings, engine, factory = open_test_database(database_url, study_data_dir)
    study = launched_study(factory, settings, _between_yaml(), "between.yaml")
    with session_scope(factory) as db:
        practice = db.scalars(
            select(Trial).where(Trial.study_id == study.id, Trial.kind == "practice")
        ).all()
        assert Counter(t.condition for t in practice) == {"natural": 5, "none": 5}
    bodies = {}
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:

        def arrive(i: int) -> int:
            body = {"PROLIFIC_PID": f"between-{i}", "client": {}}
            reply = client.post("/api/v1/studies/between/sessions", json=body)
            bodies[reply.json()["session_id"]] = reply.json()
            return reply.status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(arrive, range(20))) == {201}
    with session_scope(factory) as db:
        sessions = db.scalars(select(ParticipantSession)).all()
        assert Counter(s.condition for s in sessions) == {"natural": 10, "none": 10}
        for session in sessions:
            seen = db.execute(
                select(Trial.kind, Trial.condition)
                .join(Assignment, Assignment.trial_id == Trial.id)
                .where(Assignment.session_id == session.id)
            ).all()
            assert {condition for _kind, condition in seen} == {session.condition}
            assert Counter(kind for kind, _ in seen)["practice"] == 5
            pages = bodies[session.id]["instructions"]
            assert pages[-1].startswith("You will see") and len(pages) == 4
            other = "no example" if session.condition == "natural" else "on both sides"
            assert not any(other in page for page in pages)
    engine.dispose()
