"""``Activity``: the last minutes of the store, for charts (``GET /activity``)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.tasks import UTCDateTime


def _count(status: str) -> fields.Integer:
    return fields.Integer(
        required=True,
        validate=validate.Range(min=0),
        metadata={"description": f"Tasks {status} at that time, every caller's."},
    )


class ActivitySampleSchema(Schema):
    """How many tasks were in each status at one time."""

    time = UTCDateTime(required=True, metadata={"description": "When the store was read."})
    queued = _count("queued")
    running = _count("running")
    succeeded = _count("succeeded")
    failed = _count("failed")
    cancelled = _count("cancelled")


class ActivitySchema(Schema):
    """Tasks by status over the last minutes: readings of the store taken every
    `interval_seconds` by the server process that answers, oldest first, and the newest.

    A process keeps `window_seconds` of readings from its start: one started recently
    answers fewer (none, when it runs no sampler: an app not started by `taskapi serve`).
    Tasks that ended between two readings are the rise of `succeeded`, `failed` and
    `cancelled` (deleting finished tasks, or their expiry, lowers them).
    """

    interval_seconds = fields.Float(
        required=True, metadata={"description": "Seconds between two kept readings."}
    )
    window_seconds = fields.Float(
        required=True, metadata={"description": "Seconds of readings a process keeps."}
    )
    samples = fields.List(
        fields.Nested(ActivitySampleSchema),
        required=True,
        metadata={"description": "The readings kept, oldest first, one per interval."},
    )
    now = fields.Nested(
        ActivitySampleSchema,
        required=True,
        metadata={
            "description": "The newest reading: the last one kept when it is under "
            "`interval_seconds` old, else one taken for this answer."
        },
    )
