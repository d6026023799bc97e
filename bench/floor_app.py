"""The floor: Flask and the SQLite store, with nothing of taskapi's request handling.

``POST /tasks`` parses the JSON body and inserts a task with the store's own ``create``;
``GET /tasks/<id>`` reads one with the store's ``get`` and answers the same TaskStatus JSON.
No validation, no workers, no logs, no metrics, no hooks. Served by the same server with the
same settings, it shows what one SQLite statement per request costs by itself: the most a
SQLite-backed service on this stack could reach (``python -m bench`` reports it beside
taskapi). The database comes from ``FLOOR_DATABASE``; its tasks never run.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, request
from flask.typing import ResponseReturnValue

from api.models import NewTask
from api.store.sqlite import SQLiteStore
from schemas.tasks import TaskStatusSchema

app = Flask(__name__)
store = SQLiteStore(os.environ.get("FLOOR_DATABASE", "floor.sqlite3"))
task_status = TaskStatusSchema()


@app.post("/tasks")
def submit() -> ResponseReturnValue:
    body: dict[str, Any] = request.get_json()
    now = datetime.now(UTC)
    task = store.create(
        NewTask(str(uuid.uuid4()), body["type"], body["params"], 1, None, 0, now, now)
    )
    return app.json.response(task_status.dump(task)), 202


@app.get("/tasks/<task_id>")
def status(task_id: str) -> ResponseReturnValue:
    task = store.get(task_id, datetime.now(UTC))
    if task is None:
        missing = app.json.response({"title": "Not Found"})
        missing.status_code = 404
        return missing
    return app.json.response(task_status.dump(task))


@app.get("/ready")
def ready() -> dict[str, str]:
    return {"status": "ok"}
