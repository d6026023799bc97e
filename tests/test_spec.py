"""The committed spec is the one the code generates, and it says what the contract says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from api.models import (
    MAX_BATCH_SIZE,
    MAX_DEPENDENCIES,
    MAX_EVERY_SECONDS,
    MAX_QUEUE_CONCURRENCY,
    QUEUE_NAME_PATTERN,
    SCHEDULE_NAME_PATTERN,
)

ROOT = Path(__file__).resolve().parent.parent
METHODS = {"get", "post", "put", "patch", "delete"}
OPERATIONS = {
    ("post", "/tasks"): "createTask",
    ("get", "/tasks"): "listTasks",
    ("get", "/tasks/{task_id}"): "getTask",
    ("delete", "/tasks/{task_id}"): "deleteTask",
    ("post", "/tasks/{task_id}/cancel"): "cancelTask",
    ("post", "/tasks/{task_id}/retry"): "retryTask",
    ("post", "/tasks/{task_id}/callback/retry"): "retryCallback",
    ("post", "/batches"): "createBatch",
    ("get", "/batches/{batch_id}"): "getBatch",
    ("post", "/batches/{batch_id}/cancel"): "cancelBatch",
    ("get", "/task-types"): "listTaskTypes",
    ("get", "/queues"): "listQueues",
    ("get", "/queues/{name}"): "getQueue",
    ("patch", "/queues/{name}"): "updateQueue",
    ("get", "/schedules"): "listSchedules",
    ("put", "/schedules/{name}"): "putSchedule",
    ("get", "/schedules/{name}"): "getSchedule",
    ("delete", "/schedules/{name}"): "deleteSchedule",
    ("post", "/schedules/{name}/trigger"): "triggerSchedule",
    ("get", "/health"): "getHealth",
    ("get", "/ready"): "getReadiness",
    ("get", "/metrics"): "getMetrics",
    ("get", "/activity"): "getActivity",
    ("get", "/start/{x}/{y}"): "legacyStart",
    ("get", "/status/{task_id}"): "legacyStatus",
}


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    return client.get("/openapi.json").get_json()


def test_committed_openapi_yaml_equals_the_generated_spec(spec: dict[str, Any]) -> None:
    committed = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    assert committed == spec, (
        "openapi.yaml is out of date: run `flask --app api openapi write --format=yaml "
        "openapi.yaml` and commit it"
    )


def test_every_operation_has_its_id_and_a_summary(spec: dict[str, Any]) -> None:
    found = {
        (method, path): op["operationId"]
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }
    assert found == OPERATIONS
    for item in spec["paths"].values():
        for method, op in item.items():
            if method in METHODS:
                assert op["summary"], op["operationId"]


def test_task_create_is_a_one_of_with_a_discriminator(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    create = schemas["TaskCreate"]
    assert create["discriminator"]["propertyName"] == "type"
    assert create["discriminator"]["mapping"] == {
        name: f"#/components/schemas/{name.capitalize()}TaskCreate"
        for name in ("add", "fail", "sleep")
    }
    add = schemas["AddTaskCreate"]
    assert add["properties"]["params"]["$ref"] == "#/components/schemas/AddParams"
    assert add["properties"]["type"]["enum"] == ["add"]
    assert add["additionalProperties"] is False
    assert set(add["required"]) == {"type", "params"}
    for name in ("Problem", "ValidationProblem", "TaskStatus", "AddParams", "SleepParams"):
        assert name in schemas
    for name in ("Add", "Fail", "Sleep"):
        queue = schemas[f"{name}TaskCreate"]["properties"]["queue"]
        assert queue["pattern"] == QUEUE_NAME_PATTERN, "each member of the oneOf takes a queue"
    assert "queue" in schemas["TaskStatus"]["required"]


def test_errors_are_documented_as_problems(spec: dict[str, Any]) -> None:
    responses = spec["components"]["responses"]
    for name, response in responses.items():
        (media_type,) = response["content"]
        assert media_type == "application/problem+json", name
    create = spec["paths"]["/tasks"]["post"]["responses"]
    assert set(create) >= {"202", "400", "413", "415", "422"}
    assert responses["UNPROCESSABLE_ENTITY"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationProblem"
    }


def test_exclusive_bounds_are_in_the_spec(spec: dict[str, Any]) -> None:
    timeout = spec["components"]["schemas"]["AddTaskCreate"]["properties"]["timeout_seconds"]
    assert timeout["exclusiveMinimum"] == 0 and timeout["maximum"] == 86400


def test_queues_are_documented_as_the_contract_says(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert set(schemas["Queue"]["required"]) == {
        "name", "paused", "concurrency", "counts", "oldest_queued_seconds"
    }  # fmt: skip
    assert set(schemas["QueueCounts"]["required"]) == {
        "queued", "running", "succeeded", "failed", "cancelled"
    }  # fmt: skip
    update = schemas["QueueUpdate"]
    assert update["additionalProperties"] is False and "required" not in update
    assert update["properties"]["paused"]["type"] == "boolean"
    concurrency = update["properties"]["concurrency"]
    assert concurrency["type"] == ["integer", "null"]
    assert (concurrency["minimum"], concurrency["maximum"]) == (1, MAX_QUEUE_CONCURRENCY)
    item = spec["paths"]["/queues/{name}"]
    (name,) = item["parameters"]
    assert name["schema"]["pattern"] == QUEUE_NAME_PATTERN
    assert set(item["get"]["responses"]) == {"200", "401", "404", "429"}
    assert set(item["patch"]["responses"]) == {
        "200", "400", "401", "403", "404", "413", "415", "422", "429"
    }  # fmt: skip
    assert item["patch"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/QueueUpdate"
    }
    queue_filter = next(
        p for p in spec["paths"]["/tasks"]["get"]["parameters"] if p["name"] == "queue"
    )
    assert queue_filter["schema"]["pattern"] == QUEUE_NAME_PATTERN
    assert "queue" in {p["name"] for p in [queue_filter]}
    task_type = schemas["TaskType"]
    assert "queue" in task_type["required"]


def test_queues_link_to_their_tasks_and_created_tasks_to_their_queue(
    spec: dict[str, Any],
) -> None:
    to_tasks = {"operationId": "listTasks", "parameters": {"queue": "$response.body#/name"}}
    for method in ("get", "patch"):
        links = spec["paths"]["/queues/{name}"][method]["responses"]["200"]["links"]
        assert to_tasks.items() <= links["ListQueueTasks"].items()
    for status in ("200", "202"):
        links = spec["paths"]["/tasks"]["post"]["responses"][status]["links"]
        assert {
            "operationId": "getQueue",
            "parameters": {"name": "$response.body#/queue"},
        }.items() <= links["GetQueue"].items()


def test_schedules_are_documented_as_the_contract_says(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    write = schemas["ScheduleWrite"]
    assert write["additionalProperties"] is False and write["required"] == ["task"]
    assert set(write["properties"]) == {
        "cron", "every_seconds", "timezone", "task", "paused", "overlap", "catch_up"
    }  # fmt: skip
    every = write["properties"]["every_seconds"]
    assert (every["type"], every["minimum"], every["maximum"]) == ("integer", 1, MAX_EVERY_SECONDS)
    assert write["properties"]["overlap"]["enum"] == ["skip", "allow"]
    assert write["properties"]["catch_up"]["enum"] == ["latest", "none"]
    assert write["properties"]["task"]["$ref"] == "#/components/schemas/ScheduledTask"
    template = schemas["ScheduledTask"]
    assert template["discriminator"]["mapping"] == {
        name: f"#/components/schemas/{name.capitalize()}ScheduledTask"
        for name in ("add", "fail", "sleep")
    }
    add = schemas["AddScheduledTask"]
    assert add["properties"]["params"]["$ref"] == "#/components/schemas/AddParams"
    assert "delay_seconds" not in add["properties"] and add["additionalProperties"] is False
    assert set(schemas["Schedule"]["required"]) == set(write["properties"]) | {
        "name", "next_run_at", "last_run_at", "last_task_id", "created_at", "updated_at"
    }  # fmt: skip
    status = schemas["TaskStatus"]
    assert {"schedule", "scheduled_for"} <= set(status["required"])
    item = spec["paths"]["/schedules/{name}"]
    (name,) = item["parameters"]
    assert name["schema"]["pattern"] == SCHEDULE_NAME_PATTERN
    assert set(item["put"]["responses"]) == {
        "200", "201", "400", "401", "413", "415", "422", "429"
    }  # fmt: skip
    assert set(item["get"]["responses"]) == {"200", "401", "404", "429"}
    assert set(item["delete"]["responses"]) == {"204", "401", "404", "429"}
    trigger = spec["paths"]["/schedules/{name}/trigger"]["post"]["responses"]
    assert set(trigger) == {"202", "401", "404", "409", "429", "503"}
    assert "Location" in trigger["202"]["headers"] and "Retry-After" in trigger["503"]["headers"]
    schedule_filter = next(
        p for p in spec["paths"]["/tasks"]["get"]["parameters"] if p["name"] == "schedule"
    )
    assert schedule_filter["schema"]["pattern"] == SCHEDULE_NAME_PATTERN


def test_exactly_one_of_cron_and_every_seconds_is_in_the_spec(spec: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    write = spec["components"]["schemas"]["ScheduleWrite"]
    exactly_one = Draft202012Validator({"not": write["not"]})
    assert exactly_one.is_valid({"cron": "0 3 * * *"})
    assert exactly_one.is_valid({"every_seconds": 60})
    assert not exactly_one.is_valid({"cron": "0 3 * * *", "every_seconds": 60})
    assert not exactly_one.is_valid({"task": {}})


def test_schedules_link_to_their_tasks(spec: dict[str, Any]) -> None:
    by_name = {"name": "$response.body#/name"}
    to_tasks = {"operationId": "listTasks", "parameters": {"schedule": "$response.body#/name"}}
    for status in ("200", "201"):
        links = spec["paths"]["/schedules/{name}"]["put"]["responses"][status]["links"]
        assert {k: (v["operationId"], v["parameters"]) for k, v in links.items()} == {
            "GetSchedule": ("getSchedule", by_name),
            "DeleteSchedule": ("deleteSchedule", by_name),
            "TriggerSchedule": ("triggerSchedule", by_name),
            "ListScheduleTasks": ("listTasks", to_tasks["parameters"]),
        }
    links = spec["paths"]["/schedules/{name}"]["get"]["responses"]["200"]["links"]
    assert to_tasks.items() <= links["ListScheduleTasks"].items()
    links = spec["paths"]["/schedules/{name}/trigger"]["post"]["responses"]["202"]["links"]
    assert links["GetTask"]["operationId"] == "getTask"
    assert links["GetTask"]["parameters"] == {"task_id": "$response.body#/id"}


def test_batches_are_documented_as_the_contract_says(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    create = schemas["BatchCreate"]
    assert create["additionalProperties"] is False and create["required"] == ["tasks"]
    tasks = create["properties"]["tasks"]
    assert tasks["items"] == {"$ref": "#/components/schemas/TaskCreate"}
    assert (tasks["minItems"], tasks["maxItems"]) == (1, MAX_BATCH_SIZE)
    batch = schemas["Batch"]
    assert set(batch["required"]) == {
        "id", "size", "task_ids", "counts", "done", "created_at", "finished_at"
    }  # fmt: skip
    assert batch["properties"]["counts"]["$ref"] == "#/components/schemas/BatchCounts"
    assert set(schemas["BatchCounts"]["required"]) == {
        "queued", "running", "succeeded", "failed", "cancelled"
    }  # fmt: skip
    for name in ("Add", "Fail", "Sleep"):
        depends_on = schemas[f"{name}TaskCreate"]["properties"]["depends_on"]
        assert depends_on["type"] == "array" and depends_on["maxItems"] == MAX_DEPENDENCIES
        assert depends_on["items"] == {"type": "string", "format": "uuid"}
        assert "uniqueItems" not in depends_on, "duplicates are collapsed, not refused"
        assert "depends_on" not in schemas[f"{name}ScheduledTask"]["properties"]
    status = schemas["TaskStatus"]
    assert {"depends_on", "blocked_by", "batch_id"} <= set(status["required"])
    assert status["properties"]["batch_id"]["type"] == ["string", "null"]

    created = spec["paths"]["/batches"]["post"]
    assert created["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BatchCreate"
    }
    assert set(created["responses"]) == {
        "200", "202", "400", "401", "409", "413", "415", "422", "429", "503"
    }  # fmt: skip
    assert "Location" in created["responses"]["202"]["headers"]
    assert "Retry-After" in created["responses"]["503"]["headers"]
    assert [p["name"] for p in created["parameters"] if p["in"] == "header"] == ["Idempotency-Key"]
    item = spec["paths"]["/batches/{batch_id}"]
    (batch_id,) = item["parameters"]
    assert batch_id["schema"] == {"type": "string", "format": "uuid"}
    read = item["get"]
    assert set(read["responses"]) == {"200", "304", "401", "404", "422", "429"}
    assert {"ETag", "Retry-After"} <= set(read["responses"]["200"]["headers"])
    assert {p["name"] for p in read["parameters"]} == {"wait", "If-None-Match"}
    cancel = spec["paths"]["/batches/{batch_id}/cancel"]["post"]
    assert set(cancel["responses"]) == {"200", "401", "404", "429"}
    batch_filter = next(
        p for p in spec["paths"]["/tasks"]["get"]["parameters"] if p["name"] == "batch"
    )
    assert batch_filter["schema"] == {"type": "string", "format": "uuid"}


def test_batches_link_to_themselves_and_their_tasks(spec: dict[str, Any]) -> None:
    by_id = {"batch_id": "$response.body#/id"}
    to_tasks = ("listTasks", {"batch": "$response.body#/id"})
    for status in ("200", "202"):
        links = spec["paths"]["/batches"]["post"]["responses"][status]["links"]
        assert {k: (v["operationId"], v["parameters"]) for k, v in links.items()} == {
            "GetBatch": ("getBatch", by_id),
            "CancelBatch": ("cancelBatch", by_id),
            "ListBatchTasks": to_tasks,
        }
    for operation in (
        spec["paths"]["/batches/{batch_id}"]["get"],
        spec["paths"]["/batches/{batch_id}/cancel"]["post"],
    ):
        link = operation["responses"]["200"]["links"]["ListBatchTasks"]
        assert (link["operationId"], link["parameters"]) == to_tasks
