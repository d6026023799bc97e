"""Number fields that take JSON numbers only, as the spec's ``type: number|integer`` says."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

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
