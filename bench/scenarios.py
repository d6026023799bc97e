"""The figures: each drives one server through the load generator and returns what it saw."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime

from bench.loadgen import Connection, HttpError, LoadResult, closed_loop

CLIENTS = 16
ADD = {"type": "add", "params": {"x": 1, "y": 2}}
TERMINAL = {"succeeded", "failed", "cancelled"}
OBSERVE_WAIT_SECONDS = 30


def connections(port: int, n: int = CLIENTS) -> list[Connection]:
    return [Connection("127.0.0.1", port) for _ in range(n)]


def close_all(conns: list[Connection]) -> None:
    for conn in conns:
        conn.close()


async def submit_load(port: int, seconds: float, clients: int = CLIENTS) -> LoadResult:
    """Keep-alive clients (16) submitting `add` tasks back to back."""
    conns = connections(port, clients)
    try:
        return await closed_loop(
            conns, lambda c: c.request("POST", "/tasks", ADD), seconds=seconds, expect=202
        )
    finally:
        close_all(conns)


#: The size of a batch of the bulk submit figure, and the clients that send batches at once.
BULK_BATCH = 1000
BULK_CLIENTS = 8
#: The bulk figure's server takes a backlog far past TASKS_MAX_QUEUED's default (10 000).
BULK_ENV = {"TASKS_MAX_QUEUED": "100000000"}


async def bulk_submit(port: int, seconds: float, clients: int = BULK_CLIENTS) -> float:
    """Keep-alive clients (8: enough to keep every API process busy) submitting batches of
    1 000 `add` tasks back to back (``POST /batches``): tasks accepted per second."""
    body = json.dumps(
        {"tasks": [{"type": "add", "params": {"x": n, "y": 2}} for n in range(BULK_BATCH)]}
    ).encode()
    conns = connections(port, clients)
    try:
        result = await closed_loop(
            conns, lambda c: c.request("POST", "/batches", body), seconds=seconds, expect=202
        )
    finally:
        close_all(conns)
    if result.errors:
        raise HttpError(f"bulk submit: {result.errors} batches were refused")
    return len(result.latencies) * BULK_BATCH / result.seconds


async def submit_ids(port: int, n: int) -> list[str]:
    """Submit n tasks (16 clients); their ids."""
    conns = connections(port)
    ids: list[str] = []

    async def client(conn: Connection, share: int) -> None:
        for _ in range(share):
            ids.append((await conn.request("POST", "/tasks", ADD)).json()["id"])

    try:
        await asyncio.gather(*(client(c, n // len(conns) + (i < n % len(conns)))
                               for i, c in enumerate(conns)))  # fmt: skip
    finally:
        close_all(conns)
    return ids


async def status_load(
    port: int, ids: list[str], seconds: float, clients: int = CLIENTS
) -> LoadResult:
    """Keep-alive clients (16) reading tasks, each a random one of ``ids``."""
    conns = connections(port, clients)
    pick = random.Random(7).choice
    try:
        return await closed_loop(
            conns, lambda c: c.request("GET", f"/tasks/{pick(ids)}"), seconds=seconds, expect=200
        )
    finally:
        close_all(conns)


@dataclass
class Drain:
    tasks: int
    seconds: float
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.tasks / self.seconds


#: The pause between two reads of a task that is not done yet, when a client polls.
POLL_SECONDS = 0.01


async def drain(port: int, tasks: int, *, long_poll: bool = True) -> Drain:
    """Submit `tasks` tasks with 16 clients while 16 more observe each one done.

    An observer reads the task until it is terminal: with ``wait`` (taskapi's long-poll; the
    bare app answers it done at once) or, with ``long_poll=False``, plainly every 10 ms, as most
    generated clients do. The figure is the time from the first submit to the last task seen done.
    """
    submitters, observers = connections(port), connections(port)
    pending: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    query = f"?wait={OBSERVE_WAIT_SECONDS}" if long_poll else ""

    async def submit(conn: Connection, share: int) -> None:
        for _ in range(share):
            sent = time.perf_counter()
            response = await conn.request("POST", "/tasks", ADD)
            if response.status != 202:
                raise HttpError(f"submit answered {response.status}: {response.body[:200]!r}")
            pending.put_nowait((response.json()["id"], sent))

    async def observe(conn: Connection) -> None:
        while (item := await pending.get()) is not None:
            task_id, sent = item
            while True:
                response = await conn.request("GET", f"/tasks/{task_id}{query}")
                if response.json()["status"] in TERMINAL:
                    break
                if not long_poll:
                    await asyncio.sleep(POLL_SECONDS)
            latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    watching = [asyncio.ensure_future(observe(c)) for c in observers]
    try:
        share = [tasks // CLIENTS + (i < tasks % CLIENTS) for i in range(CLIENTS)]
        await asyncio.gather(*(submit(c, n) for c, n in zip(submitters, share, strict=True)))
        for _ in observers:
            pending.put_nowait(None)
        await asyncio.gather(*watching)
    finally:
        close_all(submitters + observers)
    return Drain(tasks, time.perf_counter() - started, latencies)


@dataclass
class Single:
    round_trips: list[float]
    to_start: list[float]


#: The pause before each task of the idle figures: the workers are waiting, and the machine is
#: idle. An idle machine answers more slowly (its CPUs and caches have gone cold): here the bare
#: round trip takes about 0.6 ms back to back and 0.8 to 1.3 ms after such a pause.
IDLE_PAUSE_SECONDS = 0.02


async def idle(
    taskapi_port: int, bare_port: int, samples: int, pause: float = IDLE_PAUSE_SECONDS
) -> tuple[Single, Single]:
    """One task at a time on idle servers: (taskapi, bare).

    taskapi, submit to observed done: ``POST /tasks`` with ``Prefer: wait=5``, answered once the
    task ended; submit to start: the task's ``started_at`` less the moment the submit was sent
    (one clock: both sides are on this machine). The bare app, the round trip of submit then
    done: POST, then GET. The two alternate, each after the same pause, so that both meet the
    machine in the same state: run one after the other, their medians drifted apart by more
    than the difference being measured.
    """
    ours, bare = Connection("127.0.0.1", taskapi_port), Connection("127.0.0.1", bare_port)
    taskapi, reference = Single([], []), Single([], [])
    try:
        for _ in range(samples):
            await asyncio.sleep(pause)
            trip, to_start = await _taskapi_trip(ours)
            taskapi.round_trips.append(trip)
            taskapi.to_start.append(to_start)
            await asyncio.sleep(pause)
            reference.round_trips.append(await _bare_trip(bare))
    finally:
        close_all([ours, bare])
    return taskapi, reference


async def _taskapi_trip(conn: Connection) -> tuple[float, float]:
    """(submit to observed done, submit to start) of one task, in seconds."""
    sent_wall, sent = time.time(), time.perf_counter()
    response = await conn.request("POST", "/tasks", ADD, headers={"Prefer": "wait=5"})
    trip = time.perf_counter() - sent
    body = response.json()
    if response.status != 200 or body["status"] != "succeeded":
        raise HttpError(f"Prefer: wait gave {response.status} {body.get('status')}")
    started = datetime.fromisoformat(body["started_at"].replace("Z", "+00:00"))
    return trip, started.timestamp() - sent_wall


async def _bare_trip(conn: Connection) -> float:
    """The bare app's POST then GET, in seconds."""
    sent = time.perf_counter()
    task_id = (await conn.request("POST", "/tasks", ADD)).json()["id"]
    await conn.request("GET", f"/tasks/{task_id}")
    return time.perf_counter() - sent


#: How often a peer's idle client reads its task until it is done (peers have no long-poll).
PEER_IDLE_POLL_SECONDS = 0.001


async def peer_idle(port: int, samples: int, pause: float = IDLE_PAUSE_SECONDS) -> list[float]:
    """One task at a time on an idle peer: POST, then GET every 1 ms until done; seconds each."""
    conn = Connection("127.0.0.1", port)
    trips: list[float] = []
    try:
        for _ in range(samples):
            await asyncio.sleep(pause)
            sent = time.perf_counter()
            task_id = (await conn.request("POST", "/tasks", ADD)).json()["id"]
            while (await conn.request("GET", f"/tasks/{task_id}")).json()["status"] not in TERMINAL:
                await asyncio.sleep(PEER_IDLE_POLL_SECONDS)
            trips.append(time.perf_counter() - sent)
    finally:
        conn.close()
    return trips


async def until_done(port: int, timeout: float = 60) -> None:
    """Submit one task and poll it until done: the service's workers are up and working."""
    conn = Connection("127.0.0.1", port)
    deadline = time.monotonic() + timeout
    try:
        task_id = (await conn.request("POST", "/tasks", ADD)).json()["id"]
        while (await conn.request("GET", f"/tasks/{task_id}")).json()["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"a first task was not done within {timeout} s")
            await asyncio.sleep(0.05)
    finally:
        conn.close()


async def queued_and_running(port: int) -> int:
    """Tasks not yet ended, from the API (X-Pagination's total)."""
    conn = Connection("127.0.0.1", port)
    try:
        response = await conn.request("GET", "/tasks?status=queued&status=running&page_size=1")
    finally:
        conn.close()
    return int(json.loads(response.headers["x-pagination"])["total"])


async def settle(port: int, timeout: float = 300) -> None:
    """Wait until every submitted task has ended."""
    deadline = time.monotonic() + timeout
    while await queued_and_running(port):
        if time.monotonic() > deadline:
            raise TimeoutError("tasks were still queued or running")
        await asyncio.sleep(0.2)
