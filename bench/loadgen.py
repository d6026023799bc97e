"""A small HTTP/1.1 load generator: keep-alive connections on asyncio, nothing else.

It speaks just enough HTTP for the two servers the benchmark starts (responses carry a
Content-Length), so the client's own cost stays small and the same for both.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


class HttpError(Exception):
    """The server broke the connection or answered something this client cannot read."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        reader, writer = await self._open()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.extra}"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        payload = b""
        if body is not None:  # JSON bytes as they are (a large body encoded once), or a value
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        writer.write(head.encode() + b"\r\n" + payload)
        try:
            status_line = await reader.readline()
            if not status_line:
                raise HttpError(f"{method} {path}: the server closed the connection")
            status = int(status_line.split(b" ", 2)[1])
            response_headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                response_headers[name.strip().lower()] = value.strip()
            length = int(response_headers.get("content-length", "0"))
            content = await reader.readexactly(length) if length else b""
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as error:
            self.close()
            raise HttpError(f"{method} {path}: {error}") from error
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, response_headers, content)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass
class LoadResult:
    """What a closed-loop run did: requests completed, seconds, and each one's latency."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def closed_loop(
    connections: list[Connection],
    one: Callable[[Connection], Awaitable[Response]],
    *,
    seconds: float,
    expect: int,
) -> LoadResult:
    """Each connection sends its next request as soon as the last is answered, for `seconds`."""
    result = LoadResult(seconds=seconds)
    deadline = time.perf_counter() + seconds

    async def client(conn: Connection) -> None:
        while (started := time.perf_counter()) < deadline:
            response = await one(conn)
            if response.status != expect:
                result.errors += 1
                continue
            result.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(conn) for conn in connections))
    result.seconds = time.perf_counter() - started
    return result


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))
    return ordered[rank]
