"""Task types with ``isolation="process"``: each attempt in a child process, with real processes.

The task functions are in ``tests.worker.isolated_tasks``, loaded as ``TASKS_IMPORT`` loads a
user's module. No assertion on timing is tight: these run on loaded machines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from marshmallow import Schema

from api.registry import Registry, TaskType
from api.runtime import Runtime
from api.worker.isolation import CHILD_NICENESS, MAX_TASKS_PER_CHILD, ChildPool
from tests.conftest import make_app, runtime_of, submit, wait_for, wait_until
from tests.worker import isolated_tasks


class NoParams(Schema):
    pass


@pytest.fixture
def app(db_path: Path, database_url: str) -> Iterator[Flask]:
    """An app on each store with the test module's process-isolated types; not started."""
    app = make_app(
        db_path, TASKS_DATABASE_URL=database_url, TASKS_IMPORT="tests.worker.isolated_tasks"
    )
    yield app
    runtime = runtime_of(app)
    runtime.pool.stop(grace=5)
    runtime.store.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def pid_in(task: dict[str, Any]) -> int:
    """The pid a task reported in its progress message (``pid 1234``)."""
    return int(task["progress"]["message"].removeprefix("pid "))


def test_an_attempt_runs_in_another_process_and_its_result_is_stored(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    task = submit(client, {"type": "primes", "params": {"n": 1000}})
    assert drain() == 1
    done = client.get(f"/tasks/{task['id']}").get_json()
    assert done["status"] == "succeeded", done
    assert done["result"]["primes"] == 168
    assert done["result"]["pid"] != os.getpid()


def test_a_child_runs_the_next_attempts_too(client: FlaskClient, drain: Callable[[], int]) -> None:
    tasks = [submit(client, {"type": "primes", "params": {"n": 10}}) for _ in range(3)]
    assert drain() == 3
    pids = {client.get(f"/tasks/{t['id']}").get_json()["result"]["pid"] for t in tasks}
    assert len(pids) == 1 and MAX_TASKS_PER_CHILD > 3


def test_a_timeout_kills_the_child_and_the_worker_runs_the_next_task(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    hung = submit(client, {"type": "hang", "params": {}, "max_attempts": 1})
    after = submit(client, {"type": "primes", "params": {"n": 10}})
    began = time.monotonic()
    assert drain() == 2
    assert time.monotonic() - began < 30  # 1 s of timeout: the child was not waited for
    failed = client.get(f"/tasks/{hung['id']}").get_json()
    assert failed["status"] == "failed", failed
    assert failed["error"] == {
        "type": "TimeoutError",
        "message": "The attempt ran past its timeout of 1s.",
    }
    wait_until(lambda: gone(pid_in(failed)), timeout=10)
    assert client.get(f"/tasks/{after['id']}").get_json()["status"] == "succeeded"


def test_a_timed_out_attempt_is_retried_when_attempts_are_left(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    hung = submit(client, {"type": "hang", "params": {}, "max_attempts": 2})
    assert drain() == 1
    task = client.get(f"/tasks/{hung['id']}").get_json()
    assert (task["status"], task["attempts"]) == ("queued", 1), task


def test_an_exit_of_the_child_fails_the_attempt_as_a_crash_and_it_is_retried(
    client: FlaskClient, drain: Callable[[], int], runtime: Runtime
) -> None:
    crashed = submit(client, {"type": "exits", "params": {}})
    after = submit(client, {"type": "primes", "params": {"n": 10}})
    assert drain() == 2
    task = client.get(f"/tasks/{crashed['id']}").get_json()
    assert (task["status"], task["attempts"]) == ("queued", 1), task  # max_attempts is 2
    assert client.get(f"/tasks/{after['id']}").get_json()["status"] == "succeeded"
    wait_until(lambda: drain() == 1, timeout=10)  # the retry, after its backoff
    task = client.get(f"/tasks/{crashed['id']}").get_json()
    assert task["status"] == "failed"
    assert task["error"] == {
        "type": "WorkerCrashed",
        "message": "The attempt's process exited with code 3.",
    }


def test_a_child_killed_by_a_signal_fails_the_attempt_naming_the_signal(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    killed = submit(client, {"type": "killed", "params": {}})
    after = submit(client, {"type": "primes", "params": {"n": 10}})
    assert drain() == 2
    task = client.get(f"/tasks/{killed['id']}").get_json()
    assert task["status"] == "failed"
    assert task["error"]["type"] == "WorkerCrashed"
    assert "killed by signal SIGKILL" in task["error"]["message"], task["error"]
    assert client.get(f"/tasks/{after['id']}").get_json()["status"] == "succeeded"


def test_errors_in_the_child_are_recorded_as_on_a_thread(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    raised = submit(client, {"type": "raises", "params": {}})
    not_json = submit(client, {"type": "not-json", "params": {}})
    assert drain() == 2
    assert client.get(f"/tasks/{raised['id']}").get_json()["error"] == {
        "type": "ValueError",
        "message": f"bad value in attempt 1 of {raised['id']}",
    }
    assert client.get(f"/tasks/{not_json['id']}").get_json()["error"] == {
        "type": "TypeError",
        "message": "Object of type set is not JSON serializable",
    }


def test_progress_from_the_child_is_stored_and_a_cancel_reaches_it(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "steps", "params": {}})
    wait_until(lambda: client.get(f"/tasks/{task['id']}").get_json()["progress"] is not None)
    running = client.get(f"/tasks/{task['id']}").get_json()
    assert running["status"] == "running"
    assert running["progress"]["current"] == 1 and running["progress"]["total"] == 2
    assert pid_in(running) != os.getpid()
    assert client.post(f"/tasks/{task['id']}/cancel").status_code < 300
    ended = wait_for(client, task["id"], timeout=30)
    assert ended["status"] == "cancelled", ended


def test_children_are_at_most_max_children_and_run_below_the_workers_priority(
    client: FlaskClient, runtime: Runtime
) -> None:
    runtime.pool.attempts.children = ChildPool(runtime.registry, max_children=1)
    runtime.pool.start()
    first, second = (submit(client, {"type": "steps", "params": {}}) for _ in range(2))
    read = lambda task: client.get(f"/tasks/{task['id']}").get_json()  # noqa: E731
    wait_until(lambda: read(first)["progress"] is not None or read(second)["progress"] is not None)
    time.sleep(0.5)
    running, waiting = (first, second) if read(first)["progress"] else (second, first)
    assert read(waiting)["status"] == "running" and read(waiting)["progress"] is None, (
        "its attempt waits for the one child"
    )
    child = pid_in(read(running))
    nice = lambda pid: int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])  # noqa: E731
    assert nice(child) == nice(os.getpid()) + CHILD_NICENESS
    client.post(f"/tasks/{running['id']}/cancel")
    assert wait_for(client, running["id"], timeout=30)["status"] == "cancelled"
    wait_until(lambda: read(waiting)["progress"] is not None, timeout=30)  # its turn now
    client.post(f"/tasks/{waiting['id']}/cancel")
    assert wait_for(client, waiting["id"], timeout=30)["status"] == "cancelled"


def test_stopping_the_pool_kills_a_child_that_ignores_the_signal(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "hang", "params": {}, "timeout_seconds": 600})
    wait_until(lambda: client.get(f"/tasks/{task['id']}").get_json()["progress"] is not None)
    pid = pid_in(client.get(f"/tasks/{task['id']}").get_json())
    live.pool.stop(grace=0.2)
    wait_until(lambda: gone(pid), timeout=10)
    assert client.get(f"/tasks/{task['id']}").get_json()["status"] == "queued"  # handed back


def test_a_module_level_function_registered_in_code_is_imported_by_the_child(
    client: FlaskClient, runtime: Runtime, drain: Callable[[], int]
) -> None:
    runtime.registry.add(TaskType("pid", NoParams, isolated_tasks.pid, isolation="process"))
    task = runtime.service.submit({"type": "pid", "params": {}}).task
    assert drain() == 1
    done = client.get(f"/tasks/{task.id}").get_json()
    assert done["status"] == "succeeded" and done["result"] != os.getpid()


def test_a_function_the_child_cannot_import_fails_with_a_clear_error(
    client: FlaskClient, runtime: Runtime, drain: Callable[[], int]
) -> None:
    def moved(context: Any, params: dict[str, Any]) -> None:
        pass

    moved.__qualname__ = "moved"  # looks module-level here, but is not in the module
    runtime.registry.add(TaskType("moved", NoParams, moved, max_attempts=1, isolation="process"))
    task = runtime.service.submit({"type": "moved", "params": {}}).task
    assert drain() == 1
    error = client.get(f"/tasks/{task.id}").get_json()["error"]
    assert error["type"] == "TaskNotImportable"
    assert f"cannot import {__name__}.moved" in error["message"]
    assert "defined at module level" in error["message"]


def test_an_unknown_isolation_is_refused() -> None:
    with pytest.raises(ValueError, match="isolation must be 'thread' or 'process', not 'fiber'"):
        TaskType("x", NoParams, isolated_tasks.pid, isolation="fiber")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["lambda", "nested"])
def test_a_function_the_child_could_not_import_is_refused_at_registration(name: str) -> None:
    def nested(context: Any, params: dict[str, Any]) -> None:
        pass

    func = {"lambda": lambda context, params: None, "nested": nested}[name]
    with pytest.raises(ValueError, match=r"isolation='process'.*cannot be imported"):
        Registry().add(TaskType("x", NoParams, func, isolation="process"))
    Registry().add(TaskType("x", NoParams, func))  # on a thread, any function will do


def test_task_types_show_their_isolation(client: FlaskClient) -> None:
    types = {t["name"]: t for t in client.get("/task-types").get_json()}
    assert types["primes"]["isolation"] == "process"
    assert types["add"]["isolation"] == "thread"
