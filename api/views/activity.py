"""``/activity``: tasks by status over the last minutes (the dashboard's charts)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from api import history
from schemas.activity import ActivitySchema


def make_blueprint() -> Blueprint:
    blp = Blueprint("activity", __name__, description="What the service did over the last minutes.")

    @blp.route("/activity")
    class Activity(MethodView):
        @blp.doc(operationId="getActivity")
        @blp.response(200, ActivitySchema, description="The readings of the last minutes.")
        def get(self) -> dict[str, Any]:
            """Tasks by status, last minutes

            Readings of how many tasks are in each status, taken every few seconds by the
            server process that answers and kept for a few minutes, so that a chart opened
            now shows the recent past at once. Counts cover every caller, as `/metrics` does.
            """
            kept = history.of(current_app)
            return {
                "interval_seconds": kept.interval,
                "window_seconds": kept.window,
                "samples": [s.as_dict() for s in kept.samples()],
                "now": kept.latest().as_dict(),
            }

    return blp
