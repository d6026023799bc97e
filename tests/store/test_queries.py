"""The named SQL of the backends: loaded once, the same names in each, statuses from VERBS."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from api.models import Verb, sources
from api.store.postgres import QUERIES as POSTGRES
from api.store.queries import CALL_SLOTS, fills, parse
from api.store.sqlite import QUERIES as SQLITE

#: What only PostgreSQL needs: its queue locks, its key race, its notifications, its share
#: locks of a submit's dependencies.
POSTGRES_ONLY = {
    "lock_queue",
    "lock_limited_queues",
    "count_queued",
    "drop_expired_key",
    "key_holder",
    "notify",
    "share_dependencies",
}


#: What only SQLite needs: its claim in two steps, of one queue or of several (claims.py),
#: the queued count a batch checks its room against (PostgreSQL counts under its lock), and
#: the trigger-kept counts, which a batch keeps itself, once per queue.
SQLITE_ONLY = {
    "claim_queues",
    "claim_turns",
    "claim_each",
    "queued_total",
    "open_queue_counts",
    "count_batch",
}


def test_both_backends_name_the_same_statements() -> None:
    assert set(POSTGRES) - set(SQLITE) == POSTGRES_ONLY
    assert set(SQLITE) - set(POSTGRES) == SQLITE_ONLY


@pytest.mark.parametrize("queries", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
def test_every_status_condition_of_a_write_comes_from_the_lifecycle_table(
    queries: Mapping[str, str],
) -> None:
    conditions = {
        "claim": Verb.CLAIM,
        "finish": Verb.FINISH,
        "retry": Verb.RETRY,
        "release": Verb.RELEASE,
        "recover_cancelled": Verb.RECOVER,
        "recover_failed": Verb.RECOVER,
        "recover_queued": Verb.RECOVER,
        "cancel": Verb.CANCEL,
        "cancel_batch": Verb.CANCEL,
        "delete": Verb.DELETE,
        "purge_tasks": Verb.DELETE,
    }
    if "claim_turns" in queries:
        conditions["claim_turns"] = Verb.CLAIM
    for name, verb in conditions.items():
        allowed = ", ".join(f"'{status.value}'" for status in sources(verb))
        assert re.findall(r"status IN \(([^)]*)\)", queries[name]) == [allowed], name
    left = re.findall(r"\{(\w*)\}?", "".join(queries.values()))
    assert set(left) <= CALL_SLOTS, "a slot left unfilled"


def test_a_file_is_read_by_name_with_its_descriptions_left_out() -> None:
    text = """-- a file's header
-- name: first
-- what it does
SELECT {columns} FROM tasks WHERE status IN ({delete})

-- name: second
DELETE FROM tasks WHERE {matching}
"""
    queries = parse(text, fills())
    assert list(queries) == ["first", "second"]
    assert queries["first"].startswith("SELECT id, type, status")
    assert queries["first"].endswith("status IN ('cancelled', 'failed', 'succeeded')")
    assert queries["second"] == "DELETE FROM tasks WHERE {matching}"


@pytest.mark.parametrize(
    "text, error",
    [
        ("-- name: a\nSELECT {nothing}", "unknown slot"),
        ("-- name: a\nSELECT 1\n-- name: a\nSELECT 2", "named twice"),
    ],
)
def test_a_mistake_in_a_file_is_an_error_at_load(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse(text, fills())


def test_a_migration_runs_as_written_whatever_the_slots_become() -> None:
    text = "-- name: 9\n-- A later step.\nALTER TABLE t ADD COLUMN c TEXT DEFAULT '{columns}'"
    assert parse(text, None) == {"9": "ALTER TABLE t ADD COLUMN c TEXT DEFAULT '{columns}'"}
    assert "{columns}" not in parse(text, fills())["9"], "a query's slots are filled"
