"""``/tasks``: submit, read, list, cancel and delete tasks."""

from __future__ import annotations

from typing import Any

from flask import Response, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters
from werkzeug.routing import BaseConverter

from api.errors import require_json_body
from api.models import Task
from api.registry import Registry
from api.runtime import current
from schemas.queries import make_list_query
from schemas.tasks import TaskStatusSchema, make_task_create, make_variant

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

CREATE_EXAMPLE = {"type": "add", "params": {"x": 2, "y": 3}}
STATUS_EXAMPLE = {
    "id": "0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10",
    "type": "add",
    "status": "succeeded",
    "params": {"x": 2, "y": 3, "delay_seconds": 0},
    "result": 5,
    "error": None,
    "progress": None,
    "attempts": 1,
    "max_attempts": 1,
    "timeout_seconds": None,
    "priority": 0,
    "cancel_requested": False,
    "created_at": "2026-11-23T22:31:27.123456Z",
    "run_after": "2026-11-23T22:31:27.123456Z",
    "started_at": "2026-11-23T22:31:27.125002Z",
    "finished_at": "2026-11-23T22:31:27.125710Z",
    "expires_at": "2026-11-30T22:31:27.125710Z",
}
LOCATION_HEADER = {
    "Location": {"description": "The URL of the new task.", "schema": {"type": "string"}}
}


class TaskIdConverter(BaseConverter):
    """A task id in a path: documented as a UUID, but any segment reaches the view, so that a
    malformed id gets the same "no such task" answer as an unknown one."""


def task_id_param_schema(converter: BaseConverter) -> dict[str, str]:
    return {"type": "string", "format": "uuid"}


def make_blueprint(registry: Registry) -> Blueprint:
    """The tasks blueprint, its TaskCreate made of the registered task types."""
    task_create = make_task_create(
        {t.name: make_variant(t.name, t.params, t.description) for t in registry}
    )
    list_query = make_list_query(registry.names())
    blp = Blueprint("tasks", __name__, url_prefix="/tasks", description="Submit and follow tasks.")

    def location(task: Task) -> dict[str, str]:
        return {"Location": url_for("tasks.TaskItem", task_id=task.id)}

    @blp.route("")
    class TaskCollection(MethodView):
        @blp.doc(operationId="listTasks")
        @blp.arguments(list_query, location="query", as_kwargs=True)
        @blp.response(200, TaskStatusSchema(many=True), description="One page of tasks.")
        @blp.paginate(page_size=DEFAULT_PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)
        def get(self, pagination_parameters: PaginationParameters, **filters: Any) -> list[Task]:
            """List tasks, newest first

            Filter by `status` (repeat it for several) and `type`; pages of `page_size`
            (1..100, default 20), described in the `X-Pagination` header.
            """
            tasks, total = current().service.list(
                filters.get("status") or (),
                filters.get("type"),
                page=pagination_parameters.page,
                page_size=pagination_parameters.page_size,
            )
            pagination_parameters.item_count = total
            return tasks

        @blp.doc(operationId="createTask")
        @blp.response(
            202,
            TaskStatusSchema,
            description="The task is queued; follow it at `Location`.",
            headers=LOCATION_HEADER,
        )
        @blp.alt_response(400, "BAD_REQUEST")
        @blp.alt_response(413, "REQUEST_ENTITY_TOO_LARGE")
        @blp.alt_response(415, "UNSUPPORTED_MEDIA_TYPE")
        @require_json_body
        @blp.arguments(task_create, example=CREATE_EXAMPLE)
        def post(self, body: dict[str, Any]) -> tuple[Task, int, dict[str, str]]:
            """Submit a task

            The body names a task `type` and its `params`; `GET /task-types` lists the types.
            The task is queued and runs on a worker; poll it at the `Location` answered.
            """
            task = current().service.submit(body)
            return task, 202, location(task)

    @blp.route("/<task_id:task_id>")
    class TaskItem(MethodView):
        @blp.doc(operationId="getTask")
        @blp.response(200, TaskStatusSchema, description="The task.", example=STATUS_EXAMPLE)
        @blp.alt_response(404, "NOT_FOUND")
        def get(self, task_id: str) -> Task:
            """Read a task

            Its status, progress, and its result or error once it has ended.
            """
            return current().service.get(task_id)

        @blp.doc(operationId="deleteTask")
        @blp.response(204, description="The task is deleted; reading it now answers 404.")
        @blp.alt_response(404, "NOT_FOUND")
        @blp.alt_response(409, "CONFLICT")
        def delete(self, task_id: str) -> Response:
            """Delete a finished task

            Only a terminal task (succeeded, failed or cancelled) can be deleted: cancel a
            queued or running task first.
            """
            current().service.delete(task_id)
            response = Response(status=204)
            del response.headers["Content-Type"]  # no content, so no content type
            return response

    @blp.route("/<task_id:task_id>/cancel")
    class TaskCancel(MethodView):
        @blp.doc(operationId="cancelTask")
        @blp.response(200, TaskStatusSchema, description="The task after the request.")
        @blp.alt_response(404, "NOT_FOUND")
        @blp.alt_response(409, "CONFLICT")
        def post(self, task_id: str) -> Task:
            """Cancel a task

            A queued task is cancelled at once; a running one is asked to stop
            (`cancel_requested: true`) and ends `cancelled` when it next checks.
            """
            return current().service.cancel(task_id)

    return blp
