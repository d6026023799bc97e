"""``GET /metrics``: Prometheus text that parses, moves as tasks run, and adds up processes."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from marshmallow import Schema
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import queue_families
from api.models import MAX_LOST_ATTEMPTS, NewTask, QueueState, ScheduleSpec, Status
from api.registry import TaskContext, TaskType
from tests.conftest import make_app, submit
from tests.processes import Server, children, start_server
from tests.store.tasks import claim

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_move_as_tasks_are_created_run_retried_and_end(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    before = scrape(client)
    for x in range(3):
        submit(client, {"type": "add", "params": {"x": x, "y": 1}})
    submit(client, {"type": "fail", "params": {"message": "no"}, "max_attempts": 1})
    flaky = {"type": "fail", "params": {"message": "once", "succeed_after": 1}, "max_attempts": 2}
    submit(client, flaky)
    later = submit(client, {"type": "add", "params": {"x": 1, "y": 1}, "delay_seconds": 60})
    queued = scrape(client)
    assert value(queued, "taskapi_tasks", status="queued") == 6
    assert value(queued, "taskapi_tasks_created_total", type="add") == 4
    assert value(queued, "taskapi_tasks_created_total", type="fail") == 2
    assert client.post(f"/tasks/{later['id']}/cancel").status_code == 200
    assert drain() == 5
    retried = scrape(client)
    assert value(retried, "taskapi_task_retries_total", type="fail") == 1
    assert value(retried, "taskapi_tasks", status="queued") == 1  # the retry, after a backoff
    deadline = time.monotonic() + 15
    while drain() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    after = scrape(client)
    assert value(after, "taskapi_tasks_finished_total", type="add", outcome="succeeded") == 3
    assert value(after, "taskapi_tasks_finished_total", type="add", outcome="cancelled") == 1
    assert value(after, "taskapi_tasks_finished_total", type="fail", outcome="failed") == 1
    assert value(after, "taskapi_tasks_finished_total", type="fail", outcome="succeeded") == 1
    assert value(after, "taskapi_tasks", status="succeeded") == 4
    assert value(after, "taskapi_tasks", status="failed") == 1
    assert value(after, "taskapi_tasks", status="cancelled") == 1
    assert value(after, "taskapi_tasks", status="queued") == 0
    # Attempts: three adds, and the fails' 1 + 2; each waited in the queue first.
    assert value(after, "taskapi_task_run_seconds_count", type="add") == 3
    assert value(after, "taskapi_task_run_seconds_count", type="fail") == 3
    assert value(after, "taskapi_task_queue_wait_seconds_count", type="fail") == 3
    assert value(after, "taskapi_task_run_seconds_bucket", type="add", le="+Inf") == 3
    posts = {"method": "POST", "route": "/tasks", "status": "202"}
    posted = value(after, "taskapi_http_requests_total", **posts)
    assert posted - value(before, "taskapi_http_requests_total", **posts) == 6
    timed = value(
        after, "taskapi_http_request_duration_seconds_count", method="POST", route="/tasks"
    )
    assert timed == posted
    cancels = {"method": "POST", "route": "/tasks/<task_id:task_id>/cancel", "status": "200"}
    assert value(after, "taskapi_http_requests_total", **cancels) == 1


def expect_every_series_of_known_labels_at_zero(text: str) -> None:
    samples = parse(text)
    families = {family.name for family in text_string_to_metric_families(text)}
    for task_type in ("add", "sleep", "fail"):
        for name in (
            "taskapi_tasks_created_total",
            "taskapi_task_retries_total",
            "taskapi_task_run_seconds_count",
            "taskapi_task_queue_wait_seconds_count",
        ):
            assert samples[(name, frozenset({("type", task_type)}))] == 0, (name, task_type)
        for outcome in ("succeeded", "failed", "cancelled"):
            labels = frozenset({("type", task_type), ("outcome", outcome)})
            assert samples[("taskapi_tasks_finished_total", labels)] == 0
    for status in Status:
        assert samples[("taskapi_tasks", frozenset({("status", status.value)}))] == 0
        labels = frozenset({("queue", "default"), ("status", status.value)})
        assert samples[("taskapi_queue_tasks", labels)] == 0
    default = frozenset({("queue", "default")})
    assert samples[("taskapi_queue_oldest_queued_seconds", default)] == 0
    assert samples[("taskapi_queue_paused", default)] == 0
    assert ("taskapi_queue_concurrency_limit", default) not in samples, "no limit, no series"
    assert {"taskapi_http_requests", "taskapi_http_request_duration_seconds"} <= families
    assert {
        "taskapi_queue_tasks",
        "taskapi_queue_oldest_queued_seconds",
        "taskapi_queue_paused",
        "taskapi_queue_concurrency_limit",
    } <= families


def test_every_family_is_there_from_the_first_scrape(client: FlaskClient) -> None:
    response = client.get("/metrics")
    expect_every_series_of_known_labels_at_zero(response.get_data(as_text=True))


@pytest.mark.slow
def test_a_fresh_server_shows_every_family_at_its_first_scrape(tmp_path: Path) -> None:
    server = start_server(tmp_path / "fresh.sqlite3", tmp_path, TASKS_WORKERS="1")
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            expect_every_series_of_known_labels_at_zero(response.read().decode())
    finally:
        server.stop()


def test_unmatched_paths_share_one_route_label(client: FlaskClient) -> None:
    for n in range(3):
        assert client.get(f"/no/such/path/{n}").status_code == 404
    samples = scrape(client)
    assert value(samples, "taskapi_http_requests_total", method="GET", route="unmatched",
                 status="404") == 3  # fmt: skip
    routes = {dict(labels).get("route") for name, labels in samples if "http" in name}
    assert not any(route and route.startswith("/no/") for route in routes)


@pytest.mark.slow
def test_every_process_of_a_server_adds_to_one_set_of_metrics(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # left by an earlier run
    server = start_server(
        tmp_path / "tasks.sqlite3",
        tmp_path,
        "--processes",
        "2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    try:
        _check_processes_add_up(server, metrics_dir)
    finally:
        server.stop()


def _check_processes_add_up(server: Server, metrics_dir: Path) -> None:
    _both_processes(server)
    submitted, deadline = 0, time.monotonic() + 30

    def writers() -> set[str]:
        return {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}

    # A connection each; the kernel hands them to either process: go on until both counted.
    while submitted < 20 or len(writers()) < 2:
        assert time.monotonic() < deadline, f"one process took every request: {writers()}"
        body = {"type": "add", "params": {"x": submitted, "y": 0}}
        assert server.request("POST", "/tasks", body)[0] == 202
        submitted += 1
    for _ in range(6):  # each scrape may be answered by either process
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            samples = parse(response.read().decode())
        assert value(samples, "taskapi_tasks_created_total", type="add") == submitted
        posts = {"method": "POST", "route": "/tasks", "status": "202"}
        assert value(samples, "taskapi_http_requests_total", **posts) == submitted


def test_metrics_need_a_key_when_keys_are_on(tmp_path: Path) -> None:
    from tests.conftest import make_app

    app = make_app(tmp_path / "k.sqlite3", TASKS_API_KEYS="ops:s3cret-metrics")
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})
    assert ok.status_code == 200 and b"taskapi_tasks{" in ok.data


def test_no_server_environment_leaks_into_the_tests() -> None:
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


@pytest.mark.slow
def test_metrics_survive_a_server_process_that_exits_and_is_replaced(tmp_path: Path) -> None:
    server = start_server(tmp_path / "tasks.sqlite3", tmp_path, "--processes", "2")
    try:
        children = _both_processes(server)
        master = server.api_master()
        os.kill(children[0], signal.SIGTERM)  # it exits cleanly; gunicorn starts another
        deadline = time.monotonic() + 20
        while (now := _children(master)) == children or len(now) != 2:
            assert time.monotonic() < deadline, "no new server process"
            time.sleep(0.1)
        for n in range(20):
            status, _ = server.request(
                "POST", "/tasks", {"type": "add", "params": {"x": n, "y": 0}}
            )
            assert status == 202
        for _ in range(4):
            with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
                assert value(parse(response.read().decode()), "taskapi_tasks_created_total",
                             type="add") == 20  # fmt: skip
    finally:
        server.stop()


def _both_processes(server: Server) -> list[int]:
    """The two API processes, once both run (/ready answered when one did)."""
    deadline = time.monotonic() + 20
    master = server.api_master()
    while len(children := _children(master)) != 2:
        assert time.monotonic() < deadline, "the second server process did not start"
        time.sleep(0.1)
    return children


def _children(pid: int) -> list[int]:
    return children(pid)


def test_tasks_taken_back_from_a_lost_worker_are_counted(client: FlaskClient) -> None:
    runtime = client.application.extensions["taskapi"]
    once = submit(client, {"type": "add", "params": {"x": 1, "y": 1}, "max_attempts": 1})
    twice = submit(client, {"type": "add", "params": {"x": 1, "y": 1}, "max_attempts": 2})
    now = datetime.now(UTC)
    for _ in (once, twice):  # claimed by a worker that then died: leases already over
        assert claim(runtime.store, "lost", now, now - timedelta(seconds=1))
    assert runtime.pool.monitor.recover_lost() == 2
    samples = scrape(client)
    assert value(samples, "taskapi_task_retries_total", type="add") == 2, "both run again"
    assert value(samples, "taskapi_tasks_finished_total", type="add", outcome="failed") == 0
    for _ in range(2 * (MAX_LOST_ATTEMPTS - 1)):  # lost again and again: both fail
        now = datetime.now(UTC)
        assert claim(runtime.store, "lost", now, now - timedelta(seconds=1))
        assert runtime.pool.monitor.recover_lost() == 1
    samples = scrape(client)
    assert value(samples, "taskapi_tasks_finished_total", type="add", outcome="failed") == 2
    assert value(samples, "taskapi_task_retries_total", type="add") == 2 * MAX_LOST_ATTEMPTS - 2


def test_a_task_handed_back_at_shutdown_after_a_cancel_counts_as_cancelled(db_path: Path) -> None:
    from tests.conftest import make_app

    release = threading.Event()

    def stubborn(context: TaskContext, params: dict[str, Any]) -> str:
        release.wait(30)  # ignores the stop signal, like a task blocked in I/O
        return "late"

    app = make_app(db_path, TASKS_WORKERS=1)
    runtime = app.extensions["taskapi"]
    runtime.registry.add(TaskType("stubborn", Schema, stubborn))
    task = runtime.service.submit({"type": "stubborn", "params": {}}).task
    runtime.pool.start()
    try:
        deadline = time.monotonic() + 10
        while runtime.store.get(task.id, datetime.now(UTC)).status is not Status.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        runtime.service.cancel(task.id)  # asked; the task does not listen
        runtime.pool.stop(grace=0.2)
    finally:
        release.set()
    samples = parse(runtime.metrics.exposition()[0].decode())
    assert runtime.store.get(task.id, datetime.now(UTC)).status is Status.CANCELLED
    assert value(samples, "taskapi_tasks_finished_total", type="stubborn", outcome="cancelled") == 1


def test_methods_a_client_invents_share_one_label(client: FlaskClient) -> None:
    for method in ("QWERTY", "FOO", "BAR"):
        client.open("/tasks", method=method)
    samples = scrape(client)
    methods = {dict(labels).get("method") for name, labels in samples if "http" in name}
    assert {"QWERTY", "FOO", "BAR"}.isdisjoint(methods) and "other" in methods


def queue_task(queue: str, created: datetime, delay: float = 0) -> NewTask:
    return NewTask(
        id=str(uuid.uuid4()),
        type="add",
        params={"x": 1, "y": 2, "delay_seconds": 0},
        max_attempts=1,
        timeout_seconds=None,
        priority=0,
        created_at=created,
        run_after=created + timedelta(seconds=delay),
        queue=queue,
    )


def test_queue_gauges_follow_tasks_pauses_and_limits(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    store = client.application.extensions["taskapi"].store
    now = datetime.now(UTC)
    for _ in range(3):
        store.create(queue_task("emails", now - timedelta(seconds=90)))
    store.create(queue_task("reports", now - timedelta(seconds=30)))
    store.create(queue_task("later", now, delay=600))  # not ready: no age
    store.update_queue("reports", {"paused": True})
    store.update_queue("emails", {"concurrency": 2})

    before = scrape(client)
    assert value(before, "taskapi_queue_tasks", queue="emails", status="queued") == 3
    assert value(before, "taskapi_queue_tasks", queue="reports", status="queued") == 1
    assert value(before, "taskapi_queue_tasks", queue="later", status="queued") == 1
    assert value(before, "taskapi_tasks", status="queued") == 5, "the old family is unchanged"
    for status in Status:  # every status of every queue, at 0 until it has tasks
        labels = frozenset({("queue", "reports"), ("status", status.value)})
        assert ("taskapi_queue_tasks", labels) in before
    assert 90 <= value(before, "taskapi_queue_oldest_queued_seconds", queue="emails") < 120
    assert 30 <= value(before, "taskapi_queue_oldest_queued_seconds", queue="reports") < 60
    assert ("taskapi_queue_oldest_queued_seconds", frozenset({("queue", "later")})) in before
    assert value(before, "taskapi_queue_oldest_queued_seconds", queue="later") == 0
    assert value(before, "taskapi_queue_paused", queue="reports") == 1
    assert value(before, "taskapi_queue_paused", queue="emails") == 0
    assert value(before, "taskapi_queue_concurrency_limit", queue="emails") == 2
    assert ("taskapi_queue_concurrency_limit", frozenset({("queue", "reports")})) not in before

    while drain():  # the emails run; the paused reports wait
        pass
    after = scrape(client)
    assert value(after, "taskapi_queue_tasks", queue="emails", status="succeeded") == 3
    assert value(after, "taskapi_queue_tasks", queue="emails", status="queued") == 0
    assert value(after, "taskapi_queue_oldest_queued_seconds", queue="emails") == 0
    assert value(after, "taskapi_queue_tasks", queue="reports", status="queued") == 1
    assert value(after, "taskapi_queue_tasks", queue="default", status="queued") == 0

    store.update_queue("reports", {"paused": False})
    store.update_queue("emails", {"concurrency": None})
    resumed = scrape(client)
    assert value(resumed, "taskapi_queue_paused", queue="reports") == 0
    assert ("taskapi_queue_concurrency_limit", frozenset({("queue", "emails")})) not in resumed


def test_queue_families_of_given_states() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    counts = {status: 0 for status in Status}
    states = [
        QueueState("default", False, None, counts, None),
        QueueState("emails", True, 2, {**counts, Status.RUNNING: 2}, now - timedelta(minutes=5)),
        # A clock a little behind the store's: an age never goes below 0.
        QueueState("skewed", False, None, counts, now + timedelta(seconds=1)),
    ]
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in queue_families(states, now)
        for sample in family.samples
    }
    assert value(samples, "taskapi_queue_tasks", queue="emails", status="running") == 2
    assert value(samples, "taskapi_queue_oldest_queued_seconds", queue="emails") == 300
    assert samples[("taskapi_queue_oldest_queued_seconds", frozenset({("queue", "skewed")}))] == 0
    assert value(samples, "taskapi_queue_paused", queue="emails") == 1
    limits = {dict(labels)["queue"] for name, labels in samples if name.endswith("_limit")}
    assert limits == {"emails"}


# -- schedules ---------------------------------------------------------------------------------

SCHEDULE_FAMILIES = ("taskapi_schedule_fires_total", "taskapi_schedule_skips_total")


def expect_schedule_families(text: str) -> None:
    """Both schedule families are declared (HELP and TYPE), with or without series: before
    the first fire, rate() and absence alerts find the family."""
    lines = text.splitlines()
    for name in SCHEDULE_FAMILIES:
        assert any(line.startswith(f"# HELP {name} ") for line in lines), (name, text)
        assert f"# TYPE {name} counter" in lines, (name, text)


def test_the_schedule_families_are_there_from_the_first_scrape(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    expect_schedule_families(response.get_data(as_text=True))


@pytest.mark.slow
def test_a_fresh_server_declares_the_schedule_families_at_its_first_scrape(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path / "fresh.sqlite3", tmp_path, TASKS_WORKERS="1")
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            expect_schedule_families(response.read().decode())
    finally:
        server.stop()


def test_schedule_fires_and_skips_are_counted_by_schedule_and_reason(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    from api.scheduler.ticker import Ticker

    runtime = client.application.extensions["taskapi"]
    t0 = datetime.now(UTC).replace(microsecond=0)
    add = {"type": "add", "params": {"x": 1, "y": 2}}
    every = ScheduleSpec(cron=None, every_seconds=10, timezone="UTC", task=add)
    runtime.store.put_schedule("", "probe", every, t0 + timedelta(seconds=10), t0)
    gone = ScheduleSpec(cron=None, every_seconds=10, timezone="UTC", task={**add, "type": "gone"})
    # Due two minutes ago: no process had its type for longer than the grace.
    long_ago = t0 - timedelta(minutes=2)
    runtime.store.put_schedule("", "orphan", gone, long_ago, long_ago)
    now = t0
    ticker = Ticker(runtime.store, runtime.registry, metrics=runtime.metrics, clock=lambda: now)

    now = t0 + timedelta(seconds=10, milliseconds=100)
    with caplog.at_level("WARNING", logger="api.scheduler"):
        ticker.tick()  # probe makes a task; orphan's type is gone: skipped
    now = t0 + timedelta(seconds=20, milliseconds=100)
    ticker.tick()  # probe's task is still queued: overlap skip; orphan left a while
    samples = scrape(client)
    probe = {"owner": "", "schedule": "probe"}
    assert value(samples, "taskapi_schedule_fires_total", **probe) == 1
    assert value(samples, "taskapi_schedule_skips_total", **probe, reason="overlap") == 1
    orphan = {"owner": "", "schedule": "orphan", "reason": "unknown_type"}
    assert value(samples, "taskapi_schedule_skips_total", **orphan) == 1
    assert not any(
        name == "taskapi_schedule_fires_total" and ("schedule", "orphan") in labels
        for name, labels in samples
    )
    assert value(samples, "taskapi_tasks_created_total", type="add") == 1, "its task counted"
    assert any("gone" in r.getMessage() for r in caplog.records if r.name == "api.scheduler")


def test_with_api_keys_a_caller_sees_the_series_of_its_own_schedules_only(tmp_path: Path) -> None:
    app = make_app(
        tmp_path / "k.sqlite3",
        TASKS_API_KEYS="alice:a-token,bob:b-token,ops:o-token",
        TASKS_ADMINS="ops",
    )
    client = app.test_client()
    metrics = app.extensions["taskapi"].metrics
    metrics.schedule_fired("alice", "nightly")
    metrics.schedule_skipped("alice", "nightly", "overlap")
    metrics.schedule_fired("bob", "secret-plan")

    def seen(token: str) -> set[tuple[str, str]]:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        samples = parse(response.get_data(as_text=True))
        return {
            (dict(labels)["owner"], dict(labels)["schedule"])
            for name, labels in samples
            if name.startswith("taskapi_schedule_")
        }

    assert seen("a-token") == {("alice", "nightly")}
    assert seen("b-token") == {("bob", "secret-plan")}
    assert seen("o-token") == {("alice", "nightly"), ("bob", "secret-plan")}, "admins see all"
    text = client.get("/metrics", headers={"Authorization": "Bearer b-token"}).get_data(
        as_text=True
    )
    expect_schedule_families(text)  # the families stay declared
    assert "taskapi_tasks_created_total" in text  # the server's own families are shared


# -- batches and dependencies ------------------------------------------------------------------


def test_batches_and_dependency_cancellations_are_counted(client: FlaskClient) -> None:
    first = scrape(client)
    assert value(first, "taskapi_batches_created_total") == 0
    assert ("taskapi_dependency_cancellations_total", frozenset({("type", "add")})) in first
    items = [{"type": "fail", "params": {"message": "no"}, "max_attempts": 1}] * 2
    batch = client.post("/batches", json={"tasks": items}).get_json()
    for failing in batch["task_ids"]:
        waiting = submit(
            client, {"type": "add", "params": {"x": 1, "y": 1}, "depends_on": [failing]}
        )
        submit(client, {"type": "add", "params": {"x": 1, "y": 1}, "depends_on": [waiting["id"]]})
    client.application.extensions["taskapi"].pool.drain()
    samples = scrape(client)
    assert value(samples, "taskapi_batches_created_total") == 1
    assert value(samples, "taskapi_tasks_created_total", type="fail") == 2
    assert value(samples, "taskapi_dependency_cancellations_total", type="add") == 4
    finished = {"type": "add", "outcome": "cancelled"}
    assert value(samples, "taskapi_tasks_finished_total", **finished) == 4
