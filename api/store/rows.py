"""How a task is written as JSON text and read back from a row, whatever the backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from api.models import MAX_LOST_ATTEMPTS, TERMINAL, Progress, Status, Task, TaskError

#: The columns every task read selects, in every backend.
COLUMNS = (
    "id, type, status, params, result, error, progress, attempts, max_attempts, "
    "timeout_seconds, priority, cancel_requested, created_at, run_after, started_at, "
    "finished_at, expires_at, worker_id, version, owner, lost_attempts"
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


def dumps(value: Any) -> str:
    """JSON text as stored: compact; NUL and lone surrogates escaped (ensure_ascii)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


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


def task_from_row(row: Mapping[str, Any], time: Callable[[Any], datetime | None]) -> Task:
    """A task from a row of COLUMNS; ``time`` reads the backend's timestamps."""
    error = json.loads(row["error"]) if row["error"] else None
    progress = json.loads(row["progress"]) if row["progress"] else None
    created_at, run_after = time(row["created_at"]), time(row["run_after"])
    assert created_at is not None and run_after is not None
    return Task(
        id=row["id"],
        type=row["type"],
        status=Status(row["status"]),
        params=json.loads(row["params"]),
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=TaskError(**error) if error else None,
        progress=Progress(**progress) if progress else None,
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        timeout_seconds=row["timeout_seconds"],
        priority=row["priority"],
        cancel_requested=bool(row["cancel_requested"]),
        created_at=created_at,
        run_after=run_after,
        started_at=time(row["started_at"]),
        finished_at=time(row["finished_at"]),
        expires_at=time(row["expires_at"]),
        worker_id=row["worker_id"],
        version=row["version"],
        owner=row["owner"],
        lost_attempts=row["lost_attempts"],
    )
