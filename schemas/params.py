"""Params schemas of the built-in task types (one per type; unknown fields are refused)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.fields import INT64_MAX, INT64_MIN, StrictFloat, StrictInteger

_INT64 = validate.Range(min=INT64_MIN, max=INT64_MAX)


class AddParams(Schema):
    """Params of ``add``: two 64-bit integers, and optional simulated work."""

    x = StrictInteger(
        required=True, validate=_INT64, metadata={"description": "First addend.", "format": "int64"}
    )
    y = StrictInteger(
        required=True,
        validate=_INT64,
        metadata={"description": "Second addend.", "format": "int64"},
    )
    delay_seconds = StrictFloat(
        load_default=0,
        validate=validate.Range(min=0, max=60),
        metadata={"description": "Seconds of simulated work before answering (0..60)."},
    )


class SleepParams(Schema):
    """Params of ``sleep``: how long to sleep."""

    seconds = StrictFloat(
        required=True,
        validate=validate.Range(min=0, max=3600),
        metadata={"description": "Seconds to sleep (0..3600); progress is reported each second."},
    )


class FailParams(Schema):
    """Params of ``fail``: the error to raise, and optionally when to stop raising it."""

    message = fields.String(
        required=True,
        # 4000 characters fit the 64 KiB body limit even when each is escaped to 12 bytes.
        validate=validate.Length(max=4_000),
        metadata={"description": "The message of the error raised (at most 4000 characters)."},
    )
    succeed_after = StrictInteger(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=100),
        metadata={
            "description": "Fail only the first N attempts, then succeed; null fails every one."
        },
    )
