"""Clients generated from openapi.yaml, used untouched against a live server.

Python: openapi-python-client generates a package into a temporary folder, pip installs it there
(``--target``, nothing in the repository or the environment changes), and the tests drive a real
``taskapi serve`` through its typed models only. TypeScript: openapi-typescript generates types
from the same file and ``tsc`` checks tests/js/check.ts (must pass) and tests/js/wrong.ts (must
fail on exactly its marked lines).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import time
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import Server, start_server
from tests.receiver import Receiver, receiving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.yaml"
JS = ROOT / "tests" / "js"
JS_BIN = JS / "node_modules" / ".bin"
PACKAGE = "taskapi_client"
GENERATE = [sys.executable, "-m", "openapi_python_client", "generate"]
PIP_INSTALL = [sys.executable, "-m", "pip", "install", "--quiet", "--no-input"]


def run(args: list[str | Path], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- Python: openapi-python-client ---------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Generate the client from the current openapi.yaml, install it in a temp folder, import it."""
    workdir = tmp_path_factory.mktemp("python-client")
    source, site = workdir / "client", workdir / "site"
    # Its ruff pass needs ruff on PATH: the one installed next to this interpreter.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    generate = run(
        [
            *GENERATE,
            "--path",
            SPEC,
            "--meta",
            "setup",
            "--output-path",
            source,
            "--fail-on-warning",
        ],
        workdir,
        PATH=path,
    )
    assert generate.returncode == 0, generate.stdout + generate.stderr
    install = run(
        [*PIP_INSTALL, "--no-deps", "--target", site, source],
        workdir,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (site / PACKAGE / "py.typed").is_file()
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("clients-server")
    running = start_server(
        workdir / "tasks.sqlite3",
        workdir,
        TASKS_WORKERS="4",
        TASKS_CALLBACK_HOSTS=receiver.hosts,
        TASKS_WEBHOOK_SECRET="whsec_" + "Y2xpZW50cy1jbGllbnRzLWNsaWVudHM=",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(generated: Path, server: Server) -> Iterator[Any]:
    from taskapi_client import Client

    # Undocumented status codes raise instead of parsing to None.
    with Client(
        base_url=server.url, timeout=httpx.Timeout(30.0), raise_on_unexpected_status=True
    ) as client:
        yield client


def wait_terminal(api: Any, task_id: uuid.UUID, timeout: float = 30) -> Any:
    """Long-poll ``getTask`` (its ``wait`` parameter) until the task is terminal."""
    from taskapi_client.api.tasks import get_task
    from taskapi_client.models import TaskStatus, TaskStatusStatus

    terminal = {TaskStatusStatus.SUCCEEDED, TaskStatusStatus.FAILED, TaskStatusStatus.CANCELLED}
    deadline = time.monotonic() + timeout
    while True:
        task = get_task.sync(task_id, client=api, wait=5)
        assert isinstance(task, TaskStatus), task
        if task.status in terminal:
            return task
        assert time.monotonic() < deadline, f"task {task_id} still {task.status}"


def wait_running(api: Any, task_id: uuid.UUID, timeout: float = 15) -> Any:
    from taskapi_client.api.tasks import get_task
    from taskapi_client.models import TaskStatus, TaskStatusStatus

    deadline = time.monotonic() + timeout
    while True:
        task = get_task.sync(task_id, client=api)
        assert isinstance(task, TaskStatus), task
        if task.status is TaskStatusStatus.RUNNING:
            return task
        assert task.status is TaskStatusStatus.QUEUED, task.status
        assert time.monotonic() < deadline, f"task {task_id} never started"
        time.sleep(0.05)


def create(api: Any, body: Any, **kwargs: Any) -> Any:
    """``createTask``, which must answer 202 with a queued task and its ``Location``."""
    from taskapi_client.api.tasks import create_task
    from taskapi_client.models import TaskStatus, TaskStatusStatus

    response = create_task.sync_detailed(client=api, body=body, **kwargs)
    assert response.status_code == 202, response.content
    task = response.parsed
    assert isinstance(task, TaskStatus), task
    assert task.status is TaskStatusStatus.QUEUED
    assert response.headers["Location"].endswith(f"/tasks/{task.id}")
    return task


def test_the_client_exposes_every_component_schema(generated: Path) -> None:
    import taskapi_client.models as models
    from taskapi_client.api.tasks import create_task
    from taskapi_client.models import AddTaskCreate, FailTaskCreate, SleepTaskCreate

    for name in (
        "AddParams",
        "SleepParams",
        "FailParams",
        "AddTaskCreate",
        "SleepTaskCreate",
        "FailTaskCreate",
        "TaskStatus",
        "TaskProgress",
        "TaskError",
        "TaskType",
        "Problem",
        "ValidationProblem",
        "Queue",
        "QueueCounts",
        "QueueUpdate",
        "Schedule",
        "ScheduleWrite",
        "AddScheduledTask",
        "SleepScheduledTask",
        "FailScheduledTask",
        "BatchCreate",
        "Batch",
        "BatchCounts",
        "CallbackDelivery",
        "CallbackEvent",
    ):
        assert name in models.__all__, name
    # TaskCreate is a oneOf: the body of createTask is the union of its member classes.
    body = typing.get_type_hints(create_task.sync)["body"]
    assert set(typing.get_args(body)) == {AddTaskCreate, FailTaskCreate, SleepTaskCreate}


def test_task_types_and_health(api: Any) -> None:
    from taskapi_client.api.ops import get_health
    from taskapi_client.api.task_types import list_task_types
    from taskapi_client.models import Health, TaskType

    health = get_health.sync(client=api)
    assert isinstance(health, Health) and health.status == "ok"
    types = list_task_types.sync(client=api)
    assert isinstance(types, list) and all(isinstance(t, TaskType) for t in types)
    by_name = {t.name: t for t in types}
    assert {"add", "sleep", "fail"} <= by_name.keys()
    assert by_name["fail"].max_attempts == 3
    assert "seconds" in by_name["sleep"].params_schema.to_dict()["properties"]


def test_add_runs_and_answers_its_sum(api: Any) -> None:
    from taskapi_client.api.tasks import create_task
    from taskapi_client.models import AddParams, AddTaskCreate, AddTaskCreateType, TaskStatus
    from taskapi_client.models import TaskStatusStatus as S

    queued = create(
        api, AddTaskCreate(type_=AddTaskCreateType.ADD, params=AddParams(x=2, y=3), priority=7)
    )
    assert (queued.type_, queued.priority, queued.result) == ("add", 7, None)
    assert queued.params.to_dict() == {"x": 2, "y": 3, "delay_seconds": 0}
    done = wait_terminal(api, queued.id)
    assert done.status is S.SUCCEEDED and done.result == 5 and done.attempts == 1
    assert done.error is None and done.finished_at is not None and done.expires_at is not None
    assert done.finished_at >= done.created_at

    # Prefer: wait=N answers 200 with the final task in one round trip.
    big = 2**62
    response = create_task.sync_detailed(
        client=api,
        body=AddTaskCreate(type_=AddTaskCreateType.ADD, params=AddParams(x=big, y=big - 1)),
        prefer="wait=10",
    )
    assert response.status_code == 200, response.content
    assert response.headers["Preference-Applied"] == "wait=10"
    assert isinstance(response.parsed, TaskStatus)
    assert response.parsed.status is S.SUCCEEDED and response.parsed.result == 2 * big - 1


def test_fail_reports_its_error_and_retries(api: Any) -> None:
    from taskapi_client.models import FailParams, FailTaskCreate, FailTaskCreateType, TaskError
    from taskapi_client.models import TaskStatusStatus as S

    fails = create(
        api,
        FailTaskCreate(
            type_=FailTaskCreateType.FAIL, params=FailParams(message="boom"), max_attempts=1
        ),
    )
    failed = wait_terminal(api, fails.id)
    assert failed.status is S.FAILED and failed.result is None
    assert isinstance(failed.error, TaskError)
    assert failed.error.message == "boom" and failed.error.type_
    assert (failed.attempts, failed.max_attempts) == (1, 1)

    retried = create(
        api,
        FailTaskCreate(
            type_=FailTaskCreateType.FAIL,
            params=FailParams(message="once", succeed_after=1),
            max_attempts=2,
        ),
    )
    succeeded = wait_terminal(api, retried.id)
    assert succeeded.status is S.SUCCEEDED, succeeded.error
    assert succeeded.attempts == 2 and succeeded.result == {"attempts": 2}


def test_cancel_a_running_sleep_then_delete_it(api: Any) -> None:
    from taskapi_client.api.tasks import cancel_task, delete_task, get_task
    from taskapi_client.models import (
        Problem,
        SleepParams,
        SleepTaskCreate,
        SleepTaskCreateType,
        TaskProgress,
        TaskStatus,
    )
    from taskapi_client.models import TaskStatusStatus as S

    queued = create(
        api, SleepTaskCreate(type_=SleepTaskCreateType.SLEEP, params=SleepParams(seconds=30))
    )
    running = wait_running(api, queued.id)
    assert running.started_at is not None and running.finished_at is None
    assert running.progress is None or isinstance(running.progress, TaskProgress)

    busy = delete_task.sync_detailed(queued.id, client=api)
    assert busy.status_code == 409
    assert isinstance(busy.parsed, Problem) and busy.parsed.status == 409

    asked = cancel_task.sync(queued.id, client=api)
    assert isinstance(asked, TaskStatus) and asked.cancel_requested is True
    cancelled = wait_terminal(api, queued.id, timeout=10)
    assert cancelled.status is S.CANCELLED and cancelled.result is None

    again = cancel_task.sync_detailed(queued.id, client=api)
    assert again.status_code == 409 and isinstance(again.parsed, Problem)

    deleted = delete_task.sync_detailed(queued.id, client=api)
    assert deleted.status_code == 204, deleted.content
    gone = get_task.sync(queued.id, client=api)
    assert isinstance(gone, Problem) and gone.status == 404


def test_list_with_filters_and_pagination(api: Any) -> None:
    from taskapi_client.api.tasks import cancel_task, list_tasks
    from taskapi_client.models import (
        AddParams,
        AddTaskCreate,
        AddTaskCreateType,
        ListTasksStatusItem,
        ListTasksType,
        PaginationMetadata,
        SleepParams,
        SleepTaskCreate,
        SleepTaskCreateType,
        TaskStatus,
    )
    from taskapi_client.models import TaskStatusStatus as S

    later = create(
        api,
        SleepTaskCreate(
            type_=SleepTaskCreateType.SLEEP, params=SleepParams(seconds=1), delay_seconds=3600
        ),
    )
    added = [
        create(api, AddTaskCreate(type_=AddTaskCreateType.ADD, params=AddParams(x=i, y=i)))
        for i in range(3)
    ]
    for task in added:
        wait_terminal(api, task.id)

    queued_sleeps = list_tasks.sync(
        client=api, status=[ListTasksStatusItem.QUEUED], type_=ListTasksType.SLEEP
    )
    assert isinstance(queued_sleeps, list)
    assert all(isinstance(t, TaskStatus) for t in queued_sleeps)
    assert all(t.status is S.QUEUED and t.type_ == "sleep" for t in queued_sleeps)
    assert later.id in {t.id for t in queued_sleeps}

    done = list_tasks.sync(
        client=api,
        status=[ListTasksStatusItem.SUCCEEDED, ListTasksStatusItem.FAILED],
        type_=ListTasksType.ADD,
        page_size=100,
    )
    assert isinstance(done, list)
    assert all(t.status in {S.SUCCEEDED, S.FAILED} and t.type_ == "add" for t in done)
    ids = [t.id for t in done]
    assert {t.id for t in added} <= set(ids)
    assert ids.index(added[2].id) < ids.index(added[0].id), "newest first"

    page = list_tasks.sync_detailed(client=api, type_=ListTasksType.ADD, page_size=1, page=2)
    assert page.status_code == 200 and isinstance(page.parsed, list) and len(page.parsed) == 1
    meta = PaginationMetadata.from_dict(json.loads(page.headers["X-Pagination"]))
    assert (meta.page, meta.previous_page) == (2, 1) and meta.total == len(done)

    # A queued task is cancelled at once.
    cancelled = cancel_task.sync(later.id, client=api)
    assert isinstance(cancelled, TaskStatus) and cancelled.status is S.CANCELLED


def test_errors_are_typed_problems(api: Any) -> None:
    from taskapi_client.api.tasks import cancel_task, create_task, delete_task, get_task, list_tasks
    from taskapi_client.models import (
        AddParams,
        AddTaskCreate,
        AddTaskCreateType,
        Problem,
        ValidationProblem,
    )

    unknown = uuid.uuid4()
    for answer in (
        get_task.sync(unknown, client=api),
        cancel_task.sync(unknown, client=api),
        delete_task.sync(unknown, client=api),
    ):
        assert isinstance(answer, Problem), answer
        assert answer.status == 404 and answer.title and answer.detail and answer.type_

    invalid = create_task.sync_detailed(
        client=api,
        body=AddTaskCreate(type_=AddTaskCreateType.ADD, params=AddParams(x=1, y=2), priority=1000),
    )
    assert invalid.status_code == 422
    assert invalid.headers["Content-Type"] == "application/problem+json"
    problem = invalid.parsed
    assert isinstance(problem, ValidationProblem)
    assert problem.status == 422 and problem.title and problem.detail
    assert problem.errors.additional_keys == ["json"]
    assert problem.errors["json"].additional_keys == ["priority"]
    assert all(isinstance(m, str) for m in problem.errors["json"]["priority"])

    bad_page = list_tasks.sync(client=api, page_size=0)
    assert isinstance(bad_page, ValidationProblem) and "page_size" in bad_page.errors["query"]


def test_queues_are_read_paused_and_resumed(api: Any) -> None:
    from taskapi_client.api.queues import get_queue, list_queues, update_queue
    from taskapi_client.api.tasks import list_tasks
    from taskapi_client.models import (
        AddParams,
        AddTaskCreate,
        AddTaskCreateType,
        Problem,
        Queue,
        QueueUpdate,
        TaskStatusStatus,
        ValidationProblem,
    )

    name = f"client-{uuid.uuid4().hex[:8]}"
    paused = update_queue.sync(name, client=api, body=QueueUpdate(paused=True, concurrency=2))
    assert isinstance(paused, Queue)
    assert (paused.name, paused.paused, paused.concurrency) == (name, True, 2)
    task = create(
        api,
        AddTaskCreate(type_=AddTaskCreateType.ADD, params=AddParams(x=1, y=2), queue=name),
    )
    assert task.queue == name
    time.sleep(0.5)
    held = get_queue.sync(name, client=api)
    assert isinstance(held, Queue) and held.counts.queued == 1
    listed = list_tasks.sync(client=api, queue=name)
    assert isinstance(listed, list) and [t.id for t in listed] == [task.id]
    assert listed[0].status is TaskStatusStatus.QUEUED, "a paused queue starts none"
    resumed = update_queue.sync(name, client=api, body=QueueUpdate(paused=False, concurrency=None))
    assert isinstance(resumed, Queue) and resumed.concurrency is None and not resumed.paused
    assert wait_terminal(api, task.id).status is TaskStatusStatus.SUCCEEDED
    names = [q.name for q in list_queues.sync(client=api) or []]
    assert "default" in names and name in names
    assert isinstance(get_queue.sync("never-used", client=api), Problem)
    invalid = update_queue.sync(name, client=api, body=QueueUpdate(concurrency=0))
    assert isinstance(invalid, ValidationProblem) and "concurrency" in invalid.errors["json"]


def test_a_schedule_is_put_read_triggered_and_deleted(api: Any) -> None:
    from taskapi_client.api.schedules import (
        delete_schedule,
        get_schedule,
        list_schedules,
        put_schedule,
        trigger_schedule,
    )
    from taskapi_client.api.tasks import list_tasks
    from taskapi_client.models import (
        AddParams,
        AddScheduledTask,
        AddScheduledTaskType,
        Problem,
        Schedule,
        ScheduleWrite,
        ScheduleWriteOverlap,
        TaskStatus,
        TaskStatusStatus,
        ValidationProblem,
    )

    name = f"client-{uuid.uuid4().hex[:8]}"
    template = AddScheduledTask(type_=AddScheduledTaskType.ADD, params=AddParams(x=2, y=3))
    body = ScheduleWrite(task=template, cron="0 3 * * *", timezone="Europe/Paris")
    created = put_schedule.sync_detailed(name, client=api, body=body)
    assert created.status_code == 201, created.content
    assert created.headers["Location"].endswith(f"/schedules/{name}")
    schedule = created.parsed
    assert isinstance(schedule, Schedule)
    assert (schedule.name, schedule.cron, schedule.every_seconds) == (name, "0 3 * * *", None)
    assert isinstance(schedule.task, AddScheduledTask) and schedule.task.params.x == 2
    assert schedule.next_run_at is not None and schedule.next_run_at > schedule.created_at

    body = ScheduleWrite(
        task=template, every_seconds=3600, paused=True, overlap=ScheduleWriteOverlap.ALLOW
    )
    replaced = put_schedule.sync_detailed(name, client=api, body=body)
    assert replaced.status_code == 200, replaced.content
    read = get_schedule.sync(name, client=api)
    assert isinstance(read, Schedule)
    assert (read.cron, read.every_seconds, read.paused) == (None, 3600, True)
    assert read.next_run_at is None, "paused"
    assert read.created_at == schedule.created_at
    assert name in {s.name for s in list_schedules.sync(client=api, page_size=100) or []}

    task = trigger_schedule.sync(name, client=api)
    assert isinstance(task, TaskStatus) and task.schedule == name
    assert task.scheduled_for is not None
    assert wait_terminal(api, task.id).status is TaskStatusStatus.SUCCEEDED
    made = list_tasks.sync(client=api, schedule=name)
    assert isinstance(made, list) and [t.id for t in made] == [task.id]

    both = ScheduleWrite(task=template, cron="@daily", every_seconds=60)
    invalid = put_schedule.sync(name, client=api, body=both)
    assert isinstance(invalid, ValidationProblem)
    assert {"cron", "every_seconds"} <= set(invalid.errors["json"].additional_keys)

    assert delete_schedule.sync_detailed(name, client=api).status_code == 204
    assert isinstance(get_schedule.sync(name, client=api), Problem)


def test_a_batch_is_created_read_waited_on_and_its_tasks_listed(api: Any) -> None:
    from taskapi_client.api.batches import cancel_batch, create_batch, get_batch
    from taskapi_client.api.tasks import list_tasks
    from taskapi_client.models import (
        AddParams,
        AddTaskCreate,
        AddTaskCreateType,
        Batch,
        BatchCreate,
        FailParams,
        FailTaskCreate,
        FailTaskCreateType,
        Problem,
        TaskStatus,
        TaskStatusStatus,
        ValidationProblem,
    )

    adds = [
        AddTaskCreate(type_=AddTaskCreateType.ADD, params=AddParams(x=n, y=1)) for n in range(3)
    ]
    failing = FailTaskCreate(
        type_=FailTaskCreateType.FAIL, params=FailParams(message="no"), max_attempts=1
    )
    response = create_batch.sync_detailed(client=api, body=BatchCreate(tasks=[*adds, failing]))
    assert response.status_code == 202, response.content
    batch = response.parsed
    assert isinstance(batch, Batch) and batch.size == 4 and len(batch.task_ids) == 4
    assert response.headers["Location"].endswith(f"/batches/{batch.id}")

    done = get_batch.sync(batch.id, client=api, wait=30)
    assert isinstance(done, Batch) and done.done and done.finished_at is not None
    assert (done.counts.succeeded, done.counts.failed, done.counts.queued) == (3, 1, 0)
    tasks = list_tasks.sync(client=api, batch=batch.id, page_size=100)
    assert isinstance(tasks, list) and all(isinstance(t, TaskStatus) for t in tasks)
    assert {t.id for t in tasks} == set(batch.task_ids)
    assert {t.batch_id for t in tasks} == {batch.id}

    # A task of its own that depends on the batch's additions, read back as blocked or run.
    from taskapi_client.api.tasks import create_task

    fan_in = create_task.sync(
        client=api,
        body=AddTaskCreate(
            type_=AddTaskCreateType.ADD, params=AddParams(x=0, y=0), depends_on=batch.task_ids[:3]
        ),
    )
    assert isinstance(fan_in, TaskStatus) and fan_in.depends_on == batch.task_ids[:3]
    assert wait_terminal(api, fan_in.id).status is TaskStatusStatus.SUCCEEDED

    cancelled = cancel_batch.sync(batch.id, client=api)
    assert isinstance(cancelled, Batch) and cancelled.counts.cancelled == 0, "all had ended"
    assert isinstance(get_batch.sync(uuid.uuid4(), client=api), Problem)
    empty = create_batch.sync(client=api, body=BatchCreate(tasks=[]))
    assert isinstance(empty, ValidationProblem) and "tasks" in empty.errors["json"]


def delivered(api: Any, task_id: uuid.UUID, after: Any = None, timeout: float = 30) -> Any:
    """The task's callback once it is delivered (``after`` a time, when given)."""
    from taskapi_client.api.tasks import get_task
    from taskapi_client.models import CallbackDelivery, CallbackDeliveryState, TaskStatus

    deadline = time.monotonic() + timeout
    while True:
        task = get_task.sync(task_id, client=api, wait=5)
        assert isinstance(task, TaskStatus), task
        callback = task.callback
        if (
            isinstance(callback, CallbackDelivery)
            and callback.state is CallbackDeliveryState.DELIVERED
            and (after is None or callback.delivered_at > after)
        ):
            return callback
        assert time.monotonic() < deadline, f"callback not delivered: {callback}"
        time.sleep(0.1)


def test_a_callback_is_asked_for_followed_received_and_sent_again(
    api: Any, receiver: Receiver
) -> None:
    from taskapi_client.api.tasks import create_task, retry_callback
    from taskapi_client.models import (
        AddParams,
        AddTaskCreate,
        AddTaskCreateType,
        CallbackDelivery,
        CallbackDeliveryEvent,
        CallbackEvent,
        CallbackEventType,
        Problem,
        TaskStatus,
        ValidationProblem,
    )

    body = AddTaskCreate(
        type_=AddTaskCreateType.ADD, params=AddParams(x=40, y=2), callback_url=receiver.url
    )
    queued = create(api, body)
    assert queued.callback_url == receiver.url and queued.callback is None
    callback = delivered(api, queued.id)
    assert callback.event is CallbackDeliveryEvent.TASK_SUCCEEDED
    assert callback.webhook_id == f"msg_{queued.id}" and callback.attempts == 1
    assert callback.last_status == 204 and callback.delivered_at is not None

    got = receiver.received[-1]
    assert got.headers["webhook-id"] == callback.webhook_id
    assert got.headers["webhook-signature"].startswith("v1,")
    event = CallbackEvent.from_dict(json.loads(got.body))
    assert event.type_ is CallbackEventType.TASK_SUCCEEDED
    assert event.data.id == queued.id and event.data.result == 42

    resent = retry_callback.sync_detailed(queued.id, client=api)
    assert resent.status_code == 202, resent.content
    assert isinstance(resent.parsed, TaskStatus)
    assert isinstance(resent.parsed.callback, CallbackDelivery)
    again = delivered(api, queued.id, after=callback.delivered_at)
    assert again.attempts == 1 and again.webhook_id == callback.webhook_id
    assert [r.headers["webhook-id"] for r in receiver.received].count(callback.webhook_id) == 2

    refused = create_task.sync(
        client=api,
        body=AddTaskCreate(
            type_=AddTaskCreateType.ADD,
            params=AddParams(x=1, y=1),
            callback_url="https://elsewhere.example.com/",
        ),
    )
    assert isinstance(refused, ValidationProblem)
    assert refused.errors["json"].additional_keys == ["callback_url"]
    none = retry_callback.sync(uuid.uuid4(), client=api)
    assert isinstance(none, Problem) and none.status == 404


# --- TypeScript: openapi-typescript + tsc --------------------------------------------------------

TSC_ERROR = re.compile(r"^(?P<file>.+?)\((?P<line>\d+),\d+\): error (?P<code>TS\d+): (?P<text>.*)$")


@pytest.fixture(scope="module")
def ts_types(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """openapi-typescript's types for the current openapi.yaml, in a temp folder."""
    if not (JS_BIN / "tsc").exists():
        pytest.fail("the TypeScript tools are missing: run `npm ci --prefix tests/js`")
    workdir = tmp_path_factory.mktemp("typescript")
    types = workdir / "taskapi-openapi.d.ts"
    # Without --default-non-nullable=false, openapi-typescript makes every property that has a
    # `default` required, request bodies included (openapi-ts/openapi-typescript#2012), so a body
    # could not leave out `priority` or `delay_seconds`.
    result = run(
        [JS_BIN / "openapi-typescript", SPEC, "-o", types, "--default-non-nullable=false"], workdir
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TaskCreate:" in types.read_text()
    return types


def type_check(ts_types: Path, source: Path) -> tuple[int, list[re.Match[str]], str]:
    """``tsc --noEmit`` on ``source``, with "taskapi-openapi" mapped to the generated types."""
    config = ts_types.parent / f"tsconfig.{source.stem}.json"
    config.write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "strict": True,
                    "noEmit": True,
                    "target": "ES2022",
                    "module": "ESNext",
                    "moduleResolution": "Bundler",
                    "lib": ["ES2022"],
                    "types": [],
                    "noUnusedLocals": True,
                    "noFallthroughCasesInSwitch": True,
                    "skipLibCheck": False,
                    "paths": {"taskapi-openapi": [str(ts_types)]},
                },
                "files": [str(source)],
            }
        )
    )
    result = run([JS_BIN / "tsc", "-p", config, "--pretty", "false"], ts_types.parent)
    output = result.stdout + result.stderr
    errors = [m for m in map(TSC_ERROR.match, output.splitlines()) if m]
    return result.returncode, errors, output


def test_typescript_usage_type_checks(ts_types: Path) -> None:
    code, errors, output = type_check(ts_types, JS / "check.ts")
    assert code == 0 and not errors, output


def test_typescript_wrong_usage_is_refused(ts_types: Path) -> None:
    source = JS / "wrong.ts"
    marked = {
        number
        for number, line in enumerate(source.read_text().splitlines(), start=1)
        if line.rstrip().endswith("// error")
    }
    code, errors, output = type_check(ts_types, source)
    assert code != 0, output
    assert all(Path(m["file"]).name == "wrong.ts" for m in errors), output
    assert {int(m["line"]) for m in errors} == marked, output
