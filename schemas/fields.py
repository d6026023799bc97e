"""Fields that take what the spec's types say only: JSON numbers for ``number|integer``, JSON
booleans for ``boolean``, ids in the one form ``format: uuid`` allows; and a pattern validator
that reads ``^…$`` as JSON Schema does."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from api.models import QUEUE_NAME_PATTERN, SCHEDULE_NAME_PATTERN

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class StrictInteger(fields.Integer):
    """A JSON integer: refuses strings and booleans; ``3.0`` is read as ``3``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float):
            if not value.is_integer():
                raise self.make_error("invalid")
            value = int(value)
        return value


class StrictFloat(fields.Float):
    """A finite JSON number: refuses strings, booleans, NaN and infinities.

    An integer stays an integer, so params read back exactly as they were sent.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_nan=False, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        checked = super()._deserialize(value, attr, data, **kwargs)
        return value if isinstance(value, int) else checked


class StrictBoolean(fields.Boolean):
    """A JSON boolean: refuses ``"true"``, ``1`` and the other spellings marshmallow takes."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Pattern(validate.Regexp):
    """``validate.Regexp`` over the whole value: Python's ``$`` also matches before a final
    newline, JSON Schema's does not. The spec shows the pattern as it is."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


#: A queue's name, as the contract spells it.
QUEUE_NAME_ERROR = (
    "Not a queue name: 1 to 63 lower-case letters, digits, '_', '.' or '-', starting with a "
    "letter or a digit."
)


def queue_name(description: str, **kwargs: Any) -> fields.String:
    """A field holding a queue's name."""
    return fields.String(
        validate=Pattern(QUEUE_NAME_PATTERN, error=QUEUE_NAME_ERROR),
        metadata={"description": description, "example": "emails"},
        **kwargs,
    )


#: A schedule's name, as the contract spells it.
SCHEDULE_NAME_ERROR = (
    "Not a schedule name: 1 to 63 lower-case letters, digits, '_', '.' or '-', starting with a "
    "letter or a digit."
)


def schedule_name(description: str, **kwargs: Any) -> fields.String:
    """A field holding a schedule's name."""
    return fields.String(
        validate=Pattern(SCHEDULE_NAME_PATTERN, error=SCHEDULE_NAME_ERROR),
        metadata={"description": description, "example": "nightly-report"},
        **kwargs,
    )


class AnyOf(fields.Raw):
    """A value documented as ``anyOf`` the given schemas (``api.openapi`` renders it); read
    and written as it is (a response field, whose document the view builds)."""

    def __init__(self, *schemas: type[Schema], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schemas = schemas


#: A task's id as the spec's ``format: uuid`` reads it: 8-4-4-4-12 hexadecimal digits.
_TASK_ID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


class TaskId(fields.UUID):
    """A task's (or a batch's) id, read as its canonical text (lower case): only the hyphenated
    form that ``format: uuid`` allows, not the other spellings Python's ``uuid.UUID`` takes
    (braces, ``urn:uuid:``, no hyphens)."""

    default_error_messages = {  # noqa: RUF012  (marshmallow merges it into error_messages)
        "invalid_uuid": "Not a valid id: a UUID such as 0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10."
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or _TASK_ID.fullmatch(value) is None:
            raise self.make_error("invalid_uuid")
        return value.lower()


class TaskIds(fields.List):
    """Ids of tasks, at most ``max_items``, read with duplicates dropped (the first of each
    kept, in the order given): naming a task twice asks for nothing more than naming it once.
    The limit counts the ids as sent, as the spec's ``maxItems`` does."""

    default_error_messages = {"too_many": "At most {max} ids; got {count}."}  # noqa: RUF012

    def __init__(self, *, max_items: int, metadata: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(TaskId(), metadata={**metadata, "maxItems": max_items}, **kwargs)
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list):
            if len(value) > self.max_items:
                raise self.make_error("too_many", max=self.max_items, count=len(value))
            ids = [v.lower() for v in value if isinstance(v, str) and _TASK_ID.fullmatch(v)]
            if len(ids) == len(value):  # each as TaskId reads it, without a call per id
                return ids if len(ids) < 2 else list(dict.fromkeys(ids))
        return list(dict.fromkeys(super()._deserialize(value, attr, data, **kwargs)))

    def _validate(self, value: Any) -> None:
        if self.validators:  # none unless given: skip making marshmallow's And of nothing
            super()._validate(value)
