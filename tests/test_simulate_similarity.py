"""The similarity observer answers real trials through the HTTP API (uvicorn in a thread)."""

from __future__ import annotations

from server.app import create_app
from server.studies.observers import make_observer
from server.studies.simulate import run_simulation, serve_in_thread


def test_similarity_observer_answers_through_the_api(live_study):
    settings, factory, _ = live_study
    observer = make_observer("similarity", backend="efficientnet-lite2", alpha=50.0)
    with serve_in_thread(create_app(settings)) as url:
        result = run_simulation(
            url, "imi-demo", 4, observer, concurrency=2, seed=3, session_factory=factory
        )
    assert result.completed == 4 and result.duplicates == 0
    # Natural references let it beat chance; `none` trials have no references to compare.
    assert result.accuracy["natural"] > 0.6, result.summary()
    # Every image it saw was fetched through the trial's URLs and embedded once.
    assert len(observer._cache) > 0
