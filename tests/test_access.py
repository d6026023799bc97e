"""Access and abuse: API keys, ownership, rate limits, CORS and the headers of every answer."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.config import ConfigError
from api.http.access import ApiKeys
from api.store import TaskFilter
from tests.conftest import make_app, runtime_of

ALICE, BOB = "tok-alice-7f3a", "tok-bob-91c2"
KEYS = f"alice:{ALICE},bob:{BOB}"
ADD = {"type": "add", "params": {"x": 1, "y": 2}}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def keyed(db_path: Path, database_url: str) -> Iterator[Flask]:
    app = make_app(db_path, TASKS_DATABASE_URL=database_url, TASKS_API_KEYS=KEYS)
    yield app
    runtime_of(app).store.close()


@pytest.fixture
def c(keyed: Flask) -> FlaskClient:
    return keyed.test_client()


def create(c: FlaskClient, token: str, **extra: Any) -> dict[str, Any]:
    response = c.post("/tasks", json=ADD, headers={**auth(token), **extra})
    assert response.status_code == 202, response.get_json()
    return response.get_json()


# -- ownership ---------------------------------------------------------------------------------


def test_two_callers_never_see_each_others_tasks(c: FlaskClient, keyed: Flask) -> None:
    mine = create(c, ALICE)
    runtime_of(keyed).pool.drain()
    url = f"/tasks/{mine['id']}"
    assert c.get(url, headers=auth(ALICE)).status_code == 200
    refusals = [
        c.get(url, headers=auth(BOB)),
        c.get(f"{url}?wait=0.1", headers=auth(BOB)),
        c.post(f"{url}/cancel", headers=auth(BOB)),
        c.delete(url, headers=auth(BOB)),
    ]
    for response in refusals:
        assert response.status_code == 404, "not 403: existence is not revealed"
        assert response.get_json()["detail"] == c.get(
            "/tasks/00000000-0000-4000-8000-000000000000", headers=auth(BOB)
        ).get_json()["detail"].replace("00000000-0000-4000-8000-000000000000", mine["id"])
    assert c.get("/tasks", headers=auth(BOB)).get_json() == []
    assert json.loads(c.get("/tasks", headers=auth(BOB)).headers["X-Pagination"])["total"] == 0
    assert [t["id"] for t in c.get("/tasks", headers=auth(ALICE)).get_json()] == [mine["id"]]
    legacy = c.get(f"/status/{mine['id']}", headers=auth(BOB))
    assert (legacy.status_code, legacy.get_json()) == (404, {"error": "Task not found"})
    assert c.get(f"/status/{mine['id']}", headers=auth(ALICE)).get_json()["status"] == "done"
    assert c.get(url, headers=auth(ALICE)).status_code == 200, "bob's delete did nothing"


def test_idempotency_keys_belong_to_their_caller(c: FlaskClient) -> None:
    first = create(c, ALICE, **{"Idempotency-Key": "order-1"})
    other = create(c, BOB, **{"Idempotency-Key": "order-1"})
    assert other["id"] != first["id"], "bob's key is his own"
    replay = c.post("/tasks", json=ADD, headers={**auth(ALICE), "Idempotency-Key": "order-1"})
    assert replay.status_code == 200 and replay.get_json()["id"] == first["id"]


def test_the_legacy_start_belongs_to_its_caller(c: FlaskClient) -> None:
    started = c.get("/start/1/2", headers=auth(ALICE)).get_json()
    assert c.get(f"/status/{started['task_id']}", headers=auth(BOB)).status_code == 404
    assert c.get(f"/status/{started['task_id']}", headers=auth(ALICE)).status_code == 200


# -- authentication ----------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/tasks"),
    ("POST", "/tasks"),
    ("GET", "/tasks/00000000-0000-4000-8000-000000000000"),
    ("DELETE", "/tasks/00000000-0000-4000-8000-000000000000"),
    ("POST", "/tasks/00000000-0000-4000-8000-000000000000/cancel"),
    ("GET", "/task-types"),
    ("GET", "/start/1/2"),
    ("GET", "/status/00000000-0000-4000-8000-000000000000"),
]
BAD_AUTHORIZATION = {
    "missing": (None, None),
    "empty": ("", "invalid_request"),
    "empty-bearer": ("Bearer ", "invalid_request"),
    "other-scheme": (f"Basic {ALICE}", "invalid_request"),
    "two-tokens": (f"Bearer {ALICE} {BOB}", "invalid_request"),
    "wrong": ("Bearer tok-mallory", "invalid_token"),
    "prefix-of-a-token": (f"Bearer {ALICE[:-1]}", "invalid_token"),
}


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("case", BAD_AUTHORIZATION)
def test_every_protected_operation_refuses_a_bad_token(
    c: FlaskClient, method: str, path: str, case: str
) -> None:
    header, error = BAD_AUTHORIZATION[case]
    headers = {} if header is None else {"Authorization": header}
    response = c.open(path, method=method, json=ADD if method == "POST" else None, headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)
    assert "Bearer" in response.get_json()["detail"] or "token" in response.get_json()["detail"]
    assert c.get("/tasks", headers=auth(ALICE)).get_json() == [], "nothing was created"


@pytest.mark.parametrize("path", ["/health", "/ready", "/openapi.json", "/docs"])
def test_open_endpoints_need_no_token(c: FlaskClient, keyed: Flask, path: str) -> None:
    runtime_of(keyed).pool.start()
    try:
        assert c.get(path).status_code == 200
    finally:
        runtime_of(keyed).pool.stop(grace=5)


def test_the_scheme_name_is_case_insensitive(c: FlaskClient) -> None:
    assert c.get("/tasks", headers={"Authorization": f"bearer {ALICE}"}).status_code == 200


def test_tokens_are_never_logged(c: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    create(c, ALICE)
    c.get("/tasks", headers=auth("tok-wrong"))
    assert ALICE not in caplog.text and "tok-wrong" not in caplog.text


def test_keys_from_a_file(db_path: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# callers\nalice:{ALICE}\n\nbob:{BOB}\n")
    app = make_app(db_path, TASKS_API_KEYS_FILE=str(keys))
    client = app.test_client()
    assert client.get("/tasks", headers=auth(BOB)).status_code == 200
    assert client.get("/tasks").status_code == 401
    runtime_of(app).store.close()


@pytest.mark.parametrize("spec", ["alice", "alice:", ":tok", f"a:{ALICE},b:{ALICE}"])
def test_bad_key_settings_stop_the_start(spec: str) -> None:
    with pytest.raises(ConfigError, match="TASKS_API_KEYS"):
        ApiKeys.load(spec)


def test_without_keys_the_api_is_open(client: FlaskClient) -> None:
    assert client.post("/tasks", json=ADD).status_code == 202
    assert client.get("/tasks").status_code == 200


# -- rate limits -------------------------------------------------------------------------------


def test_a_burst_over_the_rate_limit_gets_429s_and_nothing_else_breaks(db_path: Path) -> None:
    app = make_app(db_path, TASKS_API_KEYS=KEYS, TASKS_RATE_LIMIT="5/minute")
    c = app.test_client()
    answers = [c.post("/tasks", json=ADD, headers=auth(ALICE)) for _ in range(8)]
    assert [r.status_code for r in answers] == [202] * 5 + [429] * 3
    for response in answers:
        assert response.headers["RateLimit-Policy"] == '"default";q=5;w=60'
        assert response.headers["RateLimit"].startswith('"default";r=')
    over = answers[-1]
    assert over.mimetype == "application/problem+json"
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert '"default";r=0;t=' in over.headers["RateLimit"]
    assert c.get("/tasks", headers=auth(BOB)).status_code == 200, "bob has his own quota"
    assert c.get("/health").status_code == 200 and "RateLimit" not in c.get("/health").headers
    _, total = runtime_of(app).store.list(TaskFilter(), offset=0, limit=100, now=datetime.now(UTC))
    assert total == 5, "the refused requests created nothing"
    runtime_of(app).store.close()


def test_guessing_tokens_is_rate_limited_too(db_path: Path) -> None:
    app = make_app(db_path, TASKS_API_KEYS=KEYS, TASKS_RATE_LIMIT="3/minute")
    c = app.test_client()
    answers = [c.get("/tasks", headers=auth(f"guess-{n}")) for n in range(5)]
    assert [r.status_code for r in answers] == [401, 401, 401, 429, 429]
    assert all("RateLimit" in r.headers for r in answers)
    assert c.get("/tasks", headers=auth(ALICE)).status_code == 200, "alice has her own quota"
    runtime_of(app).store.close()


def test_the_window_resets(db_path: Path) -> None:
    app = make_app(db_path, TASKS_RATE_LIMIT="2/second")
    c = app.test_client()
    codes = [c.get("/task-types").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    time.sleep(1.1)
    assert c.get("/task-types").status_code == 200
    runtime_of(app).store.close()


def test_a_bad_rate_limit_setting_stops_the_start(db_path: Path) -> None:
    with pytest.raises(ConfigError, match="TASKS_RATE_LIMIT"):
        make_app(db_path, TASKS_RATE_LIMIT="lots")


# -- headers and CORS --------------------------------------------------------------------------


def test_every_answer_says_nosniff_and_task_reads_are_not_stored(client: FlaskClient) -> None:
    task = client.post("/tasks", json=ADD).get_json()
    for path in ("/tasks", f"/tasks/{task['id']}", f"/status/{task['id']}", "/nope"):
        response = client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Cache-Control"] == "no-store", path
    spec = client.get("/openapi.json")
    assert spec.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in spec.headers.get("Cache-Control", "")


def test_an_unexpected_error_shows_no_internals(
    app: Flask, client: FlaskClient, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production, not raise to the test

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret path /srv/db.sqlite3 and a stack")

    monkeypatch.setattr(runtime.service, "list", broken)
    response = client.get("/tasks")
    assert response.status_code == 500 and response.mimetype == "application/problem+json"
    text = response.get_data(as_text=True)
    assert "secret" not in text and "Traceback" not in text and "RuntimeError" not in text


def test_cors_is_off_by_default(client: FlaskClient) -> None:
    response = client.get("/tasks", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_the_listed_origins_only(db_path: Path) -> None:
    app = make_app(db_path, TASKS_CORS_ORIGINS="https://app.example", TASKS_API_KEYS=KEYS)
    c = app.test_client()
    preflight = c.options(
        "/tasks",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type, Idempotency-Key",
        },
    )
    assert preflight.status_code == 200, "a preflight carries no token"
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "idempotency-key" in allowed
    read = c.get("/tasks", headers={**auth(ALICE), "Origin": "https://app.example"})
    assert "x-pagination" in read.headers["Access-Control-Expose-Headers"].lower()
    other = c.get("/tasks", headers={**auth(ALICE), "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    runtime_of(app).store.close()


def test_cors_lets_a_browser_change_a_queue(db_path: Path) -> None:
    app = make_app(db_path, TASKS_CORS_ORIGINS="https://app.example", TASKS_API_KEYS=KEYS)
    preflight = app.test_client().options(
        "/queues/emails",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    runtime_of(app).store.close()
