"""`psychinterp mis fit`: alpha recovered from answers the similarity observer gave via the API."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from server.app import create_app
from server.cli import app
from server.studies.observers import make_observer
from server.studies.simulate import run_simulation, serve_in_thread
from tests.conftest import PinnedDraws


# The fit reads responses through the analysis loader, which is tested on both backends
# elsewhere; the fit itself does not depend on the database, so one backend keeps CI short.
@pytest.mark.parametrize("live_study", ["sqlite"], indirect=True)
def test_fit_recovers_the_simulated_observers_alpha(live_study):
    settings, factory, _ = live_study
    # Pinned draws: unpinned, about 1 sample in 200 (0.5%) fell outside the bounds below.
    observer = PinnedDraws(
        make_observer("similarity", backend="efficientnet-lite2", alpha=30.0), factory
    )
    with serve_in_thread(create_app(settings)) as url:
        run_simulation(
            url, "imi-demo", 24, observer, concurrency=3, seed=5, session_factory=factory
        )
    env = {
        "PSYCHINTERP_DATABASE_URL": settings.database_url,
        "PSYCHINTERP_DATA_DIR": str(settings.data_dir),
    }
    args = ["mis", "fit", "imi-demo", "--no-exclusions", "--format", "json"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    fit = json.loads(result.stdout)
    assert fit["n_responses"] >= 100
    # Same images, same backend: the fit finds the observer's alpha within its uncertainty.
    assert abs(fit["alpha"] - 30.0) < 3 * fit["se"] + 3, fit
    assert abs(fit["predicted_accuracy"] - fit["human_accuracy"]) < 0.05


@pytest.mark.parametrize("live_study", ["sqlite"], indirect=True)
def test_fit_without_responses_says_so(live_study):
    settings, _, _ = live_study
    env = {"PSYCHINTERP_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(app, ["mis", "fit", "no-such-study"], env=env)
    assert result.exit_code == 1 and "no-such-study" in result.stderr
