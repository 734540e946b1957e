"""Every API error has one shape: {"detail": "<sentence>", "code": ...}, validation included."""

from __future__ import annotations


def test_invalid_response_body_names_each_bad_field(client):
    reply = client.post(
        "/api/v1/sessions/nosuch/responses",
        json={"trial_id": "t", "choice": "c", "confidence": 9, "rt_ms": "fast"},
        headers={"Authorization": "Bearer x"},
    )
    assert reply.status_code == 422
    body = reply.json()
    assert body["code"] == "InvalidRequest"
    assert isinstance(body["detail"], str)
    for field in ("choice", "confidence", "rt_ms", "idempotency_key"):
        assert field in body["detail"], field


def test_unknown_study_is_404_with_reason(client):
    reply = client.get("/api/v1/studies/no-such-study")
    assert reply.status_code == 404
    assert "no-such-study" in reply.json()["detail"]


def test_response_body_must_be_sent_as_json(client):
    body = '{"trial_id": "t", "choice": "a", "confidence": 1, "rt_ms": 1, "idempotency_key": "k" }'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Authorization": "Bearer x"}
        if content_type:
            headers["Content-Type"] = content_type
        reply = client.post("/api/v1/sessions/nosuch/responses", content=body, headers=headers)
        assert reply.status_code == 415, content_type
        assert reply.json()["code"] == "UnsupportedMediaType"
        assert "application/json" in reply.json()["detail"]
