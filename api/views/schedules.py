"""``/schedules``: set, read, list and delete schedules, and trigger one now.

A schedule belongs to its caller, as a task does. ``PUT`` with a name no schedule can have is
refused with 422 naming ``name`` in ``path``; reading, deleting or triggering one answers 404,
as for any schedule that is not there.
"""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters
from marshmallow import Schema

from api.errors import PROBLEM_MIME, require_json_body
from api.http.access import caller
from api.models import SCHEDULE_NAME_PATTERN, Schedule, Task
from api.registry import Registry
from api.runtime import current
from api.views.arguments import Blueprint
from api.views.examples import SCHEDULE_EXAMPLE, SCHEDULE_WRITE_EXAMPLES, TRIGGERED_EXAMPLE
from api.views.headers import queue_full_response
from api.views.tasks import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, no_content
from schemas.problems import ProblemSchema
from schemas.schedules import make_schedule, make_schedule_write, make_scheduled_task
from schemas.tasks import CALLBACKS_OFF, Refusal, TaskStatusSchema

SCHEDULE_LOCATION = {
    "Location": {"description": "The URL of the schedule.", "schema": {"type": "string"}}
}
TASK_LOCATION = {
    "Location": {"description": "The URL of the task made.", "schema": {"type": "string"}}
}


def name_parameter() -> dict[str, Any]:
    """The ``name`` path parameter (one per app: flask-smorest completes it in place)."""
    return {
        "in": "path",
        "name": "name",
        "description": "The schedule's name: 1 to 63 lower-case letters, digits, `_`, `.` or "
        "`-`, starting with a letter or a digit; unique per caller.",
        "schema": {"type": "string", "pattern": SCHEDULE_NAME_PATTERN},
    }


def _by_name(operation_id: str, description: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "parameters": {"name": "$response.body#/name"},
        "description": description,
    }


#: OpenAPI links from a schedule to its tasks (schemathesis's stateful phase follows them).
TASKS_LINK = {
    "ListScheduleTasks": {
        "operationId": "listTasks",
        "parameters": {"schedule": "$response.body#/name"},
        "description": "The tasks the schedule made: `GET /tasks?schedule={name}`.",
    }
}
#: ... and from a schedule just set to what can be done with it.
PUT_LINKS = {
    "GetSchedule": _by_name("getSchedule", "Read the schedule: `GET /schedules/{name}`."),
    "DeleteSchedule": _by_name(
        "deleteSchedule", "Delete the schedule: `DELETE /schedules/{name}`."
    ),
    "TriggerSchedule": _by_name(
        "triggerSchedule", "Make its task now: `POST /schedules/{name}/trigger`."
    ),
    **TASKS_LINK,
}
TRIGGER_LINKS = {
    "GetTask": {
        "operationId": "getTask",
        "parameters": {"task_id": "$response.body#/id"},
        "description": "Read the task made: `GET /tasks/{task_id}`.",
    }
}
NOT_FOUND: dict[str, Any] = {
    "schema": ProblemSchema,
    "content_type": PROBLEM_MIME,
    "description": "The caller has no schedule of this name.",
}
TYPE_GONE: dict[str, Any] = {
    "schema": ProblemSchema,
    "content_type": PROBLEM_MIME,
    "description": "The schedule's task type is no longer registered (its TASKS_IMPORT module "
    "was removed); no task was made. Register it again, or PUT the schedule with another task.",
}


def make_blueprint(registry: Registry, callback_refusal: Refusal = CALLBACKS_OFF) -> Blueprint:
    """The schedules blueprint, its task template made of the registered task types, its
    ``callback_url`` checked by ``callback_refusal`` (TASKS_CALLBACK_HOSTS)."""
    scheduled_task = make_scheduled_task(
        {t.name: (t.params, t.description) for t in registry}, callback_refusal
    )
    blp = Blueprint(
        "schedules",
        __name__,
        url_prefix="/schedules",
        description="Schedules: a task made at each fire time of a cron expression or an "
        "interval, exactly once however many processes run.",
    )
    schedule = make_schedule(scheduled_task)
    _route_collection(blp, schedule)
    _route_item(blp, make_schedule_write(scheduled_task)(), schedule)
    _route_trigger(blp)
    return blp


def _route_collection(blp: Blueprint, schedule: type[Schema]) -> None:
    @blp.route("")
    class ScheduleCollection(MethodView):
        @blp.doc(operationId="listSchedules")
        @blp.response(200, schedule(many=True), description="One page of schedules, by name.")
        @blp.paginate(page_size=DEFAULT_PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)
        def get(self, pagination_parameters: PaginationParameters) -> list[Schedule]:
            """List schedules

            The caller's schedules, by name; pages of `page_size` (1..100, default 20),
            described in the `X-Pagination` header.
            """
            schedules, total = current().schedules.list(
                caller(),
                page=pagination_parameters.page,
                page_size=pagination_parameters.page_size,
            )
            pagination_parameters.item_count = total
            return schedules


def _route_item(blp: Blueprint, schedule_write: Schema, schedule: type[Schema]) -> None:
    @blp.route("/<name>", parameters=[name_parameter()])
    class ScheduleItem(MethodView):
        @blp.doc(operationId="getSchedule", responses={200: {"links": TASKS_LINK}})
        @blp.response(200, schedule, description="The schedule.", example=SCHEDULE_EXAMPLE)
        @blp.alt_response(404, **NOT_FOUND)
        def get(self, name: str) -> Schedule:
            """Read a schedule

            What it does, when it fires next (`next_run_at`, null while paused), and the task
            it made last.
            """
            return current().schedules.get(name, caller())

        @blp.doc(
            operationId="putSchedule",
            responses={200: {"links": PUT_LINKS}, 201: {"links": PUT_LINKS}},
        )
        @blp.response(
            200, schedule, description="The schedule was replaced.", headers=SCHEDULE_LOCATION
        )
        @blp.alt_response(
            201,
            schema=schedule,
            success=True,
            description="The schedule was created.",
            headers=SCHEDULE_LOCATION,
        )
        @blp.alt_response(400, "BAD_REQUEST")
        @blp.alt_response(413, "REQUEST_ENTITY_TOO_LARGE")
        @blp.alt_response(415, "UNSUPPORTED_MEDIA_TYPE")
        @require_json_body
        @blp.arguments(
            schedule_write,
            description="When it fires (exactly one of `cron` and `every_seconds`) and the "
            "task it makes.",
            examples=SCHEDULE_WRITE_EXAMPLES,
        )
        def put(self, body: dict[str, Any], name: str) -> tuple[Schedule, int, dict[str, str]]:
            """Set a schedule

            Creates the schedule `name` (201) or replaces what it does (200; its
            `created_at` and last run stay). A replace that keeps its timing (`cron` or
            `every_seconds`, `timezone`, `paused`) keeps its next fire time, so setting
            every schedule again on each deploy loses and moves none. Refused with 422: a
            cron expression that cannot be read or never fires, an unknown time zone, both
            or neither of `cron` and `every_seconds`, a task `POST /tasks` would refuse, a
            name no schedule can have; then nothing is stored.
            """
            saved, created = current().schedules.put(name, body, caller())
            location = {"Location": url_for(".ScheduleItem", name=saved.name)}
            return saved, 201 if created else 200, location

        @blp.doc(operationId="deleteSchedule")
        @blp.response(204, description="The schedule is deleted; the tasks it made stay.")
        @blp.alt_response(404, **NOT_FOUND)
        def delete(self, name: str) -> Any:
            """Delete a schedule

            It makes no more tasks; the tasks it made stay, and `GET /tasks?schedule=` still
            lists them.
            """
            current().schedules.delete(name, caller())
            return no_content()


def _route_trigger(blp: Blueprint) -> None:
    @blp.route("/<name>/trigger", parameters=[name_parameter()])
    class ScheduleTrigger(MethodView):
        @blp.doc(operationId="triggerSchedule", responses={202: {"links": TRIGGER_LINKS}})
        @blp.response(
            202,
            TaskStatusSchema,
            description="The task is queued; follow it at `Location`.",
            example=TRIGGERED_EXAMPLE,
            headers=TASK_LOCATION,
        )
        @blp.alt_response(404, **NOT_FOUND)
        @blp.alt_response(409, **TYPE_GONE)
        @blp.alt_response(503, **queue_full_response())
        def post(self, name: str) -> tuple[Task, int, dict[str, str]]:
            """Trigger a schedule now

            Makes the schedule's task now, even while it is paused; its `scheduled_for` is
            now. Its fire times stay as they were.
            """
            task = current().schedules.trigger(name, caller())
            return task, 202, {"Location": url_for("tasks.TaskItem", task_id=task.id)}
