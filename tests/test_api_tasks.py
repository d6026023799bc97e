"""Every operation of the contract, success and error paths, against the app and a SQLite file."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime

from flask.testing import FlaskClient

from api.runtime import Runtime
from tests.conftest import submit

PROBLEM = "application/problem+json"


def assert_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    return body


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


# -- POST /tasks ---------------------------------------------------------------------------


def test_submit_answers_202_with_location_and_a_queued_task(client: FlaskClient) -> None:
    response = client.post("/tasks", json={"type": "add", "params": {"x": 2, "y": 3}})
    assert response.status_code == 202
    task = response.get_json()
    assert response.headers["Location"] == f"/tasks/{task['id']}"
    assert uuid.UUID(task["id"])
    assert task["status"] == "queued"
    assert task["type"] == "add"
    assert task["params"] == {"x": 2, "y": 3, "delay_seconds": 0}, "defaults applied"
    assert task["attempts"] == 0 and task["max_attempts"] == 1
    assert task["priority"] == 0 and task["cancel_requested"] is False
    assert task["result"] is None and task["error"] is None and task["progress"] is None
    assert parse_time(task["created_at"]) == parse_time(task["run_after"])
    assert task["started_at"] is None and task["finished_at"] is None
    assert task["expires_at"] is None


def test_params_read_back_as_sent(client: FlaskClient) -> None:
    task = submit(client, {"type": "sleep", "params": {"seconds": 30}})
    assert task["params"] == {"seconds": 30}
    assert isinstance(task["params"]["seconds"], int)


def test_submit_options_are_kept(client: FlaskClient) -> None:
    task = submit(
        client,
        {
            "type": "fail",
            "params": {"message": "x"},
            "max_attempts": 7,
            "timeout_seconds": 2.5,
            "delay_seconds": 90,
            "priority": -3,
        },
    )
    assert (task["max_attempts"], task["timeout_seconds"], task["priority"]) == (7, 2.5, -3)
    delay = parse_time(task["run_after"]) - parse_time(task["created_at"])
    assert delay.total_seconds() == 90
    assert task["params"] == {"message": "x", "succeed_after": None}


def test_type_defaults_apply_when_options_are_left_out(client: FlaskClient) -> None:
    task = submit(client, {"type": "fail", "params": {"message": "x"}})
    assert task["max_attempts"] == 3


def test_a_submitted_task_runs_and_its_result_is_read_back(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    task = submit(client, {"type": "add", "params": {"x": 40, "y": 2}})
    assert drain() == 1
    done = client.get(f"/tasks/{task['id']}").get_json()
    assert done["status"] == "succeeded"
    assert done["result"] == 42
    assert done["attempts"] == 1
    assert parse_time(done["started_at"]) <= parse_time(done["finished_at"])
    ttl = parse_time(done["expires_at"]) - parse_time(done["finished_at"])
    assert ttl.total_seconds() == 7 * 24 * 3600


def test_int64_extremes_are_added_exactly(client: FlaskClient, drain: Callable[[], int]) -> None:
    big = 2**63 - 1
    task = submit(client, {"type": "add", "params": {"x": big, "y": big}})
    drain()
    assert client.get(f"/tasks/{task['id']}").get_json()["result"] == 2 * big


def test_fail_records_the_error_of_the_last_attempt(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    task = submit(client, {"type": "fail", "params": {"message": "boom"}, "max_attempts": 1})
    drain()
    failed = client.get(f"/tasks/{task['id']}").get_json()
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "TaskFailure", "message": "boom"}
    assert failed["result"] is None and failed["expires_at"] is not None


def test_invalid_body_is_a_validation_problem_naming_the_fields(client: FlaskClient) -> None:
    response = client.post("/tasks", json={"type": "add", "params": {"x": "two"}, "extra": 1})
    body = assert_problem(response, 422)
    assert body["errors"]["json"] == {
        "params.x": ["Not a valid integer."],
        "params.y": ["Missing data for required field."],
        "extra": ["Unknown field."],
    }


def test_unknown_type_lists_the_known_ones(client: FlaskClient) -> None:
    body = assert_problem(client.post("/tasks", json={"type": "mine", "params": {}}), 422)
    assert body["errors"]["json"]["type"] == ["Unknown task type; use one of: add, fail, sleep."]


# -- GET /tasks/{id} -----------------------------------------------------------------------


def test_get_unknown_and_malformed_ids_are_404(client: FlaskClient) -> None:
    body = assert_problem(client.get(f"/tasks/{uuid.uuid4()}"), 404)
    assert "no task" in body["detail"].lower()
    assert_problem(client.get("/tasks/not-a-uuid"), 404)


def test_get_accepts_an_uppercase_id(client: FlaskClient) -> None:
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    assert client.get(f"/tasks/{task['id'].upper()}").get_json()["id"] == task["id"]


def test_a_read_with_a_lowercase_conditional_header_is_answered_304(client: FlaskClient) -> None:
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    etag = client.get(f"/tasks/{task['id']}").headers["ETag"]
    assert client.get(f"/tasks/{task['id']}", headers={"if-none-match": etag}).status_code == 304
    assert client.get(f"/tasks/{task['id']}?other=1").status_code == 200, "unknown query ignored"


# -- GET /tasks ----------------------------------------------------------------------------


def test_list_is_newest_first_with_pagination_header(client: FlaskClient) -> None:
    ids = [submit(client, {"type": "add", "params": {"x": i, "y": 0}})["id"] for i in range(25)]
    first = client.get("/tasks")
    assert first.status_code == 200
    assert [t["id"] for t in first.get_json()] == ids[::-1][:20], "default page size is 20"
    assert json.loads(first.headers["X-Pagination"]) == {
        "total": 25,
        "total_pages": 2,
        "first_page": 1,
        "last_page": 2,
        "page": 1,
        "next_page": 2,
    }
    second = client.get("/tasks?page=2&page_size=20")
    assert [t["id"] for t in second.get_json()] == ids[::-1][20:]
    assert client.get("/tasks?page=9").get_json() == []


def test_list_filters_by_status_and_type(client: FlaskClient, drain: Callable[[], int]) -> None:
    done = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    drain()
    queued = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    other = submit(client, {"type": "sleep", "params": {"seconds": 1}})

    def ids(query: str) -> set[str]:
        response = client.get(f"/tasks?{query}")
        assert response.status_code == 200
        return {t["id"] for t in response.get_json()}

    assert ids("status=succeeded") == {done["id"]}
    assert ids("status=queued") == {queued["id"], other["id"]}
    assert ids("status=queued&status=succeeded") == {done["id"], queued["id"], other["id"]}
    assert ids("type=sleep") == {other["id"]}
    assert ids("type=add&status=queued") == {queued["id"]}


def test_list_refuses_bad_filters_and_pages(client: FlaskClient) -> None:
    for query, field in [
        ("status=done", "status.0"),
        ("type=nope", "type"),
        ("page=0", "page"),
        ("page_size=101", "page_size"),
        ("page_size=0", "page_size"),
    ]:
        body = assert_problem(client.get(f"/tasks?{query}"), 422)
        assert field in body["errors"]["query"], (query, body)


# -- POST /tasks/{id}/cancel ---------------------------------------------------------------


def test_cancel_a_queued_task_at_once(client: FlaskClient, drain: Callable[[], int]) -> None:
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    response = client.post(f"/tasks/{task['id']}/cancel")
    assert response.status_code == 200
    cancelled = response.get_json()
    assert cancelled["status"] == "cancelled" and cancelled["cancel_requested"] is True
    assert cancelled["finished_at"] is not None and cancelled["expires_at"] is not None
    assert drain() == 0, "a cancelled task never runs"


def test_cancel_a_terminal_task_is_409(client: FlaskClient, drain: Callable[[], int]) -> None:
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    drain()
    body = assert_problem(client.post(f"/tasks/{task['id']}/cancel"), 409)
    assert "succeeded" in body["detail"]


def test_cancel_unknown_is_404(client: FlaskClient) -> None:
    assert_problem(client.post(f"/tasks/{uuid.uuid4()}/cancel"), 404)


def test_cancel_a_running_task_sets_the_request_and_it_ends_cancelled(
    client: FlaskClient, live: Runtime
) -> None:
    task = submit(client, {"type": "sleep", "params": {"seconds": 30}})
    from tests.conftest import wait_until

    wait_until(lambda: client.get(f"/tasks/{task['id']}").get_json()["status"] == "running")
    asked = client.post(f"/tasks/{task['id']}/cancel").get_json()
    assert asked["status"] == "running" and asked["cancel_requested"] is True
    wait_until(lambda: client.get(f"/tasks/{task['id']}").get_json()["status"] == "cancelled")


# -- DELETE /tasks/{id} --------------------------------------------------------------------


def test_delete_a_terminal_task(client: FlaskClient, drain: Callable[[], int]) -> None:
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    drain()
    response = client.delete(f"/tasks/{task['id']}")
    assert response.status_code == 204 and response.data == b""
    assert "Content-Type" not in response.headers
    assert_problem(client.get(f"/tasks/{task['id']}"), 404)
    assert_problem(client.delete(f"/tasks/{task['id']}"), 404)


def test_delete_a_queued_task_is_409_and_keeps_it(client: FlaskClient) -> None:
    task = submit(client, {"type": "add", "params": {"x": 1, "y": 1}})
    body = assert_problem(client.delete(f"/tasks/{task['id']}"), 409)
    assert "queued" in body["detail"] and "Cancel it first" in body["detail"]
    assert client.get(f"/tasks/{task['id']}").status_code == 200


# -- task types, health, readiness, docs ---------------------------------------------------


def test_task_types_list_params_schemas_and_defaults(client: FlaskClient) -> None:
    types = {t["name"]: t for t in client.get("/task-types").get_json()}
    assert set(types) == {"add", "sleep", "fail"}
    add = types["add"]
    assert add["params_schema"]["type"] == "object"
    assert add["params_schema"]["required"] == ["x", "y"]
    assert add["params_schema"]["additionalProperties"] is False
    assert add["max_attempts"] == 1 and add["timeout_seconds"] is None
    assert types["fail"]["max_attempts"] == 3
    assert all(t["description"] for t in types.values())


def test_health_is_ok(client: FlaskClient) -> None:
    response = client.get("/health")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_ready_needs_running_workers(client: FlaskClient, runtime: Runtime) -> None:
    body = assert_problem(client.get("/ready"), 503)
    assert "worker" in body["detail"]
    runtime.pool.start()
    assert client.get("/ready").get_json() == {"status": "ok"}


def test_ready_is_503_when_the_store_does_not_answer(db_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_app

    app = make_app(db_path, TASKS_WORKERS=0)  # no worker thread to open the file again
    runtime_of_app = app.extensions["taskapi"]
    runtime_of_app.store.close()
    for path in db_path.parent.glob(db_path.name + "*"):
        path.unlink()
    db_path.mkdir()  # the file is gone and cannot be created again
    body = assert_problem(app.test_client().get("/ready"), 503)
    assert "store" in body["detail"].lower()


def test_an_api_only_process_is_ready_without_workers(db_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_app

    app = make_app(db_path, TASKS_WORKERS=0)
    assert app.test_client().get("/ready").status_code == 200


def test_docs_serve_swagger_ui_from_the_service_itself(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in html
    assert "http" not in html.split("<body>")[1].split("url:")[0], "no CDN"
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        response = client.get(f"/docs/assets/{asset}")
        response.close()  # a file response holds the file open until closed
        assert response.status_code == 200
    assert client.get("/openapi.json").get_json()["openapi"] == "3.1.0"


def test_wrong_method_is_405_with_allow(client: FlaskClient) -> None:
    response = client.put("/tasks")
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
