"""Bad input never gets a 500: every refusal is an RFC 9457 problem that says what was wrong.

Each test sends what a careless or hostile client might, checks the status, the problem's shape
(``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``; a 422 adds
``errors`` as location -> field -> messages, nested fields dotted) and that the problem names the
offending field; then checks that no task was created.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import make_app, runtime_of, submit

PROBLEM = "application/problem+json"
JSON = "application/json"
LOCATIONS = {"json", "query", "headers", "path"}
DEFAULT_LIMIT = 1024 * 1024
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"

ADD = {"type": "add", "params": {"x": 1, "y": 2}}
SLEEP = {"type": "sleep", "params": {"seconds": 1}}
FAIL = {"type": "fail", "params": {"message": "boom"}}
VALID_BODY = json.dumps(ADD).encode()


# --- helpers -------------------------------------------------------------------------------


def assert_problem(response: TestResponse, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status``; its document."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text[:1000]
    assert response.mimetype == PROBLEM, (response.mimetype, text[:300])
    problem = json.loads(text)
    assert isinstance(problem, dict), problem
    for member in ("type", "title", "detail"):
        assert isinstance(problem.get(member), str), (member, problem)
        assert problem[member].strip(), (member, problem)
    assert problem["status"] == status, problem
    return problem


def messages_for(errors: dict[str, dict[str, list[str]]], location: str, field: str) -> list[str]:
    """The messages about ``field`` (or its own ``_schema``, or its list items) at ``location``."""
    found: list[str] = []
    for name, texts in errors.get(location, {}).items():
        rest = name[len(field) :] if name.startswith(field) else None
        if location == "headers" and name.lower().startswith(field.lower()):
            rest = name[len(field) :]
        item = rest is not None and rest[:1] == "." and rest[1:].isdigit()
        if rest in ("", "._schema") or item:
            found.extend(texts)
    return found


def assert_invalid(
    response: TestResponse, location: str, field: str, *words: str
) -> dict[str, Any]:
    """A 422 problem whose ``errors`` names ``field`` at ``location``, saying each of ``words``."""
    problem = assert_problem(response, 422)
    errors = problem.get("errors")
    assert isinstance(errors, dict) and errors, problem
    for where, fields in errors.items():
        assert where in LOCATIONS, problem
        assert isinstance(fields, dict) and fields, problem
        for name, texts in fields.items():
            assert isinstance(name, str), problem
            assert isinstance(texts, list) and texts, problem
            assert all(isinstance(t, str) and t.strip() for t in texts), problem
    texts = messages_for(errors, location, field)
    assert texts, f"no message about {location}.{field}: {errors}"
    said = " ".join(texts).lower()
    for word in words:
        assert word.lower() in said, (word, texts)
    return problem


def assert_no_task_created(client: FlaskClient) -> None:
    response = client.get("/tasks")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == []
    assert json.loads(response.headers["X-Pagination"])["total"] == 0


def post_raw(client: FlaskClient, data: bytes, content_type: str | None = JSON) -> TestResponse:
    return client.post("/tasks", data=data, content_type=content_type)


def padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON, padded with trailing whitespace (still valid JSON) to ``size`` bytes."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` with top-level ``changes``."""
    return {**base, **changes}


def with_params(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` with ``params`` changes (a value of ``...`` removes the field)."""
    params = {**base["params"], **changes}
    return {**base, "params": {k: v for k, v in params.items() if v is not ...}}


def without(base: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != name}


def add(**params: Any) -> dict[str, Any]:
    """An ``add`` body with these params changed (``...`` removes one)."""
    return with_params(ADD, **params)


def sleep(**params: Any) -> dict[str, Any]:
    return with_params(SLEEP, **params)


def fail(**params: Any) -> dict[str, Any]:
    return with_params(FAIL, **params)


def top(**fields: Any) -> dict[str, Any]:
    """An ``add`` body with these top-level fields changed."""
    return with_(ADD, **fields)


@pytest.fixture
def small_app(tmp_path: Path) -> Iterator[Flask]:
    """An app that takes bodies of 2 KiB at most."""
    app = make_app(tmp_path / "small.sqlite3", TASKS_MAX_BODY_BYTES=2048)
    yield app
    runtime_of(app).pool.stop(grace=5)
    runtime_of(app).store.close()


@pytest.fixture
def roomy_app(tmp_path: Path) -> Iterator[Flask]:
    """An app that takes bodies of 16 MiB, so that deep nesting is not refused for its size."""
    app = make_app(tmp_path / "roomy.sqlite3", TASKS_MAX_BODY_BYTES=16 * 1024 * 1024)
    yield app
    runtime_of(app).pool.stop(grace=5)
    runtime_of(app).store.close()


# --- POST /tasks: bodies that are not a JSON document (400, 413, 415) ---------------------------


@pytest.mark.parametrize(
    ("data", "says"),
    [
        pytest.param(b"{", "not valid JSON", id="unterminated-object"),
        pytest.param(b'{"type": "add",}', "not valid JSON", id="trailing-comma"),
        pytest.param(b"{'type': 'add'}", "not valid JSON", id="single-quotes"),
        pytest.param(b'{"type": add}', "not valid JSON", id="bare-word"),
        pytest.param(VALID_BODY + b" x", "not valid JSON", id="trailing-garbage"),
        pytest.param(VALID_BODY + VALID_BODY, "not valid JSON", id="two-documents"),
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"  \r\n\t ", "empty", id="only-whitespace"),
        pytest.param(b'{"type": "sleep", "params": {"seconds": NaN}}', "NaN", id="NaN"),
        pytest.param(b'{"type": "sleep", "params": {"seconds": Infinity}}', "Infinity", id="Inf"),
        pytest.param(b'{"type": "sleep", "params": {"seconds": -Infinity}}', "Infinity", id="-Inf"),
        pytest.param(b'{"type": "fail", "params": {"message": "a\x00b"}}', "control", id="raw-NUL"),
        pytest.param(b'{"type": "add"}\x00', "not valid JSON", id="NUL-after-document"),
        pytest.param(b'{"type": "fail", "params": {"message": "a\nb"}}', "control", id="raw-LF"),
    ],
)
def test_malformed_json_is_400(client: FlaskClient, data: bytes, says: str) -> None:
    problem = assert_problem(post_raw(client, data), 400)
    assert says.lower() in problem["detail"].lower(), problem
    assert_no_task_created(client)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        pytest.param(b'{"type": "fail", "params": {"message": "\xff"}}', JSON, id="0xff"),
        pytest.param(b'{"type": "fail", "params": {"message": "\xc0\xaf"}}', JSON, id="overlong"),
        pytest.param(b'{"type": "fail", "params": {"message": "\xe2\x82"}}', JSON, id="truncated"),
        pytest.param(b'{"type": "fail", "params": {"message": "\xed\xa0\x80"}}', JSON, id="CESU"),
        pytest.param(b'{"\xfe": 1}', JSON, id="in-a-name"),
        pytest.param(
            '{"type": "fail", "params": {"message": "é"}}'.encode("latin-1"),
            JSON + "; charset=latin-1",
            id="latin-1",
        ),
        pytest.param(json.dumps(ADD).encode("utf-16"), JSON, id="utf-16"),
        pytest.param(json.dumps(ADD).encode("utf-32"), JSON, id="utf-32"),
    ],
)
def test_body_that_is_not_utf8_is_400(client: FlaskClient, data: bytes, content_type: str) -> None:
    problem = assert_problem(post_raw(client, data, content_type), 400)
    assert "utf-8" in problem["detail"].lower(), problem
    assert_no_task_created(client)


@pytest.mark.parametrize(
    ("digits", "at"),
    [
        pytest.param(b"9" * 5000, b'{"type": "add", "params": {"x": %s, "y": 1}}', id="params.x"),
        pytest.param(b"-" + b"9" * 5000, b'{"type": "add", "params": {"x": 1, "y": %s}}', id="y"),
        pytest.param(b"1" * 5000, b'{"type": "sleep", "params": {"seconds": %s}}', id="float"),
        pytest.param(
            b"1" * 5000,
            b'{"type": "add", "params": {"x": 1, "y": 2}, "priority": %s}',
            id="priority",
        ),
        pytest.param(
            b"7" * 5000,
            b'{"type": "add", "params": {"x": 1, "y": 2}, "zz": %s}',
            id="unknown-field",
        ),
    ],
)
def test_integer_of_5000_digits_is_refused(client: FlaskClient, digits: bytes, at: bytes) -> None:
    response = post_raw(client, at % digits)
    # Well-formed JSON that the service cannot represent: a 400 saying so, or a 422 on the field.
    if response.status_code == 400:
        problem = assert_problem(response, 400)
        assert "digits" in problem["detail"].lower() or "integer" in problem["detail"].lower()
    else:
        problem = assert_problem(response, 422)
        assert problem["errors"]["json"], problem
    assert_no_task_created(client)


def nested(depth: int, opening: bytes = b"[", closing: bytes = b"]") -> bytes:
    return b'{"type": "add", "params": {"x": 1, "y": 2, "deep": %s}}' % (
        opening * depth + b"1" + closing * depth
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(nested(1_000), id="arrays-1000"),
        pytest.param(nested(20_000), id="arrays-20000"),
        pytest.param(nested(5_000, b'{"a": ', b"}"), id="objects-5000"),
    ],
)
def test_deeply_nested_json_is_400(client: FlaskClient, data: bytes) -> None:
    assert len(data) < DEFAULT_LIMIT
    problem = assert_problem(post_raw(client, data), 400)
    assert "nested" in problem["detail"].lower(), problem
    assert_no_task_created(client)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(nested(1_000_000), id="arrays-1000000"),
        pytest.param(nested(1_000_000, b'{"a": ', b"}"), id="objects-1000000"),
    ],
)
def test_a_million_levels_of_nesting(client: FlaskClient, roomy_app: Flask, data: bytes) -> None:
    # Under the default limit, the body is refused for its size before it is parsed ...
    problem = assert_problem(post_raw(client, data), 413)
    assert "body" in problem["detail"].lower(), problem
    assert_no_task_created(client)
    # ... and where the limit lets it in, for its depth.
    roomy = roomy_app.test_client()
    problem = assert_problem(post_raw(roomy, data), 400)
    assert "nested" in problem["detail"].lower(), problem
    assert_no_task_created(roomy)


@pytest.mark.parametrize(
    ("data", "content_type", "named"),
    [
        pytest.param(VALID_BODY, "text/plain", "text/plain", id="text-plain-with-json-in-it"),
        pytest.param(b"type=add&x=1", "application/x-www-form-urlencoded", "form", id="form"),
        pytest.param(
            b"--b\r\n\r\n--b--\r\n", "multipart/form-data; boundary=b", "multipart", id="multipart"
        ),
        pytest.param(b"<task/>", "application/xml", "xml", id="xml"),
        pytest.param(VALID_BODY, "text/json", "text/json", id="text-json"),
        pytest.param(VALID_BODY, "application/jsonx", "jsonx", id="jsonx"),
        pytest.param(VALID_BODY, None, "no content-type", id="no-content-type"),
        pytest.param(b"", None, "no content-type", id="no-content-type-no-body"),
    ],
)
def test_body_that_is_not_json_is_415(
    client: FlaskClient, data: bytes, content_type: str | None, named: str
) -> None:
    problem = assert_problem(post_raw(client, data, content_type), 415)
    detail = problem["detail"].lower()
    assert "application/json" in detail, problem
    assert named in detail, problem
    assert_no_task_created(client)


def test_form_posted_by_a_browser_is_415(client: FlaskClient) -> None:
    problem = assert_problem(client.post("/tasks", data={"type": "add", "x": "1"}), 415)
    assert "application/json" in problem["detail"], problem
    assert_no_task_created(client)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(padded(ADD, DEFAULT_LIMIT + 1), id="limit+1-valid-json"),
        pytest.param(padded(fail(message="a" * 1_100_000), 1_100_100), id="long-message"),
        pytest.param(b"[" * 1_100_000, id="junk"),
    ],
)
def test_body_over_1MiB_is_413(client: FlaskClient, data: bytes) -> None:
    problem = assert_problem(post_raw(client, data), 413)
    assert "body" in problem["detail"].lower(), problem
    # The detail names the limit, not just the setting, so a client knows how far to cut.
    assert "1048576 bytes" in problem["detail"], problem
    assert_no_task_created(client)


def test_body_limit_follows_TASKS_MAX_BODY_BYTES(small_app: Flask) -> None:
    client = small_app.test_client()
    problem = assert_problem(post_raw(client, padded(ADD, 2049)), 413)
    assert "body" in problem["detail"].lower(), problem
    assert "2048 bytes" in problem["detail"], problem
    assert "TASKS_MAX_BODY_BYTES" in problem["detail"], problem
    assert_no_task_created(client)
    # The limit itself is allowed.
    assert post_raw(client, padded(ADD, 2048)).status_code == 202


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(padded(ADD, 4096), id="valid-json-padded"),
        pytest.param(json.dumps(fail(message="a" * 4000)).encode(), id="cut-in-two"),
    ],
)
def test_chunked_body_over_the_limit_is_413(small_app: Flask, data: bytes) -> None:
    """Without Content-Length (``Transfer-Encoding: chunked``) the limit still holds.

    gunicorn and Werkzeug's server mark such a stream ``wsgi.input_terminated``.
    """
    client = small_app.test_client()
    response = client.post(
        "/tasks",
        input_stream=io.BytesIO(data),
        content_type=JSON,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    problem = assert_problem(response, 413)
    assert "body" in problem["detail"].lower(), problem
    assert "2048 bytes" in problem["detail"], problem
    assert_no_task_created(client)


# --- POST /tasks: JSON that is not a valid TaskCreate (422) -------------------------------------

HUGE = "z" * 50_000


def case(name: str, body: Any, field: str, *words: str) -> Any:
    """A body, the field the 422 must name, and words its messages must say."""
    return pytest.param(body, field, words, id=name)


INVALID_BODIES = [
    # Not an object at all.
    case("array", [ADD], "_schema", "object"),
    case("empty-array", [], "_schema", "object"),
    case("string", "add", "_schema", "object"),
    case("number", 3, "_schema", "object"),
    case("null", None, "_schema", "object"),
    case("true", True, "_schema", "object"),
    # type
    case("empty-object", {}, "type", "missing"),
    case("type-missing", without(ADD, "type"), "type", "missing"),
    case("type-unknown", top(type="nope"), "type", "unknown", "add", "sleep", "fail"),
    case("type-wrong-case", top(type="ADD"), "type", "unknown"),
    case("type-empty", top(type=""), "type", "unknown"),
    case("type-with-NUL", top(type="add\x00"), "type", "unknown"),
    case("type-number", top(type=3), "type"),
    case("type-array", top(type=["add"]), "type"),
    case("type-object", top(type={"name": "add"}), "type"),
    case("type-null", top(type=None), "type"),
    # params
    case("params-missing", without(ADD, "params"), "params", "missing"),
    case("params-null", top(params=None), "params", "null"),
    case("params-array", top(params=[1, 2]), "params"),
    case("params-string", top(params="x=1"), "params"),
    case("params-number", top(params=3), "params"),
    # Unknown fields, top level and in params.
    case("unknown-top-level", top(zz=1), "zz", "unknown"),
    case("unknown-id", top(id=UNKNOWN_ID), "id", "unknown"),
    case("unknown-status", top(status="succeeded"), "status", "unknown"),
    case("unknown-param", add(z=3), "params.z", "unknown"),
    case("param-of-another-type", sleep(x=1), "params.x", "unknown"),
    case("unknown-with-NUL", top(**{"a\x00b": "c\x00"}), "a\x00b", "unknown"),
    case("unknown-param-NUL", add(**{"\x00": 1}), "params.\x00", "unknown"),
    case("unknown-long-value", top(zz=HUGE), "zz", "unknown"),
    case("unknown-long-name", top(**{HUGE: 1}), HUGE, "unknown"),
    case("unknown-param-long-value", fail(extra=HUGE), "params.extra", "unknown"),
    # Missing required params.
    case("add-x-missing", add(x=...), "params.x", "missing"),
    case("add-y-missing", add(y=...), "params.y", "missing"),
    case("add-params-empty", top(params={}), "params.x", "missing"),
    case("sleep-seconds-missing", sleep(seconds=...), "params.seconds", "missing"),
    case("fail-message-missing", fail(message=...), "params.message", "missing"),
    # Out of range: every bounded field, on both sides.
    case("max_attempts-0", top(max_attempts=0), "max_attempts", "1", "100"),
    case("max_attempts-101", top(max_attempts=101), "max_attempts", "100"),
    case("max_attempts--1", top(max_attempts=-1), "max_attempts", "1"),
    case("timeout-0", top(timeout_seconds=0), "timeout_seconds", "0", "86400"),
    case("timeout--0.5", top(timeout_seconds=-0.5), "timeout_seconds", "0"),
    case("timeout-86401", top(timeout_seconds=86401), "timeout_seconds", "86400"),
    case("timeout-86400.001", top(timeout_seconds=86400.001), "timeout_seconds", "86400"),
    case("delay--1", top(delay_seconds=-1), "delay_seconds", "0", "2592000"),
    case("delay-2592001", top(delay_seconds=2592001), "delay_seconds", "2592000"),
    case("priority--101", top(priority=-101), "priority", "-100"),
    case("priority-101", top(priority=101), "priority", "100"),
    case("x-2**63", add(x=INT64_MAX + 1), "params.x", str(INT64_MAX)),
    case("x--2**63-1", add(x=INT64_MIN - 1), "params.x", str(INT64_MIN)),
    case("y-2**63", add(y=INT64_MAX + 1), "params.y", str(INT64_MAX)),
    case("y--2**63-1", add(y=INT64_MIN - 1), "params.y", str(INT64_MIN)),
    case("x-10**30", add(x=10**30), "params.x", str(INT64_MAX)),
    case("x-1e300", add(x=1e300), "params.x", str(INT64_MAX)),
    case("add-delay-61", add(delay_seconds=61), "params.delay_seconds", "60"),
    case("add-delay--1", add(delay_seconds=-1), "params.delay_seconds", "0"),
    case("seconds-3601", sleep(seconds=3601), "params.seconds", "3600"),
    case("seconds--1", sleep(seconds=-1), "params.seconds", "0"),
    case("succeed_after-101", fail(succeed_after=101), "params.succeed_after", "100"),
    case("succeed_after--1", fail(succeed_after=-1), "params.succeed_after", "0"),
    # Wrong types: integers (3.0 is an integer; "3", true and 1.5 are not).
    case("x-string", add(x="3"), "params.x", "integer"),
    case("x-word", add(x="three"), "params.x", "integer"),
    case("x-true", add(x=True), "params.x", "integer"),
    case("y-false", add(y=False), "params.y", "integer"),
    case("x-1.5", add(x=1.5), "params.x", "integer"),
    case("x-null", add(x=None), "params.x", "null"),
    case("x-array", add(x=[1]), "params.x", "integer"),
    case("x-object", add(x={"v": 1}), "params.x", "integer"),
    case("max_attempts-string", top(max_attempts="3"), "max_attempts", "integer"),
    case("max_attempts-true", top(max_attempts=True), "max_attempts", "integer"),
    case("max_attempts-2.5", top(max_attempts=2.5), "max_attempts", "integer"),
    case("max_attempts-null", top(max_attempts=None), "max_attempts", "null"),
    case("priority-string", top(priority="1"), "priority", "integer"),
    case("priority-true", top(priority=True), "priority", "integer"),
    case("priority-0.5", top(priority=0.5), "priority", "integer"),
    case("succeed_after-string", fail(succeed_after="1"), "params.succeed_after", "integer"),
    case("succeed_after-true", fail(succeed_after=True), "params.succeed_after", "integer"),
    case("succeed_after-1.5", fail(succeed_after=1.5), "params.succeed_after", "integer"),
    # Wrong types: numbers.
    case("seconds-string", sleep(seconds="1"), "params.seconds", "number"),
    case("seconds-true", sleep(seconds=True), "params.seconds", "number"),
    case("seconds-null", sleep(seconds=None), "params.seconds", "null"),
    case("seconds-array", sleep(seconds=[1]), "params.seconds", "number"),
    case("timeout-string", top(timeout_seconds="10"), "timeout_seconds", "number"),
    case("timeout-true", top(timeout_seconds=True), "timeout_seconds", "number"),
    case("timeout-null", top(timeout_seconds=None), "timeout_seconds", "null"),
    case("delay-string", top(delay_seconds="5"), "delay_seconds", "number"),
    case("delay-false", top(delay_seconds=False), "delay_seconds", "number"),
    case("add-delay-string", add(delay_seconds="1"), "params.delay_seconds", "number"),
    # Wrong types: strings.
    case("message-number", fail(message=3), "params.message", "string"),
    case("message-true", fail(message=True), "params.message", "string"),
    case("message-null", fail(message=None), "params.message", "null"),
    case("message-array", fail(message=["a"]), "params.message", "string"),
    # Very long strings.
    case("message-4001", fail(message="m" * 4_001), "params.message", "4000"),
    case("message-4001-NULs", fail(message="\x00" * 4_001), "params.message", "4000"),
    case("message-50000", fail(message=HUGE), "params.message", "4000"),
]


@pytest.mark.parametrize(("body", "field", "words"), INVALID_BODIES)
def test_invalid_task_is_422_naming_the_field(
    client: FlaskClient, body: Any, field: str, words: tuple[str, ...]
) -> None:
    data = json.dumps(body).encode()
    assert len(data) < DEFAULT_LIMIT
    assert_invalid(post_raw(client, data), "json", field, *words)
    assert_no_task_created(client)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        # 1e400 is well-formed JSON, but no double holds it: Python reads it as infinity.
        pytest.param(
            b'{"type": "sleep", "params": {"seconds": 1e400}}', "params.seconds", id="seconds-1e400"
        ),
        pytest.param(
            b'{"type": "add", "params": {"x": 1, "y": 2}, "timeout_seconds": 1e999}',
            "timeout_seconds",
            id="timeout-1e999",
        ),
        pytest.param(
            b'{"type": "add", "params": {"x": 1, "y": 2}, "delay_seconds": -1e400}',
            "delay_seconds",
            id="delay--1e400",
        ),
        pytest.param(b'{"type": "add", "params": {"x": 1e400, "y": 2}}', "params.x", id="x-1e400"),
        pytest.param(
            b'{"type": "add", "params": {"x": 1, "y": 2}, "priority": -1e400}',
            "priority",
            id="priority--1e400",
        ),
    ],
)
def test_number_too_large_for_a_double_is_422(client: FlaskClient, data: bytes, field: str) -> None:
    assert_invalid(post_raw(client, data), "json", field)
    assert_no_task_created(client)


def test_every_invalid_field_is_named_at_once(client: FlaskClient) -> None:
    body = {
        "type": "add",
        "params": {"x": "1", "z": 0},
        "max_attempts": 0,
        "priority": 1000,
        "colour": "red",
    }
    problem = assert_invalid(post_raw(client, json.dumps(body).encode()), "json", "params.x")
    assert set(problem["errors"]["json"]) >= {
        "params.x",
        "params.y",
        "params.z",
        "max_attempts",
        "priority",
        "colour",
    }, problem
    assert_no_task_created(client)


# --- POST /tasks: odd but valid input is accepted, and read back as it was sent -----------------


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        pytest.param(add(x=3.0, y=-2.0), {"x": 3, "y": -2}, id="integral-floats"),
        pytest.param(
            add(x=INT64_MAX, y=INT64_MIN), {"x": INT64_MAX, "y": INT64_MIN}, id="int64-bounds"
        ),
        pytest.param(fail(message="a\x00b"), {"message": "a\x00b"}, id="NUL-inside"),
        pytest.param(fail(message="\x00"), {"message": "\x00"}, id="only-NUL"),
        pytest.param(fail(message="é\u2028😀\x1f"), {"message": "é\u2028😀\x1f"}, id="unicode"),
        pytest.param(fail(message="m" * 4_000), {"message": "m" * 4_000}, id="message-4000"),
        pytest.param(
            fail(message="", succeed_after=100),
            {"message": "", "succeed_after": 100},
            id="empty-message",
        ),
        pytest.param(sleep(seconds=3600), {"seconds": 3600.0}, id="seconds-3600"),
        pytest.param(sleep(seconds=0), {"seconds": 0.0}, id="seconds-0"),
        pytest.param(add(delay_seconds=60), {"delay_seconds": 60.0}, id="add-delay-60"),
    ],
)
def test_odd_but_valid_params_are_kept(
    client: FlaskClient, body: dict[str, Any], expect: dict[str, Any]
) -> None:
    created = submit(client, body)
    read = client.get(f"/tasks/{created['id']}").get_json()
    for name, value in expect.items():
        assert created["params"][name] == value
        assert read["params"][name] == value
        if isinstance(value, int):  # an integer stays one: 3.0 is read back as 3
            assert type(read["params"][name]) is int


@pytest.mark.parametrize(
    ("changes", "expect"),
    [
        pytest.param({"max_attempts": 1}, {"max_attempts": 1}, id="max_attempts-1"),
        pytest.param({"max_attempts": 100}, {"max_attempts": 100}, id="max_attempts-100"),
        pytest.param({"max_attempts": 3.0}, {"max_attempts": 3}, id="max_attempts-3.0"),
        pytest.param({"priority": -100}, {"priority": -100}, id="priority--100"),
        pytest.param({"priority": 100.0}, {"priority": 100}, id="priority-100.0"),
        pytest.param({"timeout_seconds": 0.001}, {"timeout_seconds": 0.001}, id="timeout-tiny"),
        pytest.param({"timeout_seconds": 86400}, {"timeout_seconds": 86400.0}, id="timeout-86400"),
        pytest.param({"delay_seconds": 2592000}, {"status": "queued"}, id="delay-2592000"),
    ],
)
def test_bounds_themselves_are_accepted(
    client: FlaskClient, changes: dict[str, Any], expect: dict[str, Any]
) -> None:
    created = submit(client, top(**changes))
    for name, value in expect.items():
        assert created[name] == value
        if isinstance(value, int):
            assert type(created[name]) is int


def test_NUL_in_a_message_survives_the_run(client: FlaskClient, drain: Any) -> None:
    created = submit(client, with_(fail(message="before\x00after"), max_attempts=1))
    assert drain() == 1
    task = client.get(f"/tasks/{created['id']}").get_json()
    assert task["status"] == "failed"
    assert task["params"]["message"] == "before\x00after"
    assert task["error"]["message"] == "before\x00after"
    assert client.get(f"/status/{created['id']}").get_json() == {
        "status": "failed",
        "error": "before\x00after",
    }


def test_body_of_exactly_1MiB_is_accepted(client: FlaskClient) -> None:
    response = post_raw(client, padded(ADD, DEFAULT_LIMIT))
    assert response.status_code == 202, response.get_data(as_text=True)


# --- GET /tasks: bad query values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        pytest.param("page=0", "page", ("1",), id="page-0"),
        pytest.param("page=-1", "page", ("1",), id="page--1"),
        pytest.param("page=abc", "page", ("integer",), id="page-word"),
        pytest.param("page=1.5", "page", ("integer",), id="page-1.5"),
        pytest.param("page=1e3", "page", ("integer",), id="page-1e3"),
        pytest.param("page=", "page", ("integer",), id="page-empty"),
        pytest.param("page=%00", "page", ("integer",), id="page-NUL"),
        pytest.param("page_size=0", "page_size", ("1", "100"), id="page_size-0"),
        pytest.param("page_size=101", "page_size", ("100",), id="page_size-101"),
        pytest.param("page_size=-5", "page_size", ("1",), id="page_size--5"),
        pytest.param("page_size=ten", "page_size", ("integer",), id="page_size-word"),
        pytest.param("page_size=" + "9" * 5000, "page_size", (), id="page_size-5000-digits"),
        pytest.param("status=nope", "status", ("queued", "cancelled"), id="status-unknown"),
        pytest.param("status=QUEUED", "status", ("queued",), id="status-wrong-case"),
        pytest.param("status=", "status", ("queued",), id="status-empty"),
        pytest.param("status=queued&status=done", "status", ("succeeded",), id="status-2nd-bad"),
        pytest.param("status=queued%00", "status", (), id="status-NUL"),
        pytest.param("type=nope", "type", ("add", "sleep", "fail"), id="type-unknown"),
        pytest.param("type=", "type", ("add",), id="type-empty"),
        pytest.param("type=%ff%fe", "type", ("add",), id="type-not-utf8"),
        pytest.param("type=" + "t" * 10_000, "type", ("add",), id="type-long"),
    ],
)
def test_bad_list_query_is_422_under_query(
    client: FlaskClient, query: str, field: str, words: tuple[str, ...]
) -> None:
    assert_invalid(client.get(f"/tasks?{query}"), "query", field, *words)
    assert_no_task_created(client)


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("page=0&page_size=1000", ("page", "page_size")),
        ("status=x&type=y", ("status", "type")),
    ],
)
def test_every_bad_list_query_value_is_named(
    client: FlaskClient, query: str, fields: tuple[str, ...]
) -> None:
    problem = assert_invalid(client.get(f"/tasks?{query}"), "query", fields[0])
    for field in fields[1:]:
        assert messages_for(problem["errors"], "query", field), problem
    assert_no_task_created(client)


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(str(10**17), id="10**17"),
        pytest.param(str(2**62), id="2**62"),
        pytest.param(str(10**20), id="10**20"),
        pytest.param("9" * 5000, id="5000-digits"),
    ],
)
def test_page_far_beyond_the_last_is_not_a_500(client: FlaskClient, page: str) -> None:
    """``page`` has no maximum in the spec: a page past the end is empty (or refused with 422)."""
    response = client.get(f"/tasks?page={page}")
    if response.status_code == 422:
        assert_invalid(response, "query", "page")
    else:
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        assert response.get_json() == []
    assert_no_task_created(client)


# --- task ids: unknown and malformed ----------------------------------------------------------

TASK_IDS = [
    pytest.param(UNKNOWN_ID, id="unknown-uuid"),
    pytest.param("ABCDEF01-2345-6789-ABCD-EF0123456789", id="unknown-uppercase-uuid"),
    pytest.param("nope", id="word"),
    pytest.param("00000000-0000-0000-0000-00000000000g", id="not-hex"),
    pytest.param("00000000000000000000000000000000", id="no-hyphens"),
    pytest.param("x" * 2000, id="2000-chars"),
]


@pytest.mark.parametrize("task_id", TASK_IDS)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/tasks/{}"), ("DELETE", "/tasks/{}"), ("POST", "/tasks/{}/cancel")],
)
def test_unknown_or_malformed_task_id_is_404(
    client: FlaskClient, method: str, path: str, task_id: str
) -> None:
    problem = assert_problem(client.open(path.format(task_id), method=method), 404)
    detail = problem["detail"].lower()
    assert "task" in detail, problem
    if len(task_id) <= 40:
        assert task_id.lower() in detail, problem
    assert_no_task_created(client)


@pytest.mark.parametrize("segment", ["%00", "%ff", "a%2Fb", "%20", "..%2F..%2Fhealth"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/tasks/{}"), ("DELETE", "/tasks/{}"), ("POST", "/tasks/{}/cancel")],
)
def test_junk_in_the_id_segment_is_404(
    client: FlaskClient, method: str, path: str, segment: str
) -> None:
    assert_problem(client.open(path.format(segment), method=method), 404)
    assert_no_task_created(client)


@pytest.mark.parametrize("wait", ["-1", "61", "abc", "1e9", "", "nan"])
def test_bad_wait_on_a_task_read_is_422(client: FlaskClient, wait: str) -> None:
    """``GET /tasks/{id}?wait=`` takes 0..60 seconds."""
    task = submit(client, ADD)
    assert_invalid(client.get(f"/tasks/{task['id']}?wait={wait}"), "query", "wait")


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="256-chars"),
        pytest.param("clé", id="not-ascii"),
        pytest.param("a\x01b", id="control-char"),
        pytest.param("a\x7fb", id="DEL"),
    ],
)
def test_bad_idempotency_key_is_422(client: FlaskClient, key: str) -> None:
    """``Idempotency-Key`` is 1..255 printable ASCII characters."""
    response = client.post("/tasks", json=ADD, headers={"Idempotency-Key": key})
    assert_invalid(response, "headers", "Idempotency-Key")
    assert_no_task_created(client)


# --- methods and URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/tasks", {"GET", "POST"}),
        ("PATCH", "/tasks", {"GET", "POST"}),
        ("DELETE", "/tasks", {"GET", "POST"}),
        ("PUT", f"/tasks/{UNKNOWN_ID}", {"GET", "DELETE"}),
        ("PATCH", f"/tasks/{UNKNOWN_ID}", {"GET", "DELETE"}),
        ("POST", f"/tasks/{UNKNOWN_ID}", {"GET", "DELETE"}),
        ("GET", f"/tasks/{UNKNOWN_ID}/cancel", {"POST"}),
        ("DELETE", f"/tasks/{UNKNOWN_ID}/cancel", {"POST"}),
        ("POST", "/task-types", {"GET"}),
        ("DELETE", "/health", {"GET"}),
    ],
)
def test_wrong_method_is_405_with_allow(
    client: FlaskClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.open(path, method=method, json=ADD)
    problem = assert_problem(response, 405)
    offered = {m.strip() for m in response.headers.get("Allow", "").split(",")}
    assert allowed <= offered, response.headers
    assert method not in offered
    assert "method" in problem["detail"].lower(), problem
    assert_no_task_created(client)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("GET", "/tasks/"),
        ("GET", "/TASKS"),
        ("POST", "/task"),
        ("GET", f"/tasks/{UNKNOWN_ID}/nope"),
        ("GET", "/tasks/" + "a/" * 500),
        ("GET", "/%00"),
    ],
)
def test_unknown_url_is_404(client: FlaskClient, method: str, path: str) -> None:
    problem = assert_problem(client.open(path, method=method, json=ADD), 404)
    assert "url" in problem["detail"].lower(), problem
    assert_no_task_created(client)
