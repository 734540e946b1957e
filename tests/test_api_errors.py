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
