"""``/tasks``: submit, read, list, cancel and delete tasks."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from flask import Response, url_for
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters
from marshmallow import Schema
from werkzeug.http import parse_etags, quote_etag

from api.errors import PROBLEM_MIME, require_json_body
from api.http.access import caller
from api.models import Status, Task
from api.registry import Registry
from api.runtime import current
from api.views.arguments import Blueprint, id_link
from api.views.examples import (
    CALLBACK_RESENT_EXAMPLE,
    CREATE_EXAMPLES,
    QUEUED_EXAMPLE,
    RETRIED_EXAMPLE,
    STATUS_EXAMPLE,
)
from api.views.headers import (
    ETAG_HEADER,
    LOCATION_HEADER,
    PREFERENCE_APPLIED_HEADER,
    RETRY_AFTER_HEADER,
    queue_full_response,
)
from schemas.problems import ProblemSchema
from schemas.queries import (
    MAX_WAIT_SECONDS,
    IdempotencyHeaders,
    SubmitHeaders,
    TaskReadHeaders,
    TaskReadQuery,
    make_list_query,
)
from schemas.tasks import (
    CALLBACKS_OFF,
    OneOfSchema,
    Refusal,
    TaskStatusSchema,
    make_task_create,
    make_variant,
)

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
#: The answer of an operation whose body is one task, and the headers it sends with it.
Answer = tuple[Task, int, dict[str, str]]


def prefer_wait(header: str | None) -> float | None:
    """The ``wait`` preference of a ``Prefer`` header (RFC 7240), capped; None when absent.

    Preferences the service does not understand, or cannot read, are ignored, as the RFC asks.
    """
    for preference in (header or "").split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                return None
            if math.isfinite(seconds) and seconds >= 0:
                return min(seconds, MAX_WAIT_SECONDS)
    return None


def retry_after(task: Task) -> int:
    """Seconds a poller should wait: until a delayed task is due, else one."""
    due = (task.run_after - datetime.now(UTC)).total_seconds()
    return max(1, math.ceil(due)) if task.status is Status.QUEUED else 1


def read_headers(task: Task) -> dict[str, str]:
    """The headers of a task read: its ETag, and when to ask again while it has not ended."""
    headers = {"ETag": quote_etag(str(task.version))}
    if not task.is_terminal:
        headers["Retry-After"] = str(retry_after(task))
    return headers


def unchanged(task: Task, if_none_match: str | None) -> Response | None:
    """A 304 when ``If-None-Match`` names the task's current version; else None."""
    etag = str(task.version)
    if if_none_match is None or not parse_etags(if_none_match).contains_weak(etag):
        return None
    response = Response(status=304)
    del response.headers["Content-Type"]
    response.set_etag(etag)
    return response


def no_content() -> Response:
    """A 204: no content, so no content type."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


TASK_ID_PARAMETER = {
    "in": "path",
    "name": "task_id",
    "description": "The task's id, as `POST /tasks` answered it.",
}


def _task_link(operation_id: str, description: str) -> dict[str, Any]:
    return id_link(operation_id, "task_id", description)


#: OpenAPI links from a created task to what can be done with it (schemathesis's stateful
#: phase follows them).
TASK_LINKS = {
    "GetTask": _task_link("getTask", "Read the task: `GET /tasks/{task_id}`."),
    "CancelTask": _task_link("cancelTask", "Cancel the task: `POST /tasks/{task_id}/cancel`."),
    "DeleteTask": _task_link(
        "deleteTask", "Delete the task once it ended: `DELETE /tasks/{task_id}`."
    ),
    "RetryTask": _task_link(
        "retryTask",
        "Submit it again once it failed or was cancelled: `POST /tasks/{task_id}/retry`.",
    ),
    "RetryCallback": _task_link(
        "retryCallback",
        "Send its callback again once it was delivered or failed: "
        "`POST /tasks/{task_id}/callback/retry`.",
    ),
}
#: OpenAPI links from a task read (or changed) to what can be done with it next.
READ_LINKS = {
    name: TASK_LINKS[name] for name in ("GetTask", "CancelTask", "RetryTask", "RetryCallback")
}
#: ... and to the queue it is in.
CREATED_LINKS = {
    **TASK_LINKS,
    "GetQueue": {
        "operationId": "getQueue",
        "parameters": {"name": "$response.body#/queue"},
        "description": "Read the task's queue: `GET /queues/{name}`.",
    },
}


#: The two answers of a submit, besides the task.
QUEUED: dict[str, Any] = {
    "description": "The task is queued; follow it at `Location`.",
    "example": QUEUED_EXAMPLE,
    "headers": LOCATION_HEADER,
}
KNOWN_OR_ENDED: dict[str, Any] = {
    "description": "The task created earlier with this `Idempotency-Key` (as it is now), "
    "or, with `Prefer: wait=N`, the task after it ended within N seconds.",
    "example": STATUS_EXAMPLE,
    "headers": {**LOCATION_HEADER, **PREFERENCE_APPLIED_HEADER},
}


def make_task_create_schema(
    registry: Registry, callback_refusal: Refusal = CALLBACKS_OFF
) -> type[OneOfSchema]:
    """TaskCreate over the registered task types: one class per app, which ``/tasks`` and
    ``/batches`` share (the spec refers to one component); ``callback_url`` checked by
    ``callback_refusal`` (TASKS_CALLBACK_HOSTS)."""
    return make_task_create(
        {
            t.name: make_variant(t.name, t.params, t.description, callback_refusal=callback_refusal)
            for t in registry
        }
    )


def make_blueprint(registry: Registry, task_create: type[OneOfSchema]) -> Blueprint:
    """The tasks blueprint: ``task_create`` for submits, list filters of the registered types."""
    blp = Blueprint("tasks", __name__, url_prefix="/tasks", description="Submit and follow tasks.")
    _route_collection(blp, task_create(), make_list_query(registry.names())())
    _route_item(blp)
    _route_cancel(blp)
    _route_retry(blp)
    _route_callback_retry(blp)
    return blp


def _route_collection(blp: Blueprint, task_create: Schema, list_query: Schema) -> None:
    @blp.route("")
    class TaskCollection(MethodView):
        @blp.doc(operationId="listTasks")
        @blp.arguments(list_query, location="query", as_kwargs=True)
        @blp.response(200, TaskStatusSchema(many=True), description="One page of tasks.")
        @blp.paginate(page_size=DEFAULT_PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)
        def get(self, pagination_parameters: PaginationParameters, **filters: Any) -> list[Task]:
            """List tasks, newest first

            Filter by `status` (repeat it for several), `type`, `queue`, `schedule` (the
            tasks a schedule made) and `batch` (the tasks of a batch); pages of `page_size`
            (1..100, default 20), described in the `X-Pagination` header.
            """
            tasks, total = current().service.list(
                filters.get("status") or (),
                filters.get("type"),
                page=pagination_parameters.page,
                page_size=pagination_parameters.page_size,
                owner=caller(),
                queue=filters.get("queue"),
                schedule=filters.get("schedule"),
                batch=filters.get("batch"),
            )
            pagination_parameters.item_count = total
            return tasks

        @blp.doc(
            operationId="createTask",
            responses={200: {"links": CREATED_LINKS}, 202: {"links": CREATED_LINKS}},
        )
        @blp.response(202, TaskStatusSchema, **QUEUED)
        @blp.alt_response(200, schema=TaskStatusSchema, success=True, **KNOWN_OR_ENDED)
        @blp.alt_response(400, "BAD_REQUEST")
        @blp.alt_response(409, "CONFLICT")
        @blp.alt_response(413, "REQUEST_ENTITY_TOO_LARGE")
        @blp.alt_response(415, "UNSUPPORTED_MEDIA_TYPE")
        @blp.alt_response(503, **queue_full_response())
        @require_json_body
        @blp.arguments(
            task_create,
            description="The task: its `type`, its `params`, and optionally how to run it.",
            examples=CREATE_EXAMPLES,
        )
        @blp.arguments(SubmitHeaders(), location="headers", as_kwargs=True)
        def post(self, body: dict[str, Any], **headers: str) -> Answer:
            """Submit a task

            The body names a task `type` and its `params`; `GET /task-types` lists the types.
            The task is queued and runs on a worker; poll it at the `Location` answered.
            """
            wait = prefer_wait(headers.get("prefer"))
            submitted = current().service.submit(
                body, owner=caller(), idempotency_key=headers.get("idempotency_key"), wait=wait
            )
            answer = {"Location": url_for(".TaskItem", task_id=submitted.task.id)}
            if submitted.waited:
                answer["Preference-Applied"] = f"wait={wait:g}"
            return (
                submitted.task,
                202 if submitted.created and not submitted.waited else 200,
                answer,
            )


def _route_item(blp: Blueprint) -> None:
    @blp.route("/<task_id:task_id>", parameters=[TASK_ID_PARAMETER])
    class TaskItem(MethodView):
        @blp.doc(operationId="getTask", responses={200: {"links": READ_LINKS}})
        @blp.arguments(TaskReadQuery(), location="query", as_kwargs=True)
        @blp.arguments(TaskReadHeaders(), location="headers", as_kwargs=True)
        @blp.response(
            200,
            TaskStatusSchema,
            description="The task.",
            example=STATUS_EXAMPLE,
            headers={**ETAG_HEADER, **RETRY_AFTER_HEADER},
        )
        @blp.alt_response(
            304,
            description="Unchanged since the ETag given in `If-None-Match`.",
            headers=ETAG_HEADER,
        )
        @blp.alt_response(404, "NOT_FOUND")
        def get(
            self, task_id: str, wait: float | None = None, if_none_match: str | None = None
        ) -> Answer | Response:
            """Read a task

            Its status, progress, and its result or error once it has ended. With `wait`, the
            answer is held until the task ends or `wait` seconds pass.
            """
            service = current().service
            task = (
                service.wait(task_id, wait, owner=caller())
                if wait
                else service.get(task_id, owner=caller())
            )
            return unchanged(task, if_none_match) or (task, 200, read_headers(task))

        @blp.doc(operationId="deleteTask")
        @blp.response(204, description="The task is deleted; reading it now answers 404.")
        @blp.alt_response(404, "NOT_FOUND")
        @blp.alt_response(409, "CONFLICT")
        def delete(self, task_id: str) -> Response:
            """Delete a finished task

            Only a terminal task (succeeded, failed or cancelled) can be deleted: cancel a
            queued or running task first.
            """
            current().service.delete(task_id, owner=caller())
            return no_content()


def _route_cancel(blp: Blueprint) -> None:
    @blp.route("/<task_id:task_id>/cancel", parameters=[TASK_ID_PARAMETER])
    class TaskCancel(MethodView):
        @blp.doc(operationId="cancelTask", responses={200: {"links": READ_LINKS}})
        @blp.response(200, TaskStatusSchema, description="The task after the request.")
        @blp.alt_response(404, "NOT_FOUND")
        @blp.alt_response(409, "CONFLICT")
        def post(self, task_id: str) -> Task:
            """Cancel a task

            A queued task is cancelled at once; a running one is asked to stop
            (`cancel_requested: true`) and ends `cancelled` when it next checks.
            """
            return current().service.cancel(task_id, owner=caller())


def _route_retry(blp: Blueprint) -> None:
    @blp.route("/<task_id:task_id>/retry", parameters=[TASK_ID_PARAMETER])
    class TaskRetry(MethodView):
        @blp.doc(
            operationId="retryTask",
            responses={200: {"links": CREATED_LINKS}, 202: {"links": CREATED_LINKS}},
        )
        @blp.response(
            202,
            TaskStatusSchema,
            description="The new task is queued; follow it at `Location`.",
            example=RETRIED_EXAMPLE,
            headers=LOCATION_HEADER,
        )
        @blp.alt_response(
            200,
            schema=TaskStatusSchema,
            success=True,
            description="The task this `Idempotency-Key` created earlier (as it is now).",
            headers=LOCATION_HEADER,
        )
        @blp.alt_response(404, "NOT_FOUND")
        @blp.alt_response(409, "CONFLICT")
        @blp.alt_response(503, **queue_full_response())
        @blp.arguments(IdempotencyHeaders(), location="headers", as_kwargs=True)
        def post(self, task_id: str, **headers: str) -> Answer:
            """Retry a failed or cancelled task

            Submits it again as a new task: the same type, params and options, `retry_of`
            naming this one, which stays as it ended (its history and its ETag are kept).
            A task that is queued, running or succeeded cannot be retried (409).
            """
            submitted = current().service.retry(
                task_id, owner=caller(), idempotency_key=headers.get("idempotency_key")
            )
            answer = {"Location": url_for(".TaskItem", task_id=submitted.task.id)}
            return submitted.task, 202 if submitted.created else 200, answer


def _route_callback_retry(blp: Blueprint) -> None:
    @blp.route("/<task_id:task_id>/callback/retry", parameters=[TASK_ID_PARAMETER])
    class TaskCallbackRetry(MethodView):
        @blp.doc(operationId="retryCallback", responses={202: {"links": READ_LINKS}})
        @blp.response(
            202,
            TaskStatusSchema,
            description="The callback is pending again, due now; follow it in the task's "
            "`callback`.",
            example=CALLBACK_RESENT_EXAMPLE,
            headers=ETAG_HEADER,
        )
        @blp.alt_response(404, "NOT_FOUND")
        @blp.alt_response(
            409,
            schema=ProblemSchema,
            content_type=PROBLEM_MIME,
            description="The task has no `callback_url`, has not ended yet, or its callback "
            "is still pending (being sent, or due again at `callback.next_attempt_at`); "
            "`detail` says which.",
        )
        def post(self, task_id: str) -> Answer:
            """Send a task's callback again

            Once its callback was `delivered` or `failed`, sends the same event again (the
            same `webhook-id`, so a receiver that got it can tell), as a new delivery: pending
            at once, its attempts counted from zero, retried with backoff as the first was.
            """
            task = current().service.retry_callback(task_id, owner=caller())
            return task, 202, {"ETag": quote_etag(str(task.version))}
