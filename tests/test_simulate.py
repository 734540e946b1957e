"""Simulated participants through the real HTTP server (uvicorn in a thread)."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from server.app import create_app
from server.db.models import Assignment, Response, Trial
from server.db.session import session_scope
from server.studies.observers import make_observer
from server.studies.simulate import run_simulation, serve_in_thread
from tests.conftest import PinnedDraws


@pytest.fixture(scope="module")
def server_url(live_study):
    settings, _, _ = live_study
    with serve_in_thread(create_app(settings)) as url:
        yield url


def test_oracle_is_always_right_and_retries_store_once(server_url, live_study):
    _, factory, _ = live_study
    result = run_simulation(
        server_url,
        "imi-demo",
        50,
        "oracle",
        concurrency=6,
        drop_rate=0.2,
        seed=1,
        session_factory=factory,
    )
    assert result.completed == 50
    assert result.accuracy == {"natural": 1.0, "none": 1.0}
    assert result.sent > result.acknowledged  # lost acknowledgements were re-sent...
    assert result.duplicates == 0  # ...and stored once
    assert "duplicates=0" in result.summary()


@pytest.mark.slow
def test_random_is_at_chance_and_slots_are_balanced(server_url, live_study):
    _, factory, study = live_study
    # Pinned draws: unpinned, an accuracy fell outside (0.4, 0.6) in ~3.5e-4 of runs.
    observer = PinnedDraws(make_observer("random"), factory)
    result = run_simulation(
        server_url, "imi-demo", 60, observer, concurrency=6, seed=2, session_factory=factory
    )
    assert result.completed == 60 and result.duplicates == 0
    for condition, accuracy in result.accuracy.items():
        assert 0.4 < accuracy < 0.6, (condition, accuracy)
    with session_scope(factory) as db:
        main = db.execute(
            select(Trial.id, Assignment.max_is_a)
            .join(Assignment, Assignment.trial_id == Trial.id)
            .join(Response, Response.assignment_id == Assignment.id)
            .where(Trial.kind == "main", Response.session_id.in_(result.session_ids))
        ).all()
        n_slots = len(
            db.scalars(
                select(Trial.id).where(Trial.kind == "main", Trial.study_id == study.id)
            ).all()
        )
    per_slot = Counter(trial_id for trial_id, _ in main)
    assert len(per_slot) == n_slots  # every slot answered...
    # ...equally often: 60 sessions over 2 design rows of 12 → 30 each (±1 for earlier tests)
    assert max(per_slot.values()) - min(per_slot.values()) <= 1
    max_is_a = Counter(trial_id for trial_id, side in main if side)
    for trial_id, n in per_slot.items():  # the answer side alternates between replicates
        assert abs(2 * max_is_a[trial_id] - n) <= 1
