"""Flask + RQ (Redis; the job's status and return value from RQ itself): the bench's endpoints.

Worker: ``rq worker --url redis://127.0.0.1:6379/3 --worker-class rq.worker.SimpleWorker bench``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

REDIS_URL = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/3")
#: RQ's job statuses, as the bench's client reads them.
STATUS = {
    "created": "queued",
    "queued": "queued",
    "deferred": "queued",
    "scheduled": "queued",
    "ready_to_enqueue": "queued",
    "rate_limited": "queued",
    "started": "running",
    "finished": "succeeded",
    "failed": "failed",
    "stopped": "failed",
    "canceled": "failed",
}

redis = Redis.from_url(REDIS_URL)
queue = Queue("bench", connection=redis)
app = Flask(__name__)


def add(x: int, y: int) -> int:
    return x + y


@app.post("/tasks")
def submit() -> tuple[dict[str, Any], int]:
    params = request.get_json()["params"]
    job = queue.enqueue(add, params["x"], params["y"])
    return {"id": job.id, "status": "queued"}, 202


@app.get("/tasks/<task_id>")
def status(task_id: str) -> tuple[dict[str, Any], int]:
    try:
        job = Job.fetch(task_id, connection=redis)
    except NoSuchJobError:
        return {"title": "Not Found"}, 404
    raw = job.get_status()
    state = STATUS.get(getattr(raw, "value", str(raw)), "queued")
    result = job.return_value() if state == "succeeded" else None
    return {"id": task_id, "status": state, "result": result}, 200


@app.get("/ready")
def ready() -> dict[str, str]:
    return {"status": "ok"}
