"""``/queues``: list queues, read one, pause, resume or limit it.

A queue exists once a task names it or its settings are changed; ``default`` always does. A
name no queue can have (not matching the pattern) is answered as an unknown queue, 404, on
reads and changes alike, as a malformed task id is: the path documents the pattern, and a
client that sends another name meets a queue that is not there.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from api.errors import PROBLEM_MIME, require_json_body
from api.http.access import admin_only
from api.models import QUEUE_NAME_PATTERN
from api.runtime import current
from api.service import Queue
from api.views.arguments import Blueprint
from api.views.examples import QUEUE_EXAMPLE, QUEUE_UPDATE_EXAMPLES
from schemas.problems import ProblemSchema
from schemas.queues import QueueSchema, QueueUpdateSchema


def name_parameter() -> dict[str, Any]:
    """The ``name`` path parameter (one per app: flask-smorest completes it in place)."""
    return {
        "in": "path",
        "name": "name",
        "description": "The queue's name: 1 to 63 lower-case letters, digits, `_`, `.` or "
        "`-`, starting with a letter or a digit.",
        "schema": {"type": "string", "pattern": QUEUE_NAME_PATTERN},
    }


#: OpenAPI links from a queue to its tasks (schemathesis's stateful phase follows them).
QUEUE_LINKS = {
    "ListQueueTasks": {
        "operationId": "listTasks",
        "parameters": {"queue": "$response.body#/name"},
        "description": "The queue's tasks: `GET /tasks?queue={name}`.",
    }
}
NOT_FOUND: dict[str, Any] = {
    "schema": ProblemSchema,
    "content_type": PROBLEM_MIME,
    "description": "No task names this queue and its settings were never changed (or the "
    "name is not a queue name).",
}
FORBIDDEN: dict[str, Any] = {
    "schema": ProblemSchema,
    "content_type": PROBLEM_MIME,
    "description": "The service runs with API keys and the caller is not named in "
    "TASKS_ADMINS; nothing was changed.",
}


def make_blueprint() -> Blueprint:
    blp = Blueprint(
        "queues",
        __name__,
        url_prefix="/queues",
        description="Queues: every task is in one. Read their counts; pause, resume or limit "
        "them (admins only, with API keys).",
    )
    _route_collection(blp)
    _route_item(blp)
    return blp


def _route_collection(blp: Blueprint) -> None:
    @blp.route("")
    class QueueCollection(MethodView):
        @blp.doc(operationId="listQueues")
        @blp.response(200, QueueSchema(many=True), description="Every queue, by name.")
        def get(self) -> list[Queue]:
            """List queues

            Every queue that has tasks or settings, and `default` always, by name. Counts
            cover the tasks of every caller.
            """
            return current().queues.list()


def _route_item(blp: Blueprint) -> None:
    @blp.route("/<name>", parameters=[name_parameter()])
    class QueueItem(MethodView):
        @blp.doc(operationId="getQueue", responses={200: {"links": QUEUE_LINKS}})
        @blp.response(200, QueueSchema, description="The queue.", example=QUEUE_EXAMPLE)
        @blp.alt_response(404, **NOT_FOUND)
        def get(self, name: str) -> Queue:
            """Read a queue

            Its settings, its tasks by status (of every caller), and how long its oldest
            ready task has waited. `default` always exists.
            """
            return current().queues.get(name)

        @blp.doc(operationId="updateQueue", responses={200: {"links": QUEUE_LINKS}})
        @blp.response(200, QueueSchema, description="The queue after the change.")
        @blp.alt_response(400, "BAD_REQUEST")
        @blp.alt_response(403, **FORBIDDEN)
        @blp.alt_response(404, **NOT_FOUND)
        @blp.alt_response(413, "REQUEST_ENTITY_TOO_LARGE")
        @blp.alt_response(415, "UNSUPPORTED_MEDIA_TYPE")
        @admin_only
        @require_json_body
        @blp.arguments(
            QueueUpdateSchema,
            description="The settings to change; those not given stay as they are.",
            examples=QUEUE_UPDATE_EXAMPLES,
        )
        def patch(self, changes: dict[str, Any], name: str) -> Queue:
            """Change a queue

            Pause it (its tasks are accepted and none starts; running ones finish), resume
            it, or limit how many of its tasks run at once across every process. The change
            is kept in the store and reaches every process within a second. A queue that
            does not exist yet is created with these settings (an empty change creates
            nothing: 404). With API keys, only the callers named in TASKS_ADMINS may.
            """
            return current().queues.update(name, changes)
