"""``POST /tasks/{id}/retry``: a failed or cancelled task submitted again, on each store."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import make_app, runtime_of, submit
from tests.test_api_tasks import assert_problem

FAILING = {
    "type": "fail",
    "params": {"message": "upstream down"},
    "max_attempts": 1,
    "timeout_seconds": 30,
    "priority": 7,
    "queue": "reports",
}


def _failed(client: FlaskClient, drain: Callable[[], int]) -> dict[str, Any]:
    task = submit(client, FAILING)
    drain()
    ended = client.get(f"/tasks/{task['id']}").get_json()
    assert ended["status"] == "failed", ended
    return ended


def test_a_failed_task_is_submitted_again_as_a_new_task(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    old = _failed(client, drain)
    before = client.get(f"/tasks/{old['id']}")

    response = client.post(f"/tasks/{old['id']}/retry")
    assert response.status_code == 202
    new = response.get_json()
    assert response.headers["Location"] == f"/tasks/{new['id']}"
    assert new["id"] != old["id"] and new["retry_of"] == old["id"]
    assert new["status"] == "queued" and new["attempts"] == 0 and new["error"] is None
    same = ("type", "params", "max_attempts", "timeout_seconds", "priority", "queue")
    assert {k: new[k] for k in same} == {k: old[k] for k in same}

    after = client.get(f"/tasks/{old['id']}")  # the old task keeps its history, and its ETag
    assert after.get_json() == before.get_json()
    assert after.headers["ETag"] == before.headers["ETag"]
    assert client.get(f"/tasks/{new['id']}").get_json()["retry_of"] == old["id"]


def test_a_cancelled_task_is_retried_and_runs(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    task = submit(client, {"type": "add", "params": {"x": 2, "y": 3}, "delay_seconds": 60})
    assert client.post(f"/tasks/{task['id']}/cancel").get_json()["status"] == "cancelled"
    new = client.post(f"/tasks/{task['id']}/retry").get_json()
    drain()
    done = client.get(f"/tasks/{new['id']}").get_json()
    assert (done["status"], done["result"], done["retry_of"]) == ("succeeded", 5, task["id"])


def test_only_a_failed_or_cancelled_task_can_be_retried(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    problem = assert_problem(client.post(f"/tasks/{task['id']}/retry"), 409)
    assert "is queued" in problem["detail"] and "failed or cancelled" in problem["detail"]
    drain()
    problem = assert_problem(client.post(f"/tasks/{task['id']}/retry"), 409)
    assert "is succeeded" in problem["detail"]
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        assert_problem(client.post(f"/tasks/{unknown}/retry"), 404)
    listed = client.get("/tasks").get_json()
    assert [t["id"] for t in listed] == [task["id"]], "nothing was created"


def test_an_idempotency_key_makes_a_retry_safe_to_send_again(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    old = _failed(client, drain)
    key = {"Idempotency-Key": "retry-once-7c1f"}
    first = client.post(f"/tasks/{old['id']}/retry", headers=key)
    again = client.post(f"/tasks/{old['id']}/retry", headers=key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]

    other = client.post("/tasks", json={"type": "fail", "params": {"message": "x"}})
    other_id = other.get_json()["id"]
    client.post(f"/tasks/{other_id}/cancel")
    assert_problem(client.post(f"/tasks/{other_id}/retry", headers=key), 422)
    retries = [t for t in client.get("/tasks").get_json() if t["retry_of"]]
    assert len(retries) == 1


def test_a_retry_into_a_full_queue_creates_nothing(db_path: Path, database_url: str) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_MAX_QUEUED="1")
    try:
        client = app.test_client()
        task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}, "delay_seconds": 60})
        client.post(f"/tasks/{task['id']}/cancel")
        submit(client, {"type": "add", "params": {"x": 1, "y": 1}, "delay_seconds": 60})
        refused = client.post(f"/tasks/{task['id']}/retry")
        assert_problem(refused, 503)
        assert refused.headers["Retry-After"]
        assert [t for t in client.get("/tasks").get_json() if t["retry_of"]] == []
    finally:
        runtime = runtime_of(app)
        runtime.pool.stop(grace=5)
        runtime.store.close()


def test_another_callers_task_cannot_be_retried(db_path: Path, database_url: str) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_API_KEYS="alice:tok-a,bob:tok-b")
    try:
        client = app.test_client()
        alice, bob = {"Authorization": "Bearer tok-a"}, {"Authorization": "Bearer tok-b"}
        body = {"type": "add", "params": {"x": 1, "y": 1}, "delay_seconds": 60}
        task = client.post("/tasks", json=body, headers=alice).get_json()
        client.post(f"/tasks/{task['id']}/cancel", headers=alice)
        assert_problem(client.post(f"/tasks/{task['id']}/retry", headers=bob), 404)
        mine = client.post(f"/tasks/{task['id']}/retry", headers=alice)
        assert mine.status_code == 202
        assert client.get("/tasks", headers=bob).get_json() == []
    finally:
        runtime = runtime_of(app)
        runtime.pool.stop(grace=5)
        runtime.store.close()


def test_the_spec_documents_the_retry(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    retry = spec["paths"]["/tasks/{task_id}/retry"]["post"]
    assert retry["operationId"] == "retryTask"
    expected = {"200", "202", "401", "404", "409", "422", "429", "503"}
    assert set(retry["responses"]) == expected
    assert "Location" in retry["responses"]["202"]["headers"]
    assert [p["name"] for p in retry["parameters"] if p["in"] == "header"] == ["Idempotency-Key"]
    assert retry["responses"]["202"]["links"]["GetTask"]["operationId"] == "getTask"
    status = spec["components"]["schemas"]["TaskStatus"]
    assert "retry_of" in status["required"]
