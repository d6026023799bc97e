"""Documentation of the headers and responses that several operations share."""

from __future__ import annotations

from typing import Any

from api.errors import PROBLEM_MIME
from schemas.problems import ProblemSchema

LOCATION_HEADER = {
    "Location": {"description": "The URL of the task.", "schema": {"type": "string"}}
}
PREFERENCE_APPLIED_HEADER = {
    "Preference-Applied": {
        "description": "`wait=N` when the answer waited for the task to end (RFC 7240).",
        "schema": {"type": "string"},
    }
}
RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before asking again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}
ETAG_HEADER = {
    "ETag": {
        "description": "Changes whenever the task does; send it in `If-None-Match`.",
        "schema": {"type": "string"},
    }
}


def queue_full_response() -> dict[str, Any]:
    """The 503 of an operation that queues a task (``alt_response(503, **...)``)."""
    return {
        "schema": ProblemSchema,
        "content_type": PROBLEM_MIME,
        "description": "The queue is full (TASKS_MAX_QUEUED); nothing was created.",
        "headers": RETRY_AFTER_HEADER,
    }
