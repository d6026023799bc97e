"""``/batches`` over HTTP, on each store: all or nothing, counts and ``done`` as tasks end, ETag
and long-poll, cancel, ``GET /tasks?batch=``, Idempotency-Key, the refusals."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.models import MAX_BATCH_SIZE
from api.runtime import Runtime
from tests.conftest import make_app, runtime_of, submit, wait_until
from tests.test_bad_input import assert_invalid, assert_no_task_created, assert_problem

ADD = {"type": "add", "params": {"x": 1, "y": 2}}
LATER = {"type": "add", "params": {"x": 1, "y": 1}, "delay_seconds": 3600}
SOME_ID = "0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10"
COUNTS = ("queued", "running", "succeeded", "failed", "cancelled")


def counts(**given: int) -> dict[str, int]:
    return {status: given.get(status, 0) for status in COUNTS}


def create(client: FlaskClient, items: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    response = client.post("/batches", json={"tasks": items}, **kwargs)
    assert response.status_code == 202, response.get_data(as_text=True)[:2000]
    batch = response.get_json()
    assert response.headers["Location"] == f"/batches/{batch['id']}"
    return batch


def read(client: FlaskClient, batch_id: str, **kwargs: Any) -> dict[str, Any]:
    response = client.get(f"/batches/{batch_id}", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def listed(client: FlaskClient, query: str = "", **kwargs: Any) -> list[dict[str, Any]]:
    response = client.get(f"/tasks?page_size=100{query}", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture
def app_with(db_path: Path, database_url: str) -> Iterator[Callable[..., Flask]]:
    """Make apps on the test's store with settings of their own; each is closed after."""
    made: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = make_app(db_path, TASKS_DATABASE_URL=database_url, **config)
        made.append(app)
        return app

    yield make
    for app in made:
        runtime_of(app).pool.stop(grace=5)
        runtime_of(app).store.close()


# -- creating a batch ---------------------------------------------------------------------


def test_a_batch_is_created_queued_and_its_tasks_run(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    items = [ADD, {"type": "add", "params": {"x": 40, "y": 2}, "priority": 5}, ADD]
    batch = create(client, items)
    assert batch["size"] == 3 and len(batch["task_ids"]) == 3
    assert batch["counts"] == counts(queued=3)
    assert batch["done"] is False and batch["finished_at"] is None
    assert batch["created_at"].endswith("Z")
    assert read(client, batch["id"]) == batch

    tasks = [client.get(f"/tasks/{task_id}").get_json() for task_id in batch["task_ids"]]
    assert [t["params"]["x"] for t in tasks] == [1, 40, 1], "task_ids in the order given"
    assert {t["batch_id"] for t in tasks} == {batch["id"]}
    assert [t["priority"] for t in tasks] == [0, 5, 0], "each item's own options"
    assert all(t["status"] == "queued" and t["depends_on"] == [] for t in tasks)

    assert drain() == 3
    done = read(client, batch["id"])
    assert done["counts"] == counts(succeeded=3)
    assert done["done"] is True and done["finished_at"] is not None
    assert done["finished_at"] >= max(
        client.get(f"/tasks/{task_id}").get_json()["finished_at"] for task_id in batch["task_ids"]
    )
    results = [
        client.get(f"/tasks/{task_id}").get_json()["result"] for task_id in batch["task_ids"]
    ]
    assert results == [3, 42, 3]


def test_counts_and_done_follow_the_tasks(
    client: FlaskClient, runtime: Runtime, drain: Callable[[], int]
) -> None:
    failing = {"type": "fail", "params": {"message": "no"}, "max_attempts": 1}
    batch = create(client, [ADD, failing, LATER, ADD])
    assert drain() == 3
    now = read(client, batch["id"])
    assert now["counts"] == counts(succeeded=2, failed=1, queued=1)
    assert now["done"] is False and now["finished_at"] is None

    later = batch["task_ids"][2]
    assert client.post(f"/tasks/{later}/cancel").status_code == 200
    done = read(client, batch["id"])
    assert done["counts"] == counts(succeeded=2, failed=1, cancelled=1)
    assert done["done"] is True and done["finished_at"] is not None

    assert client.delete(f"/tasks/{later}").status_code == 204
    gone = read(client, batch["id"])
    assert gone["counts"] == counts(succeeded=2, failed=1), "a deleted task is not counted"
    assert gone["size"] == 4 and gone["task_ids"] == batch["task_ids"], "nor forgotten"
    for task_id in batch["task_ids"]:
        if task_id != later:
            assert client.delete(f"/tasks/{task_id}").status_code == 204
    assert_problem(client.get(f"/batches/{batch['id']}"), 404)


def test_the_largest_batch_is_accepted_and_listed(client: FlaskClient) -> None:
    items = [{"type": "add", "params": {"x": n, "y": 0}} for n in range(MAX_BATCH_SIZE)]
    batch = create(client, items)
    assert batch["size"] == MAX_BATCH_SIZE and batch["counts"] == counts(queued=MAX_BATCH_SIZE)
    response = client.get(f"/tasks?batch={batch['id']}&page_size=1")
    assert json.loads(response.headers["X-Pagination"])["total"] == MAX_BATCH_SIZE


def test_get_tasks_filters_by_batch(client: FlaskClient) -> None:
    alone = submit(client, ADD)
    first = create(client, [ADD, ADD])
    second = create(client, [ADD])
    assert sorted(t["id"] for t in listed(client, f"&batch={first['id']}")) == sorted(
        first["task_ids"]
    )
    assert [t["id"] for t in listed(client, f"&batch={second['id'].upper()}")] == second["task_ids"]
    assert listed(client, f"&batch={uuid.uuid4()}") == []
    everything = {t["id"] for t in listed(client)}
    assert everything == {alone["id"], *first["task_ids"], *second["task_ids"]}
    queued = listed(client, f"&batch={first['id']}&status=queued&type=add")
    assert len(queued) == 2
    for malformed in ("nope", "12345678123456781234567812345678", str(uuid.uuid4()) + "0"):
        assert_invalid(client.get(f"/tasks?batch={malformed}"), "query", "batch")


# -- reading a batch: ETag, Retry-After, long-poll -------------------------------------------


def test_a_read_has_an_etag_that_changes_with_its_tasks(
    client: FlaskClient, runtime: Runtime
) -> None:
    batch = create(client, [ADD, ADD])
    first = client.get(f"/batches/{batch['id']}")
    tag = first.headers["ETag"]
    assert first.headers["Retry-After"] == "1", "not done: ask again"
    unchanged = client.get(f"/batches/{batch['id']}", headers={"If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.headers["ETag"] == tag
    assert unchanged.get_data() == b""

    runtime.pool.run_one("test")  # one of its two tasks ends
    half = client.get(f"/batches/{batch['id']}", headers={"If-None-Match": tag})
    assert half.status_code == 200 and half.headers["ETag"] != tag
    assert half.get_json()["counts"] == counts(queued=1, succeeded=1)

    runtime.pool.run_one("test")
    done = client.get(f"/batches/{batch['id']}")
    assert done.get_json()["done"] and "Retry-After" not in done.headers
    assert done.headers["ETag"] not in (tag, half.headers["ETag"])
    again = client.get(f"/batches/{batch['id']}", headers={"If-None-Match": done.headers["ETag"]})
    assert again.status_code == 304

    client.delete(f"/tasks/{batch['task_ids'][0]}")
    fewer = client.get(f"/batches/{batch['id']}", headers={"If-None-Match": done.headers["ETag"]})
    assert fewer.status_code == 200, "a task deleted changes the batch"


def test_wait_holds_the_answer_until_the_batch_is_done(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    batch = create(client, [ADD, ADD, ADD])
    timer = threading.Timer(0.3, drain)
    started = time.monotonic()
    timer.start()
    try:
        done = read(client, batch["id"], query_string={"wait": 30})
    finally:
        timer.join()
    took = time.monotonic() - started
    assert done["done"] is True and done["counts"] == counts(succeeded=3)
    assert 0.25 <= took < 5, took


def test_wait_answers_as_it_is_after_the_wait(client: FlaskClient) -> None:
    batch = create(client, [LATER])
    started = time.monotonic()
    now = read(client, batch["id"], query_string={"wait": 0.3})
    assert 0.25 <= time.monotonic() - started < 5
    assert now["done"] is False and now["counts"] == counts(queued=1)
    assert_invalid(client.get(f"/batches/{batch['id']}?wait=61"), "query", "wait")


# -- cancelling a batch -------------------------------------------------------------------


def test_cancel_cancels_the_queued_tasks_and_asks_the_running_ones(
    client: FlaskClient, live: Runtime
) -> None:
    slow = {"type": "sleep", "params": {"seconds": 30}}
    batch = create(client, [slow, LATER, LATER])
    running = batch["task_ids"][0]
    wait_until(lambda: client.get(f"/tasks/{running}").get_json()["status"] == "running")
    before = submit(client, ADD)  # not of the batch: untouched

    response = client.post(f"/batches/{batch['id']}/cancel")
    assert response.status_code == 200
    after = response.get_json()
    assert after["id"] == batch["id"]
    assert after["counts"]["cancelled"] == 2 and after["done"] is False
    assert client.get(f"/tasks/{running}").get_json()["cancel_requested"] is True
    for task_id in batch["task_ids"][1:]:
        task = client.get(f"/tasks/{task_id}").get_json()
        assert task["status"] == "cancelled" and task["error"] is None

    done = read(client, batch["id"], query_string={"wait": 15})
    assert done["done"] and done["counts"] == counts(cancelled=3)
    again = client.post(f"/batches/{batch['id']}/cancel")
    assert again.status_code == 200 and again.get_json()["counts"] == counts(cancelled=3)
    assert client.get(f"/tasks/{before['id']}").get_json()["status"] != "cancelled"


def test_cancel_leaves_ended_tasks_as_they_are(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    batch = create(client, [ADD, LATER])
    drain()
    after = client.post(f"/batches/{batch['id']}/cancel").get_json()
    assert after["counts"] == counts(succeeded=1, cancelled=1) and after["done"] is True
    assert client.get(f"/tasks/{batch['task_ids'][0]}").get_json()["result"] == 3


@pytest.mark.parametrize("batch_id", [str(uuid.uuid4()), "not-a-uuid", "0" * 40])
def test_an_unknown_or_malformed_batch_is_404(client: FlaskClient, batch_id: str) -> None:
    problem = assert_problem(client.get(f"/batches/{batch_id}"), 404)
    assert batch_id in problem["detail"]
    assert_problem(client.get(f"/batches/{batch_id}?wait=1"), 404)
    assert_problem(client.post(f"/batches/{batch_id}/cancel"), 404)


def test_another_callers_batch_is_as_good_as_unknown(app_with: Callable[..., Flask]) -> None:
    client = app_with(TASKS_API_KEYS="alice:tok-a,bob:tok-b").test_client()
    alice, bob = {"Authorization": "Bearer tok-a"}, {"Authorization": "Bearer tok-b"}
    batch = create(client, [LATER, LATER], headers=alice)
    assert_problem(client.get(f"/batches/{batch['id']}", headers=bob), 404)
    assert_problem(client.post(f"/batches/{batch['id']}/cancel", headers=bob), 404)
    assert listed(client, f"&batch={batch['id']}", headers=bob) == []
    assert read(client, batch["id"], headers=alice)["counts"] == counts(queued=2)
    assert_problem(client.post("/batches", json={"tasks": [ADD]}), 401)
    assert_problem(client.get(f"/batches/{batch['id']}"), 401)


# -- Idempotency-Key ----------------------------------------------------------------------


def test_an_idempotency_key_makes_a_batch_safe_to_send_again(client: FlaskClient) -> None:
    key = {"Idempotency-Key": "nightly-2026-11-23"}
    first = client.post("/batches", json={"tasks": [ADD, LATER]}, headers=key)
    again = client.post("/batches", json={"tasks": [ADD, LATER]}, headers=key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert len(listed(client)) == 2, "nothing created the second time"

    other = client.post("/batches", json={"tasks": [ADD]}, headers=key)
    problem = assert_invalid(other, "headers", "Idempotency-Key")
    assert "different body" in " ".join(problem["errors"]["headers"]["Idempotency-Key"])
    assert len(listed(client)) == 2


def test_a_key_of_tasks_and_a_key_of_batches_never_replay_each_other(
    client: FlaskClient,
) -> None:
    key = {"Idempotency-Key": "shared-key"}
    assert client.post("/tasks", json=ADD, headers=key).status_code == 202
    assert_invalid(
        client.post("/batches", json={"tasks": [ADD]}, headers=key), "headers", "Idempotency-Key"
    )
    other = {"Idempotency-Key": "batch-first"}
    assert client.post("/batches", json={"tasks": [ADD]}, headers=other).status_code == 202
    assert_invalid(client.post("/tasks", json=ADD, headers=other), "headers", "Idempotency-Key")
    assert len(listed(client)) == 2


# -- refusals: nothing is created ----------------------------------------------------------


def test_one_bad_item_among_a_thousand_creates_nothing(client: FlaskClient) -> None:
    items = [{"type": "add", "params": {"x": n, "y": 1}} for n in range(MAX_BATCH_SIZE)]
    items[637] = {"type": "add", "params": {"x": "637", "y": 1}}
    problem = assert_invalid(
        client.post("/batches", json={"tasks": items}), "json", "tasks.637.params.x"
    )
    assert list(problem["errors"]["json"]) == ["tasks.637.params.x"]
    assert_no_task_created(client)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"tasks": []}, "tasks", ("between 1 and 1000",)),
        ({"tasks": [ADD] * (MAX_BATCH_SIZE + 1)}, "tasks", ("between 1 and 1000",)),
        ({}, "tasks", ("missing",)),
        ({"tasks": None}, "tasks", ("null",)),
        ({"tasks": ADD}, "tasks", ("list",)),
        ({"tasks": [ADD], "name": "x"}, "name", ("unknown",)),
        ({"tasks": [ADD, ADD, {"params": {"x": 1, "y": 2}}]}, "tasks.2.type", ("missing",)),
        ({"tasks": [ADD, {"type": "no", "params": {}}]}, "tasks.1.type", ("add", "fail", "sleep")),
        ({"tasks": [ADD, "add"]}, "tasks.1._schema", ("object",)),
        ({"tasks": [ADD, None]}, "tasks.1", ("null",)),
        ({"tasks": [{**ADD, "retries": 3}]}, "tasks.0.retries", ("unknown",)),
        ({"tasks": [{**ADD, "priority": 101}]}, "tasks.0.priority", ("100",)),
        ({"tasks": [{"type": "add", "params": {"x": 1}}]}, "tasks.0.params.y", ("missing",)),
        ({"tasks": [{**ADD, "depends_on": "x"}]}, "tasks.0.depends_on", ("list",)),
        ({"tasks": [ADD, {**ADD, "depends_on": [SOME_ID, 7]}]}, "tasks.1.depends_on.1", ("uuid",)),
        ({"tasks": [{**ADD, "depends_on": [SOME_ID] * 1001}]}, "tasks.0.depends_on", ("1000",)),
    ],
)  # fmt: skip
def test_an_invalid_batch_is_422_naming_the_item_and_field(
    client: FlaskClient, body: dict[str, Any], field: str, words: tuple[str, ...]
) -> None:
    assert_invalid(client.post("/batches", json=body), "json", field, *words)
    assert_no_task_created(client)


def test_a_batch_depending_on_unknown_tasks_creates_nothing(client: FlaskClient) -> None:
    known = submit(client, LATER)
    unknown = str(uuid.uuid4())
    items = [ADD, {**ADD, "depends_on": [known["id"], unknown]}, {**ADD, "depends_on": [unknown]}]
    problem = assert_invalid(
        client.post("/batches", json={"tasks": items}), "json", "tasks.1.depends_on", unknown
    )
    assert set(problem["errors"]["json"]) == {"tasks.1.depends_on", "tasks.2.depends_on"}
    assert known["id"] not in json.dumps(problem["errors"])
    assert [t["id"] for t in listed(client)] == [known["id"]], "nothing of the batch created"


def test_a_body_that_is_not_json_is_refused(client: FlaskClient) -> None:
    assert_problem(client.post("/batches", data="tasks=1", content_type="text/plain"), 415)
    assert_problem(client.post("/batches", data="{", content_type="application/json"), 400)
    assert_no_task_created(client)


def test_a_full_queue_creates_none_of_the_batch(app_with: Callable[..., Flask]) -> None:
    client = app_with(TASKS_MAX_QUEUED="4").test_client()
    create(client, [LATER, LATER])
    refused = client.post("/batches", json={"tasks": [LATER, LATER, LATER]})
    problem = assert_problem(refused, 503)
    assert refused.headers["Retry-After"] and "4" in problem["detail"]
    assert len(listed(client)) == 2
    assert create(client, [LATER, LATER])["size"] == 2, "what fits is taken"


def test_a_body_over_the_limit_is_413(app_with: Callable[..., Flask]) -> None:
    client = app_with(TASKS_MAX_BODY_BYTES="4096").test_client()
    items = [{"type": "add", "params": {"x": n, "y": n}} for n in range(200)]
    assert len(json.dumps({"tasks": items})) > 4096
    problem = assert_problem(client.post("/batches", json={"tasks": items}), 413)
    assert "4096 bytes" in problem["detail"]
    assert_no_task_created(client)


def test_the_default_limit_holds_the_largest_batch_of_small_tasks(client: FlaskClient) -> None:
    """1000 ``add`` items each with a dependency: about 100 KB, well inside 1 MiB."""
    dependency = submit(client, LATER)["id"]
    items = [
        {"type": "add", "params": {"x": 2**62 + n, "y": -(2**62)}, "depends_on": [dependency]}
        for n in range(MAX_BATCH_SIZE)
    ]
    size = len(json.dumps({"tasks": items}))
    assert 100_000 < size < 1024 * 1024 // 5, size
    batch = create(client, items)
    assert batch["counts"] == counts(queued=MAX_BATCH_SIZE)
    task = client.get(f"/tasks/{batch['task_ids'][-1]}").get_json()
    assert task["blocked_by"] == [dependency] and task["batch_id"] == batch["id"]
