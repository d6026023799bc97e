"""``/task-types``: what the service can run."""

from __future__ import annotations

from typing import Any

from apispec.ext.marshmallow import OpenAPIConverter
from flask import Flask, current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from api.registry import Registry
from schemas.tasks import TaskTypeSchema

#: Where an app keeps the task types it serves, described once (``describe``).
EXTENSION_KEY = "taskapi.task_types"


def describe(app: Flask, registry: Registry, converter: OpenAPIConverter) -> None:
    """Describe each task type for ``GET /task-types``: its defaults, its params as JSON Schema.

    Once per app, after every blueprint is in the spec: a params schema that nests another adds
    that one to the spec's components, and the spec must not change while the app serves it.
    """
    app.extensions[EXTENSION_KEY] = [
        {
            "name": t.name,
            "description": t.description,
            "params_schema": converter.schema2jsonschema(t.params),
            "max_attempts": t.max_attempts,
            "timeout_seconds": t.timeout_seconds,
            "isolation": t.isolation,
            "queue": t.queue,
        }
        for t in registry
    ]


def make_blueprint() -> Blueprint:
    # The blueprint's name is the operations' tag: spelled as the path is, like the others.
    blp = Blueprint("task-types", __name__, url_prefix="/task-types", description="Task types.")

    @blp.route("")
    class TaskTypes(MethodView):
        @blp.doc(operationId="listTaskTypes")
        @blp.response(200, TaskTypeSchema(many=True), description="Every registered type.")
        def get(self) -> list[dict[str, Any]]:
            """List task types

            Each with the JSON Schema of its params and its defaults.
            """
            described: list[dict[str, Any]] = current_app.extensions[EXTENSION_KEY]
            return described

    return blp
