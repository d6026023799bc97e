"""Schedules over HTTP: set, read, list, delete and trigger them, as a client sees it.

On each store. The fire times themselves (the ticker) are tests/scheduler's; here a schedule's
tasks come from ``POST /schedules/{name}/trigger``. The app imports this module as its
TASKS_IMPORT in the test of a task type that goes away (``register`` below).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from marshmallow import Schema, fields

from api.registry import Registry, TaskContext
from api.scheduler.cron import Timing
from tests.conftest import make_app, runtime_of, submit
from tests.test_api_tasks import assert_problem, parse_time

ADD = {"type": "add", "params": {"x": 1, "y": 2}}
HOURLY = {"every_seconds": 3600, "task": ADD}
ALICE, BOB = "tok-alice-5c1e", "tok-bob-0f7d"
KEYS = f"alice:{ALICE},bob:{BOB}"
T0 = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)


class ReportParams(Schema):
    day = fields.String(required=True)


def register(registry: Registry) -> None:
    @registry.task("report", params=ReportParams)
    def report(context: TaskContext, params: dict[str, Any]) -> str:
        """Write a report (pretend)."""
        return params["day"]


def _close(app: Flask) -> None:
    runtime = runtime_of(app)
    runtime.pool.stop(grace=5)
    runtime.store.close()


@pytest.fixture
def c(client: FlaskClient) -> FlaskClient:
    return client


def put(c: FlaskClient, name: str, body: Any, **headers: str) -> Any:
    return c.put(f"/schedules/{name}", json=body, headers=headers)


def put_ok(c: FlaskClient, name: str, body: Any, status: int = 201) -> dict[str, Any]:
    response = put(c, name, body)
    assert response.status_code == status, response.get_json()
    assert response.headers["Location"] == f"/schedules/{name}"
    return response.get_json()


def frozen(app: Flask, at: datetime) -> None:
    """The schedule service's clock stops at ``at``."""
    runtime_of(app).schedules.clock = lambda: at


def listed(c: FlaskClient, url: str = "/schedules", **headers: str) -> list[dict[str, Any]]:
    response = c.get(url, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# -- set and read ------------------------------------------------------------------------------


def test_a_put_creates_then_replaces(app: Flask, c: FlaskClient) -> None:
    frozen(app, T0)
    created = put_ok(c, "nightly", {"cron": "0 3 * * *", "timezone": "Europe/Paris", "task": ADD})
    assert created == {
        "name": "nightly",
        "cron": "0 3 * * *",
        "every_seconds": None,
        "timezone": "Europe/Paris",
        "task": {"type": "add", "params": {"x": 1, "y": 2, "delay_seconds": 0}, "priority": 0},
        "paused": False,
        "overlap": "skip",
        "catch_up": "latest",
        # 03:00 in Paris (UTC+1 in November) after 22:00 UTC on the 23rd.
        "next_run_at": "2026-11-24T02:00:00.000000Z",
        "last_run_at": None,
        "last_task_id": None,
        "created_at": "2026-11-23T22:00:00.000000Z",
        "updated_at": "2026-11-23T22:00:00.000000Z",
    }
    assert c.get("/schedules/nightly").get_json() == created

    frozen(app, T0 + timedelta(minutes=5))
    body = {
        "every_seconds": 600,
        "task": {"type": "sleep", "params": {"seconds": 1}, "queue": "slow", "max_attempts": 2},
        "overlap": "allow",
        "catch_up": "none",
    }
    replaced = put_ok(c, "nightly", body, status=200)
    assert replaced["created_at"] == created["created_at"], "created_at stays"
    assert replaced["updated_at"] == "2026-11-23T22:05:00.000000Z", "updated_at moves"
    assert (replaced["cron"], replaced["every_seconds"], replaced["timezone"]) == (None, 600, "UTC")
    assert replaced["task"] == {**body["task"], "priority": 0}
    assert (replaced["overlap"], replaced["catch_up"]) == ("allow", "none")
    assert replaced["next_run_at"] == "2026-11-23T22:15:00.000000Z", "a new timing: from now"
    assert c.get("/schedules/nightly").get_json() == replaced


def test_next_run_at_is_the_timings_first_fire_after_now(app: Flask, c: FlaskClient) -> None:
    now = datetime.now(UTC)
    made = put_ok(c, "weekly", {"cron": "@weekly", "timezone": "America/New_York", "task": ADD})
    expected = Timing("@weekly", None, "America/New_York").next_after(now)
    assert expected is not None
    assert parse_time(made["next_run_at"]) - expected < timedelta(seconds=5)
    assert parse_time(made["next_run_at"]) > now


def test_paused_has_no_next_run_and_unpaused_has_one(app: Flask, c: FlaskClient) -> None:
    frozen(app, T0)
    paused = put_ok(c, "later", {**HOURLY, "paused": True})
    assert paused["paused"] is True and paused["next_run_at"] is None
    frozen(app, T0 + timedelta(minutes=10))
    resumed = put_ok(c, "later", HOURLY, status=200)
    assert resumed["paused"] is False
    assert resumed["next_run_at"] == "2026-11-23T23:10:00.000000Z"


def test_a_put_of_the_same_timing_keeps_the_next_fire_time(app: Flask, c: FlaskClient) -> None:
    """A deploy sets every schedule again: none of them may lose or move a fire time."""
    frozen(app, T0)
    first = put_ok(c, "deploy", HOURLY)
    assert first["next_run_at"] == "2026-11-23T23:00:00.000000Z"
    frozen(app, T0 + timedelta(minutes=20))
    again = put_ok(c, "deploy", {**HOURLY, "task": {**ADD, "priority": 5}}, status=200)
    assert again["next_run_at"] == first["next_run_at"], "same timing: the same next fire time"
    assert again["task"]["priority"] == 5
    moved = put_ok(c, "deploy", {**HOURLY, "every_seconds": 1800}, status=200)
    assert moved["next_run_at"] == "2026-11-23T22:50:00.000000Z", "a new timing counts from now"


def test_list_by_name_paginated(c: FlaskClient) -> None:
    assert listed(c) == []
    for name in ("c-report", "a-report", "b-report"):
        put_ok(c, name, HOURLY)
    assert [s["name"] for s in listed(c)] == ["a-report", "b-report", "c-report"]
    page = c.get("/schedules?page=2&page_size=2")
    assert [s["name"] for s in page.get_json()] == ["c-report"]
    pagination = page.headers["X-Pagination"]
    assert '"total": 3' in pagination and '"page": 2' in pagination
    assert_problem(c.get("/schedules?page_size=101"), 422)


# -- delete ------------------------------------------------------------------------------------


def test_delete_then_404_and_its_tasks_stay(c: FlaskClient) -> None:
    put_ok(c, "gone", HOURLY)
    task = c.post("/schedules/gone/trigger").get_json()
    response = c.delete("/schedules/gone")
    assert response.status_code == 204 and response.data == b""
    for answer in (
        c.get("/schedules/gone"),
        c.delete("/schedules/gone"),
        c.post("/schedules/gone/trigger"),
    ):
        body = assert_problem(answer, 404)
        assert "'gone'" in body["detail"] and "PUT /schedules/gone" in body["detail"]
    assert listed(c) == []
    assert c.get(f"/tasks/{task['id']}").status_code == 200, "its tasks stay"
    assert [t["id"] for t in listed(c, "/tasks?schedule=gone")] == [task["id"]]


def test_names_no_schedule_can_have_are_404_on_reads(c: FlaskClient) -> None:
    for bad in ("Nightly", "a" * 64, "-x", "e%20x"):
        assert_problem(c.get(f"/schedules/{bad}"), 404)
        assert_problem(c.delete(f"/schedules/{bad}"), 404)
        assert_problem(c.post(f"/schedules/{bad}/trigger"), 404)


# -- trigger -----------------------------------------------------------------------------------


def test_trigger_makes_the_task_now(app: Flask, c: FlaskClient) -> None:
    put_ok(c, "now", {"every_seconds": 60, "task": {**ADD, "priority": 7, "queue": "reports"}})
    before = datetime.now(UTC)
    response = c.post("/schedules/now/trigger")
    assert response.status_code == 202, response.get_json()
    task = response.get_json()
    assert response.headers["Location"] == f"/tasks/{task['id']}"
    assert (task["type"], task["status"], task["params"]) == (
        "add",
        "queued",
        {"x": 1, "y": 2, "delay_seconds": 0},
    )
    assert (task["priority"], task["queue"], task["max_attempts"]) == (7, "reports", 1)
    assert task["schedule"] == "now"
    assert task["scheduled_for"] == task["created_at"] and parse_time(task["created_at"]) >= before
    schedule = c.get("/schedules/now").get_json()
    assert schedule["last_task_id"] == task["id"]
    assert schedule["last_run_at"] == task["scheduled_for"]
    assert runtime_of(app).pool.drain() == 1
    assert c.get(f"/tasks/{task['id']}").get_json()["result"] == 3


def test_trigger_works_while_paused(c: FlaskClient) -> None:
    put_ok(c, "held", {**HOURLY, "paused": True})
    task = c.post("/schedules/held/trigger").get_json()
    assert task["schedule"] == "held" and task["status"] == "queued"
    held = c.get("/schedules/held").get_json()
    assert held["paused"] is True and held["next_run_at"] is None
    assert held["last_task_id"] == task["id"]


def test_a_full_queue_refuses_a_trigger_as_a_submit(db_path: Path, database_url: str) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_MAX_QUEUED=1)
    try:
        c = app.test_client()
        put_ok(c, "full", HOURLY)
        submit(c, ADD)
        refused = assert_problem(c.post("/schedules/full/trigger"), 503)
        assert refused["detail"] == assert_problem(c.post("/tasks", json=ADD), 503)["detail"]
        assert c.post("/schedules/full/trigger").headers["Retry-After"]
        assert listed(c, "/tasks?schedule=full") == []
    finally:
        _close(app)


def test_a_task_type_gone_is_a_409_and_the_schedule_still_reads(
    db_path: Path, database_url: str
) -> None:
    first = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_IMPORT=__name__)
    try:
        task = {"type": "report", "params": {"day": "monday"}}
        put_ok(first.test_client(), "reports", {"cron": "@daily", "task": task})
    finally:
        _close(first)
    second = make_app(db_path, TASKS_DATABASE_URL=database_url)  # its module is gone
    try:
        c = second.test_client()
        kept = c.get("/schedules/reports")
        assert kept.status_code == 200 and kept.get_json()["task"]["type"] == "report"
        # ...as the spec of this server says a schedule reads, though it knows no `report`.
        from jsonschema import Draft202012Validator

        spec = c.get("/openapi.json").get_json()
        schedule = {"$ref": "#/components/schemas/Schedule", "components": spec["components"]}
        assert list(Draft202012Validator(schedule).iter_errors(kept.get_json())) == []
        assert (
            "report"
            not in spec["components"]["schemas"]["ScheduledTask"]["discriminator"]["mapping"]
        )
        refused = assert_problem(c.post("/schedules/reports/trigger"), 409)
        assert "'report'" in refused["detail"] and "TASKS_IMPORT" in refused["detail"]
        assert listed(c, "/tasks") == [], "no task was made"
        assert c.delete("/schedules/reports").status_code == 204
    finally:
        _close(second)


# -- what is refused ---------------------------------------------------------------------------


BAD_BODIES = {
    "bad cron": ({"cron": "61 * * * *", "task": ADD}, ["cron"]),
    "cron of 6 fields": ({"cron": "0 0 3 * * *", "task": ADD}, ["cron"]),
    "cron that never fires": ({"cron": "0 0 30 2 *", "task": ADD}, ["cron"]),
    "cron not a string": ({"cron": 5, "task": ADD}, ["cron"]),
    "unknown name": ({"cron": "@reboot", "task": ADD}, ["cron"]),
    "unknown zone": ({"cron": "0 3 * * *", "timezone": "Mars/Olympus", "task": ADD}, ["timezone"]),
    "zone of bad shape": ({**HOURLY, "timezone": "../etc/passwd"}, ["timezone"]),
    "both": ({"cron": "0 3 * * *", "every_seconds": 60, "task": ADD}, ["cron", "every_seconds"]),
    "neither": ({"task": ADD}, ["cron", "every_seconds"]),
    # A null is no timing: the message says which is wrong, not "not both".
    "cron null": ({"cron": None, "every_seconds": 5, "task": ADD}, ["cron"]),
    "both null": ({"cron": None, "every_seconds": None, "task": ADD}, ["cron", "every_seconds"]),
    "every 0 seconds": ({"every_seconds": 0, "task": ADD}, ["every_seconds"]),
    "every 366 days": ({"every_seconds": 31_536_001, "task": ADD}, ["every_seconds"]),
    "every 1.5 seconds": ({"every_seconds": 1.5, "task": ADD}, ["every_seconds"]),
    "every '60' seconds": ({"every_seconds": "60", "task": ADD}, ["every_seconds"]),
    "no task": ({"every_seconds": 60}, ["task"]),
    "unknown type": ({**HOURLY, "task": {"type": "nope", "params": {}}}, ["task.type"]),
    "bad params": (
        {**HOURLY, "task": {"type": "add", "params": {"x": "1"}}},
        ["task.params.x", "task.params.y"],
    ),
    "unknown param": (
        {**HOURLY, "task": {**ADD, "params": {"x": 1, "y": 2, "z": 3}}}, ["task.params.z"]
    ),
    "delay in the task": ({**HOURLY, "task": {**ADD, "delay_seconds": 5}}, ["task.delay_seconds"]),
    "bad task option": ({**HOURLY, "task": {**ADD, "priority": 101}}, ["task.priority"]),
    "bad queue": ({**HOURLY, "task": {**ADD, "queue": "Q"}}, ["task.queue"]),
    "bad overlap": ({**HOURLY, "overlap": "queue"}, ["overlap"]),
    "bad catch_up": ({**HOURLY, "catch_up": "all"}, ["catch_up"]),
    "paused not a boolean": ({**HOURLY, "paused": "yes"}, ["paused"]),
    "unknown field": ({**HOURLY, "start_at": "now"}, ["start_at"]),
}  # fmt: skip


@pytest.mark.parametrize(("body", "named"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_an_invalid_body_is_422_naming_the_field_and_nothing_is_stored(
    c: FlaskClient, body: dict[str, Any], named: list[str]
) -> None:
    problem = assert_problem(put(c, "refused", body), 422)
    assert sorted(problem["errors"]["json"]) == sorted(named)
    assert all(m and isinstance(m, str) for ms in problem["errors"]["json"].values() for m in ms)
    assert_problem(c.get("/schedules/refused"), 404)
    assert listed(c) == []


def test_a_bad_template_is_refused_as_post_tasks_refuses_it(c: FlaskClient) -> None:
    """The same messages, keyed under ``task`` (``task._schema`` for a task that is not an
    object, as ``params._schema`` for params that are not one)."""
    for template in (
        {"type": "add", "params": {"x": 2**63}},
        {"type": "fail", "params": {"message": "x" * 4001}, "timeout_seconds": 0},
        {"type": "nope", "params": {}},
        {"params": {}},
        [],
    ):
        as_task = assert_problem(c.post("/tasks", json=template), 422)["errors"]["json"]
        as_template = assert_problem(put(c, "same", {**HOURLY, "task": template}), 422)
        prefixed = {f"task.{k}": v for k, v in as_task.items()}
        assert as_template["errors"]["json"] == prefixed, template


def test_the_messages_say_how_to_fix_it(c: FlaskClient) -> None:
    errors = assert_problem(put(c, "x", {"cron": "0 25 * * *", "task": ADD}), 422)["errors"]
    assert "hour" in errors["json"]["cron"][0] and "0..23" in errors["json"]["cron"][0]
    errors = assert_problem(put(c, "x", {"task": ADD}), 422)["errors"]
    assert "every_seconds" in errors["json"]["cron"][0]


@pytest.mark.parametrize("bad", ["Nightly", "-x", "a" * 64, "e%20x", "x!", "_x"])
def test_a_bad_name_is_422_naming_it_in_the_path(c: FlaskClient, bad: str) -> None:
    problem = assert_problem(put(c, bad, HOURLY), 422)
    assert list(problem["errors"]) == ["path"] and list(problem["errors"]["path"]) == ["name"]
    assert listed(c) == []


def test_a_body_that_is_not_json_is_refused_before_it_is_read(c: FlaskClient) -> None:
    assert_problem(c.put("/schedules/x", data="cron=1", content_type="text/plain"), 415)
    assert_problem(c.put("/schedules/x", data="{", content_type="application/json"), 400)
    assert listed(c) == []


# -- the tasks of a schedule -------------------------------------------------------------------


def test_tasks_filter_by_schedule(app: Flask, c: FlaskClient) -> None:
    put_ok(c, "one", HOURLY)
    put_ok(c, "two", HOURLY)
    ones = [c.post("/schedules/one/trigger").get_json()["id"] for _ in range(2)]
    two = c.post("/schedules/two/trigger").get_json()["id"]
    plain = submit(c, ADD)
    assert plain["schedule"] is None and plain["scheduled_for"] is None
    assert [t["id"] for t in listed(c, "/tasks?schedule=one")] == ones[::-1], "newest first"
    assert [t["id"] for t in listed(c, "/tasks?schedule=two")] == [two]
    assert listed(c, "/tasks?schedule=three") == []
    assert len(listed(c, "/tasks")) == 4
    assert len(listed(c, "/tasks?schedule=one&status=queued&type=add")) == 2


@pytest.mark.parametrize("bad", ["One", "", "a" * 64, "o ne"])
def test_a_bad_schedule_filter_is_422_naming_it(c: FlaskClient, bad: str) -> None:
    body = assert_problem(c.get("/tasks", query_string={"schedule": bad}), 422)
    assert list(body["errors"]["query"]) == ["schedule"]


# -- callers -----------------------------------------------------------------------------------


@pytest.fixture
def keyed(db_path: Path, database_url: str) -> Iterator[FlaskClient]:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_API_KEYS=KEYS)
    yield app.test_client()
    _close(app)


def test_each_caller_has_its_own_schedules(keyed: FlaskClient) -> None:
    alice, bob = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}
    assert keyed.put("/schedules/mine", json=HOURLY, headers=alice).status_code == 201
    task = keyed.post("/schedules/mine/trigger", headers=alice).get_json()
    for refused in (
        keyed.get("/schedules/mine", headers=bob),
        keyed.post("/schedules/mine/trigger", headers=bob),
        keyed.delete("/schedules/mine", headers=bob),
    ):
        assert_problem(refused, 404)
    assert listed(keyed, **bob) == []
    assert listed(keyed, "/tasks?schedule=mine", **bob) == []
    # Bob's schedule of the same name is his own.
    theirs = keyed.put("/schedules/mine", json={**HOURLY, "paused": True}, headers=bob)
    assert theirs.status_code == 201
    assert [s["paused"] for s in listed(keyed, **alice)] == [False]
    assert [s["paused"] for s in listed(keyed, **bob)] == [True]
    assert [t["id"] for t in listed(keyed, "/tasks?schedule=mine", **alice)] == [task["id"]]
    assert_problem(keyed.put("/schedules/mine", json=HOURLY), 401)
    assert_problem(keyed.get("/schedules"), 401)
