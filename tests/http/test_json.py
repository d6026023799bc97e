"""The JSON of requests and answers (api/json.py): orjson's speed, ``json``'s answers."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

from tests.conftest import submit


def test_a_result_beyond_64_bits_is_answered_exactly(
    client: FlaskClient, drain: Callable[[], int]
) -> None:
    low = -(2**63)  # the least int64: twice it is beyond what orjson writes
    task = submit(client, {"type": "add", "params": {"x": low, "y": low}})
    drain()
    answer = client.get(f"/tasks/{task['id']}")
    assert answer.status_code == 200
    assert answer.get_json()["result"] == 2 * low
    assert str(2 * low).encode() in answer.data


def test_answers_keep_their_keys_sorted_and_end_with_a_newline(client: FlaskClient) -> None:
    answer = client.post("/tasks", json={"type": "add", "params": {"y": 1, "x": 2}})
    body = answer.get_data(as_text=True)
    assert body.endswith("}\n")
    keys = list(answer.get_json())
    assert keys == sorted(keys)


def test_a_number_too_large_for_a_float_is_read_as_json_reads_it(client: FlaskClient) -> None:
    answer = client.post(
        "/tasks",
        data='{"type": "add", "params": {"x": 1e999, "y": 1}}',
        content_type="application/json",
    )
    assert answer.status_code == 422, answer.get_json()  # not an integer: the schema says so
