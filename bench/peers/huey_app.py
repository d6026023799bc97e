"""Flask + Huey (SqliteHuey: queue and results in one SQLite file): the bench's endpoints.

Worker: ``huey_consumer bench.peers.huey_app.huey -k thread -w 4``. Huey keeps no "running"
state: a task reads queued until its result is stored.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from huey import SqliteHuey
from huey.exceptions import TaskException

huey = SqliteHuey("bench_peer", filename=os.environ.get("HUEY_DATABASE", "huey.db"))
app = Flask(__name__)


@huey.task()
def add(x: int, y: int) -> int:
    return x + y


@app.post("/tasks")
def submit() -> tuple[dict[str, Any], int]:
    params = request.get_json()["params"]
    result = add(params["x"], params["y"])
    return {"id": result.id, "status": "queued"}, 202


@app.get("/tasks/<task_id>")
def status(task_id: str) -> dict[str, Any]:
    try:
        value = huey.result(task_id, preserve=True)
    except TaskException:
        return {"id": task_id, "status": "failed", "result": None}
    state = "queued" if value is None else "succeeded"
    return {"id": task_id, "status": state, "result": value}


@app.get("/ready")
def ready() -> dict[str, str]:
    return {"status": "ok"}
