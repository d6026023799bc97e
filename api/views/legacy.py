"""The seed's two calls, kept working as they were: ``/start/x/y`` and ``/status/id``."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from api.exceptions import TaskNotFound
from api.http.access import caller
from api.models import Status, Task
from api.runtime import current
from api.views.headers import queue_full_response
from schemas.fields import INT64_MAX
from schemas.ops import LegacyNotFoundSchema, LegacyStartedSchema, LegacyStatusSchema

#: The seed's simulated work: two seconds.
SEED_DELAY_SECONDS = 2
_NOT_FOUND = {"error": "Task not found"}


def seed_status(task: Task) -> dict[str, Any]:
    """The task as the seed reported it: running, done with its result, or failed."""
    if task.status is Status.SUCCEEDED:
        return {"status": "done", "result": task.result}
    if task.status is Status.FAILED:
        return {"status": "failed", "error": task.error.message if task.error else ""}
    if task.status is Status.CANCELLED:
        return {"status": "failed", "error": "Task was cancelled"}
    return {"status": "running"}


blp = Blueprint("legacy", __name__, description="The seed's API (deprecated).")


@blp.route(
    f"/start/<int(max={INT64_MAX}):x>/<int(max={INT64_MAX}):y>",
    parameters=[
        {"in": "path", "name": "x", "description": "The first addend."},
        {"in": "path", "name": "y", "description": "The second addend."},
    ],
)
class Start(MethodView):
    @blp.doc(operationId="legacyStart", deprecated=True)
    @blp.response(200, LegacyStartedSchema, description="The task is started.")
    @blp.alt_response(404, "NOT_FOUND", description="x or y is not an integer 0..2**63-1.")
    @blp.alt_response(503, **queue_full_response())
    def get(self, x: int, y: int) -> dict[str, str]:
        """Start an addition (deprecated)

        Runs `add` with the seed's two seconds of simulated work. Use `POST /tasks`.
        """
        params = {"x": x, "y": y, "delay_seconds": SEED_DELAY_SECONDS}
        task = current().service.submit({"type": "add", "params": params}, owner=caller()).task
        return {"task_id": task.id, "status": "started"}


@blp.route(
    "/status/<task_id>",
    parameters=[
        {"in": "path", "name": "task_id", "description": "The `task_id` that /start answered."}
    ],
)
class LegacyStatus(MethodView):
    @blp.doc(operationId="legacyStatus", deprecated=True)
    @blp.response(200, LegacyStatusSchema, description="running, done or failed.")
    @blp.alt_response(404, schema=LegacyNotFoundSchema, description="No such task.")
    def get(self, task_id: str) -> dict[str, Any] | tuple[Response, int]:
        """Poll a task (deprecated)

        `running` while queued or running, `done` with its result, or `failed` with its
        error (a cancelled task reads as failed). Use `GET /tasks/{id}`.
        """
        try:
            task = current().service.get(task_id, owner=caller())
        except TaskNotFound:
            return jsonify(_NOT_FOUND), 404  # LegacyNotFoundSchema, not the 200 schema
        return seed_status(task)
