"""Examples the spec shows for the tasks, queues, schedules and batches operations (Swagger UI
offers them as they are)."""

from __future__ import annotations

from typing import Any

#: Request examples of ``POST /tasks``, one per built-in type. Swagger UI offers `add` first
#: (/openapi.json sorts keys, and it sorts first too).
CREATE_EXAMPLES = {
    "add": {
        "summary": "Add two numbers",
        "description": "Succeeds at once with the result 5.",
        "value": {"type": "add", "params": {"x": 2, "y": 3}},
    },
    "sleep": {
        "summary": "Sleep, reporting progress",
        "description": "Runs for 2 seconds, reporting progress each second; cancel it meanwhile.",
        "value": {"type": "sleep", "params": {"seconds": 2}},
    },
    "fail": {
        "summary": "Fail, then succeed on a retry",
        "description": "Fails its first attempt, is retried after a backoff, then succeeds.",
        "value": {
            "type": "fail",
            "params": {"message": "flaky dependency", "succeed_after": 1},
            "max_attempts": 3,
        },
    },
}
#: A task as ``POST /tasks`` answers it: just queued.
QUEUED_EXAMPLE: dict[str, Any] = {
    "id": "0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10",
    "type": "add",
    "status": "queued",
    "params": {"x": 2, "y": 3, "delay_seconds": 0},
    "result": None,
    "error": None,
    "progress": None,
    "attempts": 0,
    "max_attempts": 1,
    "timeout_seconds": None,
    "priority": 0,
    "queue": "default",
    "cancel_requested": False,
    "created_at": "2026-11-23T22:31:27.123456Z",
    "run_after": "2026-11-23T22:31:27.123456Z",
    "started_at": None,
    "finished_at": None,
    "expires_at": None,
    "schedule": None,
    "scheduled_for": None,
    "retry_of": None,
    "depends_on": [],
    "blocked_by": [],
    "batch_id": None,
    "callback_url": None,
    "callback": None,
}
#: The same task once it succeeded.
STATUS_EXAMPLE = {
    **QUEUED_EXAMPLE,
    "status": "succeeded",
    "result": 5,
    "attempts": 1,
    "started_at": "2026-11-23T22:31:27.125002Z",
    "finished_at": "2026-11-23T22:31:27.125710Z",
    "expires_at": "2026-11-30T22:31:27.125710Z",
}
#: A task whose callback ``POST /tasks/{id}/callback/retry`` made pending again.
CALLBACK_RESENT_EXAMPLE: dict[str, Any] = {
    **STATUS_EXAMPLE,
    "callback_url": "https://hooks.example.com/taskapi",
    "callback": {
        "state": "pending",
        "event": "task.succeeded",
        "webhook_id": f"msg_{QUEUED_EXAMPLE['id']}",
        "attempts": 0,
        "last_attempt_at": "2026-11-24T09:02:11.502311Z",
        "next_attempt_at": "2026-11-24T09:15:40.000000Z",
        "delivered_at": None,
        "last_status": 503,
        "last_error": "answered 503 Service Unavailable",
    },
}
#: A queue in use, as ``GET /queues/{name}`` answers it.
QUEUE_EXAMPLE: dict[str, Any] = {
    "name": "emails",
    "paused": False,
    "concurrency": 4,
    "counts": {"queued": 12, "running": 4, "succeeded": 310, "failed": 2, "cancelled": 0},
    "oldest_queued_seconds": 1.5,
}
#: Request examples of ``PATCH /queues/{name}``.
QUEUE_UPDATE_EXAMPLES = {
    "pause": {
        "summary": "Pause the queue",
        "description": "Its tasks are still accepted; none starts until it is resumed.",
        "value": {"paused": True},
    },
    "resume": {
        "summary": "Resume the queue",
        "description": "Its ready tasks start again, within a second.",
        "value": {"paused": False},
    },
    "limit": {
        "summary": "At most 4 at once",
        "description": "At most 4 of its tasks run at once, across every process.",
        "value": {"concurrency": 4},
    },
    "unlimit": {
        "summary": "No limit",
        "description": "No limit beyond the workers.",
        "value": {"concurrency": None},
    },
}
#: Request examples of ``PUT /schedules/{name}``.
SCHEDULE_WRITE_EXAMPLES = {
    "cron": {
        "summary": "Every night at 03:00 in Paris",
        "description": "A cron expression read in a time zone; the task is a `POST /tasks` body.",
        "value": {
            "cron": "0 3 * * *",
            "timezone": "Europe/Paris",
            "task": {"type": "add", "params": {"x": 2, "y": 3}},
        },
    },
    "interval": {
        "summary": "Every 10 minutes, overlapping",
        "description": "An interval; a fire time makes a task even while the last one runs.",
        "value": {
            "every_seconds": 600,
            "overlap": "allow",
            "task": {"type": "sleep", "params": {"seconds": 5}, "priority": 10},
        },
    },
    "paused": {
        "summary": "Hourly, paused",
        "description": "Makes no task until it is set again with `paused: false`; a trigger "
        "still makes one.",
        "value": {
            "cron": "@hourly",
            "paused": True,
            "catch_up": "none",
            "task": {"type": "fail", "params": {"message": "boom"}, "max_attempts": 1},
        },
    },
}
#: A schedule, as ``GET /schedules/{name}`` answers it.
SCHEDULE_EXAMPLE: dict[str, Any] = {
    "name": "nightly-report",
    "cron": "0 3 * * *",
    "every_seconds": None,
    "timezone": "Europe/Paris",
    "task": {"type": "add", "params": {"x": 2, "y": 3, "delay_seconds": 0}, "priority": 0},
    "paused": False,
    "overlap": "skip",
    "catch_up": "latest",
    "next_run_at": "2026-11-25T02:00:00.000000Z",
    "last_run_at": "2026-11-24T02:00:00.000000Z",
    "last_task_id": "0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10",
    "created_at": "2026-11-20T09:12:44.318022Z",
    "updated_at": "2026-11-20T09:12:44.318022Z",
}
#: The task a trigger makes, just queued.
TRIGGERED_EXAMPLE: dict[str, Any] = {
    **QUEUED_EXAMPLE,
    "schedule": "nightly-report",
    "scheduled_for": QUEUED_EXAMPLE["created_at"],
}

#: A task as ``POST /tasks/{id}/retry`` answers it: a new task, naming the one it retries.
RETRIED_EXAMPLE: dict[str, Any] = {
    **QUEUED_EXAMPLE,
    "id": "5d0c3a9e-2b7f-4e61-a8d4-9f1e6c3b2a70",
    "retry_of": QUEUED_EXAMPLE["id"],
}

#: Request examples of ``POST /batches``.
BATCH_CREATE_EXAMPLES = {
    "fan-out": {
        "summary": "Three additions at once",
        "description": "Three tasks created together; `GET /batches/{id}?wait=10` answers "
        "once all have ended.",
        "value": {
            "tasks": [
                {"type": "add", "params": {"x": 1, "y": 2}},
                {"type": "add", "params": {"x": 3, "y": 4}},
                {"type": "add", "params": {"x": 5, "y": 6}},
            ]
        },
    },
    "mixed": {
        "summary": "Tasks of several types, with options",
        "description": "Each item is a `POST /tasks` body: its own type, params and options.",
        "value": {
            "tasks": [
                {"type": "sleep", "params": {"seconds": 2}, "queue": "reports"},
                {"type": "add", "params": {"x": 2, "y": 3}, "priority": 10},
                {
                    "type": "fail",
                    "params": {"message": "flaky dependency", "succeed_after": 1},
                    "max_attempts": 3,
                },
            ]
        },
    },
}
_BATCH_TASK_IDS = [
    "3f6c1a2b-7d4e-4b8a-9c0d-1e2f3a4b5c6d",
    "8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c4d",
    "c5d6e7f8-0a1b-4c2d-a3e4-f5a6b7c8d9e0",
]
#: A batch as ``POST /batches`` answers it: just queued.
BATCH_QUEUED_EXAMPLE: dict[str, Any] = {
    "id": "7e1d4c2a-5b3f-4a6e-8d9c-0b1a2c3d4e5f",
    "size": 3,
    "task_ids": _BATCH_TASK_IDS,
    "counts": {"queued": 3, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0},
    "done": False,
    "created_at": "2026-11-23T22:31:27.123456Z",
    "finished_at": None,
}
#: The same batch once every task ended.
BATCH_EXAMPLE: dict[str, Any] = {
    **BATCH_QUEUED_EXAMPLE,
    "counts": {"queued": 0, "running": 0, "succeeded": 3, "failed": 0, "cancelled": 0},
    "done": True,
    "finished_at": "2026-11-23T22:31:27.131204Z",
}
