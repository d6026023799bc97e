"""How a task is written as JSON text and read back from a row, whatever the backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from api.models import (
    MAX_LOST_ATTEMPTS,
    TERMINAL,
    CatchUp,
    Delivery,
    DeliveryState,
    Overlap,
    Progress,
    Schedule,
    ScheduleSpec,
    Status,
    Task,
    TaskError,
)

#: The columns every task read selects, in every backend.
COLUMNS = (
    "id, type, status, params, result, error, progress, attempts, max_attempts, "
    "timeout_seconds, priority, cancel_requested, created_at, run_after, started_at, "
    "finished_at, expires_at, worker_id, version, owner, lost_attempts, queue, schedule, "
    "scheduled_for, retry_of, batch_id, depends_on, blocked_by, callback_url"
)


def finish_values(status: Status, result: Any, error: TaskError | None) -> tuple[Any, Any]:
    """The ``result`` and ``error`` columns of a task ending ``status``: a result only when
    it succeeded, an error only when it failed."""
    if status not in TERMINAL:
        raise ValueError(f"finish: {status} is not an end")
    return (
        dumps(result) if status is Status.SUCCEEDED else None,
        error_json(error) if status is Status.FAILED and error is not None else None,
    )


#: The one encoder of stored JSON (json.dumps with options makes an encoder at each call: a
#: batch of a thousand tasks paid 1.3 ms for that alone).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> str:
    """JSON text as stored: compact; NUL and lone surrogates escaped (ensure_ascii)."""
    return _ENCODER.encode(value)


def error_json(error: TaskError) -> str:
    return dumps({"type": error.type, "message": error.message})


def progress_json(progress: Progress) -> str:
    return dumps(
        {"current": progress.current, "total": progress.total, "message": progress.message}
    )


#: The error of a task taken back from a lost worker and queued to run again.
WORKER_LOST = error_json(
    TaskError(
        "WorkerLost",
        "The worker running this attempt stopped answering (its lease expired); "
        "the process was probably killed. The task runs again.",
    )
)
#: The error of a task that lost its worker MAX_LOST_ATTEMPTS times in a row, and so failed.
WORKER_LOST_AGAIN = error_json(
    TaskError(
        "WorkerLost",
        f"The worker running this task was lost {MAX_LOST_ATTEMPTS} times in a row (its lease "
        "expired each time): the task probably kills its process, so it is not run again.",
    )
)


#: A status by its column's text, without the enum's call (a read of every task).
_STATUS: dict[str, Status] = {status.value: status for status in Status}
_WIDTH = len(COLUMNS.split(","))


def task_from_row(row: Sequence[Any], time: Callable[[Any], datetime | None]) -> Task:
    """A task from a row whose first values are COLUMNS, in order (sqlite3.Row, a tuple);
    ``time`` reads the backend's timestamps. By position: every claim reads a task, and a
    lookup by name costs more than the rest of it."""
    (
        id_,
        type_,
        status,
        params,
        result,
        error,
        progress,
        attempts,
        max_attempts,
        timeout_seconds,
        priority,
        cancel_requested,
        created_at,
        run_after,
        started_at,
        finished_at,
        expires_at,
        worker_id,
        version,
        owner,
        lost_attempts,
        queue,
        schedule,
        scheduled_for,
        retry_of,
        batch_id,
        depends_on,
        blocked_by,
        callback_url,
    ) = row[:_WIDTH]
    return Task(
        id_,
        type_,
        _STATUS[status],
        json.loads(params),
        None if result is None else json.loads(result),
        TaskError(**json.loads(error)) if error else None,
        Progress(**json.loads(progress)) if progress else None,
        attempts,
        max_attempts,
        timeout_seconds,
        priority,
        bool(cancel_requested),
        time(created_at),  # type: ignore[arg-type]  # never NULL
        time(run_after),  # type: ignore[arg-type]
        None if started_at is None else time(started_at),
        None if finished_at is None else time(finished_at),
        None if expires_at is None else time(expires_at),
        worker_id,
        version,
        owner,
        lost_attempts,
        queue,
        schedule,
        None if scheduled_for is None else time(scheduled_for),
        retry_of,
        batch_id,
        tuple(json.loads(depends_on)) if depends_on else (),
        tuple(json.loads(blocked_by)) if blocked_by else (),
        callback_url,
    )


#: The columns every schedule read selects, in every backend.
SCHEDULE_COLUMNS = (
    "owner, name, cron, every_seconds, timezone, task, paused, overlap, catch_up, next_run_at, "
    "last_run_at, last_task_id, created_at, updated_at, version"
)


def schedule_from_row(row: Any, time: Callable[[Any], datetime | None]) -> Schedule:
    """A schedule from a row of SCHEDULE_COLUMNS, read by name."""
    spec = ScheduleSpec(
        cron=row["cron"],
        every_seconds=row["every_seconds"],
        timezone=row["timezone"],
        task=json.loads(row["task"]),
        paused=bool(row["paused"]),
        overlap=Overlap(row["overlap"]),
        catch_up=CatchUp(row["catch_up"]),
    )
    return Schedule(
        owner=row["owner"],
        name=row["name"],
        spec=spec,
        next_run_at=time(row["next_run_at"]),
        last_run_at=time(row["last_run_at"]),
        last_task_id=row["last_task_id"],
        created_at=time(row["created_at"]),  # type: ignore[arg-type]  # never NULL
        updated_at=time(row["updated_at"]),  # type: ignore[arg-type]
        version=row["version"],
    )


#: The columns every read of a callback's delivery selects, in every backend.
DELIVERY_COLUMNS = (
    "task_id, url, event, state, attempts, ended_at, next_attempt_at, last_attempt_at, "
    "delivered_at, last_status, last_error, body"
)


def delivery_from_row(row: Any, time: Callable[[Any], datetime | None]) -> Delivery:
    """A delivery from a row of DELIVERY_COLUMNS, read by name."""
    return Delivery(
        task_id=row["task_id"],
        url=row["url"],
        event=row["event"],
        state=DeliveryState(row["state"]),
        attempts=row["attempts"],
        ended_at=time(row["ended_at"]),  # type: ignore[arg-type]  # never NULL
        next_attempt_at=time(row["next_attempt_at"]),
        last_attempt_at=time(row["last_attempt_at"]),
        delivered_at=time(row["delivered_at"]),
        last_status=row["last_status"],
        last_error=row["last_error"],
    )
