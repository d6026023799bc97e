"""Request ids and the line logged per request (api/http/request_log.py)."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient

from api.logs import RequestContext


def test_a_request_id_is_made_when_absent_and_echoed_when_given(client: FlaskClient) -> None:
    made = client.get("/health").headers["X-Request-ID"]
    assert len(made) == 32 and made != client.get("/health").headers["X-Request-ID"]
    given = client.get("/health", headers={"X-Request-ID": "req-42.a:b/c"})
    assert given.headers["X-Request-ID"] == "req-42.a:b/c"
    for unusable in ("", "has space", "x" * 129, "ünï"):
        answered = client.get("/health", headers={"X-Request-ID": unusable})
        assert answered.headers["X-Request-ID"] not in (unusable, ""), unusable


def test_refusals_have_request_ids_too(client: FlaskClient) -> None:
    response = client.post("/tasks", data="not json", content_type="text/plain")
    assert response.status_code == 415 and response.headers["X-Request-ID"]


def test_one_line_per_request_and_the_submit_line_shares_its_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestContext())  # as the service's own handler has it
    response = client.post(
        "/tasks", json={"type": "add", "params": {"x": 1, "y": 2}}, headers={"X-Request-ID": "r1"}
    )
    task_id = response.get_json()["id"]
    requests = [r for r in caplog.records if r.name == "api.requests"]
    assert [r.getMessage() for r in requests] == ["POST /tasks 202"]
    line = requests[0]
    assert (line.request_id, line.method, line.path, line.status) == ("r1", "POST", "/tasks", 202)
    assert line.duration_ms >= 0
    queued = [r for r in caplog.records if r.name == "api.service"]
    assert [(r.getMessage(), r.request_id, r.task_id) for r in queued] == [
        (f"task {task_id} (add) queued", "r1", task_id)
    ]
