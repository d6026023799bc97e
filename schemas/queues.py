"""Queue: a queue's settings and counts; QueueUpdate: the body that changes its settings."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from api.models import MAX_QUEUE_CONCURRENCY
from schemas.fields import StrictBoolean, StrictInteger, queue_name

_CONCURRENCY = (
    "The most tasks of the queue running at once, across every process that shares the store "
    f"(1..{MAX_QUEUE_CONCURRENCY}); null: no limit beyond the workers."
)


def _count(status: str) -> fields.Integer:
    return fields.Integer(
        required=True,
        validate=validate.Range(min=0),
        metadata={"description": f"Tasks {status}."},
    )


class QueueCountsSchema(Schema):
    """How many tasks of the queue are in each status, of every caller (expired ones gone)."""

    queued = _count("waiting to run (delayed, blocked or ready)")
    running = _count("running now")
    succeeded = _count("that succeeded")
    failed = _count("that failed")
    cancelled = _count("cancelled")


class QueueSchema(Schema):
    """A queue: its settings and its tasks. A queue exists once a task names it or its settings
    are changed; `default` always does."""

    name = queue_name("The queue's name.", required=True)
    paused = fields.Boolean(
        required=True,
        metadata={"description": "A paused queue accepts tasks and starts none of them."},
    )
    concurrency = fields.Integer(
        required=True,
        allow_none=True,
        validate=validate.Range(min=1, max=MAX_QUEUE_CONCURRENCY),
        metadata={"description": _CONCURRENCY},
    )
    counts = fields.Nested(
        QueueCountsSchema, required=True, metadata={"description": "Its tasks by status."}
    )
    oldest_queued_seconds = fields.Float(
        required=True,
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={
            "description": "Seconds the oldest ready queued task has waited since it became "
            "ready; null when none is."
        },
    )


class QueueUpdateSchema(Schema):
    """Changes to a queue's settings; the fields not given stay as they are."""

    class Meta:
        unknown = RAISE

    paused = StrictBoolean(
        metadata={"description": "true: start none of its tasks (it still accepts them)."}
    )
    concurrency = StrictInteger(
        allow_none=True,
        validate=validate.Range(min=1, max=MAX_QUEUE_CONCURRENCY),
        metadata={"description": _CONCURRENCY},
    )
