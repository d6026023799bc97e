"""Flask + Celery (Redis broker and result backend): the bench's endpoints.

Worker: ``celery -A bench.peers.celery_app:celery worker --pool threads --concurrency 4``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from flask import Flask, request

REDIS_URL = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/1")
#: Celery's states, as the bench's client reads them. PENDING is also "unknown id".
STATUS = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "RETRY": "queued",
    "STARTED": "running",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "failed",
}

celery = Celery("bench_peer", broker=REDIS_URL, backend=REDIS_URL)
app = Flask(__name__)


@celery.task(name="add")
def add(x: int, y: int) -> int:
    return x + y


@app.post("/tasks")
def submit() -> tuple[dict[str, Any], int]:
    params = request.get_json()["params"]
    result = add.delay(params["x"], params["y"])
    return {"id": result.id, "status": "queued"}, 202


@app.get("/tasks/<task_id>")
def status(task_id: str) -> dict[str, Any]:
    result = AsyncResult(task_id, app=celery)
    state = STATUS.get(result.state, "queued")
    return {
        "id": task_id,
        "status": state,
        "result": result.result if state == "succeeded" else None,
    }


@app.get("/ready")
def ready() -> dict[str, str]:
    return {"status": "ok"}
