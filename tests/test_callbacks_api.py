"""Callbacks over HTTP, on each store: ``callback_url`` refused unless TASKS_CALLBACK_HOSTS
allows it (on a submit, a batch item, a schedule's template), echoed in TaskStatus; the task's
``callback`` once it ended; ``POST /tasks/{id}/callback/retry``.

A task ends here through the service (a queued task cancelled ends at once, and its store
records the delivery pending in the same write); the attempts are made by driving the store as
the sender does (``claim_deliveries``, ``record_deliveries``), so no receiver is needed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.callbacks.hosts import CallbackHosts
from api.models import MAX_CALLBACK_URL_LENGTH, DeliveryState
from api.runtime import Runtime
from api.store import DeliveryAttempt
from tests.conftest import make_app, runtime_of, submit
from tests.test_bad_input import assert_invalid, assert_no_task_created, assert_problem

HOSTS = "hooks.example.com,127.0.0.1:8080,*.receivers.example.org"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
HOOK = "https://hooks.example.com/taskapi?tenant=7"
ADD = {"type": "add", "params": {"x": 1, "y": 2}}
LATER = {**ADD, "delay_seconds": 3600}
ALICE, BOB = "tok-alice-7d1c", "tok-bob-93ae"
KEYS = f"alice:{ALICE},bob:{BOB}"
SOME_ID = "0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10"
HOLDER = "test-sender:1"

#: Each refused ``callback_url``, and a word its message says.
REFUSED = {
    "not a URL": ("not a url", "http"),
    "relative": ("/hooks/taskapi", "absolute"),
    "no host": ("https:///taskapi", "host"),
    "ftp": ("ftp://hooks.example.com/taskapi", "http"),
    "too long": ("https://hooks.example.com/" + "a" * MAX_CALLBACK_URL_LENGTH, "longer"),
    "userinfo": ("https://user:secret@hooks.example.com/", "password"),
    "host not allowed": ("https://evil.example.net/taskapi", "not allowed"),
    "port not allowed": ("http://127.0.0.1:9090/taskapi", "not allowed"),
    "bad port": ("http://hooks.example.com:99999/", "port"),
    "space": ("https://hooks.example.com/a b", "%20"),
    "not ASCII": ("https://hooks.example.com/é", "percent-encode"),
    "not a string": (42, "string"),
    "null": (None, "null"),
}


def _close(app: Flask) -> None:
    runtime = runtime_of(app)
    runtime.pool.stop(grace=5)
    runtime.store.close()


@pytest.fixture
def app_with(db_path: Path, database_url: str) -> Iterator[Callable[..., Flask]]:
    """Make apps on the test's store with settings of their own; each is closed after."""
    made: list[Flask] = []

    def make(**config: Any) -> Flask:
        made.append(make_app(db_path, TASKS_DATABASE_URL=database_url, **config))
        return made[-1]

    yield make
    for app in made:
        _close(app)


@pytest.fixture
def hooked(app_with: Callable[..., Flask]) -> Flask:
    """An app whose callbacks may call HOSTS (its workers not started)."""
    return app_with(TASKS_CALLBACK_HOSTS=HOSTS, TASKS_WEBHOOK_SECRET=SECRET)


@pytest.fixture
def c(hooked: Flask) -> FlaskClient:
    return hooked.test_client()


@pytest.fixture
def rt(hooked: Flask) -> Runtime:
    return runtime_of(hooked)


def read(c: FlaskClient, task_id: str, **kwargs: Any) -> tuple[dict[str, Any], str]:
    response = c.get(f"/tasks/{task_id}", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json(), response.headers["ETag"]


def cancelled(c: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    """A task of ``body`` submitted, then cancelled while queued: ended, its callback due."""
    task = submit(c, body)
    response = c.post(f"/tasks/{task['id']}/cancel")
    assert response.status_code == 200, response.get_json()
    ended = response.get_json()
    assert ended["status"] == "cancelled"
    return ended


def attempt(rt: Runtime, task_id: str, state: DeliveryState, **outcome: Any) -> None:
    """One attempt of the task's delivery (the only one due), claimed and recorded as the
    sender does."""
    now = datetime.now(UTC) + timedelta(seconds=1)
    (job,) = rt.store.claim_deliveries(HOLDER, 10, now, now + timedelta(minutes=1))
    assert job.delivery.task_id == task_id and job.delivery.attempts == 1
    attempt = DeliveryAttempt(task_id, HOLDER, now, state, body=b"{}", **outcome)
    assert rt.store.record_deliveries([attempt]) != [None]


# -- callback_url at submit ------------------------------------------------------------------


@pytest.mark.parametrize("url, word", REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_callback_url_is_422_naming_it_and_nothing_is_created(
    c: FlaskClient, url: Any, word: str
) -> None:
    assert_invalid(
        c.post("/tasks", json={**ADD, "callback_url": url}), "json", "callback_url", word
    )
    assert_no_task_created(c)


def test_with_callbacks_off_every_callback_url_is_refused_saying_so(client: FlaskClient) -> None:
    problem = assert_invalid(
        client.post("/tasks", json={**ADD, "callback_url": HOOK}),
        "json",
        "callback_url",
        "callbacks are off",
        "TASKS_CALLBACK_HOSTS",
    )
    assert list(problem["errors"]["json"]) == ["callback_url"]
    assert_no_task_created(client)


def test_a_refused_callback_url_is_reported_with_the_bodys_other_errors(c: FlaskClient) -> None:
    body = {**ADD, "priority": 1000, "callback_url": "https://evil.example.net/"}
    problem = assert_invalid(c.post("/tasks", json=body), "json", "callback_url", "not allowed")
    assert set(problem["errors"]["json"]) == {"priority", "callback_url"}


@pytest.mark.parametrize(
    "url",
    [
        HOOK,
        "http://127.0.0.1:8080/hook",
        "https://a.receivers.example.org/x/y?z=1#frag",
        "HTTPS://HOOKS.EXAMPLE.COM/Path%20With%20Space",
        "https://hooks.example.com/" + "a" * (MAX_CALLBACK_URL_LENGTH - 26),
    ],
)
def test_an_allowed_callback_url_is_echoed_and_callback_is_null_until_the_end(
    c: FlaskClient, url: str
) -> None:
    assert len(url) <= MAX_CALLBACK_URL_LENGTH
    created = submit(c, {**LATER, "callback_url": url})
    assert created["callback_url"] == url and created["callback"] is None
    task, _ = read(c, created["id"])
    assert task["callback_url"] == url and task["callback"] is None
    (listed,) = c.get("/tasks").get_json()
    assert listed["callback_url"] == url and listed["callback"] is None


def test_a_task_without_callback_url_reads_null_for_both(c: FlaskClient) -> None:
    ended = cancelled(c, ADD)
    assert ended["callback_url"] is None and ended["callback"] is None
    task, _ = read(c, ended["id"])
    assert task["callback_url"] is None and task["callback"] is None


# -- batches and schedules -------------------------------------------------------------------


def test_a_batch_item_with_a_bad_callback_url_is_422_naming_it_and_nothing_is_created(
    c: FlaskClient,
) -> None:
    items = [
        {**ADD, "callback_url": HOOK},
        {**ADD, "callback_url": "https://evil.example.net/"},
        {**ADD, "callback_url": "ftp://hooks.example.com/"},
        {**ADD, "max_attempts": 0},
    ]
    problem = assert_invalid(
        c.post("/batches", json={"tasks": items}), "json", "tasks.1.callback_url", "not allowed"
    )
    assert set(problem["errors"]["json"]) == {
        "tasks.1.callback_url",
        "tasks.2.callback_url",
        "tasks.3.max_attempts",
    }
    assert_no_task_created(c)


def test_a_batch_items_callback_url_is_kept(c: FlaskClient) -> None:
    items = [{**LATER, "callback_url": HOOK}, LATER]
    response = c.post("/batches", json={"tasks": items})
    assert response.status_code == 202, response.get_json()
    ids = response.get_json()["task_ids"]
    assert [read(c, task_id)[0]["callback_url"] for task_id in ids] == [HOOK, None]


def test_a_schedule_template_with_a_bad_callback_url_is_422_naming_it(c: FlaskClient) -> None:
    body = {"every_seconds": 3600, "task": {**ADD, "callback_url": "https://evil.example.net/"}}
    assert_invalid(c.put("/schedules/hourly", json=body), "json", "task.callback_url", "allowed")
    assert c.get("/schedules").get_json() == []


def test_a_schedule_template_with_callbacks_off_is_refused(client: FlaskClient) -> None:
    body = {"every_seconds": 3600, "task": {**ADD, "callback_url": HOOK}}
    assert_invalid(client.put("/schedules/hourly", json=body), "json", "task.callback_url", "off")


def test_a_schedules_tasks_get_its_templates_callback_url(c: FlaskClient) -> None:
    body = {"every_seconds": 3600, "task": {**ADD, "callback_url": HOOK}}
    response = c.put("/schedules/hourly", json=body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["task"]["callback_url"] == HOOK
    triggered = c.post("/schedules/hourly/trigger")
    assert triggered.status_code == 202, triggered.get_json()
    assert triggered.get_json()["callback_url"] == HOOK


# -- the callback of an ended task -----------------------------------------------------------


def test_an_ended_task_shows_its_callback_pending(c: FlaskClient) -> None:
    ended = cancelled(c, {**ADD, "callback_url": HOOK})
    for task in (ended, read(c, ended["id"])[0], c.get("/tasks").get_json()[0]):
        callback = task["callback"]
        assert callback is not None, task
        assert callback["state"] == "pending"
        assert callback["event"] == "task.cancelled"
        assert callback["webhook_id"] == f"msg_{ended['id']}"
        assert callback["attempts"] == 0
        assert callback["next_attempt_at"] is not None
        assert callback["delivered_at"] is None and callback["last_attempt_at"] is None
        assert callback["last_status"] is None and callback["last_error"] is None
    waited = c.get(f"/tasks/{ended['id']}?wait=1").get_json()
    assert waited["callback"]["state"] == "pending"


def test_reads_ask_the_store_for_deliveries_once_a_page_and_only_when_needed(
    c: FlaskClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[str]] = []
    deliveries = rt.store.deliveries

    def spy(task_ids: Any) -> Any:
        asked.append(sorted(task_ids))
        return deliveries(task_ids)

    plain = cancelled(c, ADD)
    queued = submit(c, {**LATER, "callback_url": HOOK})
    ended = [cancelled(c, {**ADD, "callback_url": HOOK}) for _ in range(2)]
    monkeypatch.setattr(rt.store, "deliveries", spy)

    read(c, plain["id"])
    read(c, queued["id"])
    assert c.get("/tasks?status=queued").status_code == 200
    assert asked == [], "no task read needs a delivery"
    listed = c.get("/tasks").get_json()
    assert asked == [sorted(task["id"] for task in ended)], "one call for the page"
    assert {t["id"]: t["callback"] is not None for t in listed} == {
        plain["id"]: False,
        queued["id"]: False,
        ended[0]["id"]: True,
        ended[1]["id"]: True,
    }


def test_prefer_wait_answers_the_ended_task_with_its_callback(c: FlaskClient, rt: Runtime) -> None:
    rt.pool.start()
    response = c.post("/tasks", json={**ADD, "callback_url": HOOK}, headers={"Prefer": "wait=10"})
    assert response.status_code == 200, response.get_json()
    task = response.get_json()
    assert task["status"] == "succeeded" and task["callback_url"] == HOOK
    assert task["callback"]["event"] == "task.succeeded"
    assert task["callback"]["webhook_id"] == f"msg_{task['id']}"


def test_retrying_a_task_keeps_its_callback_url(c: FlaskClient) -> None:
    ended = cancelled(c, {**ADD, "callback_url": HOOK})
    response = c.post(f"/tasks/{ended['id']}/retry")
    assert response.status_code == 202, response.get_json()
    again = response.get_json()
    assert again["retry_of"] == ended["id"] and again["callback_url"] == HOOK
    assert again["callback"] is None


# -- POST /tasks/{id}/callback/retry ---------------------------------------------------------


@pytest.mark.parametrize("task_id", [SOME_ID, "not-an-id"])
def test_retrying_the_callback_of_an_unknown_task_is_404(c: FlaskClient, task_id: str) -> None:
    assert_problem(c.post(f"/tasks/{task_id}/callback/retry"), 404)


def test_retrying_the_callback_of_another_callers_task_is_404(
    app_with: Callable[..., Flask],
) -> None:
    app = app_with(TASKS_CALLBACK_HOSTS=HOSTS, TASKS_WEBHOOK_SECRET=SECRET, TASKS_API_KEYS=KEYS)
    c = app.test_client()
    alice, bob = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}
    task = c.post("/tasks", json={**ADD, "callback_url": HOOK}, headers=alice).get_json()
    assert c.post(f"/tasks/{task['id']}/cancel", headers=alice).status_code == 200
    assert_problem(c.post(f"/tasks/{task['id']}/callback/retry", headers=bob), 404)
    assert_problem(c.post(f"/tasks/{task['id']}/callback/retry"), 401)


def test_retrying_a_callback_the_task_does_not_have_is_409_saying_so(c: FlaskClient) -> None:
    ended = cancelled(c, ADD)
    problem = assert_problem(c.post(f"/tasks/{ended['id']}/callback/retry"), 409)
    assert "no callback_url" in problem["detail"]


def test_retrying_the_callback_of_a_task_not_ended_is_409_saying_so(c: FlaskClient) -> None:
    queued = submit(c, {**LATER, "callback_url": HOOK})
    problem = assert_problem(c.post(f"/tasks/{queued['id']}/callback/retry"), 409)
    assert "queued" in problem["detail"] and "once it ends" in problem["detail"]


def test_retrying_a_pending_callback_is_409_saying_so(c: FlaskClient) -> None:
    ended = cancelled(c, {**ADD, "callback_url": HOOK})
    before = read(c, ended["id"])
    problem = assert_problem(c.post(f"/tasks/{ended['id']}/callback/retry"), 409)
    assert "still pending" in problem["detail"]
    assert read(c, ended["id"]) == before, "nothing changed"


def test_a_failed_callback_is_sent_again_from_zero_with_a_new_etag(
    c: FlaskClient, rt: Runtime
) -> None:
    woken: list[None] = []
    rt.service.callback_due = lambda: woken.append(None)
    ended = cancelled(c, {**ADD, "callback_url": HOOK})
    assert woken == [None], "a cancel here tells the sender its delivery is due"
    _, pending_tag = read(c, ended["id"])

    attempt(rt, ended["id"], DeliveryState.FAILED, status=503, error="503 Service Unavailable")
    failed, failed_tag = read(c, ended["id"])
    assert failed_tag != pending_tag, "the delivery changed: so did the ETag"
    callback = failed["callback"]
    assert (callback["state"], callback["attempts"], callback["last_status"]) == (
        "failed",
        1,
        503,
    )
    assert callback["last_error"] and callback["last_attempt_at"] is not None
    assert callback["next_attempt_at"] is None and callback["delivered_at"] is None

    response = c.post(f"/tasks/{ended['id']}/callback/retry")
    assert response.status_code == 202, response.get_json()
    resent = response.get_json()
    assert resent["callback"]["state"] == "pending"
    assert resent["callback"]["attempts"] == 0
    assert resent["callback"]["next_attempt_at"] is not None
    assert resent["callback"]["webhook_id"] == f"msg_{ended['id']}"
    assert resent["status"] == "cancelled" and resent["id"] == ended["id"]
    assert response.headers["ETag"] not in (failed_tag, pending_tag)
    assert woken == [None, None], "the sender is told a callback is due"

    again, tag = read(c, ended["id"])
    assert again == resent and tag == response.headers["ETag"]
    unchanged = c.get(f"/tasks/{ended['id']}", headers={"If-None-Match": failed_tag})
    assert unchanged.status_code == 200, "the old ETag no longer matches"
    assert_problem(c.post(f"/tasks/{ended['id']}/callback/retry"), 409)  # pending again


def test_a_delivered_callback_can_be_sent_again(c: FlaskClient, rt: Runtime) -> None:
    ended = cancelled(c, {**ADD, "callback_url": HOOK})
    attempt(rt, ended["id"], DeliveryState.DELIVERED, status=204)
    delivered, _ = read(c, ended["id"])
    assert delivered["callback"]["state"] == "delivered"
    assert delivered["callback"]["delivered_at"] is not None
    assert delivered["callback"]["last_status"] == 204

    response = c.post(f"/tasks/{ended['id']}/callback/retry")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["callback"]["state"] == "pending"
    assert response.get_json()["callback"]["attempts"] == 0


def test_the_retry_is_documented(c: FlaskClient) -> None:
    spec = c.get("/openapi.json").get_json()
    operation = spec["paths"]["/tasks/{task_id}/callback/retry"]["post"]
    assert operation["operationId"] == "retryCallback" and operation["tags"] == ["tasks"]
    assert set(operation["responses"]) >= {"202", "404", "409"}
    assert "#/components/schemas/CallbackEvent" in json.dumps(spec["webhooks"]["taskEnded"])


def test_an_attempt_under_way_changes_the_etag(c: FlaskClient, rt: Runtime) -> None:
    ended = cancelled(c, {**ADD, "callback_url": HOOK})
    before, tag = read(c, ended["id"])
    now = datetime.now(UTC)
    (job,) = rt.store.claim_deliveries("sender", 1, now, now + timedelta(minutes=1))
    assert job.delivery.task_id == ended["id"]
    response = c.get(f"/tasks/{ended['id']}", headers={"If-None-Match": tag})
    assert response.status_code == 200, "attempts changed: not a 304"
    assert response.get_json()["callback"]["attempts"] == before["callback"]["attempts"] + 1


def test_a_callback_url_no_longer_allowed_is_not_sent_again_nor_retried(
    c: FlaskClient, rt: Runtime
) -> None:
    ended = cancelled(c, {**ADD, "callback_url": HOOK})
    attempt(rt, ended["id"], DeliveryState.FAILED, status=410, error="answered 410 Gone")
    rt.service.callback_hosts = CallbackHosts("other.example.org")  # the operator changed it
    for path in (f"/tasks/{ended['id']}/callback/retry", f"/tasks/{ended['id']}/retry"):
        problem = assert_problem(c.post(path), 409)
        assert "can no longer be called" in problem["detail"]
        assert "hooks.example.com" in problem["detail"]
    assert read(c, ended["id"])[0]["callback"]["state"] == "failed"
