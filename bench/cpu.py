"""CPU-bound tasks: ``spin`` (bench/tasks.py) on a server started with TASKS_IMPORT=bench.tasks.

Four tasks of one second of pure-Python CPU each: the wall time from the first submit to the
last one seen done (process isolation on 2 cores: about 2 s; on worker threads, under one GIL:
about 4 s). And the latency of ``GET /health`` while two of them run: the API must stay prompt.
"""

from __future__ import annotations

import asyncio
import time

from bench.loadgen import Connection, HttpError
from bench.scenarios import OBSERVE_WAIT_SECONDS, TERMINAL, close_all
from bench.tasks import ISOLATION_FALLBACK_NOTE

SPIN_SECONDS = 1.0
HEALTH_PAUSE_SECONDS = 0.005
#: How long /health is read once both tasks run: well within their one second.
HEALTH_SAMPLE_SECONDS = 0.6


def spin_body(seconds: float = SPIN_SECONDS) -> dict[str, object]:
    return {"type": "spin", "params": {"seconds": seconds}}


async def isolation(port: int) -> str:
    """Which isolation ``spin`` runs with on this server, from ``GET /task-types``."""
    conn = Connection("127.0.0.1", port)
    try:
        types = (await conn.request("GET", "/task-types")).json()
    finally:
        conn.close()
    spin = next((t for t in types if t.get("name") == "spin"), None)
    if spin is None:
        raise HttpError("the server has no spin task type: is TASKS_IMPORT=bench.tasks set?")
    if ISOLATION_FALLBACK_NOTE in spin.get("description", ""):
        return "thread (fallback)"
    return str(spin.get("isolation", "process"))


async def _submit(conn: Connection) -> str:
    response = await conn.request("POST", "/tasks", spin_body())
    if response.status != 202:
        raise HttpError(f"spin submit answered {response.status}: {response.body[:200]!r}")
    return str(response.json()["id"])


async def _until(conn: Connection, task_id: str, statuses: set[str], wait: bool) -> str:
    query = f"?wait={OBSERVE_WAIT_SECONDS}" if wait else ""
    while True:
        status = str((await conn.request("GET", f"/tasks/{task_id}{query}")).json()["status"])
        if status in statuses or status in TERMINAL:
            return status
        if not wait:
            await asyncio.sleep(HEALTH_PAUSE_SECONDS)


async def spin_wall(port: int, tasks: int = 4) -> float:
    """Seconds from submitting `tasks` spins at once to seeing the last one done."""
    conns = [Connection("127.0.0.1", port) for _ in range(tasks)]

    async def one(conn: Connection) -> None:
        task_id = await _submit(conn)
        if await _until(conn, task_id, set(), wait=True) != "succeeded":
            raise HttpError(f"spin task {task_id} did not succeed")

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(c) for c in conns))
    finally:
        close_all(conns)
    return time.perf_counter() - started


async def health_while_spinning(port: int, tasks: int = 2) -> list[float]:
    """``GET /health`` latencies (seconds), one every 5 ms, while `tasks` spins run."""
    conns = [Connection("127.0.0.1", port) for _ in range(tasks)]
    health = Connection("127.0.0.1", port)
    latencies: list[float] = []
    try:
        ids = [await _submit(c) for c in conns]
        for conn, task_id in zip(conns, ids, strict=True):
            await _until(conn, task_id, {"running"}, wait=False)
        until = time.perf_counter() + HEALTH_SAMPLE_SECONDS
        while (sent := time.perf_counter()) < until:
            response = await health.request("GET", "/health")
            if response.status != 200:
                raise HttpError(f"/health answered {response.status}")
            latencies.append(time.perf_counter() - sent)
            await asyncio.sleep(HEALTH_PAUSE_SECONDS)
        for conn, task_id in zip(conns, ids, strict=True):
            await _until(conn, task_id, set(), wait=True)
    finally:
        close_all([*conns, health])
    return latencies
