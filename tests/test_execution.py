"""Execution you can trust: crash recovery, timeouts, idempotency, long-poll, ETags, bounds."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api.runtime import Runtime
from tests.conftest import make_app, runtime_of, submit, wait_for, wait_until
from tests.processes import start_server, wait_terminal

ADD = {"type": "add", "params": {"x": 1, "y": 2}}


# -- crash recovery --------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_loses_nothing_duplicates_nothing_and_counts_attempts(tmp_path: Path) -> None:
    db, probe = tmp_path / "tasks.sqlite3", tmp_path / "executions.log"
    env = {
        "TASKS_IMPORT": "tests.task_probe",
        "PROBE_LOG": str(probe),
        "TASKS_LEASE_SECONDS": "2",
        "TASKS_WORKERS": "2",
    }
    server = start_server(db, tmp_path, **env)
    try:

        def post(params: dict) -> str:
            status, task = server.request("POST", "/tasks", {"type": "record", "params": params})
            assert status == 202, task
            return task["id"]

        slow = [post({"first_attempt_seconds": 60}) for _ in range(2)]
        wait_until(lambda: probe.exists() and len(probe.read_text().splitlines()) == 2)
        queued = [post({}) for _ in range(20)]
        # The two workers are busy: the rest waits. Cancel one that waits; below, one that
        # runs, after its process died and before its lease expired.
        assert server.request("POST", f"/tasks/{queued[-1]}/cancel")[1]["status"] == "cancelled"
        server.stop(signal.SIGKILL, group=True)
    finally:
        server.stop(signal.SIGKILL, group=True)

    again = start_server(db, tmp_path, **env)
    try:
        status, asked = again.request("POST", f"/tasks/{slow[1]}/cancel")
        assert (status, asked["status"], asked["cancel_requested"]) == (200, "running", True)
        finals = {task_id: wait_terminal(again, task_id) for task_id in [*slow, *queued]}
    finally:
        again.stop()

    runs = Counter(line.split()[0] for line in probe.read_text().splitlines())
    assert finals[slow[0]]["status"] == "succeeded"
    assert finals[slow[0]]["attempts"] == 2, "the attempt lost with the process counts"
    assert runs[slow[0]] == 2
    assert finals[slow[1]]["status"] == "cancelled", "the cancel outlived the dead worker"
    assert runs[slow[1]] == 1
    assert finals[queued[-1]]["status"] == "cancelled" and runs[queued[-1]] == 0
    for task_id in queued[:-1]:
        assert finals[task_id]["status"] == "succeeded", finals[task_id]
        assert finals[task_id]["attempts"] == 1 and runs[task_id] == 1, "exactly once"


# -- timeouts --------------------------------------------------------------------------------


def test_a_timeout_fails_the_attempt_at_the_deadline(client: FlaskClient, live: Runtime) -> None:
    started = time.monotonic()
    task = submit(client, {"type": "sleep", "params": {"seconds": 30}, "timeout_seconds": 0.5})
    done = wait_for(client, task["id"])
    assert time.monotonic() - started < 5
    assert done["status"] == "failed"
    assert done["error"]["type"] == "TimeoutError" and "0.5s" in done["error"]["message"]
    assert done["attempts"] == 1


def test_a_timed_out_attempt_is_retried_when_attempts_are_left(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(
        client,
        {"type": "sleep", "params": {"seconds": 30}, "timeout_seconds": 0.3, "max_attempts": 2},
    )
    done = wait_for(client, task["id"])
    assert (done["status"], done["attempts"]) == ("failed", 2)
    assert done["error"]["type"] == "TimeoutError"


def test_a_task_that_ignores_the_timeout_keeps_its_slot_until_it_stops(
    db_path: Path, database_url: str
) -> None:
    from marshmallow import Schema

    from api.registry import TaskType

    release = threading.Event()
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_WORKERS=1)
    runtime = runtime_of(app)
    runtime.registry.add(TaskType("deaf", Schema, lambda c, p: release.wait(30), max_attempts=1))
    client = app.test_client()
    deaf = runtime.service.submit({"type": "deaf", "params": {}, "timeout_seconds": 0.2}).task
    after = submit(client, ADD)
    runtime.pool.start()
    try:
        assert wait_for(client, deaf.id)["error"]["type"] == "TimeoutError"
        time.sleep(0.3)
        assert client.get(f"/tasks/{after['id']}").get_json()["status"] == "queued", (
            "the pool's one slot waits for the stuck attempt: never more task threads than workers"
        )
        release.set()
        assert wait_for(client, after["id"])["status"] == "succeeded"
    finally:
        release.set()
        runtime.pool.stop(grace=5)


# -- idempotency -----------------------------------------------------------------------------


def test_a_replayed_key_answers_the_first_task_and_creates_nothing(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/tasks", json=ADD, headers=headers)
    assert first.status_code == 202
    drain()
    replay = client.post("/tasks", json=ADD, headers=headers)
    assert replay.status_code == 200
    assert replay.get_json()["id"] == first.get_json()["id"]
    assert replay.get_json()["status"] == "succeeded", "its current state"
    assert replay.headers["Location"] == first.headers["Location"]
    assert json.loads(client.get("/tasks").headers["X-Pagination"])["total"] == 1


def test_the_same_key_with_another_body_is_422(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "k-1"}
    client.post("/tasks", json=ADD, headers=headers)
    other = client.post("/tasks", json={"type": "add", "params": {"x": 9, "y": 9}}, headers=headers)
    assert other.status_code == 422
    assert other.get_json()["errors"] == {
        "headers": {"Idempotency-Key": ["Already used with a different body."]}
    }
    assert json.loads(client.get("/tasks").headers["X-Pagination"])["total"] == 1


def test_concurrent_duplicates_never_make_two_tasks(db_path: Path, database_url: str) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url)
    statuses: list[int] = []
    ids: set[str] = set()
    lock = threading.Lock()

    def send() -> None:
        response = app.test_client().post("/tasks", json=ADD, headers={"Idempotency-Key": "dup"})
        with lock:
            statuses.append(response.status_code)
            if response.status_code != 409:
                ids.add(response.get_json()["id"])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(202) == 1
    assert set(statuses) <= {200, 202, 409}, "a replay, or in flight while the first is handled"
    assert len(ids) == 1
    runtime_of(app).store.close()


def test_a_key_whose_task_was_deleted_is_409(client: FlaskClient, drain: Callable[[], int]) -> None:
    first = client.post("/tasks", json=ADD, headers={"Idempotency-Key": "gone"}).get_json()
    drain()
    client.delete(f"/tasks/{first['id']}")
    again = client.post("/tasks", json=ADD, headers={"Idempotency-Key": "gone"})
    assert again.status_code == 409 and "new key" in again.get_json()["detail"]


def test_a_duplicate_while_the_first_is_still_handled_is_409(
    client: FlaskClient, live: Runtime
) -> None:
    sleep = {"type": "sleep", "params": {"seconds": 1}}
    headers = {"Idempotency-Key": "slow-1", "Prefer": "wait=30"}
    first: list = []
    waiting = threading.Thread(
        target=lambda: first.append(client.post("/tasks", json=sleep, headers=headers))
    )
    waiting.start()
    wait_until(lambda: json.loads(client.get("/tasks").headers["X-Pagination"])["total"] == 1)
    duplicate = client.post("/tasks", json=sleep, headers={"Idempotency-Key": "slow-1"})
    assert duplicate.status_code == 409 and duplicate.headers["Retry-After"] == "1"
    waiting.join()
    assert first[0].status_code == 200 and first[0].get_json()["status"] == "succeeded"
    replay = client.post("/tasks", json=sleep, headers={"Idempotency-Key": "slow-1"})
    assert replay.status_code == 200 and replay.get_json()["id"] == first[0].get_json()["id"]


def test_the_same_number_written_two_ways_is_the_same_body(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "numbers"}
    first = client.post("/tasks", json={**ADD, "delay_seconds": 0}, headers=headers)
    again = client.post("/tasks", json={**ADD, "delay_seconds": 0.0}, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)


# -- Prefer: wait, long-poll, ETag -------------------------------------------------------------


def test_prefer_wait_answers_a_short_task_in_one_round_trip(
    client: FlaskClient, live: Runtime
) -> None:
    response = client.post("/tasks", json=ADD, headers={"Prefer": "wait=10"})
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "wait=10"
    assert response.get_json()["status"] == "succeeded" and response.get_json()["result"] == 3


def test_prefer_wait_gives_the_usual_202_when_the_task_is_slower(
    client: FlaskClient, live: Runtime
) -> None:
    response = client.post(
        "/tasks", json={"type": "sleep", "params": {"seconds": 5}}, headers={"Prefer": "wait=0.2"}
    )
    assert response.status_code == 202 and "Preference-Applied" not in response.headers
    client.post(f"/tasks/{response.get_json()['id']}/cancel")  # not 5 s of the teardown's


def test_long_poll_answers_when_the_task_ends(client: FlaskClient, live: Runtime) -> None:
    task = submit(client, {"type": "sleep", "params": {"seconds": 0.5}})
    started = time.monotonic()
    done = client.get(f"/tasks/{task['id']}?wait=30")
    assert done.get_json()["status"] == "succeeded"
    assert time.monotonic() - started < 10, "answered at the change, not at the end of the wait"
    assert "Retry-After" not in done.headers


def test_long_poll_is_woken_by_the_change_not_by_polling(
    client: FlaskClient, live: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live.service, "poll_interval", 30)
    task = submit(client, {"type": "sleep", "params": {"seconds": 0.3}})
    started = time.monotonic()
    assert client.get(f"/tasks/{task['id']}?wait=20").get_json()["status"] == "succeeded"
    assert time.monotonic() - started < 10, "a poll would have taken 30 s"


def test_long_polls_leave_nothing_behind(client: FlaskClient, runtime: Runtime) -> None:
    """Memory must not grow with the tasks handled: a finished wait forgets its task."""
    tasks = [submit(client, ADD) for _ in range(5)]
    for task in tasks:
        client.get(f"/tasks/{task['id']}?wait=0.05")
    assert runtime.service.events.waiting() == 0


def test_long_poll_gives_up_after_the_wait(client: FlaskClient) -> None:
    task = submit(client, ADD)  # no worker runs it
    started = time.monotonic()
    response = client.get(f"/tasks/{task['id']}?wait=0.3")
    assert time.monotonic() - started >= 0.3
    assert response.get_json()["status"] == "queued" and response.headers["Retry-After"] == "1"


def test_long_poll_sees_a_task_run_by_another_process(db_path: Path, database_url: str) -> None:
    api_app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_WORKERS=0)
    worker_app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_POLL_INTERVAL=0.05)
    client = api_app.test_client()
    task = submit(client, {"type": "sleep", "params": {"seconds": 0.3}})
    runtime_of(worker_app).pool.start()
    try:
        assert client.get(f"/tasks/{task['id']}?wait=20").get_json()["status"] == "succeeded"
    finally:
        runtime_of(worker_app).pool.stop(grace=5)


def test_etag_changes_with_the_task_and_if_none_match_gives_304(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    task = submit(client, ADD)
    first = client.get(f"/tasks/{task['id']}")
    etag = first.headers["ETag"]
    unchanged = client.get(f"/tasks/{task['id']}", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.data == b""
    assert unchanged.headers["ETag"] == etag
    drain()
    changed = client.get(f"/tasks/{task['id']}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert changed.get_json()["status"] == "succeeded"


def test_retry_after_tells_when_a_delayed_task_is_due(client: FlaskClient) -> None:
    task = submit(client, {**ADD, "delay_seconds": 120})
    assert 110 <= int(client.get(f"/tasks/{task['id']}").headers["Retry-After"]) <= 120


@pytest.mark.slow
def test_sigterm_answers_long_polls_and_hands_back_running_tasks(tmp_path: Path) -> None:
    server = start_server(tmp_path / "t.sqlite3", tmp_path, TASKS_SHUTDOWN_GRACE="1")
    try:
        status, task = server.request(
            "POST", "/tasks", {"type": "sleep", "params": {"seconds": 30}}
        )
        assert status == 202
        wait_until(lambda: server.request("GET", f"/tasks/{task['id']}")[1]["status"] == "running")
        polled: list = []
        poll = threading.Thread(
            target=lambda: polled.append(server.request("GET", f"/tasks/{task['id']}?wait=60"))
        )
        poll.start()
        time.sleep(0.3)
        started = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0
        poll.join(10)
        # Gunicorn alone would hold the open long-poll for its graceful timeout (grace + 5 s).
        assert time.monotonic() - started < 5, "the open long-poll did not hold the shutdown"
        assert polled and polled[0][0] == 200, "the long-poll got an answer, not a cut connection"
    finally:
        server.stop(signal.SIGKILL, group=True)
    again = start_server(tmp_path / "t.sqlite3", tmp_path, TASKS_WORKERS="0")
    try:
        after = again.request("GET", f"/tasks/{task['id']}")[1]
        assert (after["status"], after["attempts"]) == ("queued", 0), "nothing left running"
    finally:
        again.stop()


def test_attempts_with_a_timeout_leave_no_connection_behind(db_path: Path) -> None:
    app = make_app(db_path)
    runtime = runtime_of(app)
    client = app.test_client()
    for _ in range(30):
        submit(client, {"type": "sleep", "params": {"seconds": 0.01}, "timeout_seconds": 5})
    assert runtime.pool.drain() == 30
    from api.store.sqlite import SQLiteStore

    assert isinstance(runtime.store, SQLiteStore)
    assert len(runtime.store._connections) <= 2, "each attempt thread closed its connection"
    runtime.store.close()


def test_the_legacy_start_refuses_a_full_queue_as_documented(
    db_path: Path, database_url: str
) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_MAX_QUEUED=1)
    client = app.test_client()
    assert client.get("/start/1/2").status_code == 200
    full = client.get("/start/1/2")
    assert full.status_code == 503 and full.headers["Retry-After"]
    spec = client.get("/openapi.json").get_json()
    assert "503" in spec["paths"]["/start/{x}/{y}"]["get"]["responses"]
    runtime_of(app).store.close()


# -- bounds ------------------------------------------------------------------------------------


def test_a_full_queue_answers_503_and_creates_nothing(db_path: Path, database_url: str) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_MAX_QUEUED=3)
    client = app.test_client()
    for _ in range(3):
        submit(client, ADD)
    full = client.post("/tasks", json=ADD)
    assert full.status_code == 503 and full.mimetype == "application/problem+json"
    assert full.headers["Retry-After"].isdigit()
    assert "TASKS_MAX_QUEUED" in full.get_json()["detail"]
    assert json.loads(client.get("/tasks").headers["X-Pagination"])["total"] == 3
    runtime_of(app).pool.drain()
    assert client.post("/tasks", json=ADD).status_code == 202
    runtime_of(app).store.close()


def test_an_expired_task_is_gone_before_the_purge_runs(db_path: Path, database_url: str) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_RESULT_TTL=0.5)
    runtime = runtime_of(app)
    client = app.test_client()
    replayed = {"Idempotency-Key": "kept-for-a-day"}
    task = client.post("/tasks", json=ADD, headers=replayed).get_json()
    runtime.pool.drain()
    url = f"/tasks/{task['id']}"
    assert client.get(url).status_code == 200
    assert client.post("/tasks", json=ADD, headers=replayed).status_code == 200
    time.sleep(0.6)

    assert client.get(url).status_code == 404
    assert client.get(f"{url}?wait=1").status_code == 404
    assert client.get(f"/status/{task['id']}").status_code == 404
    listed = client.get("/tasks")
    assert listed.get_json() == [] and json.loads(listed.headers["X-Pagination"])["total"] == 0
    assert client.post(f"{url}/cancel").status_code == 404
    assert client.delete(url).status_code == 404
    again = client.post("/tasks", json=ADD, headers=replayed)
    assert again.status_code == 409 and "no longer exists" in again.get_json()["detail"]
    assert 'taskapi_tasks{status="succeeded"} 0.0' in client.get("/metrics").text
    assert runtime.pool.monitor.purge_batch() == 1, "the purge had not run: reads did not need it"
    runtime.pool.stop(grace=1)
    runtime.store.close()


def test_a_submit_waiting_for_a_task_that_ends_and_expires_meanwhile_answers_202(
    db_path: Path, database_url: str
) -> None:
    """Prefer: wait never turns a created task into a 404, however short TASKS_RESULT_TTL."""
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_RESULT_TTL=1e-9)
    runtime = runtime_of(app)
    runtime.pool.start()
    try:
        answer = app.test_client().post("/tasks", json=ADD, headers={"Prefer": "wait=5"})
    finally:
        runtime.pool.stop(grace=1)
        runtime.store.close()
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["type"] == "add" and "Preference-Applied" not in answer.headers
