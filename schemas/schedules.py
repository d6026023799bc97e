"""ScheduleWrite (the body of ``PUT /schedules/{name}``), Schedule (a schedule as read), and
ScheduledTask, the task a schedule makes: one schema per task type, as TaskCreate.

The template is validated exactly as a ``POST /tasks`` body (the same per-type schemas and
messages), less ``delay_seconds``: a scheduled task runs at its fire time, and less
``depends_on``: every fire would wait on the same fixed tasks (refused with a message saying
so). Its errors are keyed under ``task`` (``task.params.x``).

"Exactly one of ``cron`` and ``every_seconds``" is written into the spec as a ``not`` (neither
both nor none; generated clients ignore it, validators keep it). What a string pattern cannot
say (a minute of 61, a day 31 of February, a time zone that does not exist) is checked by
``api.scheduler.cron.Timing`` and refused with 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from api.models import MAX_EVERY_SECONDS, CatchUp, Overlap, Schedule
from api.scheduler.cron import (
    DEFAULT_TIMEZONE,
    MAX_CRON_LENGTH,
    MAX_TIMEZONE_LENGTH,
    Timing,
    TimingError,
)
from schemas.fields import AnyOf, Pattern, StrictBoolean, StrictInteger, schedule_name
from schemas.tasks import (
    CALLBACKS_OFF,
    OneOfSchema,
    Refusal,
    TaskCreateBase,
    UTCDateTime,
    make_variant,
    utc_text,
)

#: What ``cron`` looks like: five fields of visible ASCII separated by spaces, or an
#: ``@name`` (``@daily``). Spelled without ``\s`` and ``\S``, which Python and JSON Schema's
#: ECMA-262 read differently (Python counts ``\x1c`` as a space).
CRON_PATTERN = r"^(@[A-Za-z]+|[!-~]+( +[!-~]+){4})$"
#: What an IANA time zone name looks like (``Europe/Paris``, ``Etc/GMT+5``, ``UTC``).
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
#: The two ways of saying when, of which a schedule takes exactly one.
TIMINGS = ("cron", "every_seconds")
BOTH = "Give either `cron` or `every_seconds`, not both."
NEITHER = "Give `cron` (a cron expression) or `every_seconds` (an interval): exactly one."

_CRON = (
    "When it fires: a standard 5-field cron expression (minute hour day-of-month month "
    "day-of-week, separated by spaces; `*`, lists, ranges, steps, month and day names) or one "
    "of `@yearly`, "
    "`@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`, read in `timezone`. "
    "An expression that never fires or cannot be read is refused (422). Exactly one of `cron` "
    "and `every_seconds`."
)
_EVERY = (
    f"When it fires: every this many seconds (1..{MAX_EVERY_SECONDS}), the first time that many "
    "seconds after it is set. Exactly one of `cron` and `every_seconds`."
)
_TIMEZONE = (
    "The IANA time zone `cron` is read in (`Europe/Paris`); default `UTC`. A name the service "
    "does not know is refused (422)."
)
_OVERLAP = (
    "`skip` (default): a fire time makes no task while the schedule's previous task is still "
    "queued or running; `allow`: it makes one all the same."
)
_CATCH_UP = (
    "After downtime, `latest` (default) makes one task for the latest missed fire time; "
    "`none` makes none (a fire time counts as missed when no worker process reached it "
    "within 60 seconds)."
)
_PAUSED = "A paused schedule makes no task at its fire times (a trigger still makes one)."
_TASK = (
    "The task each fire time makes: a `POST /tasks` body less `delay_seconds` and "
    "`depends_on`, validated as one; the type's defaults apply to the options it leaves out."
)

_TASK_READ = (
    "The task each fire time makes, as it was accepted (params with their defaults). Should its "
    "type no longer be registered (its TASKS_IMPORT module removed), it is shown as stored, and "
    "a trigger is refused with 409 until the type is back or the schedule is set again."
)


#: Why a schedule's task takes no ``depends_on``.
NO_DEPENDENCIES = (
    "A schedule's task cannot depend on other tasks: each fire time makes a new task, and "
    "`depends_on` names tasks that exist once, so every fire after them would wait on the "
    "same old tasks. Leave `depends_on` out."
)


class ScheduledTaskBase(TaskCreateBase):
    """The options a schedule's task may set: those of a submit but ``delay_seconds`` and
    ``depends_on``."""

    class Meta(TaskCreateBase.Meta):
        exclude = ("delay_seconds", "depends_on")

    def handle_error(self, error: ValidationError, data: Any, *, many: bool, **kwargs: Any) -> None:
        """Say why ``depends_on`` is refused, rather than only "Unknown field."."""
        messages = error.messages
        if isinstance(messages, dict) and "depends_on" in messages:
            raise ValidationError({**messages, "depends_on": [NO_DEPENDENCIES]}) from error


def make_scheduled_task(
    types: Mapping[str, tuple[type[Schema], str]], callback_refusal: Refusal = CALLBACKS_OFF
) -> type[OneOfSchema]:
    """The ``ScheduledTask`` schema over the registered task types (name -> (params schema,
    description)), members named ``<Type>ScheduledTask``; ``callback_url`` checked by
    ``callback_refusal`` (the app's TASKS_CALLBACK_HOSTS), as a submit's."""
    variants = {
        name: make_variant(
            name,
            params,
            description,
            base=ScheduledTaskBase,
            suffix="ScheduledTask",
            callback_refusal=callback_refusal,
        )
        for name, (params, description) in types.items()
    }
    return type(
        "ScheduledTask",
        (OneOfSchema,),
        {"VARIANTS": variants, "__doc__": "The task a schedule makes: one schema per task type."},
    )


def _enum(enum: type[Overlap] | type[CatchUp], description: str, **kwargs: Any) -> fields.Enum:
    # apispec gives an Enum field its values but no type; clients want both.
    return fields.Enum(
        enum, by_value=True, metadata={"description": description, "type": "string"}, **kwargs
    )


def _cron(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=[
            validate.Length(min=1, max=MAX_CRON_LENGTH),
            Pattern(
                CRON_PATTERN,
                error="Not a cron expression: five fields separated by spaces (minute hour "
                "day-of-month month day-of-week), or an @name such as @daily.",
            ),
        ],
        metadata={"description": _CRON, "example": "0 3 * * *"},
        **kwargs,
    )


def _timezone(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=[
            validate.Length(min=1, max=MAX_TIMEZONE_LENGTH),
            Pattern(TIMEZONE_PATTERN, error="Not a time zone name, like Europe/Paris or UTC."),
        ],
        metadata={"description": _TIMEZONE, "example": "Europe/Paris"},
        **kwargs,
    )


#: The spec's way of saying "exactly one of cron and every_seconds": neither both nor none.
EXACTLY_ONE_TIMING: dict[str, Any] = {
    "not": {
        "anyOf": [
            {"required": list(TIMINGS)},
            {"not": {"anyOf": [{"required": [name]} for name in TIMINGS]}},
        ]
    }
}


class ScheduleWriteBase(Schema):
    """A schedule as ``PUT /schedules/{name}`` sets it: when it fires (exactly one of ``cron``
    and ``every_seconds``), and the task it makes."""

    class Meta:
        unknown = RAISE

    #: Merged into the spec's component (``api.openapi.OneOfMarshmallowPlugin``).
    SPEC_EXTRA: ClassVar[dict[str, Any]] = EXACTLY_ONE_TIMING

    cron = _cron()
    every_seconds = StrictInteger(
        validate=validate.Range(min=1, max=MAX_EVERY_SECONDS),
        metadata={"description": _EVERY, "example": 3600},
    )
    timezone = _timezone(load_default=DEFAULT_TIMEZONE)
    paused = StrictBoolean(load_default=False, metadata={"description": _PAUSED})
    overlap = _enum(Overlap, _OVERLAP, load_default=Overlap.SKIP)
    catch_up = _enum(CatchUp, _CATCH_UP, load_default=CatchUp.LATEST)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _exactly_one_readable_timing(
        self, data: dict[str, Any], original: Any, **kwargs: Any
    ) -> None:
        """Exactly one of ``cron`` and ``every_seconds``, and one the scheduler can read."""
        given = [
            name
            for name in TIMINGS
            if isinstance(original, Mapping) and original.get(name) is not None
        ]
        if len(given) != 1:
            message = BOTH if given else NEITHER
            raise ValidationError({name: [message] for name in TIMINGS})
        if given[0] not in data or "timezone" not in data:
            return  # already refused by its field
        timing = Timing(data.get("cron"), data.get("every_seconds"), data["timezone"])
        try:
            timing.check()
        except TimingError as error:
            raise ValidationError({error.field: [str(error)]}) from None


def make_schedule_write(scheduled_task: type[OneOfSchema]) -> type[Schema]:
    """``ScheduleWrite`` for the registered task types."""
    task = fields.Nested(scheduled_task, required=True, metadata={"description": _TASK})
    attrs = {"task": task, "__doc__": ScheduleWriteBase.__doc__}
    return type("ScheduleWrite", (ScheduleWriteBase,), attrs)


def _required_time(description: str, *, nullable: bool = False) -> UTCDateTime:
    return UTCDateTime(required=True, allow_none=nullable, metadata={"description": description})


class ScheduleBase(Schema):
    """A schedule: what ``PUT`` set (``ScheduleWrite``), its name, its next and last runs."""

    name = schedule_name("The schedule's name, unique per caller.", required=True)
    cron = _cron(required=True, allow_none=True)
    every_seconds = fields.Integer(
        required=True,
        allow_none=True,
        validate=validate.Range(min=1, max=MAX_EVERY_SECONDS),
        metadata={"description": _EVERY},
    )
    timezone = _timezone(required=True)
    paused = fields.Boolean(required=True, metadata={"description": _PAUSED})
    overlap = _enum(Overlap, _OVERLAP, required=True)
    catch_up = _enum(CatchUp, _CATCH_UP, required=True)
    next_run_at = _required_time(
        "The next fire time; null while paused (or when `cron` fires no more).", nullable=True
    )
    last_run_at = _required_time(
        "When it last made a task (a fire time or a trigger); null before the first.",
        nullable=True,
    )
    last_task_id = fields.UUID(
        required=True,
        allow_none=True,
        metadata={"description": "The task it made last; null before the first."},
    )
    created_at = _required_time("When it was first set.")
    updated_at = _required_time("When it was last set (PUT).")

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        """The documented fields, built directly from each ``Schedule``."""
        if self.many if many is None else many:
            return [schedule_document(s) for s in obj]
        return schedule_document(obj)


class UnregisteredScheduledTaskSchema(Schema):
    """A schedule's task whose type is no longer registered (its TASKS_IMPORT module was
    removed), as it was stored: its fire times make no task until the type is back."""

    type = fields.String(required=True, metadata={"description": "The task type's name."})
    params = fields.Dict(required=True, metadata={"description": "Its params, as accepted."})
    max_attempts = fields.Integer(metadata={"description": "As accepted, if it was given."})
    timeout_seconds = fields.Float(metadata={"description": "As accepted, if it was given."})
    priority = fields.Integer(metadata={"description": "As accepted."})
    queue = fields.String(metadata={"description": "As accepted, if it was given."})
    callback_url = fields.String(metadata={"description": "As accepted, if it was given."})


def make_schedule(scheduled_task: type[OneOfSchema]) -> type[Schema]:
    """``Schedule`` for the registered task types."""
    task = AnyOf(
        scheduled_task,
        UnregisteredScheduledTaskSchema,
        required=True,
        metadata={"description": _TASK_READ},
    )
    return type("Schedule", (ScheduleBase,), {"task": task, "__doc__": ScheduleBase.__doc__})


def schedule_document(schedule: Schedule) -> dict[str, Any]:
    """A schedule as clients read it (``Schedule``); its task as it was accepted."""
    spec = schedule.spec
    return {
        "name": schedule.name,
        "cron": spec.cron,
        "every_seconds": spec.every_seconds,
        "timezone": spec.timezone,
        "task": dict(spec.task),
        "paused": spec.paused,
        "overlap": spec.overlap.value,
        "catch_up": spec.catch_up.value,
        "next_run_at": utc_text(schedule.next_run_at),
        "last_run_at": utc_text(schedule.last_run_at),
        "last_task_id": schedule.last_task_id,
        "created_at": utc_text(schedule.created_at),
        "updated_at": utc_text(schedule.updated_at),
    }
