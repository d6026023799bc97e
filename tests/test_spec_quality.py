"""openapi.yaml is a spec that tools love: valid, lint-clean, described, with working examples.

- openapi-spec-validator accepts it;
- Spectral with its ``spectral:oas`` ruleset (``.spectral.yaml``) finds nothing at all;
- every schema, property, parameter, response and header has a description;
- every example is valid against its own schema (JSON Schema 2020-12, ``$ref`` to components
  resolved), and every request example of ``createTask`` is accepted by the service;
- ``createTask``'s 200 and 202 link to ``getTask``, ``cancelTask``, ``deleteTask``, ``retryTask``,
  ``retryCallback`` and ``getQueue``; ``getTask``, ``cancelTask`` and ``retryCallback`` link
  to the task's next operations; ``createBatch``'s to ``getBatch``, ``cancelBatch`` and
  ``listTasks``, and the links lead to the task or batch just created.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "openapi.yaml"
RULESET = ROOT / ".spectral.yaml"
SPECTRAL = ROOT / "tests" / "js" / "node_modules" / ".bin" / "spectral"
SPECTRAL_TIMEOUT_SECONDS = 120
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SPEC_URI = "urn:taskapi:openapi"
#: Keys whose values are data (examples, defaults, enums), not more of the spec.
DATA_KEYS = {"example", "examples", "default", "enum", "const"}
TASK_LINKS = {
    "GetTask": "getTask",
    "CancelTask": "cancelTask",
    "DeleteTask": "deleteTask",
    "RetryTask": "retryTask",
    "RetryCallback": "retryCallback",
}
#: createTask's links besides those to the task: to its queue.
CREATED_LINKS = {**TASK_LINKS, "GetQueue": "getQueue"}
#: createBatch's links: to the batch, and to its tasks.
BATCH_LINKS = {"GetBatch": "getBatch", "CancelBatch": "cancelBatch", "ListBatchTasks": "listTasks"}

SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
REGISTRY: Registry = Registry().with_resource(
    SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)

Node = tuple[str, Any]  # (JSON pointer, value)


def _pointer(parent: str, key: str | int) -> str:
    return f"{parent}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _walk(pointer: str, node: Any) -> Iterator[tuple[str, str, Any]]:
    """Every (pointer, key, value) of the spec below ``node``, skipping data values."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in DATA_KEYS:
                continue
            child = _pointer(pointer, key)
            yield child, key, value
            yield from _walk(child, value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(_pointer(pointer, index), value)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """A ``$ref`` to somewhere in the spec, followed."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = SPEC
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _described(node: dict[str, Any]) -> bool:
    description = _resolve(node).get("description")
    return isinstance(description, str) and bool(description.strip())


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in SPEC["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _operation(operation_id: str) -> tuple[str, str, dict[str, Any]]:
    (found,) = [op for op in _operations() if op[2]["operationId"] == operation_id]
    return found


# -- tools -----------------------------------------------------------------------------------


def test_openapi_spec_validator_accepts_the_spec() -> None:
    validate_openapi(SPEC)


def test_spectral_finds_nothing(tmp_path: Path) -> None:
    if not SPECTRAL.exists() or shutil.which("node") is None:
        pytest.fail("Spectral is not installed: run `npm ci --prefix tests/js` (and install node)")
    report = tmp_path / "spectral.json"
    run = subprocess.run(
        [
            str(SPECTRAL),
            "lint",
            str(SPEC_PATH),
            "--ruleset",
            str(RULESET),
            "--fail-severity=warn",
            "--format=json",
            f"--output={report}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SPECTRAL_TIMEOUT_SECONDS,
        check=False,
    )
    assert report.exists(), run.stdout + run.stderr
    findings = json.loads(report.read_text())
    summary = [f"{f['code']} at {'.'.join(map(str, f['path']))}: {f['message']}" for f in findings]
    assert summary == [], "\n".join(summary)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_ruleset_is_spectral_oas_with_nothing_turned_off() -> None:
    ruleset = yaml.safe_load(RULESET.read_text())
    assert ruleset["extends"] in ("spectral:oas", ["spectral:oas"])
    assert not ruleset.get("rules"), "fix the spec rather than turn a rule off"


# -- descriptions ----------------------------------------------------------------------------


def _undescribed() -> Iterator[str]:
    for name, schema in SPEC["components"]["schemas"].items():
        if not _described(schema):
            yield f"schema {name}"
    for pointer, key, value in _walk("#", SPEC):
        if key == "properties" and isinstance(value, dict):
            for name, prop in value.items():
                if not _described(prop):
                    yield f"property {_pointer(pointer, name)}"
        elif key == "parameters" and isinstance(value, list):  # a link's parameters is a map
            for index, parameter in enumerate(value):
                if not _described(parameter):
                    yield f"parameter {_pointer(pointer, index)}"
        elif key in ("responses", "headers") and isinstance(value, dict):
            for name, item in value.items():
                if not _described(item):
                    yield f"{key[:-1]} {_pointer(pointer, name)}"


def test_every_schema_property_parameter_response_and_header_is_described() -> None:
    assert list(_undescribed()) == []


def test_the_api_its_operations_and_tags_are_described() -> None:
    assert SPEC["info"]["description"] and SPEC["info"]["contact"]
    tags = {tag["name"]: tag.get("description") for tag in SPEC["tags"]}
    assert all(tags.values()), tags
    for path, method, operation in _operations():
        assert operation.get("summary") and operation.get("description"), (method, path)
        assert set(operation["tags"]) <= set(tags), (method, path)


def test_tags_are_spelled_as_the_paths_they_group() -> None:
    """A tag that names a resource is its path segment (``/task-types`` is ``task-types``, not
    ``task_types``); the others (``ops``, ``legacy``) are plain lowercase words too."""
    for tag in SPEC["tags"]:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", tag["name"]), tag["name"]
    segments = {path.split("/")[1] for path in SPEC["paths"]}
    for path, method, operation in _operations():
        for tag in operation["tags"]:
            if tag.replace("-", "_") in {s.replace("-", "_") for s in segments}:
                assert tag in segments, (method, path, tag)


# -- examples --------------------------------------------------------------------------------


def _examples() -> Iterator[tuple[str, str, Any]]:
    """Every example in the spec: (where it is, pointer of its schema, the value)."""
    for pointer, _, node in [("#", "", SPEC), *_walk("#", SPEC)]:
        if not isinstance(node, dict):
            continue
        # A media type, parameter or header: its examples are of its `schema`.
        owner = _pointer(pointer, "schema") if "schema" in node else pointer
        if "example" in node:
            yield _pointer(pointer, "example"), owner, node["example"]
        examples = node.get("examples")
        if isinstance(examples, dict):  # OpenAPI Example objects
            for name, example in examples.items():
                yield _pointer(_pointer(pointer, "examples"), name), owner, example["value"]
        elif isinstance(examples, list):  # JSON Schema's examples
            for index, example in enumerate(examples):
                yield _pointer(_pointer(pointer, "examples"), index), pointer, example


EXAMPLES = list(_examples())


def _validator(schema_pointer: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": SPEC_URI + quote(schema_pointer, safe="#/~")},
        registry=REGISTRY,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def test_the_spec_has_examples_where_a_newcomer_looks() -> None:
    where = {example for example, _, _ in EXAMPLES}
    create = "#/paths/~1tasks/post/requestBody/content/application~1json/examples/"
    assert {create + name for name in ("add", "sleep", "fail")} <= where
    assert "#/paths/~1tasks~1{task_id}/get/responses/200/content/application~1json/example" in (
        where
    )


@pytest.mark.parametrize(("where", "schema", "value"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_each_example_is_valid_against_its_schema(where: str, schema: str, value: Any) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in _validator(schema).iter_errors(value)
    ]
    assert errors == []


def test_the_validator_does_check_examples() -> None:
    task_create = _validator("#/components/schemas/TaskCreate")
    assert task_create.is_valid({"type": "add", "params": {"x": 2, "y": 3}})
    assert not task_create.is_valid({"type": "add", "params": {"x": 2}})
    assert not task_create.is_valid({"type": "add", "params": {"x": 2, "y": 3}, "extra": 1})
    status = _validator("#/components/schemas/TaskStatus/properties/created_at")
    assert not status.is_valid("yesterday")


def _request_examples() -> list[tuple[str, Any]]:
    content = _operation("createTask")[2]["requestBody"]["content"]["application/json"]
    named = [(name, example["value"]) for name, example in content.get("examples", {}).items()]
    return named + ([("example", content["example"])] if "example" in content else [])


REQUEST_EXAMPLES = _request_examples()


@pytest.mark.parametrize(
    ("name", "body"), REQUEST_EXAMPLES, ids=[name for name, _ in REQUEST_EXAMPLES]
)
def test_each_request_example_of_create_task_is_accepted(
    client: FlaskClient, name: str, body: Any
) -> None:
    response = client.post("/tasks", json=body)
    assert response.status_code == 202, response.get_json()
    task = response.get_json()
    assert task["type"] == body["type"] and task["status"] == "queued"
    assert _validator(
        "#/paths/~1tasks/post/responses/202/content/application~1json/schema"
    ).is_valid(task)


# -- links -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["200", "202"])
def test_create_task_links_to_read_cancel_and_delete(status: str) -> None:
    links = _operation("createTask")[2]["responses"][status]["links"]
    assert {name: link["operationId"] for name, link in links.items()} == CREATED_LINKS
    for name, link in links.items():
        parameter, expression = {"GetQueue": ("name", "$response.body#/queue")}.get(
            name, ("task_id", "$response.body#/id")
        )
        assert link["parameters"] == {parameter: expression}
        assert link["description"]
        path, _, operation = _operation(link["operationId"])
        parameters = SPEC["paths"][path].get("parameters", []) + operation.get("parameters", [])
        assert {"in": "path", "name": parameter}.items() <= next(
            p for p in parameters if p["name"] == parameter
        ).items()


def _follow(client: FlaskClient, link: dict[str, Any], created: dict[str, Any]) -> Any:
    """Call the operation a link names, with its parameters taken from ``created`` (into the
    path or the query string, as the operation declares each)."""
    path, method, operation = _operation(link["operationId"])
    declared = SPEC["paths"][path].get("parameters", []) + operation.get("parameters", [])
    where = {p["name"]: p["in"] for p in declared}
    query: dict[str, str] = {}
    for name, expression in link["parameters"].items():
        match = re.fullmatch(r"\$response\.body#/(\w+)", expression)
        assert match, expression
        value = str(created[match.group(1)])
        if where[name] == "path":
            path = path.replace("{" + name + "}", value)
        else:
            assert where[name] == "query", (name, where[name])
            query[name] = value
    return client.open(path, method=method.upper(), query_string=query)


def test_following_the_links_reaches_the_created_task(client: FlaskClient) -> None:
    links = _operation("createTask")[2]["responses"]["202"]["links"]
    created = client.post("/tasks", json={"type": "sleep", "params": {"seconds": 1}}).get_json()
    read = _follow(client, links["GetTask"], created)
    assert read.status_code == 200 and read.get_json()["id"] == created["id"]
    cancelled = _follow(client, links["CancelTask"], created)
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert _follow(client, links["DeleteTask"], created).status_code == 204
    assert _follow(client, links["GetTask"], created).status_code == 404


@pytest.mark.parametrize("status", ["200", "202"])
def test_create_batch_links_to_read_cancel_and_list_it(status: str) -> None:
    links = _operation("createBatch")[2]["responses"][status]["links"]
    assert {name: link["operationId"] for name, link in links.items()} == BATCH_LINKS
    for name, link in links.items():
        parameter = "batch" if name == "ListBatchTasks" else "batch_id"
        assert link["parameters"] == {parameter: "$response.body#/id"}
        assert link["description"]
        path, _, operation = _operation(link["operationId"])
        parameters = SPEC["paths"][path].get("parameters", []) + operation.get("parameters", [])
        declared = next(p for p in parameters if p["name"] == parameter)
        assert declared["in"] == ("query" if name == "ListBatchTasks" else "path")


def test_following_the_batch_links_reaches_the_batch_and_its_tasks(client: FlaskClient) -> None:
    links = _operation("createBatch")[2]["responses"]["202"]["links"]
    body = {"tasks": [{"type": "sleep", "params": {"seconds": 1}} for _ in range(3)]}
    response = client.post("/batches", json=body)
    assert response.status_code == 202, response.get_json()
    created = response.get_json()
    read = _follow(client, links["GetBatch"], created)
    assert read.status_code == 200 and read.get_json()["id"] == created["id"]
    listed = _follow(client, links["ListBatchTasks"], created)
    assert listed.status_code == 200
    assert sorted(t["id"] for t in listed.get_json()) == sorted(created["task_ids"])
    cancelled = _follow(client, links["CancelBatch"], created)
    assert cancelled.status_code == 200 and cancelled.get_json()["counts"]["cancelled"] == 3
