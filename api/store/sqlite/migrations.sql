-- The SQLite schema, as the steps that built it, in order (api/store/queries.py loads them).
-- PRAGMA user_version records how many have been applied. A step that shipped is never
-- edited: a change of schema is a new step at the end.

-- name: tasks
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    result TEXT,
    error TEXT,
    progress TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout_seconds REAL,
    priority INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    run_after REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    expires_at REAL,
    worker_id TEXT,
    lease_expires_at REAL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX tasks_ready ON tasks (priority DESC, run_after, seq) WHERE status = 'queued';
CREATE INDEX tasks_queued_at ON tasks (run_after) WHERE status = 'queued';
CREATE INDEX tasks_by_status ON tasks (status, seq);
CREATE INDEX tasks_by_type ON tasks (type, seq);
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;

-- name: idempotency_keys
CREATE TABLE idempotency_keys (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    in_flight_until REAL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'running';

-- name: owner
ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX tasks_by_owner ON tasks (owner, seq);

-- name: task_counts
-- How many tasks are in each status, kept by triggers in the same transactions as the
-- changes: the queue bound and the metrics read one row instead of counting an index.
CREATE TABLE task_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO task_counts (status, n) VALUES
    ('queued', 0), ('running', 0), ('succeeded', 0), ('failed', 0), ('cancelled', 0);
UPDATE task_counts SET n = (SELECT COUNT(*) FROM tasks WHERE tasks.status = task_counts.status);
CREATE TRIGGER tasks_counted_in AFTER INSERT ON tasks BEGIN
    UPDATE task_counts SET n = n + 1 WHERE status = new.status;
END;
CREATE TRIGGER tasks_counted_out AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET n = n - 1 WHERE status = old.status;
END;
CREATE TRIGGER tasks_counted_moved AFTER UPDATE OF status ON tasks
WHEN old.status <> new.status BEGIN
    UPDATE task_counts SET n = n - 1 WHERE status = old.status;
    UPDATE task_counts SET n = n + 1 WHERE status = new.status;
END;

-- name: lost_attempts
-- Attempts cut short by a lost worker: in all (they do not use up max_attempts), and in a
-- row since the last attempt that ended otherwise (MAX_LOST_ATTEMPTS ends the task).
ALTER TABLE tasks ADD COLUMN lost_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN lost_in_a_row INTEGER NOT NULL DEFAULT 0;

-- name: queues
-- Every task is in a queue. The ready index leads with the queue: a claim reads each queue's
-- next tasks on its own (so a paused queue's backlog is never walked through), and the
-- queues that have queued tasks are found by skipping from one name to the next.
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
DROP INDEX tasks_ready;
CREATE INDEX tasks_ready ON tasks (queue, priority DESC, run_after, seq) WHERE status = 'queued';
DROP INDEX tasks_queued_at;
CREATE INDEX tasks_queued_at ON tasks (queue, run_after) WHERE status = 'queued';
CREATE INDEX tasks_by_queue ON tasks (queue, seq);
-- The settings of a queue, kept for every process to read at its next claim.
CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    concurrency INTEGER
);
-- How many tasks each queue has in each status, kept by triggers as task_counts was: a
-- queue's first task makes its five rows, so that every later change is two plain updates.
CREATE TABLE queue_counts (
    status TEXT NOT NULL,
    queue TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (status, queue)
) WITHOUT ROWID;
INSERT INTO queue_counts (status, queue, n)
SELECT statuses.status, queues.queue,
    (SELECT COUNT(*) FROM tasks WHERE tasks.status = statuses.status AND tasks.queue = queues.queue)
FROM (SELECT DISTINCT queue FROM tasks) AS queues,
    (SELECT 'queued' AS status UNION ALL SELECT 'running' UNION ALL SELECT 'succeeded'
     UNION ALL SELECT 'failed' UNION ALL SELECT 'cancelled') AS statuses;
DROP TRIGGER tasks_counted_in;
DROP TRIGGER tasks_counted_out;
DROP TRIGGER tasks_counted_moved;
DROP TABLE task_counts;
CREATE TRIGGER tasks_counted_in AFTER INSERT ON tasks BEGIN
    INSERT INTO queue_counts (status, queue, n)
    SELECT statuses.status, new.queue, 0
    FROM (SELECT 'queued' AS status UNION ALL SELECT 'running' UNION ALL SELECT 'succeeded'
          UNION ALL SELECT 'failed' UNION ALL SELECT 'cancelled') AS statuses
    WHERE NOT EXISTS (SELECT 1 FROM queue_counts WHERE status = 'queued' AND queue = new.queue);
    UPDATE queue_counts SET n = n + 1 WHERE status = new.status AND queue = new.queue;
END;
CREATE TRIGGER tasks_counted_out AFTER DELETE ON tasks BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE status = old.status AND queue = old.queue;
END;
CREATE TRIGGER tasks_counted_moved AFTER UPDATE OF status ON tasks
WHEN old.status <> new.status BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE status = old.status AND queue = old.queue;
    UPDATE queue_counts SET n = n + 1 WHERE status = new.status AND queue = new.queue;
END;

-- name: schedules
-- A task made by a schedule names it, and the fire time it stands for.
ALTER TABLE tasks ADD COLUMN schedule TEXT;
ALTER TABLE tasks ADD COLUMN scheduled_for REAL;
CREATE INDEX tasks_by_schedule ON tasks (owner, schedule, seq) WHERE schedule IS NOT NULL;
-- A schedule of its owner: when it fires (cron in timezone, or every_seconds), the task it
-- makes (a TaskCreate body as JSON), and its next fire time (NULL while paused). Every
-- replace grows its version: a fire applies only to the version it was computed from.
CREATE TABLE schedules (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    cron TEXT,
    every_seconds INTEGER,
    timezone TEXT NOT NULL,
    task TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    overlap TEXT NOT NULL,
    catch_up TEXT NOT NULL,
    next_run_at REAL,
    last_run_at REAL,
    last_task_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (owner, name)
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE next_run_at IS NOT NULL;
-- Each fire time of a schedule, once: the unique key that makes two processes ticking at
-- once make one task; written in the transaction that makes the task (or records the skip).
CREATE TABLE schedule_fires (
    owner TEXT NOT NULL,
    schedule TEXT NOT NULL,
    fire_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    task_id TEXT,
    UNIQUE (owner, schedule, fire_at)
);
CREATE INDEX schedule_fires_age ON schedule_fires (fire_at);

-- name: retries
-- A task submitted again by POST /tasks/{id}/retry names the task it retries.
ALTER TABLE tasks ADD COLUMN retry_of TEXT;

-- name: batches
-- A task may be submitted in a batch, and may wait for other tasks (depends_on): it stays
-- queued, never claimed, while blocked_by (a JSON list) names dependencies that have not
-- succeeded; dependants says whether any task waits for it (its end then settles them).
ALTER TABLE tasks ADD COLUMN batch_id TEXT;
ALTER TABLE tasks ADD COLUMN depends_on TEXT;
ALTER TABLE tasks ADD COLUMN blocked_by TEXT;
ALTER TABLE tasks ADD COLUMN dependants INTEGER NOT NULL DEFAULT 0;
-- A waiting task is not ready: the ready indexes leave it out, so claims never walk it.
DROP INDEX tasks_ready;
CREATE INDEX tasks_ready ON tasks (queue, priority DESC, run_after, seq)
    WHERE status = 'queued' AND blocked_by IS NULL;
DROP INDEX tasks_queued_at;
CREATE INDEX tasks_queued_at ON tasks (queue, run_after)
    WHERE status = 'queued' AND blocked_by IS NULL;
CREATE INDEX tasks_by_batch ON tasks (batch_id, seq) WHERE batch_id IS NOT NULL;
-- Who waits for whom: a row for each dependency a waiting task has not seen succeed yet,
-- removed when the dependency ends (it frees the dependant, or cancels it).
CREATE TABLE task_waits (
    dependency TEXT NOT NULL,
    dependant TEXT NOT NULL,
    PRIMARY KEY (dependency, dependant)
) WITHOUT ROWID;
-- A batch of its owner: its tasks' ids in the order given. It goes with its last task.
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    task_ids TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- A batch's tasks are counted in queue_counts by one statement per queue (count_batch), not
-- by this trigger once per task: a thousand runs of it were a fifth of a batch's insert.
DROP TRIGGER tasks_counted_in;
CREATE TRIGGER tasks_counted_in AFTER INSERT ON tasks WHEN new.batch_id IS NULL BEGIN
    INSERT INTO queue_counts (status, queue, n)
    SELECT statuses.status, new.queue, 0
    FROM (SELECT 'queued' AS status UNION ALL SELECT 'running' UNION ALL SELECT 'succeeded'
          UNION ALL SELECT 'failed' UNION ALL SELECT 'cancelled') AS statuses
    WHERE NOT EXISTS (SELECT 1 FROM queue_counts WHERE status = 'queued' AND queue = new.queue);
    UPDATE queue_counts SET n = n + 1 WHERE status = new.status AND queue = new.queue;
END;
CREATE TRIGGER tasks_batch_gone AFTER DELETE ON tasks WHEN old.batch_id IS NOT NULL BEGIN
    DELETE FROM batches WHERE id = old.batch_id
        AND NOT EXISTS (SELECT 1 FROM tasks WHERE batch_id = old.batch_id);
END;

-- name: callbacks
-- A task may name a callback_url: when it ends, its delivery (the outbox) is written by the
-- trigger below in the transaction that ends it, whichever statement ends it. A delivery
-- goes with its task. next_attempt_at is when it is due; a claim moves it to the end of its
-- lease (held by holder), so that a lost sender's attempt is due again then.
ALTER TABLE tasks ADD COLUMN callback_url TEXT;
CREATE TABLE deliveries (
    task_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    ended_at REAL NOT NULL,
    next_attempt_at REAL,
    last_attempt_at REAL,
    delivered_at REAL,
    last_status INTEGER,
    last_error TEXT,
    holder TEXT,
    body BLOB
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE TRIGGER tasks_ended_with_callback AFTER UPDATE OF status ON tasks
WHEN new.callback_url IS NOT NULL AND old.status IN ('queued', 'running')
    AND new.status IN ('succeeded', 'failed', 'cancelled') BEGIN
    INSERT OR IGNORE INTO deliveries (task_id, url, event, state, ended_at, next_attempt_at)
    VALUES (new.id, new.callback_url, 'task.' || new.status, 'pending',
        COALESCE(new.finished_at, (julianday('now') - 2440587.5) * 86400.0),
        COALESCE(new.finished_at, (julianday('now') - 2440587.5) * 86400.0));
END;
CREATE TRIGGER tasks_delivery_gone AFTER DELETE ON tasks WHEN old.callback_url IS NOT NULL BEGIN
    DELETE FROM deliveries WHERE task_id = old.id;
END;
