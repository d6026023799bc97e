-- The PostgreSQL schema, as the steps that built it, in order (api/store/queries.py loads
-- them). The table taskapi_schema records how many have been applied. A step that shipped is
-- never edited: a change of schema is a new step at the end.

-- name: tasks
CREATE TABLE tasks (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    result TEXT,
    error TEXT,
    progress TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout_seconds DOUBLE PRECISION,
    priority INTEGER NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    run_after TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    worker_id TEXT,
    lease_expires_at TIMESTAMPTZ,
    version INTEGER NOT NULL DEFAULT 1,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX tasks_ready ON tasks (priority DESC, run_after, seq) WHERE status = 'queued';
CREATE INDEX tasks_queued_at ON tasks (run_after) WHERE status = 'queued';
CREATE INDEX tasks_by_status ON tasks (status, seq);
CREATE INDEX tasks_by_type ON tasks (type, seq);
CREATE INDEX tasks_by_owner ON tasks (owner, seq);
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'running';
CREATE TABLE idempotency_keys (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task_id TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    in_flight_until TIMESTAMPTZ,
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

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
CREATE INDEX tasks_by_queue ON tasks (queue, status, seq);
-- The running tasks by queue (what a limit counts), and by lease (what the recovery reads):
-- a partial index, so only the few running rows are in it.
DROP INDEX tasks_leases;
CREATE INDEX tasks_running ON tasks (queue, lease_expires_at) WHERE status = 'running';
-- The settings of a queue, kept for every process to read at its next claim. A claim that
-- may take tasks of a queue with a concurrency takes the queue's lock first, so that two
-- claims never both count the same free room (queries.sql, lock_limited_queues).
CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    concurrency INTEGER
);

-- name: schedules
-- A task made by a schedule names it, and the fire time it stands for.
ALTER TABLE tasks ADD COLUMN schedule TEXT;
ALTER TABLE tasks ADD COLUMN scheduled_for TIMESTAMPTZ;
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
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    overlap TEXT NOT NULL,
    catch_up TEXT NOT NULL,
    next_run_at TIMESTAMPTZ,
    last_run_at TIMESTAMPTZ,
    last_task_id TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (owner, name)
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE next_run_at IS NOT NULL;
-- Each fire time of a schedule, once: the unique key that makes two processes ticking at
-- once make one task; written in the transaction that makes the task (or records the skip).
CREATE TABLE schedule_fires (
    owner TEXT NOT NULL,
    schedule TEXT NOT NULL,
    fire_at TIMESTAMPTZ NOT NULL,
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
ALTER TABLE tasks ADD COLUMN dependants BOOLEAN NOT NULL DEFAULT FALSE;
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
);
-- A batch of its owner: its tasks' ids in the order given. It goes with its last task.
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    task_ids TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
-- The batch's row is locked first: of two transactions deleting its last two tasks, the
-- second looks for tasks left after the first committed (a statement's snapshot is taken
-- after the lock), so one of them deletes it.
CREATE FUNCTION taskapi_batch_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM batches WHERE id = OLD.batch_id FOR UPDATE;
    DELETE FROM batches WHERE id = OLD.batch_id
        AND NOT EXISTS (SELECT 1 FROM tasks WHERE batch_id = OLD.batch_id);
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_batch_gone AFTER DELETE ON tasks
    FOR EACH ROW WHEN (OLD.batch_id IS NOT NULL) EXECUTE FUNCTION taskapi_batch_gone();

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
    ended_at TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ,
    last_attempt_at TIMESTAMPTZ,
    delivered_at TIMESTAMPTZ,
    last_status INTEGER,
    last_error TEXT,
    holder TEXT,
    body BYTEA
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE FUNCTION taskapi_task_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (task_id, url, event, state, ended_at, next_attempt_at)
    VALUES (NEW.id, NEW.callback_url, 'task.' || NEW.status, 'pending',
        COALESCE(NEW.finished_at, now()), COALESCE(NEW.finished_at, now()))
    ON CONFLICT (task_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_ended_with_callback AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (NEW.callback_url IS NOT NULL AND OLD.status IN ('queued', 'running')
        AND NEW.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION taskapi_task_ended();
CREATE FUNCTION taskapi_delivery_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deliveries WHERE task_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_delivery_gone AFTER DELETE ON tasks
    FOR EACH ROW WHEN (OLD.callback_url IS NOT NULL) EXECUTE FUNCTION taskapi_delivery_gone();
