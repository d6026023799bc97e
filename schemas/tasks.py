"""TaskCreate (one request schema per task type), TaskStatus, and the task-type listing."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from api.callbacks.hosts import CallbackHosts
from api.models import (
    CALLBACK_EVENTS,
    CALLBACK_OMITTABLE,
    MAX_CALLBACK_BODY_BYTES,
    MAX_CALLBACK_URL_LENGTH,
    MAX_DEPENDENCIES,
    Delivery,
    DeliveryState,
    Status,
    Task,
)
from schemas.fields import StrictFloat, StrictInteger, TaskIds, queue_name

MAX_DELAY_SECONDS = 30 * 24 * 3600
MAX_TIMEOUT_SECONDS = 24 * 3600
UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class UTCDateTime(fields.DateTime):
    """An RFC 3339 time in UTC with a ``Z``: ``2026-11-23T22:31:27.123456Z``."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return utc_text(value)


def _nullable_time(description: str) -> UTCDateTime:
    return UTCDateTime(required=True, allow_none=True, metadata={"description": description})


#: Why a ``callback_url`` may not be used (None: it may): ``CallbackHosts.refusal`` of the
#: app's TASKS_CALLBACK_HOSTS.
Refusal = Callable[[str], str | None]
#: The refusal of a schema made without the app's hosts: callbacks are off.
CALLBACKS_OFF: Refusal = CallbackHosts().refusal

CALLBACK_URL_DESCRIPTION = (
    f"Where to send the task when it ends: an absolute `http://` or `https://` URL of at most "
    f"{MAX_CALLBACK_URL_LENGTH} characters, without a user name or password, whose host (and "
    "port) this server's TASKS_CALLBACK_HOSTS allows; any other is refused (422), and nothing "
    "is created. Callbacks are off while TASKS_CALLBACK_HOSTS is empty (the default): then "
    "every `callback_url` is refused. When the task ends (succeeded, failed or cancelled), the "
    "service `POST`s a `CallbackEvent` to it (the `taskEnded` webhook): `{type, timestamp, "
    "data}`, `data` being the task's TaskStatus, signed as Standard Webhooks say "
    "(`webhook-id`, `webhook-timestamp`, `webhook-signature`, with TASKS_WEBHOOK_SECRET). Any "
    "answer but a 2xx is retried with backoff for more than 24 hours (redirects are not "
    "followed; 410 Gone stops at once); the task's `callback` shows how it goes."
)


_PCT = r"%[0-9A-Fa-f]{2}"
_UNRESERVED_SUB = r"A-Za-z0-9\-._~!$&'()*+,;="
_PCHAR = rf"(?:[{_UNRESERVED_SUB}:@]|{_PCT})"
#: An http(s) URL as RFC 3986 spells one (what the spec's ``format: uri`` takes): no spaces,
#: no characters outside ASCII (percent-encode them), an IPv6 host in brackets. A user name
#: is matched here, to be refused with its own reason.
_URL = re.compile(
    rf"(?i:https?)://(?:(?:[{_UNRESERVED_SUB}:]|{_PCT})*@)?"
    rf"(?P<host>\[[0-9A-Fa-f:.]+\]|(?:[{_UNRESERVED_SUB}]|{_PCT})*)(?::[0-9]*)?"
    rf"(?:/{_PCHAR}*)*(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
)
NOT_A_URL = (
    "Not a URL as RFC 3986 writes one: percent-encode spaces and other characters outside "
    "ASCII letters, digits and -._~!$&'()*+,;=:@/? (a space is %20)."
)


def _rfc3986(url: str) -> bool:
    """Whether an http(s) ``url`` is written as RFC 3986 says (an IPv6 host a real one)."""
    match = _URL.fullmatch(url)
    if match is None:
        return False
    host = match["host"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
    return True


#: The shape of an http(s) URL with a host and no user info, in the spec.
CALLBACK_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s]+([/?#].*)?$"


class CallbackUrl(fields.String):
    """A ``callback_url``: a string that ``refusal`` allows (its message, as the error, else).

    The spec shows what any server takes (``format: uri``, ``maxLength``); which hosts are
    allowed is the server's TASKS_CALLBACK_HOSTS.
    """

    def __init__(self, refusal: Refusal = CALLBACKS_OFF, **kwargs: Any) -> None:
        metadata = {
            "description": CALLBACK_URL_DESCRIPTION,
            "format": "uri",
            # What every server refuses whatever its hosts: another scheme, no host, a user
            # name or password (the server's own check says why: api.callbacks.hosts).
            "pattern": CALLBACK_URL_PATTERN,
            "maxLength": MAX_CALLBACK_URL_LENGTH,
            "example": "https://hooks.example.com/taskapi",
        }
        super().__init__(metadata=metadata, **kwargs)
        self.refusal = refusal

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        message = self.refusal(text) or (None if _rfc3986(text) else NOT_A_URL)
        if message is not None:
            raise ValidationError(message)
        return text


class TaskCreateBase(Schema):
    """The fields every TaskCreate has; each task type adds its ``type`` and ``params``."""

    class Meta:
        unknown = RAISE

    max_attempts = StrictInteger(
        validate=validate.Range(min=1, max=100),
        metadata={
            "description": "How many attempts may fail (1..100); default from the type. An "
            "attempt cut short by a lost worker (its process died) does not count."
        },
    )
    timeout_seconds = StrictFloat(
        validate=validate.Range(min=0, min_inclusive=False, max=MAX_TIMEOUT_SECONDS),
        metadata={
            "description": "Seconds an attempt may run (0 < t <= 86400); default from the type.",
            "exclusiveMinimum": 0,
        },
    )
    delay_seconds = StrictFloat(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_DELAY_SECONDS),
        metadata={"description": "Seconds to wait before the task may start (0..2592000)."},
    )
    priority = StrictInteger(
        load_default=0,
        validate=validate.Range(min=-100, max=100),
        metadata={"description": "Higher runs first among ready tasks (-100..100)."},
    )
    queue = queue_name("The queue to put it in; default from the type, else `default`.")
    depends_on = TaskIds(
        max_items=MAX_DEPENDENCIES,
        metadata={
            "description": f"Ids of tasks (0..{MAX_DEPENDENCIES}) that must all succeed before "
            "this one starts: tasks of the same caller that exist already (of earlier submits "
            "or batches, not of the same batch). Until then it stays `queued`, its "
            "`blocked_by` naming those that have not succeeded; should one of them fail, be "
            "cancelled, deleted or expire, it ends `cancelled` with error type "
            "`DependencyFailed`. An id given twice counts once. An id that is not one of the "
            "caller's tasks is refused (422), and nothing is created."
        },
    )
    callback_url = CallbackUrl()


def _class_name(type_name: str) -> str:
    return "".join(part.capitalize() for part in type_name.replace("-", "_").split("_"))


def make_variant(
    type_name: str,
    params: type[Schema],
    description: str,
    *,
    base: type[Schema] = TaskCreateBase,
    suffix: str = "TaskCreate",
    callback_refusal: Refusal = CALLBACKS_OFF,
) -> type[Schema]:
    """The request schema of one task type: ``{"type": type_name, "params": {...}, ...}``,
    with the options of ``base``, named ``<Type><suffix>`` (``AddTaskCreate``); its
    ``callback_url`` checked by ``callback_refusal`` (the app's TASKS_CALLBACK_HOSTS)."""
    attrs: dict[str, Any] = {
        "callback_url": CallbackUrl(callback_refusal),
        "type": fields.String(
            required=True,
            validate=validate.OneOf([type_name]),
            metadata={"description": "The task type.", "example": type_name},
        ),
        "params": fields.Nested(
            params, required=True, metadata={"description": f"Params of `{type_name}`."}
        ),
        "__doc__": f"A task of type `{type_name}`. {description}".strip(),
    }
    return type(f"{_class_name(type_name)}{suffix}", (base,), attrs)


class OneOfSchema(Schema):
    """A schema that loads with the variant named by a discriminator field.

    ``VARIANTS`` maps discriminator values to schemas; the spec renders it as a ``oneOf`` with
    a ``discriminator`` (see ``api.openapi.OneOfMarshmallowPlugin``).
    """

    DISCRIMINATOR: ClassVar[str] = "type"
    VARIANTS: ClassVar[Mapping[str, type[Schema]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One instance per variant, made once: a schema costs more to build than to load.
        self._variants = {tag: variant() for tag, variant in self.VARIANTS.items()}

    def load(self, data: Any, *, many: bool | None = None, **kwargs: Any) -> Any:
        return self.variant_for(data).load(data, **kwargs)

    def variant_for(self, data: Any) -> Schema:
        """The variant that loads ``data``; a ValidationError when its discriminator is
        missing or names none (or ``data`` is not an object)."""
        if not isinstance(data, Mapping):
            raise ValidationError({"_schema": ["Invalid input type: expected a JSON object."]})
        tag = data.get(self.DISCRIMINATOR)
        if tag is None:
            raise ValidationError({self.DISCRIMINATOR: ["Missing data for required field."]})
        variant = self._variants.get(tag) if isinstance(tag, str) else None
        if variant is None:
            known = ", ".join(sorted(self.VARIANTS))
            raise ValidationError(
                {self.DISCRIMINATOR: [f"Unknown task type; use one of: {known}."]}
            )
        return variant


def make_task_create(variants: Mapping[str, type[Schema]]) -> type[OneOfSchema]:
    """The ``TaskCreate`` schema over the registered task types."""
    return type(
        "TaskCreate",
        (OneOfSchema,),
        {"VARIANTS": dict(variants), "__doc__": "A task to run: one schema per task type."},
    )


class TaskErrorSchema(Schema):
    """The error of a failed attempt."""

    type = fields.String(required=True, metadata={"description": "The exception's type name."})
    message = fields.String(required=True, metadata={"description": "The exception's message."})


class TaskProgressSchema(Schema):
    """Progress that a running task reported."""

    current = fields.Float(required=True, metadata={"description": "Work done so far."})
    total = fields.Float(
        required=True, allow_none=True, metadata={"description": "Work in all, when known."}
    )
    message = fields.String(
        required=True, allow_none=True, metadata={"description": "What it is doing."}
    )


def _event_type(description: str, **kwargs: Any) -> fields.String:
    events = sorted(CALLBACK_EVENTS.values())
    return fields.String(
        validate=validate.OneOf(events),
        metadata={"description": description, "example": events[0]},
        **kwargs,
    )


class CallbackDeliverySchema(Schema):
    """How the callback of an ended task goes: its one event, sent to its `callback_url` until
    the receiver answers 2xx (or the attempts run out)."""

    state = fields.Enum(
        DeliveryState,
        by_value=True,
        required=True,
        metadata={
            "description": "`pending`: an attempt is due (at `next_attempt_at`) or under way; "
            "`delivered`: the receiver answered 2xx; `failed`: every attempt failed, or the "
            "receiver answered 410 Gone. A delivered or failed callback can be sent again: "
            "`POST /tasks/{task_id}/callback/retry`.",
            "type": "string",
        },
    )
    event = _event_type("The event sent: how the task ended.", required=True)
    webhook_id = fields.String(
        required=True,
        metadata={
            "description": "The `webhook-id` header of every attempt, `msg_<task id>`: the same "
            "across retries, so a receiver can drop what it already got.",
            "example": "msg_0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10",
        },
    )
    attempts = fields.Integer(
        required=True,
        validate=validate.Range(min=0),
        metadata={"description": "Attempts made so far (counted from zero again on a resend)."},
    )
    last_attempt_at = _nullable_time("When the last attempt was made; null before the first.")
    next_attempt_at = _nullable_time("When the next attempt is due; null unless pending.")
    delivered_at = _nullable_time("When the receiver answered 2xx; null until then.")
    last_status = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": "The HTTP status of the receiver's last answer; null when it gave "
            "none (no attempt yet, one under way, or no answer: refused, timed out, not "
            "allowed)."
        },
    )
    last_error = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "What went wrong with the last attempt; null if nothing did (or "
            "while an attempt is under way)."
        },
    )


class TaskStatusSchema(Schema):
    """A task and everything known about it."""

    id = fields.UUID(required=True, metadata={"description": "The task's id."})
    type = fields.String(required=True, metadata={"description": "The task type."})
    status = fields.Enum(
        Status,
        by_value=True,
        required=True,
        # apispec gives an Enum field its values but no type; clients want both.
        metadata={
            "description": "queued, running, succeeded, failed or cancelled.",
            "type": "string",
        },
    )
    params = fields.Dict(
        required=True, metadata={"description": "The params as accepted, defaults applied."}
    )
    result = fields.Raw(
        required=True,
        allow_none=True,
        metadata={"description": "What the task returned; set only when it succeeded."},
    )
    error = fields.Nested(
        TaskErrorSchema,
        required=True,
        allow_none=True,
        metadata={"description": "The last attempt's error, when it failed."},
    )
    progress = fields.Nested(
        TaskProgressSchema,
        required=True,
        allow_none=True,
        metadata={"description": "The progress last reported by the running task."},
    )
    attempts = fields.Integer(
        required=True,
        metadata={
            "description": "Attempts started so far, those cut short by a lost worker included."
        },
    )
    max_attempts = fields.Integer(
        required=True,
        metadata={
            "description": "How many attempts may fail. An attempt cut short by a lost worker "
            "does not count, so attempts can exceed it."
        },
    )
    timeout_seconds = fields.Float(
        required=True, allow_none=True, metadata={"description": "Seconds an attempt may run."}
    )
    priority = fields.Integer(required=True, metadata={"description": "Higher runs first."})
    queue = queue_name("The queue it is in.", required=True)
    cancel_requested = fields.Boolean(
        required=True, metadata={"description": "Whether cancellation was asked for."}
    )
    created_at = UTCDateTime(required=True, metadata={"description": "When it was submitted."})
    run_after = UTCDateTime(required=True, metadata={"description": "Not started before this."})
    started_at = _nullable_time("When its last attempt started.")
    finished_at = _nullable_time("When it reached a terminal state.")
    expires_at = _nullable_time("When this terminal task will be purged (TASKS_RESULT_TTL).")
    schedule = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The schedule that made it (a fire or a trigger); else null."},
    )
    scheduled_for = _nullable_time(
        "The fire time it stands for, when a schedule made it (a trigger's: when it was asked)."
    )
    retry_of = fields.UUID(
        required=True,
        allow_none=True,
        metadata={
            "description": "The failed or cancelled task it submits again "
            "(`POST /tasks/{id}/retry`); null otherwise."
        },
    )
    depends_on = fields.List(
        fields.UUID(),
        required=True,
        metadata={
            "description": "The tasks that must succeed before it starts, in the order given "
            "(`[]` when none)."
        },
    )
    blocked_by = fields.List(
        fields.UUID(),
        required=True,
        metadata={
            "description": "Those of `depends_on` that have not succeeded yet, in the same "
            "order: a queued task with any is not started."
        },
    )
    batch_id = fields.UUID(
        required=True,
        allow_none=True,
        metadata={"description": "The batch it was submitted in (`POST /batches`); else null."},
    )
    callback_url = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "Where its end is sent (`callback_url` of the submit); else null.",
            "format": "uri",
        },
    )
    callback = fields.Nested(
        CallbackDeliverySchema,
        required=True,
        allow_none=True,
        metadata={
            "description": "How sending its end to `callback_url` goes; null while it has not "
            "ended, and for a task without a `callback_url`."
        },
    )

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        """What marshmallow's dump makes of the fields above, built directly for each task.

        The fields document the schema; answering a task through them took a measurable part
        of a task read (README, "Speed"). tests/test_schemas.py holds this equal to
        marshmallow's own dump, types included.
        """
        if self.many if many is None else many:
            return [task_document(task) for task in obj]
        return task_document(obj)


def utc_text(value: datetime | None) -> str | None:
    """A time as TaskStatus writes it: RFC 3339 in UTC with a ``Z``; None stays None."""
    return None if value is None else value.astimezone(UTC).strftime(UTC_FORMAT)


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def callback_document(delivery: Delivery | None) -> dict[str, Any] | None:
    """A task's callback as clients read it (``CallbackDelivery``); None stays None."""
    if delivery is None:
        return None
    return {
        "state": delivery.state.value,
        "event": delivery.event,
        "webhook_id": delivery.webhook_id,
        "attempts": delivery.attempts,
        "last_attempt_at": utc_text(delivery.last_attempt_at),
        "next_attempt_at": utc_text(delivery.next_attempt_at),
        "delivered_at": utc_text(delivery.delivered_at),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
    }


def task_document(task: Task) -> dict[str, Any]:
    """A task as clients read it (``TaskStatus``): what every task read answers, and the
    ``data`` of its callback's event."""
    error, progress = task.error, task.progress
    return {
        "id": task.id,
        "type": task.type,
        "status": task.status.value,
        "params": dict(task.params),
        "result": task.result,
        "error": None if error is None else {"type": error.type, "message": error.message},
        "progress": None
        if progress is None
        else {
            "current": float(progress.current),
            "total": _float(progress.total),
            "message": None if progress.message is None else str(progress.message),
        },
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "timeout_seconds": _float(task.timeout_seconds),
        "priority": task.priority,
        "queue": task.queue,
        "cancel_requested": task.cancel_requested,
        "created_at": utc_text(task.created_at),
        "run_after": utc_text(task.run_after),
        "started_at": utc_text(task.started_at),
        "finished_at": utc_text(task.finished_at),
        "expires_at": utc_text(task.expires_at),
        "schedule": task.schedule,
        "scheduled_for": utc_text(task.scheduled_for),
        "retry_of": task.retry_of,
        "depends_on": list(task.depends_on),
        "blocked_by": list(task.blocked_by),
        "batch_id": task.batch_id,
        "callback_url": task.callback_url,
        "callback": callback_document(task.callback),
    }


class CallbackEventSchema(Schema):
    """What the service `POST`s to a task's `callback_url` when the task ends (the `taskEnded`
    webhook), signed as Standard Webhooks say."""

    type = _event_type(
        "How the task ended: `task.succeeded`, `task.failed` or `task.cancelled`.", required=True
    )
    timestamp = UTCDateTime(required=True, metadata={"description": "When the task ended."})
    data = fields.Nested(
        TaskStatusSchema,
        required=True,
        metadata={
            "description": "The task as it ended, as `GET /tasks/{task_id}` reads it (with "
            "`callback` null), but for the fields `omitted` names."
        },
    )
    omitted = fields.List(
        fields.String(validate=validate.OneOf([name for name, _ in CALLBACK_OMITTABLE])),
        metadata={
            "description": f"Present when the body would be over {MAX_CALLBACK_BODY_BYTES} "
            "bytes with the whole task: the fields of `data` left out, in this order while it "
            "still is: `result`, `params`, `progress`, `error`, `depends_on`, `blocked_by`; "
            "each is sent empty (`{}` for `params`, `[]` for the lists, null for the others), "
            "so that `data` is still a TaskStatus. Read them at `task_url`."
        },
    )
    task_url = fields.String(
        metadata={
            "description": "Present with `omitted`: the path of the task, "
            "`/tasks/{task_id}`, to read it whole (while it is kept).",
            "example": "/tasks/0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10",
        },
    )


class TaskTypeSchema(Schema):
    """A task type that the service can run."""

    name = fields.String(required=True, metadata={"description": "The value of `type`."})
    description = fields.String(required=True, metadata={"description": "What it does."})
    params_schema = fields.Dict(
        required=True, metadata={"description": "JSON Schema of its params."}
    )
    max_attempts = fields.Integer(required=True, metadata={"description": "Default attempts."})
    timeout_seconds = fields.Float(
        required=True, allow_none=True, metadata={"description": "Default timeout, if any."}
    )
    queue = queue_name("The queue of its tasks when their submit names none.", required=True)
    isolation = fields.String(
        required=True,
        validate=validate.OneOf(["thread", "process"]),
        metadata={
            "description": "Where its attempts run: on a worker thread, or each in a child "
            "process (killed at its timeout; a crash fails only the attempt)."
        },
    )
