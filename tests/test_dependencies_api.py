"""``depends_on`` over HTTP, on each store: a task waits, ``queued`` with ``blocked_by``, until
its dependencies succeeded; one that fails or is cancelled cancels it (DependencyFailed), down
the chain; ids that are not the caller's tasks are refused. What a user sees, read back."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.models import MAX_DEPENDENCIES
from api.runtime import Runtime
from tests.conftest import make_app, runtime_of, submit
from tests.test_bad_input import assert_invalid, assert_no_task_created, assert_problem

LATER = {"type": "add", "params": {"x": 1, "y": 1}, "delay_seconds": 3600}
FAILING = {"type": "fail", "params": {"message": "upstream down"}, "max_attempts": 1}


def add(x: int, y: int, *depends_on: str, **options: Any) -> dict[str, Any]:
    return {"type": "add", "params": {"x": x, "y": y}, "depends_on": list(depends_on), **options}


def task(client: FlaskClient, task_id: str) -> dict[str, Any]:
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def run_one(runtime: Runtime) -> bool:
    return runtime.pool.run_one("test")


def assert_dependency_failed(found: dict[str, Any], cause: str) -> None:
    assert found["status"] == "cancelled", found
    assert found["error"]["type"] == "DependencyFailed", found
    assert cause in found["error"]["message"], found
    assert found["finished_at"] is not None and found["started_at"] is None


@pytest.fixture
def keyed(db_path: Path, database_url: str) -> Iterator[FlaskClient]:
    """A client of an app with two callers, alice and bob."""
    app: Flask = make_app(
        db_path, TASKS_DATABASE_URL=database_url, TASKS_API_KEYS="alice:tok-a,bob:tok-b"
    )
    yield app.test_client()
    runtime_of(app).pool.stop(grace=5)
    runtime_of(app).store.close()


ALICE, BOB = {"Authorization": "Bearer tok-a"}, {"Authorization": "Bearer tok-b"}


# -- chains ------------------------------------------------------------------------------


def test_a_chain_of_three_runs_in_order_as_blocked_by_shrinks(
    client: FlaskClient, runtime: Runtime
) -> None:
    first = submit(client, add(1, 2))
    second = submit(client, add(3, 4, first["id"], priority=100))
    third = submit(client, add(5, 6, second["id"], priority=100))
    assert (first["depends_on"], first["blocked_by"]) == ([], [])
    assert (second["depends_on"], second["blocked_by"]) == ([first["id"]], [first["id"]])
    assert (third["depends_on"], third["blocked_by"]) == ([second["id"]], [second["id"]])

    assert run_one(runtime), "only the first is ready, whatever the others' priority"
    assert task(client, first["id"])["status"] == "succeeded"
    now = task(client, second["id"])
    assert (now["status"], now["blocked_by"], now["depends_on"]) == ("queued", [], [first["id"]])
    assert task(client, third["id"])["blocked_by"] == [second["id"]]

    assert run_one(runtime)
    assert task(client, second["id"])["result"] == 7
    assert task(client, third["id"])["blocked_by"] == []
    assert run_one(runtime) and not run_one(runtime)
    ends = [task(client, t["id"]) for t in (first, second, third)]
    assert [t["result"] for t in ends] == [3, 7, 11]
    assert ends[0]["finished_at"] <= ends[1]["started_at"]
    assert ends[1]["finished_at"] <= ends[2]["started_at"]
    assert ends[2]["depends_on"] == [second["id"]], "what it waited for stays shown"


def test_a_failure_in_the_middle_cancels_the_rest_of_the_chain(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    first = submit(client, add(1, 2))
    middle = submit(client, {**FAILING, "depends_on": [first["id"]]})
    last = submit(client, add(5, 6, middle["id"]))
    assert drain() == 2, "the last never runs"
    assert task(client, first["id"])["status"] == "succeeded"
    assert task(client, middle["id"])["status"] == "failed"
    ended = task(client, last["id"])
    assert_dependency_failed(ended, middle["id"])
    assert ended["blocked_by"] == [middle["id"]] and ended["attempts"] == 0


def test_cancelling_the_first_cancels_the_chain_at_once(client: FlaskClient) -> None:
    first = submit(client, LATER)
    second = submit(client, add(3, 4, first["id"]))
    third = submit(client, add(5, 6, second["id"]))
    cancelled = client.post(f"/tasks/{first['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert_dependency_failed(task(client, second["id"]), first["id"])
    assert_dependency_failed(task(client, third["id"]), second["id"])
    assert_problem(client.post(f"/tasks/{third['id']}/cancel"), 409)


def test_a_dependency_that_failed_already_makes_its_dependant_cancelled_at_submit(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    failed = submit(client, FAILING)
    drain()
    assert task(client, failed["id"])["status"] == "failed"
    response = client.post("/tasks", json=add(1, 1, failed["id"]))
    assert response.status_code == 202, "created, and shown as it ended"
    created = response.get_json()
    assert_dependency_failed(created, failed["id"])
    assert response.headers["Location"] == f"/tasks/{created['id']}"
    assert task(client, created["id"]) == created
    assert drain() == 0


def test_a_cancelled_dependant_can_be_retried_and_then_runs(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    failed = submit(client, FAILING)
    dependant = submit(client, add(2, 2, failed["id"]))
    drain()
    assert_dependency_failed(task(client, dependant["id"]), failed["id"])
    retried = client.post(f"/tasks/{dependant['id']}/retry")
    assert retried.status_code == 202
    drain()
    assert task(client, retried.get_json()["id"])["result"] == 4


def test_deleting_a_succeeded_dependency_does_not_disturb_its_dependants(
    client: FlaskClient, runtime: Runtime
) -> None:
    done = submit(client, add(1, 1, priority=100))
    other = submit(client, add(2, 2, priority=-100))
    waiting = submit(client, add(3, 3, done["id"], other["id"]))
    assert run_one(runtime)
    assert task(client, done["id"])["status"] == "succeeded"
    assert client.delete(f"/tasks/{done['id']}").status_code == 204
    now = task(client, waiting["id"])
    assert (now["status"], now["blocked_by"]) == ("queued", [other["id"]])
    assert now["depends_on"] == [done["id"], other["id"]]
    assert run_one(runtime) and run_one(runtime)
    assert task(client, waiting["id"])["result"] == 6


def test_deleting_a_dependant_leaves_the_dependency_alone(client: FlaskClient) -> None:
    first = submit(client, LATER)
    dependant = submit(client, add(1, 1, first["id"]))
    client.post(f"/tasks/{dependant['id']}/cancel")
    assert client.delete(f"/tasks/{dependant['id']}").status_code == 204
    assert task(client, first["id"])["status"] == "queued"


# -- fan-in ------------------------------------------------------------------------------


def test_a_task_waits_for_a_batch_of_a_hundred(
    client: FlaskClient, runtime: Runtime, drain: Callable[[], int]
) -> None:
    items = [{"type": "add", "params": {"x": n, "y": 0}} for n in range(100)]
    batch = client.post("/batches", json={"tasks": items}).get_json()
    fan_in = submit(client, add(0, 0, *batch["task_ids"], priority=100))
    assert fan_in["blocked_by"] == batch["task_ids"] == fan_in["depends_on"]
    for _ in range(60):
        assert run_one(runtime)
    now = task(client, fan_in["id"])
    assert now["status"] == "queued" and len(now["blocked_by"]) == 40
    assert set(now["blocked_by"]) < set(batch["task_ids"])
    assert drain() == 41
    ended = task(client, fan_in["id"])
    assert (ended["status"], ended["blocked_by"]) == ("succeeded", [])
    finished = [task(client, t)["finished_at"] for t in batch["task_ids"]]
    assert max(finished) <= ended["started_at"]


def test_a_batch_may_depend_on_earlier_tasks_and_batches(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    alone = submit(client, add(1, 1))
    earlier = client.post("/batches", json={"tasks": [add(2, 2)]}).get_json()
    items = [add(3, 3, alone["id"]), add(4, 4, earlier["task_ids"][0], alone["id"]), add(5, 5)]
    batch = client.post("/batches", json={"tasks": items}).get_json()
    first, second, third = (task(client, t) for t in batch["task_ids"])
    assert first["blocked_by"] == [alone["id"]]
    assert second["blocked_by"] == [earlier["task_ids"][0], alone["id"]]
    assert third["blocked_by"] == []
    drain()
    done = client.get(f"/batches/{batch['id']}").get_json()
    assert done["done"] and done["counts"]["succeeded"] == 3


def test_a_failed_dependency_shows_in_the_counts_of_its_dependants_batch(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    failing = submit(client, FAILING)
    batch = client.post(
        "/batches", json={"tasks": [add(1, 1, failing["id"]), add(2, 2)]}
    ).get_json()
    drain()
    done = client.get(f"/batches/{batch['id']}?wait=5").get_json()
    assert done["done"] is True
    assert (done["counts"]["cancelled"], done["counts"]["succeeded"]) == (1, 1)


# -- refusals -----------------------------------------------------------------------------


def test_ids_given_twice_count_once_and_are_read_in_lower_case(client: FlaskClient) -> None:
    first, second = submit(client, LATER), submit(client, LATER)
    given = [second["id"].upper(), first["id"], second["id"], first["id"].upper()]
    created = submit(client, add(1, 1, *given))
    assert created["depends_on"] == [second["id"], first["id"]]
    assert created["blocked_by"] == created["depends_on"]


def test_unknown_dependencies_are_422_naming_each_and_create_nothing(
    client: FlaskClient,
) -> None:
    known = submit(client, LATER)
    unknown = [str(uuid.uuid4()), str(uuid.uuid4())]
    response = client.post("/tasks", json=add(1, 1, known["id"], *unknown))
    problem = assert_invalid(response, "json", "depends_on", *unknown)
    assert known["id"] not in " ".join(problem["errors"]["json"]["depends_on"])
    assert "2 of the ids" in problem["detail"]
    assert [t["id"] for t in client.get("/tasks").get_json()] == [known["id"]]


def test_a_deleted_dependency_is_unknown(client: FlaskClient, drain: Callable[[], int]) -> None:
    gone = submit(client, add(1, 1))
    drain()
    client.delete(f"/tasks/{gone['id']}")
    assert_invalid(client.post("/tasks", json=add(1, 1, gone["id"])), "json", "depends_on")


@pytest.mark.parametrize(
    ("depends_on", "field", "words"),
    [
        ("0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10", "depends_on", ("list",)),
        ({"id": "x"}, "depends_on", ("list",)),
        (None, "depends_on", ("null",)),
        (["0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10", "not-an-id"], "depends_on.1", ("uuid",)),
        ([7], "depends_on.0", ("uuid",)),
        (["0b9f7d2e8c1a4f439d8e5c2b1a7e6f10"], "depends_on.0", ("uuid",)),
        (["{0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10}"], "depends_on.0", ("uuid",)),
        ([str(uuid.UUID(int=n)) for n in range(MAX_DEPENDENCIES + 1)], "depends_on", ("1000",)),
    ],
)
def test_a_malformed_depends_on_is_422(
    client: FlaskClient, depends_on: Any, field: str, words: tuple[str, ...]
) -> None:
    body = {"type": "add", "params": {"x": 1, "y": 1}, "depends_on": depends_on}
    assert_invalid(client.post("/tasks", json=body), "json", field, *words)
    assert_no_task_created(client)


def test_another_callers_task_cannot_be_depended_on(keyed: FlaskClient) -> None:
    theirs = keyed.post("/tasks", json=LATER, headers=ALICE).get_json()
    response = keyed.post("/tasks", json=add(1, 1, theirs["id"]), headers=BOB)
    assert_invalid(response, "json", "depends_on", theirs["id"])
    batch = keyed.post("/batches", json={"tasks": [add(1, 1, theirs["id"])]}, headers=BOB)
    assert_invalid(batch, "json", "tasks.0.depends_on", theirs["id"])
    assert keyed.get("/tasks", headers=BOB).get_json() == []
    mine = keyed.post("/tasks", json=add(1, 1, theirs["id"]), headers=ALICE)
    assert mine.status_code == 202 and mine.get_json()["blocked_by"] == [theirs["id"]]


def test_a_schedule_cannot_make_tasks_that_depend_on_others(client: FlaskClient) -> None:
    dependency = submit(client, LATER)
    body = {"every_seconds": 60, "task": add(1, 1, dependency["id"])}
    problem = assert_invalid(client.put("/schedules/nightly", json=body), "json", "task.depends_on")
    assert "schedule" in problem["errors"]["json"]["task.depends_on"][0]
    assert client.get("/schedules").get_json() == []
