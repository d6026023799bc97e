"""Callbacks: what sending every task's end costs the throughput, and how late it arrives.

    python -m bench.callbacks [--tasks 5000] [--store sqlite|postgres] [--worker-processes N]
                              [--pg-url URL] [--probe-seconds 2] [--rounds 1]

Two runs of ``taskapi serve`` with its own defaults, each on a fresh store (a SQLite file, or a
PostgreSQL schema ``bench_callbacks_<pid>_<run>`` dropped after), both started with the same
TASKS_CALLBACK_HOSTS and TASKS_WEBHOOK_SECRET:

1. **control**: N ``add`` tasks submitted as batches of 1 000 (``POST /batches``) without a
   ``callback_url``; N over the time from the first submit to the last task's end (the
   batches' ``finished_at``, long-polled with ``GET /batches/{id}?wait=30``).
2. **with callbacks**: the same N tasks, each with a ``callback_url`` to a receiver; N over
   the time from the first submit to the last first receipt of a delivery. Also the delivery
   latency (receipt minus the event's ``timestamp``, the task's end), the duplicates (a
   ``webhook-id`` twice) and a sample of signatures checked against the secret.

The receiver is a process of its own (asyncio streams, answers ``204`` at once, keeps a
connection alive when the client does) that records each request and hands the records back
at the end through a pipe. Before the runs it is measured alone: requests per second from
clients that, like the sender, open a connection per request; if that is near the delivered
rate, the receiver limited the figure. ``--rounds R`` alternates R pairs of runs and shows the
pair with the median ratio (on a shared machine, noise moves one run of a pair, not both).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import math
import multiprocessing
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection as Pipe
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, NamedTuple

from bench.burndown import DEFAULT_PG_URL, pg_url, postgres_answers
from bench.loadgen import Connection, HttpError
from bench.servers import start_taskapi

DEFAULT_TASKS = 5000
BATCH = 1000
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOOK_PATH = "/hook"
#: How long a long-poll of a batch holds (the API's longest is 30 s).
WAIT_SECONDS = 30
#: The longest a run may take, submit to the last delivery.
TIMEOUT_SECONDS = 600
#: How many received deliveries have their signature checked (chosen at random).
SIGNATURES_CHECKED = 200
#: The receiver alone: how long, and from how many clients at once.
PROBE_SECONDS = 2.0
PROBE_CLIENTS = 16
#: taskapi refuses a submit past TASKS_MAX_QUEUED (api/config.py's default); raised only when
#: --tasks is larger, as bench/bulk.py does.
DEFAULT_MAX_QUEUED = 10_000


class Hit(NamedTuple):
    """One request the receiver got."""

    webhook_id: str
    webhook_timestamp: str
    signature: str
    #: time.time() once the whole request was read.
    at: float
    body: bytes


# -- the receiver, a process of its own ---------------------------------------------------------

_NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
_NO_CONTENT_CLOSE = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"


def _receive(control: Pipe, unique: Synchronized[int]) -> None:
    """The receiver process: serve until told to stop on ``control``."""
    asyncio.run(_serve(control, unique))


async def _serve(control: Pipe, unique: Synchronized[int]) -> None:
    hits: list[Hit] = []
    seen: set[str] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers: dict[bytes, bytes] = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                webhook_id = headers.get(b"webhook-id", b"").decode()
                hits.append(
                    Hit(
                        webhook_id,
                        headers.get(b"webhook-timestamp", b"").decode(),
                        headers.get(b"webhook-signature", b"").decode(),
                        time.time(),
                        body,
                    )
                )
                if webhook_id not in seen:
                    seen.add(webhook_id)
                    unique.value = len(seen)
                if headers.get(b"connection", b"").lower() == b"close":
                    writer.write(_NO_CONTENT_CLOSE)
                    await writer.drain()
                    return
                writer.write(_NO_CONTENT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return
        finally:
            writer.close()

    stop = asyncio.Event()

    def command() -> None:
        if control.recv() == "take":
            control.send((list(hits), time.process_time()))
            hits.clear()
            seen.clear()
            unique.value = 0
        else:
            stop.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    control.send(server.sockets[0].getsockname()[1])
    asyncio.get_running_loop().add_reader(control.fileno(), command)
    async with server:
        await stop.wait()


class Receiver:
    """The receiver process, seen from the bench: its port, its count, its records."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._control, theirs = context.Pipe()
        self._unique = context.Value("i", 0)
        self._process = context.Process(
            target=_receive, args=(theirs, self._unique), name="bench-receiver", daemon=True
        )
        self._process.start()
        self.port: int = self._control.recv()
        self.url = f"http://127.0.0.1:{self.port}{HOOK_PATH}"
        self.hosts = f"127.0.0.1:{self.port}"

    @property
    def unique(self) -> int:
        """How many webhook-ids came since the last ``take``."""
        return int(self._unique.value)

    def take(self) -> tuple[list[Hit], float]:
        """What came since the last ``take`` (then forgotten), and the receiver's CPU seconds
        so far."""
        self._control.send("take")
        hits, cpu = self._control.recv()
        return hits, cpu

    def stop(self) -> None:
        self._control.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.stop()


async def probe(port: int, seconds: float, clients: int = PROBE_CLIENTS) -> float:
    """The receiver alone: requests per second from ``clients`` clients that, like the sender,
    send a delivery-sized POST with ``Connection: close``, one per connection."""
    body = b'{"type":"task.succeeded","data":{' + b'"x":"' + b"y" * 900 + b'"}}'
    head = (
        f"POST {HOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
        "webhook-timestamp: 0\r\nwebhook-signature: v1,x\r\n"
        f"Content-Length: {len(body)}\r\n"
    ).encode()
    done = 0
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head + f"webhook-id: probe-{n}-{done}\r\n\r\n".encode() + body)
            answer = await reader.read()
            writer.close()
            if not answer.startswith(b"HTTP/1.1 204"):
                raise HttpError(f"the receiver answered {answer[:40]!r}")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return done / (time.perf_counter() - started)


# -- the runs -----------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    tasks: int
    #: time.time() before the first submit, and once the last batch was accepted.
    started: float
    submitted: float
    #: The last task's end (the batches' finished_at).
    ended: float
    not_succeeded: int
    hits: list[Hit]
    receiver_cpu: float = 0.0

    @property
    def ended_per_second(self) -> float:
        return self.tasks / (self.ended - self.started)

    def first_receipts(self) -> dict[str, Hit]:
        first: dict[str, Hit] = {}
        for hit in sorted(self.hits, key=lambda h: h.at):
            first.setdefault(hit.webhook_id, hit)
        return first

    @property
    def delivered_at(self) -> float:
        return max(hit.at for hit in self.first_receipts().values())

    @property
    def delivered_per_second(self) -> float:
        return self.tasks / (self.delivered_at - self.started)


def batch_bodies(tasks: int, callback_url: str | None) -> list[bytes]:
    """The batches of ``tasks`` ``add`` tasks, each 1 000 at most, encoded once."""
    extra = {} if callback_url is None else {"callback_url": callback_url}
    items = [{"type": "add", "params": {"x": n, "y": 2}, **extra} for n in range(tasks)]
    return [json.dumps({"tasks": items[at : at + BATCH]}).encode() for at in range(0, tasks, BATCH)]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def until_done(port: int, batch_id: str) -> dict[str, Any]:
    """The batch once every one of its tasks has ended (long-polled)."""
    conn = Connection("127.0.0.1", port)
    try:
        while True:
            response = await conn.request("GET", f"/batches/{batch_id}?wait={WAIT_SECONDS}")
            if response.status != 200:
                raise HttpError(f"GET /batches answered {response.status}")
            batch: dict[str, Any] = response.json()
            if batch["done"]:
                return batch
    finally:
        conn.close()


async def submit_and_wait(
    port: int, bodies: list[bytes]
) -> tuple[float, float, list[dict[str, Any]]]:
    """Submit the batches one after the other, then long-poll each until done: (time before
    the first submit, time after the last, the batches done)."""
    conn = Connection("127.0.0.1", port)
    ids: list[str] = []
    started = time.time()
    try:
        for body in bodies:
            response = await conn.request("POST", "/batches", body)
            if response.status != 202:
                raise HttpError(
                    f"POST /batches answered {response.status}: {response.body[:300]!r}"
                )
            ids.append(response.json()["id"])
    finally:
        conn.close()
    submitted = time.time()
    batches = await asyncio.gather(*(until_done(port, batch_id) for batch_id in ids))
    return started, submitted, list(batches)


@contextmanager
def fresh_store(kind: str, base_url: str, work: Path, name: str) -> Iterator[dict[str, str]]:
    """An empty store for one run: the server's TASKS_DATABASE_URL."""
    if kind == "sqlite":
        yield {"TASKS_DATABASE_URL": f"sqlite:///{work / name}.db"}
        return
    import psycopg

    from api.store.postgres import PostgresStore

    schema = f"bench_callbacks_{os.getpid()}_{name.replace('-', '_')}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    url = pg_url(base_url, schema)
    try:
        PostgresStore(url).close()  # migrated once, before the server's processes start
        yield {"TASKS_DATABASE_URL": url}
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def run(
    name: str,
    args: argparse.Namespace,
    receiver: Receiver,
    work: Path,
    *,
    callbacks: bool,
) -> Run:
    """One run on a fresh server and store: submit, wait for every task (and, with
    ``callbacks``, every delivery), stop the server."""
    env = {"TASKS_CALLBACK_HOSTS": receiver.hosts, "TASKS_WEBHOOK_SECRET": SECRET}
    if args.tasks > DEFAULT_MAX_QUEUED:
        env["TASKS_MAX_QUEUED"] = str(args.tasks)
    bodies = batch_bodies(args.tasks, receiver.url if callbacks else None)
    with fresh_store(args.store, args.pg_url, work, name) as store_env:
        server = start_taskapi(
            work / f"{name}.db",
            worker_processes=args.worker_processes,
            env={**env, **store_env},
            log=work / f"{name}.log",
        )
        try:
            _, cpu_before = receiver.take()  # nothing before this run counts
            started, submitted, batches = asyncio.run(submit_and_wait(server.port, bodies))
            deadline = time.monotonic() + TIMEOUT_SECONDS
            while callbacks and receiver.unique < args.tasks:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{name}: {receiver.unique} of {args.tasks} deliveries after "
                        f"{TIMEOUT_SECONDS} s; see {work / name}.log"
                    )
                time.sleep(0.05)
            hits, cpu = receiver.take()
        finally:
            server.stop()
    ended = max(_epoch(batch["finished_at"]) for batch in batches)
    succeeded = sum(batch["counts"]["succeeded"] for batch in batches)
    not_succeeded = args.tasks - succeeded
    return Run(name, args.tasks, started, submitted, ended, not_succeeded, hits, cpu - cpu_before)


# -- what came --------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (sorted)."""
    return values[max(math.ceil(fraction * len(values)) - 1, 0)]


def verify(hit: Hit, key: bytes) -> bool:
    """Whether ``hit``'s ``webhook-signature`` holds a ``v1`` HMAC-SHA256 of
    ``{id}.{timestamp}.{body}`` with ``key`` (Standard Webhooks)."""
    content = f"{hit.webhook_id}.{hit.webhook_timestamp}.".encode() + hit.body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(part.partition(",")[2], expected)
        for part in hit.signature.split()
        if part.startswith("v1,")
    )


@dataclass
class Deliveries:
    latencies: list[float]
    duplicates: int
    checked: int
    bad_signatures: int
    #: Events that are not a succeeded task's end, in a body that is not what was promised.
    wrong: list[str]


def examine(result: Run) -> Deliveries:
    first = result.first_receipts()
    latencies: list[float] = []
    wrong: list[str] = []
    for hit in first.values():
        event = json.loads(hit.body)
        latencies.append(hit.at - _epoch(event["timestamp"]))
        data = event.get("data", {})
        if (
            event.get("type") != "task.succeeded"
            or data.get("status") != "succeeded"
            or not data.get("finished_at")
        ):
            wrong.append(hit.webhook_id)
    latencies.sort()
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    sample = random.Random(20).sample(result.hits, min(SIGNATURES_CHECKED, len(result.hits)))
    bad = sum(not verify(hit, key) for hit in sample)
    return Deliveries(latencies, len(result.hits) - len(first), len(sample), bad, wrong)


def report(
    args: argparse.Namespace,
    control: Run,
    called: Run,
    deliveries: Deliveries,
    probe_rate: float,
) -> str:
    delivered = called.delivered_per_second
    receiver_share = called.receiver_cpu / (called.delivered_at - called.started)
    lat = deliveries.latencies
    ms = {q: percentile(lat, q) * 1000 for q in (0.5, 0.95, 0.99, 1.0)}
    rows = [
        ("tasks ended (tasks/s)", control.ended_per_second, called.ended_per_second),
        ("callbacks delivered (tasks/s)", None, delivered),
        ("delivery latency p50 (ms)", None, ms[0.5]),
        ("delivery latency p95 (ms)", None, ms[0.95]),
        ("delivery latency p99 (ms)", None, ms[0.99]),
        ("delivery latency max (ms)", None, ms[1.0]),
    ]
    workers = "default" if args.worker_processes is None else args.worker_processes
    lines = [
        f"callbacks bench: {args.tasks:,} add tasks in batches of {BATCH:,}, "
        f"{'SQLite' if args.store == 'sqlite' else 'PostgreSQL'}, taskapi serve's defaults "
        f"(worker processes: {workers}), {os.cpu_count()} CPUs",
        "",
        f"| {'figure':32} | {'control':>9} | {'callbacks':>9} | {'ratio':>6} |",
        f"|{'-' * 34}|{'-' * 11}|{'-' * 11}|{'-' * 8}|",
    ]
    for figure, without, with_ in rows:
        ratio = "" if without is None else f"{with_ / without:6.2f}"
        ref = "" if without is None else f"{without:9.1f}"
        lines.append(f"| {figure:32} | {ref:>9} | {with_:9.1f} | {ratio:>6} |")
    lines += [
        f"| {'delivered / control':32} | {'':>9} | {'':>9} | "
        f"{delivered / control.ended_per_second:6.2f} |",
        "",
        f"- the cost of callbacks: {delivered:,.0f} tasks/s delivered against "
        f"{control.ended_per_second:,.0f} tasks/s ended without callbacks "
        f"(ratio {delivered / control.ended_per_second:.2f}); with callbacks the tasks themselves "
        f"ended at {called.ended_per_second:,.0f}/s and the last delivery came "
        f"{called.delivered_at - called.ended:.2f} s after the last task's end",
        f"- deliveries: {len(lat):,} of {args.tasks:,} webhook-ids, {deliveries.duplicates} "
        f"duplicates, {deliveries.checked - deliveries.bad_signatures} of {deliveries.checked} "
        f"signatures sampled verify, {len(deliveries.wrong)} events not a succeeded task's end; "
        f"{control.not_succeeded + called.not_succeeded} tasks not succeeded",
        f"- the receiver alone took {probe_rate:,.0f} requests/s (a connection each, from "
        f"{PROBE_CLIENTS} Python clients: a floor of what it takes), "
        f"{probe_rate / delivered:.1f}x the delivered rate; during the run it used "
        f"{receiver_share:.0%} of a CPU",
        f"- submitting the batches took {control.submitted - control.started:.2f} s (control) "
        f"and {called.submitted - called.started:.2f} s (callbacks)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--pg-url", default=os.environ.get("TASKS_TEST_DATABASE_URL", DEFAULT_PG_URL)
    )
    parser.add_argument(
        "--worker-processes", type=int, default=None, help="taskapi serve's default unless given"
    )
    parser.add_argument("--probe-seconds", type=float, default=PROBE_SECONDS)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="control and callbacks runs, alternated; the table shows the median round",
    )
    args = parser.parse_args()
    if args.store == "postgres" and (why := postgres_answers(args.pg_url)):
        parser.exit(1, f"PostgreSQL at {args.pg_url} does not answer: {why}\n")
    work = Path(tempfile.mkdtemp(prefix="taskapi-callbacks-"))
    rounds: list[tuple[Run, Run, Deliveries]] = []
    with receiving() as receiver:
        probe_rate = asyncio.run(probe(receiver.port, args.probe_seconds))
        for n in range(args.rounds):
            control = run(f"control-{n}", args, receiver, work, callbacks=False)
            called = run(f"callbacks-{n}", args, receiver, work, callbacks=True)
            rounds.append((control, called, examine(called)))
    # A shared machine's noise moves one run of a pair, not both: the median of the ratios.
    rounds.sort(key=lambda r: r[1].delivered_per_second / r[0].ended_per_second)
    print(report(args, *rounds[len(rounds) // 2], probe_rate))
    if len(rounds) > 1:
        ratios = ", ".join(
            f"{c.delivered_per_second / k.ended_per_second:.2f}" for k, c, _ in rounds
        )
        print(f"- delivered / control of each round, sorted: {ratios}")
    print(f"- logs: {work}")
    for control, called, deliveries in rounds:
        if (
            deliveries.bad_signatures
            or deliveries.wrong
            or control.not_succeeded + called.not_succeeded
        ):
            raise SystemExit("callbacks bench: a delivery or a task is not what it should be")


if __name__ == "__main__":
    main()
