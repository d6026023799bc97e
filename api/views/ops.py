"""``/health``, ``/ready`` and ``/metrics``: for load balancers, orchestrators, Prometheus."""

from __future__ import annotations

from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api.http.access import KEYS_EXTENSION, ApiKeys, caller
from api.runtime import current
from api.store import StoreError
from schemas.ops import HealthSchema

OK = {"status": "ok"}


blp = Blueprint("ops", __name__, description="Health of the service.")


@blp.route("/health")
class Health(MethodView):
    @blp.doc(operationId="getHealth")
    @blp.response(200, HealthSchema, description="The process serves requests.")
    def get(self) -> dict[str, str]:
        """Liveness

        Answers 200 while the process serves; it checks nothing else.
        """
        return OK


@blp.route("/ready")
class Ready(MethodView):
    @blp.doc(operationId="getReadiness")
    @blp.response(200, HealthSchema, description="The store answers and workers run.")
    @blp.alt_response(503, "SERVICE_UNAVAILABLE")
    def get(self) -> dict[str, str]:
        """Readiness

        200 when the store answers and this process's worker threads are alive (a
        process started with TASKS_WORKERS=0 serves the API only and needs none).
        """
        runtime = current()
        try:
            runtime.store.ping()
        except StoreError as exc:
            abort(503, message=str(exc))
        if runtime.pool.size and not runtime.pool.alive():
            abort(503, message="The worker threads of this process are not running.")
        return OK


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(operationId="getMetrics")
    @blp.response(
        200,
        {"type": "string", "description": "Prometheus text format 0.0.4."},
        content_type="text/plain",
        description="The metrics of every process of this server, in Prometheus text "
        "format: `taskapi_tasks{status}` (tasks in the store now), "
        "`taskapi_tasks_created_total{type}`, `taskapi_tasks_finished_total{type,outcome}`, "
        "`taskapi_task_retries_total{type}`, by queue `taskapi_queue_tasks{queue,status}`, "
        "`taskapi_queue_oldest_queued_seconds{queue}`, `taskapi_queue_paused{queue}` and "
        "`taskapi_queue_concurrency_limit{queue}`, the histograms `taskapi_task_run_seconds` and "
        "`taskapi_task_queue_wait_seconds` by type, `taskapi_http_requests_total"
        "{method,route,status}` and `taskapi_http_request_duration_seconds`, and the fire "
        "times of schedules, `taskapi_schedule_fires_total{owner,schedule}` and "
        "`taskapi_schedule_skips_total{owner,schedule,reason}`. With API keys, a caller that "
        "is not in `TASKS_ADMINS` sees the schedule series of its own schedules only.",
    )
    def get(self) -> Response:
        """Prometheus metrics

        For a Prometheus scrape job (with API keys on, give it a key as a bearer token).
        """
        keys: ApiKeys = current_app.extensions[KEYS_EXTENSION]
        name = caller()
        viewer = None if keys.may_administer(name) else name
        body, content_type = current().metrics.exposition(viewer)
        return Response(body, content_type=content_type)
