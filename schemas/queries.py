"""Query strings and headers of the reads and submits."""

from __future__ import annotations

from collections.abc import Iterable

from marshmallow import Schema, fields, validate

from api.models import Status
from schemas.fields import TaskId, queue_name, schedule_name


def make_list_query(type_names: Iterable[str]) -> type[Schema]:
    """The filters of ``GET /tasks`` for the registered task types."""
    attrs = {
        "status": fields.List(
            fields.String(validate=validate.OneOf([s.value for s in Status])),
            metadata={"description": "Only tasks in these statuses (repeat to give several)."},
        ),
        "type": fields.String(
            validate=validate.OneOf(sorted(type_names)),
            metadata={"description": "Only tasks of this type."},
        ),
        "queue": queue_name("Only tasks of this queue."),
        "schedule": schedule_name("Only tasks that this schedule (of the caller) made."),
        "batch": TaskId(
            metadata={"description": "Only the tasks of this batch (`POST /batches`), by id."}
        ),
        "__doc__": "Filters of the task list.",
    }
    return type("TaskListQuery", (Schema,), attrs)


MAX_WAIT_SECONDS = 60


class TaskReadQuery(Schema):
    """Long-poll: hold the answer until the task is terminal or ``wait`` seconds pass."""

    wait = fields.Float(
        allow_nan=False,
        validate=validate.Range(min=0, max=MAX_WAIT_SECONDS),
        metadata={
            "description": "Seconds (0..60) to hold the answer until the task is terminal; "
            "the answer comes within moments of the change."
        },
    )


class TaskReadHeaders(Schema):
    """Conditional read."""

    if_none_match = fields.String(
        data_key="If-None-Match",
        metadata={"description": "An ETag from an earlier read: 304 while the task is unchanged."},
    )


class BatchReadQuery(Schema):
    """Long-poll: hold the answer until the batch is done or ``wait`` seconds pass."""

    wait = fields.Float(
        allow_nan=False,
        validate=validate.Range(min=0, max=MAX_WAIT_SECONDS),
        metadata={
            "description": "Seconds (0..60) to hold the answer until every task of the batch "
            "has ended (`done`); the answer comes within moments of it."
        },
    )


class BatchReadHeaders(Schema):
    """Conditional read."""

    if_none_match = fields.String(
        data_key="If-None-Match",
        metadata={
            "description": "An ETag from an earlier read: 304 while none of its tasks changed."
        },
    )


def _idempotency_key(made: str) -> fields.String:
    return fields.String(
        data_key="Idempotency-Key",
        validate=[
            validate.Length(min=1, max=255),
            validate.Regexp(r"^[\x20-\x7e]+$", error="Use printable ASCII characters only."),
        ],
        metadata={
            "description": "1..255 printable ASCII characters. The same key with the same body "
            f"answers 200 with the {made} it created, and creates nothing; with another body, "
            "422. Keys are kept 24 hours, per caller."
        },
    )


class IdempotencyHeaders(Schema):
    """The header that makes a request that creates a task safe to send again."""

    idempotency_key = _idempotency_key("task")


class BatchSubmitHeaders(Schema):
    """The header that makes a batch submit safe to send again."""

    idempotency_key = _idempotency_key("batch")


class SubmitHeaders(IdempotencyHeaders):
    """Headers that shape a submit."""

    prefer = fields.String(
        data_key="Prefer",
        metadata={
            "description": "RFC 7240. `wait=N` (N <= 60): answer 200 with the final task if it "
            "ends within N seconds, else the usual 202. Example: `wait=5`.",
        },
    )
