"""The HTML routes themselves (no browser): what the shell page carries and what it must not."""

from __future__ import annotations

import json
import re


def _page_config(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="page-config">(.*?)</script>', html)
    assert match, "the page must carry its config for task.js"
    return json.loads(match.group(1))


def test_task_page_passes_platform_parameters_through(client):
    response = client.get(
        "/s/imi-demo",
        params={"PROLIFIC_PID": "p1", "STUDY_ID": "s1", "SESSION_ID": "x1", "utm": "dropped"},
    )
    assert response.status_code == 200
    config = _page_config(response.text)
    assert config == {
        "slug": "imi-demo",
        "mode": "task",
        "params": {"PROLIFIC_PID": "p1", "STUDY_ID": "s1", "SESSION_ID": "x1"},
        "api": "/api/v1",
    }
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert 'src="/static/js/task.js"' in response.text


def test_mturk_preview_mode(client):
    preview = client.get("/s/imi-demo", params={"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"})
    assert _page_config(preview.text)["mode"] == "preview"
    assert _page_config(client.get("/s/imi-demo/preview").text)["mode"] == "preview"
    accepted = client.get("/s/imi-demo", params={"assignmentId": "A1", "workerId": "W1"})
    assert _page_config(accepted.text)["mode"] == "task"


def test_markup_in_parameters_is_escaped(client):
    response = client.get("/s/imi-demo", params={"workerId": "</script><script>alert(1)"})
    assert "<script>alert(1)" not in response.text
    assert _page_config(response.text)["params"]["workerId"] == "</script><script>alert(1)"


def test_malformed_slug_is_a_clear_404(client):
    response = client.get("/s/bad%20slug!")
    assert response.status_code == 404
    assert "/s/<study-slug>" in response.json()["detail"]


def test_static_modules_are_served(client):
    for path in ("js/task.js", "js/trial.js", "js/queue.js", "css/participant.css"):
        assert client.get(f"/static/{path}").status_code == 200, path
