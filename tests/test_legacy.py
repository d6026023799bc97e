"""The seed's own calls keep working, and are marked deprecated in the spec."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask.testing import FlaskClient

from api.runtime import Runtime


def test_start_then_status_running_then_done(
    client: FlaskClient, drain: Callable[[], int], runtime: Runtime
) -> None:
    started = client.get("/start/10/5")
    assert started.status_code == 200
    assert started.mimetype == "application/json"
    body = started.get_json()
    assert body["status"] == "started"
    task_id = body["task_id"]
    assert client.get(f"/status/{task_id}").get_json() == {"status": "running"}
    task = runtime.store.get(task_id, datetime.now(UTC))
    assert task is not None and task.params["delay_seconds"] == 2, "the seed's simulated work"
    assert drain() == 1
    assert client.get(f"/status/{task_id}").get_json() == {"status": "done", "result": 15}


def test_status_of_a_failed_and_a_cancelled_task(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    failed = client.post(
        "/tasks", json={"type": "fail", "params": {"message": "nope"}, "max_attempts": 1}
    )
    drain()
    assert client.get(f"/status/{failed.get_json()['id']}").get_json() == {
        "status": "failed",
        "error": "nope",
    }
    queued = client.post("/tasks", json={"type": "add", "params": {"x": 1, "y": 1}}).get_json()
    client.post(f"/tasks/{queued['id']}/cancel")
    assert client.get(f"/status/{queued['id']}").get_json()["status"] == "failed"


def test_status_of_an_unknown_task_is_the_seeds_404(client: FlaskClient) -> None:
    response = client.get("/status/does-not-exist")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Task not found"}


def test_start_refuses_numbers_the_seed_route_never_matched(client: FlaskClient) -> None:
    assert client.get("/start/-1/5").status_code == 404
    assert client.get("/start/a/5").status_code == 404
    assert client.get(f"/start/{2**63}/5").status_code == 404


def test_legacy_operations_are_deprecated_in_the_spec(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert paths["/start/{x}/{y}"]["get"]["deprecated"] is True
    assert paths["/status/{task_id}"]["get"]["deprecated"] is True
