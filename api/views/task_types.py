"""``/task-types``: what the service can run."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.runtime import current
from schemas.tasks import TaskTypeSchema


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
            return current().task_types

    return blp
