"""The bare stack the benchmark compares against: Flask alone, on the same WSGI server.

``POST /tasks`` parses a JSON body and answers 202 with an id; ``GET /tasks/<id>`` answers a
fixed JSON document that says the task succeeded. Nothing is stored and nothing runs, so its
figures are what Flask and the server can do at all, through the same client.
"""

from __future__ import annotations

import itertools
from typing import Any

from flask import Flask, request

app = Flask(__name__)
_ids = itertools.count()
_DONE = {"status": "succeeded", "result": 3}


@app.post("/tasks")
def submit() -> tuple[dict[str, Any], int]:
    body = request.get_json()
    return {"id": f"{next(_ids)}", "type": body.get("type"), "status": "queued"}, 202


@app.get("/tasks/<task_id>")
def status(task_id: str) -> dict[str, Any]:
    return {"id": task_id, **_DONE}


@app.get("/ready")
def ready() -> dict[str, str]:
    return {"status": "ok"}
