"""The typed public contract (issues 20 and 21): every key the participant page's JavaScript
reads is declared in server/api/participant_contract.py (and so in /openapi.json), served
bodies validate against it, and the image served as the right query really activates the
unit more (recomputed with the real model from the served bytes)."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import select

from server.api.participant_contract import (
    CompletionPublic,
    ComprehensionPublic,
    LayoutPublic,
    PracticePublic,
    PublicStudy,
    TrialImages,
    TrialPublic,
    WindowPublic,
)
from server.app import create_app
from server.db.models import Trial, Unit
from server.db.session import session_scope
from server.paradigms.occlusion import OcclusionSection
from server.studies.sessions import answers_for_session

JS = Path(__file__).parents[1] / "web/static/js"


def _fields(model) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


NOT_KEYS = {"js", "jpg", "map", "length"}  # file names (task.js) and array members


def _reads(pattern: str) -> set[str]:
    found = set()
    for path in [*JS.glob("*.js"), *JS.glob("trials/*.js")]:
        found |= set(re.findall(pattern, path.read_text()))
    return {k for k in found if k.split(".")[-1] not in NOT_KEYS}


def test_every_key_the_page_reads_is_in_the_contract():
    study = _fields(PublicStudy)
    nested = {
        "layout": _fields(LayoutPublic),
        "practice": _fields(PracticePublic),
        "completion": _fields(CompletionPublic),
        "min_window": _fields(WindowPublic),
    }
    missing = set()
    for path in _reads(r"\bstudy\.([a-z_]+(?:\.[a-z_]+)?)"):
        top, _, sub = path.partition(".")
        if top not in study or (sub and top in nested and sub not in nested[top]):
            missing.add(f"layout.{sub}" if top == "layout" else f"study.{path}")
    missing |= {f"layout.{k}" for k in _reads(r"\blayout\.([a-z_]+)") if k not in nested["layout"]}
    missing |= {
        f"trial.{k}" for k in _reads(r"\btrial\.([a-z_]+)") if k not in _fields(TrialPublic)
    }
    image_keys = _fields(TrialImages)
    missing |= {f"images.{k}" for k in _reads(r"\bimages\.([a-z_]+)") if k not in image_keys}
    missing |= {
        f"task.{k}" for k in _reads(r"\btask\.([a-z_]+)") if k not in _fields(OcclusionSection)
    }
    # A comprehension question is read as `q.<key>` (screens.js).
    missing |= {
        f"comprehension.{k}"
        for k in _reads(r"\bq\.([a-z_]+)")
        if k not in _fields(ComprehensionPublic)
    }
    assert missing == set(), "page reads keys the contract does not declare"


def test_contract_in_openapi_and_served_bodies_validate(live_study):
    settings, _, _ = live_study
    with TestClient(create_app(settings)) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        assert {"PublicStudy", "TrialPublic", "TrialImages"} <= set(schemas)
        info = client.get("/api/v1/studies/imi-demo").json()
        PublicStudy.model_validate(info)
        assert set(_fields(PublicStudy)) - {"task"} <= set(info)


def _activation(model, layer: str, unit: int, data: bytes) -> float:
    pixels = np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float()[None] / 255
    seen = {}
    handle = model.get_layer(layer).register_forward_hook(lambda _m, _i, o: seen.setdefault("o", o))
    try:
        with torch.no_grad():
            model.module(model.normalizer()(x))
    finally:
        handle.remove()
    return float(seen["o"][0, unit].mean())


def test_served_query_that_activates_more_is_graded_right(live_study, lite0):
    """2AFC: from the served bytes alone, the query the unit prefers is the right choice."""
    settings, factory, _ = live_study
    body = {"client": {"user_agent": "pytest"}, "PROLIFIC_PID": uuid.uuid4().hex,
            "STUDY_ID": "s", "SESSION_ID": uuid.uuid4().hex}  # fmt: skip
    with TestClient(create_app(settings)) as client:
        session = client.post("/api/v1/studies/imi-demo/sessions", json=body).json()
        headers = {"Authorization": f"Bearer {session['token']}"}
        checked = 0
        for _ in range(8):
            reply = client.get(
                f"/api/v1/sessions/{session['session_id']}/trials/next", headers=headers
            )
            if reply.status_code == 204:
                break
            trial = TrialPublic.model_validate(reply.json())
            with session_scope(factory) as db:
                right = answers_for_session(db, session["session_id"])[trial.trial_id]
                unit_id = db.scalar(select(Trial.unit_id).where(Trial.id == trial.trial_id))
                unit = db.get(Unit, unit_id)
                layer, index = unit.layer, unit.index
            a = _activation(lite0, layer, index, client.get(trial.images.query_a).content)
            b = _activation(lite0, layer, index, client.get(trial.images.query_b).content)
            assert (a > b) == bool(right), (trial.trial_id, a, b, right)
            client.post(
                f"/api/v1/sessions/{session['session_id']}/responses",
                json={"trial_id": trial.trial_id, "choice": "a" if right else "b",
                      "confidence": 2, "rt_ms": 800, "idempotency_key": uuid.uuid4().hex},
                headers=headers,
            )  # fmt: skip
            checked += 1
        assert checked == 8
