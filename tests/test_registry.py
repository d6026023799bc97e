"""Task types: definitions, backoff, and a user's module of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from marshmallow import Schema

from api.registry import Registry, TaskType
from tests.conftest import make_app, runtime_of, submit


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    kind = TaskType("t", Schema, lambda c, p: None, backoff_base_seconds=1, backoff_cap_seconds=10)
    assert [kind.backoff_seconds(n, 0.0) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 5, 5]
    assert [kind.backoff_seconds(n, 1.0) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]


def test_registry_refuses_bad_definitions() -> None:

    registry = Registry()
    registry.add(TaskType("one", Schema, lambda c, p: 1))
    with pytest.raises(ValueError, match="already registered"):
        registry.add(TaskType("one", Schema, lambda c, p: 1))
    with pytest.raises(ValueError, match="lowercase"):
        TaskType("Bad Name", Schema, lambda c, p: 1)
    with pytest.raises(ValueError, match="max_attempts"):
        TaskType("x", Schema, lambda c, p: 1, max_attempts=0)


def test_a_user_module_adds_a_task_type(db_path: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "my_tasks.py").write_text(
        "from marshmallow import Schema, fields\n"
        "class GreetParams(Schema):\n"
        "    name = fields.String(required=True)\n"
        "def register(registry):\n"
        "    @registry.task('greet', params=GreetParams, max_attempts=2)\n"
        "    def greet(context, params):\n"
        "        '''Say hello.'''\n"
        "        context.progress(1, 1, 'greeting')\n"
        "        return 'hello ' + params['name']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = make_app(db_path, TASKS_IMPORT="my_tasks")
    client = app.test_client()
    names = [t["name"] for t in client.get("/task-types").get_json()]
    assert "greet" in names
    spec = client.get("/openapi.json").get_json()
    assert "GreetTaskCreate" in spec["components"]["schemas"]
    assert "GreetParams" in spec["components"]["schemas"]
    task = submit(client, {"type": "greet", "params": {"name": "Ada"}})
    runtime_of(app).pool.drain()
    done = client.get(f"/tasks/{task['id']}").get_json()
    assert done["result"] == "hello Ada" and done["progress"]["message"] == "greeting"
    assert client.post("/tasks", json={"type": "greet", "params": {}}).status_code == 422


def test_a_task_type_names_its_queue() -> None:
    registry = Registry()

    @registry.task("mail", params=Schema, queue="emails")
    def mail(context, params):  # type: ignore[no-untyped-def]
        return None

    kind = registry.get("mail")
    assert kind is not None and kind.queue == "emails"
    assert TaskType("plain", Schema, lambda c, p: 1).queue == "default"
    for bad in ("Emails", "", "-x", "a" * 64, "emails\n", "e mails"):
        with pytest.raises(ValueError, match=re.escape(f"queue {bad!r} is not a queue name")):
            TaskType("x", Schema, lambda c, p: 1, queue=bad)
