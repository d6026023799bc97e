"""PostgreSQL's pool: a connection the server dropped while it rested is replaced, not used."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from api.store.postgres import CHECK_AFTER_REST_SECONDS, PostgresStore
from tests.conftest import postgres_schema_url


@pytest.fixture
def named_url() -> Iterator[tuple[str, str]]:
    base = os.environ.get("TASKS_TEST_DATABASE_URL")
    if not base:
        pytest.skip("TASKS_TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    name = f"taskapi_test_{uuid.uuid4().hex[:8]}"
    for url in postgres_schema_url(base):
        yield f"{url}&application_name={name}", name


def test_a_connection_dropped_while_it_rested_is_replaced(named_url: tuple[str, str]) -> None:
    import psycopg

    url, name = named_url
    store = PostgresStore(url)
    try:
        now = datetime.now(UTC)
        assert store.get(str(uuid.uuid4()), now) is None
        time.sleep(CHECK_AFTER_REST_SECONDS + 0.2)
        with psycopg.connect(url.split("?")[0], autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            ).fetchone()
        assert dropped is not None and dropped[0] >= 1
        assert store.get(str(uuid.uuid4()), now) is None  # checked, replaced, answered
    finally:
        store.close()


def test_a_submit_aborted_to_break_a_deadlock_runs_again(named_url: tuple[str, str]) -> None:
    """A submit that locks the tasks it depends on may meet a cancel down a chain in a
    deadlock; PostgreSQL aborts one of the two, and the submit's transaction runs again."""
    import psycopg

    from api.store.sql import SUBMIT_ATTEMPTS

    store = PostgresStore.from_url(named_url[0])
    try:
        tries: list[int] = []

        def deadlocking(times: int) -> Callable[[object], str]:
            def work(db: object) -> str:
                tries.append(1)
                if len(tries) <= times:
                    raise psycopg.errors.DeadlockDetected("deadlock detected")
                return "done"

            return work

        assert store._submit(deadlocking(SUBMIT_ATTEMPTS - 1), None) == "done"
        tries.clear()
        with pytest.raises(psycopg.errors.DeadlockDetected):
            store._submit(deadlocking(SUBMIT_ATTEMPTS), None)
        assert len(tries) == SUBMIT_ATTEMPTS
    finally:
        store.close()
