"""Bodies of the operational and legacy endpoints."""

from __future__ import annotations

from marshmallow import Schema, fields


class HealthSchema(Schema):
    """The process is serving."""

    status = fields.String(required=True, metadata={"example": "ok", "description": "Always ok."})


class LegacyStartedSchema(Schema):
    """The seed's answer to /start: the task was accepted."""

    task_id = fields.String(required=True, metadata={"description": "Poll /status/{task_id}."})
    status = fields.String(
        required=True, metadata={"example": "started", "description": "Always `started`."}
    )


class LegacyStatusSchema(Schema):
    """The seed's answer to /status: running, done with a result, or failed with an error."""

    status = fields.String(
        required=True,
        metadata={"description": "running, done or failed", "enum": ["running", "done", "failed"]},
    )
    result = fields.Raw(metadata={"description": "The task's result, when done."})
    error = fields.String(metadata={"description": "What went wrong, when failed."})


class LegacyNotFoundSchema(Schema):
    """The seed's answer for an unknown task."""

    error = fields.String(
        required=True,
        metadata={"example": "Task not found", "description": "Always `Task not found`."},
    )
