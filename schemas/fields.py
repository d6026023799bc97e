"""Fields that take what the spec's types say only: JSON numbers for ``number|integer``, JSON
booleans for ``boolean``; and a pattern validator that reads ``^…$`` as JSON Schema does."""

from __future__ import annotations

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
