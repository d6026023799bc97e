"""Queues over HTTP: a task's queue, the queue filter, ``/queues`` and who may change a queue.

On each store. The app imports this module as its TASKS_IMPORT (``register`` below), for a
task type whose tasks go to the ``emails`` queue unless their submit names another.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from marshmallow import Schema, fields

from api.registry import Registry, TaskContext
from tests.conftest import make_app, runtime_of, submit
from tests.test_api_tasks import assert_problem

ADD = {"type": "add", "params": {"x": 1, "y": 2}}
ALICE, BOB = "tok-alice-51d0", "tok-bob-c3e8"
KEYS = f"alice:{ALICE},bob:{BOB}"
ZERO = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}


class MailParams(Schema):
    to = fields.String(required=True)


def register(registry: Registry) -> None:
    @registry.task("mail", params=MailParams, queue="emails", max_attempts=1)
    def mail(context: TaskContext, params: dict[str, Any]) -> str:
        """Send a mail (pretend)."""
        return f"sent to {params['to']}"


def _app(db_path: Path, database_url: str, **config: Any) -> Flask:
    return make_app(
        db_path, TASKS_DATABASE_URL=database_url, TASKS_IMPORT="tests.test_queues_api", **config
    )


def _close(app: Flask) -> None:
    runtime = runtime_of(app)
    runtime.pool.stop(grace=5)
    runtime.store.close()


@pytest.fixture
def qapp(db_path: Path, database_url: str) -> Iterator[Flask]:
    """An app on each store, without API keys, with the ``mail`` type."""
    app = _app(db_path, database_url)
    yield app
    _close(app)


@pytest.fixture
def c(qapp: Flask) -> FlaskClient:
    return qapp.test_client()


def drain(app: Flask) -> int:
    return runtime_of(app).pool.drain()


def queue(c: FlaskClient, name: str, **headers: str) -> dict[str, Any]:
    response = c.get(f"/queues/{name}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def patch(c: FlaskClient, name: str, body: Any, **headers: str) -> Any:
    return c.patch(f"/queues/{name}", json=body, headers=headers)


# -- a task's queue ----------------------------------------------------------------------------


def test_a_tasks_queue_comes_from_the_body_then_its_type_then_default(c: FlaskClient) -> None:
    assert submit(c, {**ADD, "queue": "reports.daily"})["queue"] == "reports.daily"
    assert submit(c, {"type": "mail", "params": {"to": "ada"}})["queue"] == "emails"
    assert submit(c, {"type": "mail", "params": {"to": "ada"}, "queue": "bulk"})["queue"] == "bulk"
    task = submit(c, ADD)
    assert task["queue"] == "default"
    assert c.get(f"/tasks/{task['id']}").get_json()["queue"] == "default"


def test_task_types_show_their_queue(c: FlaskClient) -> None:
    queues = {t["name"]: t["queue"] for t in c.get("/task-types").get_json()}
    assert queues == {"add": "default", "fail": "default", "sleep": "default", "mail": "emails"}


@pytest.mark.parametrize("bad", ["Emails", "", "-x", "a" * 64, "e mails", "emails\n", 7, None])
def test_a_bad_queue_in_a_submit_is_422_naming_it(c: FlaskClient, bad: Any) -> None:
    body = assert_problem(c.post("/tasks", json={**ADD, "queue": bad}), 422)
    assert list(body["errors"]["json"]) == ["queue"]
    assert c.get("/tasks").get_json() == []


def test_the_list_filters_by_queue(c: FlaskClient) -> None:
    mails = [submit(c, {"type": "mail", "params": {"to": str(n)}})["id"] for n in range(2)]
    submit(c, ADD)
    listed = c.get("/tasks?queue=emails").get_json()
    assert [t["id"] for t in listed] == mails[::-1], "newest first"
    assert len(c.get("/tasks?queue=default").get_json()) == 1
    assert c.get("/tasks?queue=nothing-here").get_json() == []
    assert len(c.get("/tasks?queue=emails&type=add").get_json()) == 0


@pytest.mark.parametrize("bad", ["Emails", "", "a" * 64, "e mails"])
def test_a_bad_queue_filter_is_422_naming_it(c: FlaskClient, bad: str) -> None:
    body = assert_problem(c.get("/tasks", query_string={"queue": bad}), 422)
    assert list(body["errors"]["query"]) == ["queue"]


# -- reading queues ------------------------------------------------------------------------------


def test_default_always_exists(c: FlaskClient) -> None:
    default = {
        "name": "default",
        "paused": False,
        "concurrency": None,
        "counts": ZERO,
        "oldest_queued_seconds": None,
    }
    assert c.get("/queues").get_json() == [default]
    assert queue(c, "default") == default


def test_a_used_queue_is_listed_with_its_counts(qapp: Flask, c: FlaskClient) -> None:
    for n in range(2):
        submit(c, {"type": "mail", "params": {"to": str(n)}})
    assert drain(qapp) == 2
    submit(c, {"type": "mail", "params": {"to": "later"}, "delay_seconds": 3600})
    emails = queue(c, "emails")
    assert emails["counts"] == {**ZERO, "succeeded": 2, "queued": 1}
    assert emails["oldest_queued_seconds"] is None, "the queued task is not ready yet"
    submit(c, {"type": "mail", "params": {"to": "now"}})
    emails = queue(c, "emails")
    assert emails["counts"]["queued"] == 2
    assert 0 <= emails["oldest_queued_seconds"] < 60
    listed = c.get("/queues").get_json()
    assert [q["name"] for q in listed] == ["default", "emails"], "by name, default always"
    assert listed[1]["counts"] == emails["counts"]


def test_an_unknown_queue_is_404(c: FlaskClient) -> None:
    body = assert_problem(c.get("/queues/nothing-here"), 404)
    assert "nothing-here" in body["detail"]
    for bad in ("Emails", "a" * 64, "-x", "e%20mails"):
        assert_problem(c.get(f"/queues/{bad}"), 404)
        assert_problem(patch(c, bad, {"paused": True}), 404)
    assert [q["name"] for q in c.get("/queues").get_json()] == ["default"], "nothing created"


# -- changing queues ----------------------------------------------------------------------------


def test_pause_resume_and_limit_a_queue(qapp: Flask, c: FlaskClient) -> None:
    paused = patch(c, "emails", {"paused": True})
    assert paused.status_code == 200
    assert paused.get_json() == {
        "name": "emails",
        "paused": True,
        "concurrency": None,
        "counts": ZERO,
        "oldest_queued_seconds": None,
    }, "a queue that did not exist is created by its settings"
    task = submit(c, {"type": "mail", "params": {"to": "ada"}})
    other = submit(c, ADD)
    assert drain(qapp) == 1, "a paused queue accepts tasks and starts none"
    assert c.get(f"/tasks/{task['id']}").get_json()["status"] == "queued"
    assert c.get(f"/tasks/{other['id']}").get_json()["status"] == "succeeded"
    limited = patch(c, "emails", {"concurrency": 3}).get_json()
    assert (limited["paused"], limited["concurrency"]) == (True, 3), "only the keys given change"
    assert limited["counts"]["queued"] == 1
    resumed = patch(c, "emails", {"paused": False}).get_json()
    assert (resumed["paused"], resumed["concurrency"]) == (False, 3)
    assert drain(qapp) == 1
    assert c.get(f"/tasks/{task['id']}").get_json()["status"] == "succeeded"
    unlimited = patch(c, "emails", {"concurrency": None}).get_json()
    assert unlimited["concurrency"] is None and unlimited["paused"] is False
    assert patch(c, "emails", {}).get_json() == queue(c, "emails"), "{} changes nothing"


def test_settings_are_kept_in_the_store(db_path: Path, database_url: str) -> None:
    first = _app(db_path, database_url)
    try:
        assert patch(first.test_client(), "reports", {"paused": True, "concurrency": 2}).is_json
    finally:
        _close(first)
    second = _app(db_path, database_url)
    try:
        kept = queue(second.test_client(), "reports")
        assert (kept["paused"], kept["concurrency"]) == (True, 2)
        names = [q["name"] for q in second.test_client().get("/queues").get_json()]
        assert names == ["default", "reports"]
    finally:
        _close(second)


def test_a_setting_creates_the_queue_and_an_empty_change_creates_nothing(c: FlaskClient) -> None:
    nothing = patch(c, "typo", {})
    assert nothing.status_code == 404, "no setting given: no queue made (there is no DELETE)"
    assert "typo" not in [q["name"] for q in c.get("/queues").get_json()]
    created = patch(c, "fresh", {"paused": False})
    assert created.status_code == 200
    assert created.get_json()["paused"] is False and created.get_json()["concurrency"] is None
    assert queue(c, "fresh")["name"] == "fresh"


class Recorder:
    def __init__(self) -> None:
        self.submitted = 0

    def task_submitted(self) -> None:
        self.submitted += 1

    def cancel_requested(self, task_id: str) -> None:
        pass


@pytest.mark.parametrize(
    ("body", "wakes"),
    [
        ({"paused": False}, True),
        ({"concurrency": 5}, True),
        ({"concurrency": None}, True),
        ({"paused": True}, False),
        ({}, False),
    ],
)
def test_a_change_that_may_start_tasks_wakes_the_workers(
    qapp: Flask, c: FlaskClient, body: dict[str, Any], wakes: bool
) -> None:
    assert patch(c, "emails", {"paused": True}).status_code == 200  # the queue exists
    recorder = Recorder()
    runtime_of(qapp).queues.notifier = recorder
    assert patch(c, "emails", body).status_code == 200
    assert recorder.submitted == int(wakes)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"paused": False, "priority": 1}, "priority"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 10001}, "concurrency"),
        ({"concurrency": -1}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"concurrency": "3"}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"paused": "true"}, "paused"),
        ({"paused": 1}, "paused"),
        ({"paused": None}, "paused"),
    ],
)
def test_an_invalid_change_is_422_naming_the_field_and_changes_nothing(
    c: FlaskClient, body: dict[str, Any], field: str
) -> None:
    assert patch(c, "emails", {"concurrency": 7}).status_code == 200
    before = queue(c, "emails")
    problem = assert_problem(patch(c, "emails", {"paused": True, **body}), 422)
    assert list(problem["errors"]["json"]) == [field]
    assert queue(c, "emails") == before
    assert_problem(patch(c, "never-made", body), 422)
    assert_problem(c.get("/queues/never-made"), 404)


def test_a_change_must_be_a_json_object(c: FlaskClient) -> None:
    assert_problem(c.patch("/queues/emails", data="paused", content_type="text/plain"), 415)
    assert_problem(c.patch("/queues/emails", data="", content_type="application/json"), 400)
    assert_problem(c.patch("/queues/emails", data="{", content_type="application/json"), 400)
    assert_problem(patch(c, "emails", [{"paused": True}]), 422)
    assert_problem(c.get("/queues/emails"), 404)


# -- who may change a queue ----------------------------------------------------------------------


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def keyed(db_path: Path, database_url: str) -> Iterator[Flask]:
    app = _app(db_path, database_url, TASKS_API_KEYS=KEYS, TASKS_ADMINS="alice")
    yield app
    _close(app)


def test_with_keys_only_admins_may_change_a_queue(keyed: Flask) -> None:
    k = keyed.test_client()
    refused = assert_problem(patch(k, "emails", {"paused": True}, **auth(BOB)), 403)
    assert "TASKS_ADMINS" in refused["detail"] and "'bob'" in refused["detail"]
    assert_problem(patch(k, "emails", {"paused": "junk"}, **auth(BOB)), 403)
    assert_problem(k.patch("/queues/emails", data="x", headers=auth(BOB)), 403)
    assert_problem(k.get("/queues/emails", headers=auth(BOB)), 404)  # nothing was created
    assert_problem(patch(k, "emails", {"paused": True}), 401)
    done = patch(k, "emails", {"paused": True}, **auth(ALICE))
    assert done.status_code == 200 and done.get_json()["paused"] is True
    assert queue(k, "emails", **auth(BOB))["paused"] is True, "every caller may read"


def test_with_keys_and_no_admins_nobody_may(db_path: Path, database_url: str) -> None:
    app = _app(db_path, database_url, TASKS_API_KEYS=KEYS)
    try:
        k = app.test_client()
        for token in (ALICE, BOB):
            refused = assert_problem(patch(k, "default", {"paused": True}, **auth(token)), 403)
            assert "add" in refused["detail"] and "TASKS_ADMINS" in refused["detail"]
        assert queue(k, "default", **auth(ALICE))["paused"] is False
    finally:
        _close(app)


def test_counts_cover_every_caller(keyed: Flask) -> None:
    k = keyed.test_client()
    for token in (ALICE, BOB, BOB):
        response = k.post("/tasks", json={**ADD, "queue": "shared"}, headers=auth(token))
        assert response.status_code == 202
    for token in (ALICE, BOB):
        assert queue(k, "shared", **auth(token))["counts"]["queued"] == 3
        listed = k.get("/queues", headers=auth(token)).get_json()
        assert {q["name"]: q["counts"]["queued"] for q in listed} == {"default": 0, "shared": 3}
    mine = k.get("/tasks?queue=shared", headers=auth(ALICE)).get_json()
    assert len(mine) == 1, "the task list stays the caller's own"


# -- which queues a process takes ------------------------------------------------------------


def test_tasks_queues_limits_what_the_workers_take(db_path: Path, database_url: str) -> None:
    app = _app(db_path, database_url, TASKS_QUEUES="emails, bulk")
    try:
        c = app.test_client()
        mail = submit(c, {"type": "mail", "params": {"to": "ada"}})
        other = submit(c, ADD)
        assert drain(app) == 1
        assert c.get(f"/tasks/{mail['id']}").get_json()["status"] == "succeeded"
        assert c.get(f"/tasks/{other['id']}").get_json()["status"] == "queued"
        assert queue(c, "default")["counts"]["queued"] == 1, "its API still takes every queue"
    finally:
        _close(app)


def test_a_resumed_queues_tasks_start_within_a_second(db_path: Path, database_url: str) -> None:
    """The workers poll rarely here: only the wake-up of the change can start the task soon."""
    app = _app(db_path, database_url, TASKS_POLL_INTERVAL=30)
    try:
        c = app.test_client()
        assert patch(c, "emails", {"paused": True}).status_code == 200
        runtime_of(app).pool.start()
        task = submit(c, {"type": "mail", "params": {"to": "ada"}})
        time.sleep(0.3)
        assert c.get(f"/tasks/{task['id']}").get_json()["status"] == "queued"
        resumed_at = time.monotonic()
        assert patch(c, "emails", {"paused": False}).status_code == 200
        done = c.get(f"/tasks/{task['id']}?wait=5").get_json()
        assert done["status"] == "succeeded"
        assert time.monotonic() - resumed_at < 1.0
    finally:
        _close(app)
