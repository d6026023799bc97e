"""The committed spec is the one the code generates, and it says what the contract says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent
METHODS = {"get", "post", "put", "patch", "delete"}
OPERATIONS = {
    ("post", "/tasks"): "createTask",
    ("get", "/tasks"): "listTasks",
    ("get", "/tasks/{task_id}"): "getTask",
    ("delete", "/tasks/{task_id}"): "deleteTask",
    ("post", "/tasks/{task_id}/cancel"): "cancelTask",
    ("get", "/task-types"): "listTaskTypes",
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
