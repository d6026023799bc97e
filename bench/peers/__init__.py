"""The peers: minimal Flask apps over Celery, Huey and RQ, with the endpoints the bench uses.

Each module serves ``POST /tasks`` (``{"type": "add", "params": {"x": 1, "y": 2}}`` → 202
``{"id", "status"}``), ``GET /tasks/<id>`` (``{"id", "status", "result"}``, the status mapped to
queued/running/succeeded/failed) and ``GET /ready``, reads its task's state from its library's
own result backend, and is served as the bench serves every reference app: gunicorn gthread,
2 processes x 8 threads. Each peer's worker runs as its docs say. None offers ``?wait=``: their
clients poll.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.servers import Running, on_gunicorn, script

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
WORKER_CONCURRENCY = 4


def redis_url(db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


@dataclass(frozen=True)
class Peer:
    """One peer: its app module, its worker's command, and the Redis database it uses."""

    name: str
    module: str
    worker: Callable[[Path], list[str]]
    redis_db: int | None = None

    def env(self, work: Path) -> dict[str, str]:
        env = {"HUEY_DATABASE": str(work / "huey.db")}
        if self.redis_db is not None:
            env["PEER_REDIS_URL"] = redis_url(self.redis_db)
        return env

    def start(self, work: Path, *, processes: int, threads: int, log: Path) -> Running:
        """Its app on gunicorn and its worker, one service (a fresh Redis database or file)."""
        if self.redis_db is not None:
            import redis

            redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.redis_db).flushdb()
        for leftover in work.glob("huey.db*"):
            leftover.unlink()
        return on_gunicorn(
            self.name,
            f"{self.module}:app",
            processes,
            threads,
            self.env(work),
            log,
            [self.worker(work)],
        )


PEERS = (
    Peer(
        "celery",
        "bench.peers.celery_app",
        lambda work: [
            script("celery"), "-A", "bench.peers.celery_app:celery", "worker",
            "--pool", "threads", "--concurrency", str(WORKER_CONCURRENCY), "--loglevel", "WARNING",
        ],
        redis_db=1,
    ),
    Peer(
        "huey",
        "bench.peers.huey_app",
        lambda work: [
            script("huey_consumer"), "bench.peers.huey_app.huey",
            "-k", "thread", "-w", str(WORKER_CONCURRENCY), "--quiet",
        ],
    ),
    Peer(
        "rq",
        "bench.peers.rq_app",
        lambda work: [
            script("rq"), "worker", "--url", redis_url(3), "--worker-class",
            "rq.worker.SimpleWorker", "--quiet", "bench",
        ],
        redis_db=3,
    ),
)  # fmt: skip


def redis_answers() -> str | None:
    """None when Redis answers on its address; else why not, in one line."""
    try:
        import redis

        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None
