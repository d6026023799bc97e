"""The worker pool: retries, priorities, delays, cancellation, wake-ups and shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from marshmallow import Schema, fields

from api.models import Progress, Task
from api.registry import Registry, TaskContext, TaskType
from api.runtime import Runtime
from api.worker import Wakeup
from tests.conftest import make_app, runtime_of, submit, wait_for


class NoParams(Schema):
    pass


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_fail_with_succeed_after_shows_retries_end_to_end(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "fail", "params": {"message": "flaky", "succeed_after": 2}})
    done = wait_for(client, task["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 3
    assert done["result"] == {"attempts": 3}
    assert done["error"] is None


def test_a_task_out_of_attempts_fails_with_its_last_error(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "fail", "params": {"message": "always"}, "max_attempts": 2})
    done = wait_for(client, task["id"])
    assert (done["status"], done["attempts"]) == ("failed", 2)
    assert done["error"] == {"type": "TaskFailure", "message": "always"}


def test_between_attempts_the_task_waits_queued_with_a_backoff(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    task = submit(client, {"type": "fail", "params": {"message": "x", "succeed_after": 1}})
    assert drain() == 1, "the retry is not ready at once"
    waiting = client.get(f"/tasks/{task['id']}").get_json()
    assert waiting["status"] == "queued" and waiting["attempts"] == 1
    assert waiting["error"] == {"type": "TaskFailure", "message": "x"}
    assert waiting["run_after"] > waiting["created_at"]


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    kind = TaskType("t", Schema, lambda c, p: None, backoff_base_seconds=1, backoff_cap_seconds=10)
    assert [kind.backoff_seconds(n, 0.0) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 5, 5]
    assert [kind.backoff_seconds(n, 1.0) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]


def test_higher_priority_runs_first_and_delayed_tasks_wait(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    low = submit(client, {"type": "add", "params": {"x": 1, "y": 0}, "priority": -1})
    high = submit(client, {"type": "add", "params": {"x": 2, "y": 0}, "priority": 5})
    later = submit(client, {"type": "add", "params": {"x": 3, "y": 0}, "delay_seconds": 3600})
    assert drain() == 2
    started = {t["id"]: t["started_at"] for t in client.get("/tasks?status=succeeded").get_json()}
    assert started[high["id"]] < started[low["id"]]
    assert client.get(f"/tasks/{later['id']}").get_json()["status"] == "queued"


def test_sleep_reports_progress_and_stops_soon_after_cancel(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "sleep", "params": {"seconds": 60}})
    url = f"/tasks/{task['id']}"
    wait_until(lambda: (client.get(url).get_json()["progress"] or {}).get("current") == 1)
    progress = client.get(url).get_json()["progress"]
    assert progress["total"] == 60 and "1 of 60" in progress["message"]
    asked = time.monotonic()
    client.post(f"{url}/cancel")
    done = wait_for(client, task["id"])
    assert done["status"] == "cancelled"
    assert done["error"] is None and done["result"] is None
    assert time.monotonic() - asked < 5, "sleep checks for cancellation about every second"


def test_cancel_from_another_process_reaches_the_running_task(db_path: Path) -> None:
    """Two apps on one file stand for two processes: the one that did not run the task cancels."""
    runner = make_app(db_path)
    other = make_app(db_path, TASKS_WORKERS=0)
    runtime_of(runner).pool.start()
    try:
        task = submit(other.test_client(), {"type": "sleep", "params": {"seconds": 60}})
        client = other.test_client()
        wait_until(lambda: client.get(f"/tasks/{task['id']}").get_json()["status"] == "running")
        client.post(f"/tasks/{task['id']}/cancel")
        assert wait_for(client, task["id"], timeout=10)["status"] == "cancelled"
    finally:
        runtime_of(runner).pool.stop(grace=5)


def test_a_submit_wakes_an_idle_worker_without_waiting_for_the_poll(db_path: Path) -> None:
    app = make_app(db_path, TASKS_POLL_INTERVAL=60)
    runtime = runtime_of(app)
    runtime.pool.start()
    try:
        time.sleep(0.2)  # every worker is now idle, waiting up to 60 s
        client = app.test_client()
        task = submit(client, {"type": "add", "params": {"x": 1, "y": 2}})
        assert wait_for(client, task["id"], timeout=10)["status"] == "succeeded"
    finally:
        runtime.pool.stop(grace=5)


def test_tasks_from_another_process_are_found_by_polling(db_path: Path) -> None:
    worker_app = make_app(db_path, TASKS_POLL_INTERVAL=0.1)
    api_app = make_app(db_path, TASKS_WORKERS=0)
    runtime_of(worker_app).pool.start()
    try:
        client = api_app.test_client()
        task = submit(client, {"type": "add", "params": {"x": 1, "y": 2}})
        assert wait_for(client, task["id"], timeout=10)["result"] == 3
    finally:
        runtime_of(worker_app).pool.stop(grace=5)


def test_stop_lets_a_running_task_finish_within_the_grace(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "sleep", "params": {"seconds": 1}})
    wait_until(lambda: client.get(f"/tasks/{task['id']}").get_json()["status"] == "running")
    live.pool.stop(grace=10)
    assert client.get(f"/tasks/{task['id']}").get_json()["status"] == "succeeded"


def _one_worker_with(db_path: Path, name: str, func: Any, n: int) -> tuple[Runtime, list[Task]]:
    """A one-worker pool, not started, with task type ``name`` running ``func``, and ``n``
    such tasks queued."""
    runtime = runtime_of(make_app(db_path, TASKS_WORKERS=1))
    runtime.registry.add(TaskType(name, NoParams, func))
    return runtime, [runtime.service.submit({"type": name, "params": {}}).task for _ in range(n)]


def test_a_worker_finishing_during_stop_claims_nothing_more(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A success is recorded together with the claim of the next task, except once the pool
    # is stopping: then the next tasks stay queued for the next start, never claimed (a claim
    # handed straight back would end the same, but warn of a hand-back for a task not run).
    started, release = threading.Event(), threading.Event()

    def gated(context: TaskContext, params: dict) -> str:
        started.set()
        release.wait(30)
        return "done"

    runtime, (first, *rest) = _one_worker_with(db_path, "gated", gated, 3)
    claims: list[str] = []
    real = runtime.store.succeed_and_claim

    def recorded(task_id: str, *args: Any, **kwargs: Any) -> Any:
        claims.append(task_id)
        return real(task_id, *args, **kwargs)

    runtime.store.succeed_and_claim = recorded  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="api.worker")
    runtime.pool.start()
    assert started.wait(15)
    threading.Timer(0.3, release.set).start()  # the first ends while stop() waits
    runtime.pool.stop(grace=10)
    assert runtime.store.get(first.id, datetime.now(UTC)).status.value == "succeeded"  # type: ignore[union-attr]
    assert claims == [], "a stopping pool must not claim with its last success"
    assert "handed back" not in caplog.text
    for task in rest:
        left = runtime.store.get(task.id, datetime.now(UTC))
        assert left is not None and (left.status.value, left.attempts) == ("queued", 0)


def _quick_tasks(db_path: Path, n: int) -> tuple[Runtime, list[Task]]:
    return _one_worker_with(db_path, "quick", lambda context, params: "ok", n)


def test_a_stop_begun_during_a_success_sends_the_task_claimed_with_it_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, (first, second) = _quick_tasks(db_path, 2)
    real = runtime.store.succeed_and_claim

    def stop_begins_meanwhile(*args: Any, **kwargs: Any) -> Any:
        runtime.pool._stop.set()  # as stop() does, while the success is being written
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime.store, "succeed_and_claim", stop_begins_meanwhile)
    runtime.pool.start()
    wait_until(lambda: runtime.store.get(first.id, datetime.now(UTC)).status.value == "succeeded")  # type: ignore[union-attr]

    def handed_back() -> bool:
        back = runtime.store.get(second.id, datetime.now(UTC))
        assert back is not None
        return (back.status.value, back.attempts, back.started_at, back.worker_id) == (
            "queued",
            0,
            None,
            None,
        )

    # The worker itself hands it back, at once: stop() may have emptied what the pool holds
    # before the worker put the claimed task there, and would then never see it.
    wait_until(handed_back)
    runtime.pool.stop(grace=5)
    assert handed_back()


def test_stop_hands_back_a_task_claimed_for_a_worker_that_did_not_start_it(
    db_path: Path,
) -> None:
    runtime, (task,) = _quick_tasks(db_path, 1)
    now = datetime.now(UTC)
    claimed = runtime.store.claim("worker-gone", now, now + timedelta(seconds=30))
    assert claimed is not None
    runtime.pool._claimed["worker-gone"] = claimed  # left by a worker that saw the stop
    runtime.pool.stop(grace=0)
    back = runtime.store.get(task.id, datetime.now(UTC))
    assert back is not None and (back.status.value, back.attempts) == ("queued", 0)


def test_stop_hands_back_a_task_still_running_after_the_grace(db_path: Path) -> None:
    release = threading.Event()

    def stubborn(context: TaskContext, params: dict) -> str:
        release.wait(30)  # ignores cancellation, like a task blocked in I/O
        return "late"

    runtime, (task,) = _one_worker_with(db_path, "stubborn", stubborn, 1)
    runtime.pool.start()
    wait_until(lambda: runtime.store.get(task.id, datetime.now(UTC)).status.value == "running")  # type: ignore[union-attr]
    runtime.pool.stop(grace=0.2)
    back = runtime.store.get(task.id, datetime.now(UTC))
    assert back is not None and back.status.value == "queued" and back.attempts == 0
    release.set()
    time.sleep(0.1)
    after = runtime.store.get(task.id, datetime.now(UTC))
    assert after is not None and after.status.value == "queued", "the late result is dropped"


def test_a_result_that_is_not_json_fails_the_attempt(db_path: Path) -> None:
    app = make_app(db_path)
    runtime = runtime_of(app)
    runtime.registry.add(TaskType("bad", NoParams, lambda c, p: {1, 2}, max_attempts=1))
    task = runtime.service.submit({"type": "bad", "params": {}}).task
    runtime.pool.drain()
    failed = runtime.store.get(task.id, datetime.now(UTC))
    assert failed is not None and failed.error is not None
    assert failed.status.value == "failed" and failed.error.type == "TypeError"


def test_a_task_type_unknown_to_this_worker_fails_clearly(db_path: Path) -> None:
    class P(Schema):
        n = fields.Integer()

    submitter = make_app(db_path)
    runtime_of(submitter).registry.add(TaskType("elsewhere", P, lambda c, p: 1))
    task = runtime_of(submitter).service.submit({"type": "elsewhere", "params": {}}).task
    worker = runtime_of(make_app(db_path))
    worker.pool.drain()
    failed = worker.store.get(task.id, datetime.now(UTC))
    assert failed is not None and failed.error is not None
    assert failed.error.type == "UnknownTaskType" and "elsewhere" in failed.error.message


def test_an_error_in_the_loop_never_kills_a_worker_thread(
    client: FlaskClient, live: Runtime, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    calls = {"n": 0}
    real_claim = live.store.claim

    def flaky_claim(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("store hiccup")
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(live.store, "claim", flaky_claim)
    live.pool.wakeup.notify_all()
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    assert wait_for(client, task["id"])["status"] == "succeeded"
    assert live.pool.alive()


def test_wakeup_never_keeps_more_signals_than_workers() -> None:
    wakeup = Wakeup(cap=2)
    for _ in range(100):
        wakeup.notify()
    assert wakeup.wait(0) and wakeup.wait(0)
    assert not wakeup.wait(0)


def test_a_user_module_adds_a_task_type(db_path: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "my_tasks.py").write_text(
        "from marshmallow import Schema, fields\n"
        "class GreetParams(Schema):\n"
        "    name = fields.String(required=True)\n"
        "def register(registry):\n"
        "    @registry.task('greet', params=GreetParams, max_attempts=2)\n"
        "    def greet(context, params):\n"
        "        '''Say hello.'''\n"
        "        context.progress(1, 1, 'greeting')\n"
        "        return 'hello ' + params['name']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = make_app(db_path, TASKS_IMPORT="my_tasks")
    client = app.test_client()
    names = [t["name"] for t in client.get("/task-types").get_json()]
    assert "greet" in names
    spec = client.get("/openapi.json").get_json()
    assert "GreetTaskCreate" in spec["components"]["schemas"]
    assert "GreetParams" in spec["components"]["schemas"]
    task = submit(client, {"type": "greet", "params": {"name": "Ada"}})
    runtime_of(app).pool.drain()
    done = client.get(f"/tasks/{task['id']}").get_json()
    assert done["result"] == "hello Ada" and done["progress"]["message"] == "greeting"
    assert client.post("/tasks", json={"type": "greet", "params": {}}).status_code == 422


def test_registry_refuses_bad_definitions() -> None:
    import pytest

    registry = Registry()
    registry.add(TaskType("one", Schema, lambda c, p: 1))
    with pytest.raises(ValueError, match="already registered"):
        registry.add(TaskType("one", Schema, lambda c, p: 1))
    with pytest.raises(ValueError, match="lowercase"):
        TaskType("Bad Name", Schema, lambda c, p: 1)
    with pytest.raises(ValueError, match="max_attempts"):
        TaskType("x", Schema, lambda c, p: 1, max_attempts=0)


def test_cancelling_a_task_waiting_to_retry_clears_the_old_error(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    task = submit(client, {"type": "fail", "params": {"message": "x", "succeed_after": 1}})
    drain()
    cancelled = client.post(f"/tasks/{task['id']}/cancel").get_json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"] is None, "error is set only when failed"


def test_restarting_a_pool_leaves_no_thread_behind(db_path: Path, database_url: str) -> None:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_WORKERS=1)
    runtime = runtime_of(app)
    before = threading.active_count()
    for _ in range(3):
        runtime.pool.start()
        runtime.pool.stop(grace=1)
    time.sleep(0.2)
    names = [t.name for t in threading.enumerate() if t.name.startswith("taskapi-")]
    assert names == [] and threading.active_count() <= before
    runtime.store.close()


def test_progress_is_stored_as_numbers_and_text_whatever_the_task_passes(
    db_path: Path,
) -> None:
    def chatty(context: TaskContext, params: dict) -> None:
        context.progress(1, 10, 5)  # type: ignore[arg-type]  # a careless task
        return None

    app = make_app(db_path, TASKS_WORKERS=0)
    runtime = runtime_of(app)
    runtime.registry.add(TaskType("chatty", NoParams, chatty))
    seen: list[Progress] = []
    report = runtime.store.report_progress

    def spy(task_id: str, worker_id: str, progress: Progress) -> bool | None:
        seen.append(progress)
        return report(task_id, worker_id, progress)

    runtime.store.report_progress = spy  # type: ignore[method-assign]
    runtime.service.submit({"type": "chatty", "params": {}})
    assert runtime.pool.drain() == 1
    assert seen == [Progress(1.0, 10.0, "5")]
