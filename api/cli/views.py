"""How the client commands show tasks: tables and lines, progress bars, one-line outcomes.

rich is imported where it is used, so that ``serve`` and ``worker`` start without it.
"""

from __future__ import annotations

import json
from typing import Any

import click

from api.models import CALLBACK_RETRY_DELAYS

STATUS_STYLES = {
    "queued": "blue",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
}


def make_console(*, stderr: bool) -> Any:
    """A rich Console: the terminal view on a terminal, plain text without control sequences
    elsewhere (rich decides from isatty, TTY_COMPATIBLE, FORCE_COLOR, TERM=dumb, NO_COLOR)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def number_text(value: float) -> str:
    return f"{value:g}"


def progress_count(progress: dict[str, Any] | None) -> str:
    """``current/total`` (or ``current`` when the total is unknown) of a task's progress."""
    if not progress:
        return ""
    total = progress.get("total")
    current = number_text(progress["current"])
    return current if total is None else f"{current}/{number_text(total)}"


def describe_task(task: dict[str, Any]) -> str:
    """What a task is doing, in a few words: its progress message, a retry, or its status."""
    status: str = task["status"]
    error = task.get("error")
    if status == "queued" and task.get("attempts") and error:
        return (
            f"retrying after {error['type']}: {error['message']} (attempt {task['attempts'] + 1})"
        )
    message = (task.get("progress") or {}).get("message")
    if status == "running" and message:
        return " ".join(str(message).split())
    if status == "queued" and task.get("blocked_by"):
        return waiting_text(task)
    return status


def waiting_text(task: dict[str, Any]) -> str:
    """What a task with dependencies waits for: ``waiting for 2 of its 3 dependencies``, or
    ``its 3 dependencies succeeded`` once none blocks it."""
    blocked, total = len(task.get("blocked_by") or ()), len(task.get("depends_on") or ())
    if total == 1:
        return "waiting for its dependency" if blocked else "its dependency succeeded"
    if not blocked:
        return f"its {total} dependencies succeeded"
    return f"waiting for {blocked} of its {total} dependencies"


def dependency_lines(task: dict[str, Any]) -> list[str]:
    """``taskapi status``'s words on a task's batch and dependencies, when it has them: the
    batch it was submitted in, and what it still waits for while it waits."""
    lines = []
    if task.get("batch_id"):
        lines.append(f"in batch {task['batch_id']}")
    if task.get("depends_on") and task["status"] == "queued":
        lines.append(waiting_text(task))
    return lines


#: Attempts a callback gets: the first, then one after each of the server's retry delays.
CALLBACK_ATTEMPTS = len(CALLBACK_RETRY_DELAYS) + 1


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\x1b``, ``\\n``): a callback's URL
    and its receiver's error are other people's strings, and must not move the cursor or
    recolour the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _moment_text(stamp: str | None, now: Any) -> str:
    """A time as ``2026-12-06 14:03:05 (in 4m58s)``, local; ``-`` for none."""
    if not stamp:
        return "-"
    return f"{_local_time(stamp)} ({relative_text(stamp, now)})"


def last_answer_text(delivery: dict[str, Any]) -> str:
    """How the last attempt went: what went wrong, as the server says it (``answered 503
    Service Unavailable``, ``connection refused``), or ``HTTP 204``."""
    status, error = delivery.get("last_status"), delivery.get("last_error")
    if error:
        return printable(str(error)).rstrip(".")
    return f"HTTP {status}" if status is not None else "no answer"


def callback_lines(task: dict[str, Any], now: Any) -> list[str]:
    """A task's callback in words, for stderr: where it goes and how its delivery stands
    (``callback failed: task.succeeded to https://…``, then its attempts, last answer and
    next attempt); nothing for a task without a ``callback_url``."""
    url = task.get("callback_url")
    if not url:
        return []
    target = printable(str(url))
    delivery = task.get("callback")
    if not delivery:
        return [f"callback to {target}: sent when the task ends"]
    state, attempts = str(delivery.get("state")), int(delivery.get("attempts") or 0)
    lines = [f"callback {state}: {printable(str(delivery.get('event')))} to {target}"]
    tries = f"{attempts} attempt{'' if attempts == 1 else 's'}"
    if state == "delivered":
        when = _moment_text(delivery.get("delivered_at"), now)
        lines.append(f"delivered {when} after {tries}: {last_answer_text(delivery)}")
    elif state == "failed":
        lines.append(f"gave up after {tries}: {last_answer_text(delivery)}")
    elif attempts and delivery.get("last_status") is None and not delivery.get("last_error"):
        lines.append(f"attempt {attempts} of {CALLBACK_ATTEMPTS} under way")
    elif attempts:
        last, due = last_answer_text(delivery), _moment_text(delivery.get("next_attempt_at"), now)
        lines.append(
            f"{attempts} of {CALLBACK_ATTEMPTS} attempts made, the last: {last}; next attempt {due}"
        )
    else:
        lines.append(f"first attempt due {_moment_text(delivery.get('next_attempt_at'), now)}")
    return lines


class PlainView:
    """Progress as lines (``1/2 slept 1 of 2s``), for logs and pipes: one per change."""

    def __init__(self) -> None:
        self.last_progress: Any = None
        self.last_retry: Any = None
        self.last_blocked: int | None = None

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, task: dict[str, Any]) -> None:
        progress = task.get("progress")
        if progress and progress != self.last_progress:
            line = f"{progress_count(progress)} {progress.get('message') or ''}"
            click.echo(line.rstrip(), err=True)
            self.last_progress = progress
        retry = (task.get("attempts"), task.get("error"))
        if task["status"] == "queued" and retry[0] and retry[1] and retry != self.last_retry:
            click.echo(describe_task(task), err=True)
            self.last_retry = retry
        if task.get("depends_on") and task["status"] != "cancelled":
            blocked = len(task.get("blocked_by") or ())
            if blocked != self.last_blocked:  # a line as blocked_by shrinks, and when it is empty
                click.echo(waiting_text(task), err=True)
                self.last_blocked = blocked


class LiveView:
    """A rich progress bar on a terminal, redrawn ten times a second and cleared at the end."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn(
                "{task.description}",
                markup=False,  # the text comes from the task: no rich markup in it
                table_column=Column(no_wrap=True, overflow="ellipsis", max_width=50),
            ),
            BarColumn(),  # a pulse while the total is unknown
            TextColumn("{task.fields[count]}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.bar = self.progress.add_task("", total=None, count="")

    def __enter__(self) -> LiveView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, task: dict[str, Any]) -> None:
        progress = task.get("progress") or {}
        self.show(
            describe_task(task),
            progress.get("total"),
            progress.get("current", 0),
            progress_count(progress or None),
        )

    def show(self, description: str, total: float | None, completed: float, count: str) -> None:
        """Redraw the bar: ``description``, ``completed`` of ``total`` (a pulse while None)."""
        self.progress.update(
            self.bar, description=description, total=total, completed=completed, count=count
        )


def outcome(console: Any, task: dict[str, Any], seconds: float) -> None:
    """One line on how the task ended: ``✓ succeeded in 1.2s``, ``✗ failed: Error: text``."""
    from rich.text import Text

    utf = console.encoding.lower().startswith("utf")
    status: str = task["status"]
    if status == "succeeded":
        line = f"{'✓' if utf else 'ok:'} succeeded in {seconds:.1f}s"
    else:
        line = f"{'✗' if utf else 'error:'} {status}"
        attempts = task.get("attempts") or 0
        if status == "failed" and attempts > 1:
            line += f" after {attempts} attempts"
        error = task.get("error")
        if error:  # why it failed; why it was cancelled when it was not asked (DependencyFailed)
            line += f": {error['type']}: {error['message']}"
    console.print(Text(line, style=STATUS_STYLES.get(status, "")))


#: The order a batch's counts are said in: what ended, then what is still to come.
BATCH_STATUSES = ("succeeded", "failed", "cancelled", "running", "queued")
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


def ended_count(batch: dict[str, Any]) -> int:
    """How many of a batch's tasks have ended (deleted and expired ones are not counted)."""
    counts = batch.get("counts") or {}
    return sum(int(counts.get(status, 0)) for status in TERMINAL_STATUSES)


def counts_text(counts: dict[str, Any], statuses: tuple[str, ...] = BATCH_STATUSES) -> str:
    """A batch's counts in words, those that are not 0: ``9 succeeded, 1 failed, 2 running``."""
    return ", ".join(f"{counts[s]} {s}" for s in statuses if counts.get(s))


def _local_time(stamp: str | None) -> str:
    moment = _parse_stamp(stamp)
    return stamp or "" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def batch_summary(batch: dict[str, Any]) -> list[str]:
    """A batch in three lines of at most 80 characters, for stderr: its id, size and whether it
    is done; its tasks by status; when it was created and finished (local time)."""
    size = batch["size"]
    head = f"batch {batch['id']}: {size} task{'' if size == 1 else 's'}, "
    lines = [head + ("done" if batch.get("done") else "not done")]
    lines.append(counts_text(batch.get("counts") or {}) or "its tasks were deleted or expired")
    when = f"created {_local_time(batch.get('created_at'))}"
    created, finished = (
        _parse_stamp(batch.get("created_at")),
        _parse_stamp(batch.get("finished_at")),
    )
    if finished is not None:
        when += f", finished {_local_time(batch['finished_at'])}"
        if created is not None:
            when += f" ({(finished - created).total_seconds():.1f}s)"
    lines.append(when)
    return lines


def describe_batch(batch: dict[str, Any]) -> str:
    """What a batch is doing, for its progress bar: ``4 running, 3 queued, 1 failed``."""
    statuses = ("running", "queued", "failed", "cancelled")
    return counts_text(batch.get("counts") or {}, statuses) or "done"


class BatchPlainView:
    """A batch's progress as lines (``5/12 ended: 5 succeeded, 4 running, 3 queued``), for logs
    and pipes: one per change of its counts."""

    def __init__(self) -> None:
        self.last_counts: Any = None

    def __enter__(self) -> BatchPlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, batch: dict[str, Any]) -> None:
        counts = batch.get("counts")
        if counts != self.last_counts:
            words = counts_text(counts or {})
            line = f"{ended_count(batch)}/{batch['size']} ended"
            click.echo(f"{line}: {words}" if words else line, err=True)
            self.last_counts = counts


class BatchLiveView(LiveView):
    """A batch's progress bar on a terminal: its tasks ended of its size."""

    def update(self, batch: dict[str, Any]) -> None:
        ended, size = ended_count(batch), batch["size"]
        self.show(describe_batch(batch), size, ended, f"{ended}/{size}")


def batch_outcome(console: Any, batch: dict[str, Any], seconds: float) -> bool:
    """One line on how a batch ended: ``✓ 12 succeeded in 3.2s``, or ``✗ 9 of 12 succeeded:
    1 failed, 2 cancelled``; whether every task succeeded."""
    from rich.text import Text

    utf = console.encoding.lower().startswith("utf")
    counts = batch.get("counts") or {}
    succeeded, size = int(counts.get("succeeded", 0)), batch["size"]
    if succeeded == size:
        console.print(Text(f"{'✓' if utf else 'ok:'} {size} succeeded in {seconds:.1f}s", "green"))
        return True
    others = counts_text(counts, ("failed", "cancelled")) or "the others were deleted or expired"
    line = f"{'✗' if utf else 'error:'} {succeeded} of {size} succeeded: {others}"
    console.print(Text(line, style="red" if counts.get("failed") else "yellow"))
    return False


def params_text(schema: dict[str, Any]) -> str:
    """A params schema in one line: required names, then ``[optional=default]`` ones."""
    properties: dict[str, Any] = schema.get("properties") or {}
    required = [name for name in schema.get("required") or () if name in properties]
    words = list(required)
    for name, field in properties.items():
        if name in required:
            continue
        default = field.get("default")
        if isinstance(default, float) and default.is_integer():
            default = int(default)
        words.append(f"[{name}]" if default is None else f"[{name}={json.dumps(default)}]")
    return " ".join(words)


TYPE_HEADERS = ("type", "params", "attempts", "timeout", "isolation", "queue", "description")


def type_cells(task_type: dict[str, Any]) -> tuple[str, ...]:
    """A task type's cells, in the order of TYPE_HEADERS."""
    timeout = task_type.get("timeout_seconds")
    return (
        task_type["name"],
        params_text(task_type.get("params_schema") or {}),
        str(task_type["max_attempts"]),
        "none" if timeout is None else f"{number_text(timeout)}s",
        str(task_type.get("isolation") or "thread"),
        str(task_type.get("queue") or "default"),
        " ".join(str(task_type.get("description") or "").split()),
    )


def created_text(stamp: str) -> str:
    """An API timestamp as month-day hour:minute, in local time."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%m-%d %H:%M")
    except ValueError:
        return stamp


#: ``queue`` comes last so that the columns before it keep their places for scripts
#: (``taskapi list | cut -f3`` is the statuses).
TASK_HEADERS = ("id", "type", "status", "progress", "created", "queue")
PROGRESS_COLUMN = TASK_HEADERS.index("progress")
CREATED_COLUMN = TASK_HEADERS.index("created")


def task_cells(task: dict[str, Any]) -> tuple[str, ...]:
    """A task's cells, in the order of TASK_HEADERS (``created`` as the API writes it)."""
    progress = task.get("progress")
    message = " ".join(str((progress or {}).get("message") or "").split())
    return (
        task["id"],
        task["type"],
        task["status"],
        f"{progress_count(progress)} {message}".strip(),
        task["created_at"],
        str(task.get("queue") or ""),
    )


QUEUE_COLUMN = TASK_HEADERS.index("queue")
#: Columns separated by one of padding and one of the (blank) column rule.
GAP = 2


def task_table(tasks: list[dict[str, Any]], width: int) -> Any:
    """A table of ``tasks`` for a terminal ``width`` columns wide: ids, types, statuses and
    times whole; the queue cut (or left out when even its header does not fit), then the
    progress, to what is left."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = []
    for cells in map(task_cells, tasks):
        row = list(cells)
        row[CREATED_COLUMN] = created_text(row[CREATED_COLUMN])
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(TASK_HEADERS)]
    whole = sum(widths) - widths[PROGRESS_COLUMN] - widths[QUEUE_COLUMN]
    fixed = whole + GAP * (len(TASK_HEADERS) - 1) + len("progress")
    queue_width = min(widths[QUEUE_COLUMN], width - fixed)
    columns = list(range(len(TASK_HEADERS)))
    if queue_width < len("queue"):  # no room: the queue goes (`taskapi list | cat` has it)
        columns.remove(QUEUE_COLUMN)
        queue_width = -GAP
    room = width - whole - GAP * (len(TASK_HEADERS) - 1) - queue_width
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for i in columns:
        header = TASK_HEADERS[i]
        limit = {PROGRESS_COLUMN: max(room, len(header)), QUEUE_COLUMN: queue_width}.get(i)
        table.add_column(
            header,
            no_wrap=True,
            overflow="ellipsis",
            min_width=None if limit is not None else widths[i],
            max_width=limit,
        )
    for row in rows:
        status = row[2]
        table.add_row(
            *(Text(row[i], style=STATUS_STYLES.get(status, "") if i == 2 else "") for i in columns)
        )
    return table


#: ``limit`` is the queue's concurrency (``none``: no limit beyond the workers); the columns
#: fit 80 characters.
QUEUE_HEADERS = (
    "queue",
    "paused",
    "limit",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "oldest",
)
QUEUE_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def age_text(seconds: float | None) -> str:
    """An age for people: ``45s``, ``3m05s``, ``2h04m``, ``3d02h``; ``-`` for none."""
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def queue_cells(queue: dict[str, Any], *, terminal: bool) -> tuple[str, ...]:
    """A queue's cells, in the order of QUEUE_HEADERS. On a terminal the oldest ready task's
    age is written for people (``3m05s``, ``-`` for none); elsewhere as the API gives it, in
    seconds (empty for none)."""
    counts = queue.get("counts") or {}
    concurrency = queue.get("concurrency")
    oldest = queue.get("oldest_queued_seconds")
    plain = "" if oldest is None else number_text(oldest)
    oldest_text = age_text(oldest) if terminal else plain
    return (
        str(queue["name"]),
        "yes" if queue.get("paused") else "no",
        "none" if concurrency is None else str(concurrency),
        *(str(counts.get(status, 0)) for status in QUEUE_STATUSES),
        oldest_text,
    )


def queue_table(queues: list[dict[str, Any]], width: int) -> Any:
    """A table of ``queues`` for a terminal ``width`` columns wide: a paused queue's flag in
    yellow, counts right, every column but the name whole (a long name is cut)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = [queue_cells(queue, terminal=True) for queue in queues]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(QUEUE_HEADERS)]
    others = sum(widths[1:]) + GAP * (len(QUEUE_HEADERS) - 1)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for i, header in enumerate(QUEUE_HEADERS):
        numeric = header in (*QUEUE_STATUSES, "limit", "oldest")
        table.add_column(
            header,
            no_wrap=True,
            justify="right" if numeric else "left",
            overflow="ellipsis",
            min_width=widths[i] if i else len(header),
            max_width=max(width - others, len(header)) if i == 0 else None,
        )
    for queue, cells in zip(queues, rows, strict=True):
        paused = Text(cells[1], style="yellow" if queue.get("paused") else "")
        table.add_row(Text(cells[0]), paused, *(Text(cell) for cell in cells[2:]))
    return table


def queue_summary(queue: dict[str, Any]) -> str:
    """A queue's settings in one line: ``queue reports: paused, concurrency 2``."""
    concurrency = queue.get("concurrency")
    limit = "no concurrency limit" if concurrency is None else f"concurrency {concurrency}"
    state = "paused" if queue.get("paused") else "active"
    return f"queue {queue['name']}: {state}, {limit}"


#: ``next run`` says ``paused`` while the schedule is paused (the API's ``next_run_at`` is
#: null then): a column of its own would push the usual row (a name, a cron with its zone, a
#: type and a queue) past 80 characters.
SCHEDULE_HEADERS = ("schedule", "when", "type", "queue", "next run", "last run")
#: Columns of the schedule table that are cut before the others, narrowest kept whole first.
SCHEDULE_CUT = (0, 1, 3)
#: Characters of a schedule's name kept however narrow the terminal.
SCHEDULE_NAME_FLOOR = 16
#: Units of ``every_seconds``, largest first: a span is written in the largest that divides it.
SPAN_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def every_text(seconds: int) -> str:
    """``every_seconds`` for people, exactly: ``every 30 s``, ``every 90 min``, ``every 1 d``."""
    for unit, size in SPAN_UNITS:
        if seconds % size == 0:
            return f"every {seconds // size} {unit}"
    return f"every {seconds} s"  # not reached: the last unit divides everything


def when_text(schedule: dict[str, Any]) -> str:
    """When a schedule fires: its cron and time zone (``0 2 * * * Europe/Berlin``), or
    ``every 30 s``."""
    if schedule.get("cron"):
        return f"{schedule['cron']} {schedule.get('timezone') or 'UTC'}"
    return every_text(int(schedule.get("every_seconds") or 0))


def _parse_stamp(stamp: str | None) -> Any:
    from datetime import datetime

    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def relative_text(stamp: str | None, now: Any) -> str:
    """An API timestamp relative to ``now``: ``in 5h02m``, ``3m05s ago``; ``-`` for none."""
    moment = _parse_stamp(stamp)
    if moment is None:
        return "-" if not stamp else str(stamp)
    seconds = (moment - now).total_seconds()
    if seconds >= 0:
        return f"in {age_text(seconds)}"
    return f"{age_text(-seconds)} ago"


def schedule_cells(schedule: dict[str, Any], *, terminal: bool, now: Any = None) -> tuple[str, ...]:
    """A schedule's cells, in the order of SCHEDULE_HEADERS. ``next run`` is ``paused`` while
    paused. On a terminal the times are relative to ``now`` (``in 5h02m``, ``3m05s ago``, ``-``
    for none) and a template without a queue shows ``-`` (its task type's applies); elsewhere
    times are as the API writes them and nothing is empty but what the API leaves out."""
    task = schedule.get("task") or {}
    paused = bool(schedule.get("paused"))
    next_run, last_run = schedule.get("next_run_at"), schedule.get("last_run_at")
    if terminal:
        next_text = "paused" if paused else relative_text(next_run, now)
        last_text = relative_text(last_run, now)
        queue = str(task.get("queue") or "-")
    else:
        next_text = "paused" if paused else str(next_run or "")
        last_text = str(last_run or "")
        queue = str(task.get("queue") or "")
    return (
        str(schedule["name"]),
        when_text(schedule),
        str(task.get("type") or ""),
        queue,
        next_text,
        last_text,
    )


def _fit(natural: list[int], minimum: list[int], room: int) -> list[int]:
    """Widths for columns of ``natural`` widths in ``room`` characters: all whole when they
    fit; else the narrow ones whole and the others an equal share of what is left, never
    under their ``minimum``."""
    if sum(natural) <= room:
        return list(natural)
    widths = list(natural)
    order = sorted(range(len(natural)), key=natural.__getitem__)
    left = room
    for done, i in enumerate(order):
        share = left // (len(order) - done)
        widths[i] = max(minimum[i], min(natural[i], share))
        left -= widths[i]
    return widths


def schedule_table(schedules: list[dict[str, Any]], width: int, now: Any) -> Any:
    """A table of ``schedules`` for a terminal ``width`` columns wide: the type and the times
    whole; when the rows are too wide, the name, the when and the queue share what is left,
    the narrower ones whole (at least SCHEDULE_NAME_FLOOR characters of a name kept); a paused
    schedule's ``paused`` in yellow."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = [schedule_cells(one, terminal=True, now=now) for one in schedules]
    natural = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(SCHEDULE_HEADERS)]
    whole = sum(w for i, w in enumerate(natural) if i not in SCHEDULE_CUT)
    room = width - whole - GAP * (len(SCHEDULE_HEADERS) - 1)
    floors = [min(natural[0], SCHEDULE_NAME_FLOOR), len("when"), len("queue")]
    cut = _fit([natural[i] for i in SCHEDULE_CUT], floors, room)
    limits = dict(zip(SCHEDULE_CUT, cut, strict=True))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for i, header in enumerate(SCHEDULE_HEADERS):
        limit = limits.get(i)
        table.add_column(
            header,
            no_wrap=True,
            overflow="ellipsis",
            min_width=natural[i] if limit is None else min(len(header), limit),
            max_width=limit,
        )
    for schedule, cells in zip(schedules, rows, strict=True):
        paused = Text(cells[4], style="yellow" if schedule.get("paused") else "")
        table.add_row(*(Text(cell) for cell in cells[:4]), paused, Text(cells[5]))
    return table


def schedule_summary(schedule: dict[str, Any], done: str) -> str:
    """What a schedule is now, in one line: ``schedule nightly-report created: next run
    2026-12-07 02:00:00 CET (in 15h03m)``, or ``…, paused: no run until it is resumed``."""
    from datetime import UTC, datetime

    head = f"schedule {schedule['name']} {done}"
    if schedule.get("paused"):
        return f"{head}{'' if 'paused' in done else ', paused'}: no run until it is resumed"
    moment = _parse_stamp(schedule.get("next_run_at"))
    if moment is None:
        return f"{head}: no next run (its cron has no more fire times)"
    local = moment.astimezone(_zone(schedule.get("timezone") if schedule.get("cron") else None))
    when = local.strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"{head}: next run {when} ({relative_text(schedule['next_run_at'], datetime.now(UTC))})"


def _zone(name: str | None) -> Any:
    """The time zone ``name`` (UTC for none, or one this machine does not know)."""
    from datetime import UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC
