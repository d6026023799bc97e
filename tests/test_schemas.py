"""TaskStatus as clients read it: what marshmallow makes of the documented fields, typed as
the spec says, times in UTC with a Z."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask.testing import FlaskClient
from marshmallow import Schema

from api.models import Delivery, DeliveryState, Progress, Status, Task, TaskError
from schemas.tasks import CallbackDeliverySchema, TaskStatusSchema

T0 = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)

QUEUED = Task(
    id="0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10",
    type="add",
    status=Status.QUEUED,
    params={"x": 2, "y": 3.5, "nested": {"a": [1, None, "é\u0000"]}},
    result=None,
    error=None,
    progress=None,
    attempts=0,
    max_attempts=1,
    timeout_seconds=None,
    priority=-3,
    cancel_requested=False,
    created_at=T0,
    run_after=T0 + timedelta(seconds=5),
    started_at=None,
    finished_at=None,
    expires_at=None,
)

TASKS = {
    "queued": QUEUED,
    "running with integer progress and a timeout": dataclasses.replace(
        QUEUED,
        status=Status.RUNNING,
        attempts=1,
        progress=Progress(2, 10, "two of ten"),
        timeout_seconds=3,
        started_at=T0.astimezone(timezone(timedelta(hours=5))),
    ),
    "running with a message that is not a string": dataclasses.replace(
        QUEUED,
        status=Status.RUNNING,
        progress=Progress(1, 10, 5),  # type: ignore[arg-type]  # what a task may pass
    ),
    "running with progress of unknown total": dataclasses.replace(
        QUEUED, status=Status.RUNNING, progress=Progress(0.5), cancel_requested=True
    ),
    "succeeded": dataclasses.replace(
        QUEUED,
        status=Status.SUCCEEDED,
        result={"sum": 5, "list": [1.5, "x"]},
        attempts=2,
        max_attempts=3,
        timeout_seconds=2.5,
        started_at=T0,
        finished_at=T0 + timedelta(microseconds=1),
        expires_at=T0 + timedelta(days=7),
    ),
    "failed": dataclasses.replace(
        QUEUED,
        status=Status.FAILED,
        error=TaskError("ValueError", "bad ünïcode"),
        finished_at=T0,
        expires_at=T0,
    ),
    "cancelled with a falsy result": dataclasses.replace(
        QUEUED, status=Status.CANCELLED, result=0, finished_at=T0, expires_at=T0
    ),
    "blocked, in a batch": dataclasses.replace(
        QUEUED,
        batch_id="7e1d4c2a-5b3f-4a6e-8d9c-0b1a2c3d4e5f",
        depends_on=("3f6c1a2b-7d4e-4b8a-9c0d-1e2f3a4b5c6d", "8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c4d"),
        blocked_by=("8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c4d",),
    ),
    "queued with a callback_url": dataclasses.replace(
        QUEUED, callback_url="https://hooks.example.com/taskapi"
    ),
    "ended, its callback failed": dataclasses.replace(
        QUEUED,
        status=Status.FAILED,
        error=TaskError("ValueError", "bad ünïcode"),
        finished_at=T0,
        expires_at=T0,
        callback_url="https://hooks.example.com/taskapi",
        callback=Delivery(
            task_id=QUEUED.id,
            url="https://hooks.example.com/taskapi",
            event="task.failed",
            state=DeliveryState.FAILED,
            attempts=8,
            ended_at=T0,
            last_attempt_at=T0.astimezone(timezone(timedelta(hours=-3))),
            last_status=503,
            last_error="503 Service Unavailable",
        ),
    ),
    "ended, its callback pending": dataclasses.replace(
        QUEUED,
        status=Status.SUCCEEDED,
        finished_at=T0,
        callback_url="http://127.0.0.1:8080/",
        callback=Delivery(
            task_id=QUEUED.id,
            url="http://127.0.0.1:8080/",
            event="task.succeeded",
            state=DeliveryState.PENDING,
            attempts=0,
            ended_at=T0,
            next_attempt_at=T0,
        ),
    ),
}


def marshmallow_dump(task: Task) -> dict[str, Any]:
    """The dump marshmallow makes of TaskStatusSchema's fields, field by field."""
    return Schema.dump(TaskStatusSchema(), task)  # type: ignore[no-any-return]


def types(document: dict[str, Any]) -> dict[str, Any]:
    """The document's value types, nested ones too: == says 1 == 1.0; the JSON would not."""
    return {k: types(v) if isinstance(v, dict) else type(v) for k, v in document.items()}


@pytest.mark.parametrize("task", TASKS.values(), ids=TASKS.keys())
def test_the_schemas_dump_equals_marshmallows_dump_of_its_fields(task: Task) -> None:
    document = TaskStatusSchema().dump(task)
    assert document == marshmallow_dump(task)
    assert types(document) == types(marshmallow_dump(task))
    assert TaskStatusSchema(many=True).dump([task, task]) == [document, document]


def as_json(task: Task) -> str:
    return json.dumps(TaskStatusSchema().dump(task), sort_keys=True, separators=(",", ":"))


def test_numbers_are_typed_as_documented_and_times_are_utc() -> None:
    running = json.loads(as_json(TASKS["running with integer progress and a timeout"]))
    assert running["progress"] == {"current": 2.0, "total": 10.0, "message": "two of ten"}
    assert '"timeout_seconds":3.0' in as_json(TASKS["running with integer progress and a timeout"])
    assert running["started_at"] == "2026-11-24T12:00:00.123456Z", "from +05:00 to Z"
    assert running["run_after"] == "2026-11-24T12:00:05.123456Z"
    assert running["finished_at"] is None and running["error"] is None


@pytest.mark.parametrize("task", TASKS.values(), ids=TASKS.keys())
def test_every_documented_field_is_answered_in_its_type(task: Task) -> None:
    document = json.loads(as_json(task))
    assert list(document) == sorted(TaskStatusSchema().fields), "every field, always"
    progress = document["progress"]
    if progress is not None:
        assert isinstance(progress["current"], float)
        assert isinstance(progress["total"], float | None)
        assert isinstance(progress["message"], str | None), "what a task passed, as text"
    assert document["error"] in (None, {"type": "ValueError", "message": "bad ünïcode"})
    callback = document["callback"]
    if callback is not None:
        assert list(callback) == sorted(CallbackDeliverySchema().fields), "every field, always"
        assert callback["webhook_id"] == f"msg_{document['id']}"
        assert all(
            callback[name] is None or callback[name].endswith("Z")
            for name in ("last_attempt_at", "next_attempt_at", "delivered_at")
        )


def test_a_task_is_answered_like_a_listed_one_byte_for_byte(client: FlaskClient) -> None:
    created = client.post("/tasks", json={"type": "add", "params": {"x": 1, "y": 2}})
    read = client.get(created.headers["Location"])
    listed = client.get("/tasks")
    one = read.get_data(as_text=True).strip()
    assert one == listed.get_data(as_text=True).strip()[1:-1], "the same JSON, compact"
    assert created.get_json() == read.get_json()
