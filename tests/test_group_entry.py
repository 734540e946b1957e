"""Issue 20: one link for a model comparison (several studies sharing `group:`). GET
/g/{group} claims each arrival's place in the live study of the group with the fewest
claimed places and sends the browser on to it; 16 simultaneous arrivals end up balanced
(max - min <= 1) on SQLite and on PostgreSQL; the study page then resumes that place."""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from sqlalchemy import select

from server.app import create_app
from server.auth import create_admin_user, keyed_hash
from server.db.models import ParticipantSession, Study
from server.db.session import session_scope
from server.studies.group_entry import tie_order
from server.studies.service import build_trials, create_study, launch_study
from server.studies.simulate import serve_in_thread
from tests.conftest import DATABASE_BACKENDS, backend_database, launched_study

STUDIES = Path(__file__).parents[1] / "studies"
GROUP = "model-comparison"
SLUGS = ["cmp-lite0-a", "cmp-lite0-b", "cmp-lite0-c"]  # one study per "model"


def _yaml(slug: str, group: str = GROUP) -> str:
    config = yaml.safe_load((STUDIES / "imi-demo.yaml").read_text())
    config |= {"slug": slug, "group": group, "conditions": ["natural", "none"]}
    config["generation"]["fv"] = {"enabled": False}
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="module", params=DATABASE_BACKENDS)
def group_site(request, tmp_path_factory, study_data_dir):
    """Three live studies of one group (one generation; the others reuse its stimuli) and
    a draft of the group, which must never get anyone; the real app served on 127.0.0.1.
    Once per backend: each test uses its own worker IDs."""
    with backend_database(request.param, tmp_path_factory, study_data_dir, "group") as opened:
        settings, _, factory = opened
        first = launched_study(factory, settings, _yaml(SLUGS[0]), "a.yaml")
        with session_scope(factory) as db:
            _more_studies(db, settings, first.stimulus_set_id)
        with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:
            yield client, factory


def _more_studies(db, settings, stimulus_set_id: str) -> None:
    """The group's other live studies, a draft of it and a study of another group, all on
    the first study's stimuli (one generation)."""
    for slug in SLUGS[1:]:
        study = create_study(db, settings, _yaml(slug), f"{slug}.yaml")
        build_trials(db, study, stimulus_set_id)
        launch_study(db, study)
    draft = create_study(db, settings, _yaml("cmp-draft"), "draft.yaml")
    build_trials(db, draft, stimulus_set_id)
    other = create_study(db, settings, _yaml("elsewhere", group="another"), "e.yaml")
    build_trials(db, other, stimulus_set_id)
    launch_study(db, other)


def _study_of(factory, worker: str) -> str | None:
    """The slug of the study where this Prolific worker has a session."""
    worker_hash = keyed_hash("test-secret-key", f"prolific:{worker}", "worker")
    with session_scope(factory) as db:
        return db.scalar(
            select(Study.slug)
            .join(ParticipantSession, ParticipantSession.study_id == Study.id)
            .where(ParticipantSession.worker_hash == worker_hash)
        )


def _places(factory) -> Counter:
    with session_scope(factory) as db:
        rows = db.execute(
            select(Study.slug).join(ParticipantSession, ParticipantSession.study_id == Study.id)
        ).all()
    return Counter(slug for (slug,) in rows)


def test_sixteen_simultaneous_arrivals_are_balanced(group_site):
    client, factory = group_site
    before = sum(_places(factory).values())
    # Two participants came through the first study's own link before the group link.
    for worker in ("direct-1", "direct-2"):
        reply = client.post(f"/api/v1/studies/{SLUGS[0]}/sessions", json={"PROLIFIC_PID": worker})
        assert reply.status_code == 201

    def arrive(i: int) -> httpx.Response:
        query = {"PROLIFIC_PID": f"g-{i}", "STUDY_ID": "s", "SESSION_ID": f"x{i}"}
        return client.get(f"/g/{GROUP}", params=query)

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(arrive, range(16)))
    assert {r.status_code for r in replies} == {303}
    places = _places(factory)
    assert set(places) == set(SLUGS)  # never the draft, never another group's study
    assert sum(places.values()) == before + 18
    assert max(places.values()) - min(places.values()) <= 1
    # Each arrival was sent to the study where its place is, with its platform parameters.
    for i, reply in enumerate(replies):
        target = urlsplit(reply.headers["location"])
        assert parse_qs(target.query) == {
            "PROLIFIC_PID": [f"g-{i}"], "STUDY_ID": ["s"], "SESSION_ID": [f"x{i}"]
        }  # fmt: skip
        assert target.path == f"/s/{_study_of(factory, f'g-{i}')}"


def test_the_study_page_resumes_the_place_taken_by_the_link(group_site):
    client, factory = group_site
    places, order = _places(factory), tie_order(GROUP, SLUGS)
    reply = client.get(f"/g/{GROUP}", params={"PROLIFIC_PID": "one", "STUDY_ID": "s"})
    slug = urlsplit(reply.headers["location"]).path.removeprefix("/s/")
    assert slug == min(SLUGS, key=lambda s: (places[s], order[s]))  # fewest, then seeded
    page = client.get(reply.headers["location"])
    assert page.status_code == 200 and "page-config" in page.text
    # The page starts its session with the same ID: the place claimed by the link, resumed,
    # and it brings the browser's details the link could not know.
    start = client.post(
        f"/api/v1/studies/{slug}/sessions",
        json={"PROLIFIC_PID": "one", "STUDY_ID": "s", "client": {"screen_w": 1920}},
    )
    assert start.status_code == 200 and start.json()["resumed"] is True
    # Coming back through the group link keeps the worker in the same study.
    again = client.get(f"/g/{GROUP}", params={"PROLIFIC_PID": "one", "STUDY_ID": "s"})
    assert urlsplit(again.headers["location"]).path == f"/s/{slug}"
    assert _places(factory) == places + Counter({slug: 1})
    with session_scope(factory) as db:
        worker_hash = keyed_hash("test-secret-key", "prolific:one", "worker")
        session = db.scalars(
            select(ParticipantSession).where(ParticipantSession.worker_hash == worker_hash)
        ).one()
        assert session.client_info["screen_w"] == 1920
        assert session.client_info["entry"] == f"group:{GROUP}"


@pytest.mark.parametrize(
    ("path", "query", "status", "words"),
    [
        (f"/g/{GROUP}", {}, 422, "PROLIFIC_PID"),  # no platform ID: the place cannot be found again
        ("/g/no-such-group", {"PROLIFIC_PID": "p"}, 404, "no live study in group"),
        (f"/g/{GROUP}", {"PROLIFIC_PID": "x" * 300}, 422, "PROLIFIC_PID"),
    ],
)
def test_bad_arrivals_get_a_page_saying_why(group_site, path, query, status, words):
    client, factory = group_site
    places = _places(factory)
    reply = client.get(path, params=query)
    assert reply.status_code == status
    assert words in reply.text and 'data-testid="entry-message"' in reply.text
    assert _places(factory) == places


def test_mturk_preview_claims_nothing(group_site):
    client, factory = group_site
    places = _places(factory)
    reply = client.get(f"/g/{GROUP}", params={"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"})
    assert reply.status_code == 303 and "/s/cmp-lite0-" in reply.headers["location"]
    assert _places(factory) == places


def test_dashboard_shows_the_group_link(group_site):
    client, factory = group_site
    with session_scope(factory) as db:
        create_admin_user(db, "lead@lab.org", "a strong enough password")
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin/login").text)[1]
    client.post("/admin/login", data={"email": "lead@lab.org", "csrf": csrf,
                                      "password": "a strong enough password"})  # fmt: skip
    listing = client.get("/admin").text
    assert listing.count(f'href="/g/{GROUP}"') == len(SLUGS) + 1  # the live three + the draft
    assert 'href="/g/another"' in listing
    assert (
        f'href="/g/{GROUP}" data-testid="group-link"'
        in client.get(f"/admin/studies/{SLUGS[1]}").text
    )
