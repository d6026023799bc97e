-- The PostgreSQL store's statements, by name (api/store/queries.py loads them once).
--
-- Parameters are psycopg's named ones, written percent-paren-name-paren-s, so no comment
-- here may hold a percent sign. Times are timestamptz. Filled in at load: {columns}, the
-- columns every task read selects, and {claim}, {finish}, {retry}, {release}, {recover},
-- {cancel}, {delete}: the statuses a task may have for that verb to change it, from the
-- lifecycle table api.models.VERBS. {queued_names} is the fragment of that
-- name below. Filled in at each call: {matching}.
--
-- Claims take the next ready tasks with FOR UPDATE SKIP LOCKED in one statement, so workers
-- never wait on each other's rows; every other change is one conditional statement.

-- name: queued_names
-- A fragment of the statements below (a WITH RECURSIVE step): the queues that have queued
-- tasks, one row each and a last NULL, found by skipping from one name to the next in an
-- index that leads with the queue: a look per queue, whatever the number of tasks.
names AS (
    (SELECT queue AS name FROM tasks WHERE status = 'queued' AND blocked_by IS NULL
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM tasks
            WHERE status = 'queued' AND blocked_by IS NULL AND queue > names.name
            ORDER BY queue LIMIT 1)
    FROM names WHERE names.name IS NOT NULL)

-- name: get
SELECT {columns} FROM tasks WHERE id = %(id)s AND (expires_at IS NULL OR expires_at > %(now)s)

-- name: list_total
-- Every match ({matching}: the filter's conditions), less those expired and not purged yet:
-- both counts can use an index, and one statement reads them from one snapshot.
SELECT (SELECT COUNT(*) FROM tasks WHERE {matching})
     - (SELECT COUNT(*) FROM tasks
        WHERE expires_at IS NOT NULL AND expires_at <= %(now)s AND {matching}) AS n

-- name: list_page
SELECT {columns} FROM tasks
WHERE {matching} AND (expires_at IS NULL OR expires_at > %(now)s)
ORDER BY seq DESC LIMIT %(limit)s OFFSET %(offset)s

-- name: count_by_status
-- An index-only scan of tasks_by_status: linear in the table, unlike SQLite's counter rows,
-- which here would make every state change of every worker wait on one row. Less the tasks
-- expired and not purged yet, found by the expiry index.
SELECT status, COUNT(*) AS n FROM tasks GROUP BY status
UNION ALL
SELECT status, -COUNT(*) AS n FROM tasks
WHERE expires_at IS NOT NULL AND expires_at <= %(now)s GROUP BY status

-- name: next_run_after
-- When the earliest queued task due after the given time (NULL: any) becomes ready, of the
-- queues a claim may take (not paused; of the given names, unless NULL): the queues with
-- queued tasks by skipping from one name to the next, each one's earliest by one more look.
WITH RECURSIVE {queued_names}
SELECT MIN((SELECT MIN(run_after) FROM tasks
            WHERE status = 'queued' AND blocked_by IS NULL AND queue = names.name
                AND (%(after)s::timestamptz IS NULL OR run_after > %(after)s))) AS due
FROM names WHERE name IS NOT NULL
    AND name NOT IN (SELECT name FROM queues WHERE paused)
    AND (%(queues)s::text[] IS NULL OR name = ANY(%(queues)s::text[]))

-- name: queue_counts
-- Tasks by queue and status (of the named queue; NULL: of every queue), less the expired: an
-- index-only scan of tasks_by_queue.
SELECT queue, status, SUM(n)::bigint AS n FROM (
    SELECT queue, status, COUNT(*) AS n FROM tasks
    WHERE %(name)s::text IS NULL OR queue = %(name)s GROUP BY queue, status
    UNION ALL
    SELECT queue, status, -COUNT(*) AS n FROM tasks
    WHERE expires_at IS NOT NULL AND expires_at <= %(now)s
        AND (%(name)s::text IS NULL OR queue = %(name)s)
    GROUP BY queue, status) AS counted
GROUP BY queue, status

-- name: queue_settings
SELECT name, paused, concurrency FROM queues WHERE %(name)s::text IS NULL OR name = %(name)s

-- name: queue_oldest
-- When the oldest queued task of each queue (or of the named one) became due: the queues
-- that have queued tasks by skipping from one name to the next in the index, each one's
-- earliest run_after by one more look.
WITH RECURSIVE {queued_names}
SELECT name, (SELECT MIN(run_after) FROM tasks
              WHERE status = 'queued' AND blocked_by IS NULL AND queue = names.name) AS oldest
FROM names WHERE name IS NOT NULL AND (%(name)s::text IS NULL OR name = %(name)s)

-- name: update_queue
-- The settings given (set_paused and set_concurrency say which), the others kept.
INSERT INTO queues (name, paused, concurrency)
VALUES (%(name)s, COALESCE(%(paused)s::boolean, FALSE), %(concurrency)s::integer)
ON CONFLICT (name) DO UPDATE SET
    paused = CASE WHEN %(set_paused)s THEN excluded.paused ELSE queues.paused END,
    concurrency = CASE WHEN %(set_concurrency)s THEN excluded.concurrency
                       ELSE queues.concurrency END

-- name: lock_limited_queues
-- Before a claim, in its transaction: a lock for each queue with a concurrency that it may
-- take from and that has a ready task, held until it commits, taken in one order (two claims
-- never wait on each other in a circle); their names are kept for the transaction in
-- taskapi.locked_queues. The claim that follows counts their running tasks from a snapshot
-- taken after the lock, so two claims never both count the same free room, and gives no room
-- to a limited queue it holds no lock of (one limited or resumed in between). Advisory locks
-- live in memory and write nothing, unlike a lock of the queue's row.
SELECT set_config('taskapi.locked_queues', COALESCE(string_agg(name || locked, ','), ''), TRUE)
FROM (SELECT name, pg_advisory_xact_lock(730510, hashtext(name))::text AS locked FROM queues
      WHERE concurrency IS NOT NULL AND NOT paused
          AND (%(queues)s::text[] IS NULL OR name = ANY(%(queues)s::text[]))
          AND EXISTS (SELECT 1 FROM tasks WHERE status = 'queued' AND blocked_by IS NULL
                      AND queue = queues.name AND run_after <= %(now)s)
      ORDER BY hashtext(name)) AS taken

-- name: lock_queue
-- Submits with a bound on the queue count and insert one at a time (the lock is held until
-- the transaction ends), so that the bound holds exactly.
SELECT pg_advisory_xact_lock(7305104212)

-- name: count_queued
-- As many queued tasks as the bound, at most.
SELECT COUNT(*) AS n FROM (SELECT 1 FROM tasks WHERE status = 'queued' LIMIT %(max_queued)s) AS q

-- name: insert_task
INSERT INTO tasks (id, type, status, params, max_attempts, timeout_seconds, priority,
    created_at, run_after, owner, queue, schedule, scheduled_for, retry_of, batch_id,
    depends_on, blocked_by, callback_url)
VALUES (%(id)s, %(type)s, 'queued', %(params)s, %(max_attempts)s, %(timeout_seconds)s,
    %(priority)s, %(created_at)s, %(run_after)s, %(owner)s, %(queue)s, %(schedule)s,
    %(scheduled_for)s, %(retry_of)s, %(batch_id)s, %(depends_on)s, %(blocked_by)s,
    %(callback_url)s)
RETURNING {columns}

-- name: notify
-- Wakes the idle workers of every process (api.wakeups); polling covers a lost notification.
NOTIFY taskapi_tasks

-- name: find_key
-- The live idempotency key of this name, if any; busy while its request is in flight.
SELECT task_id, fingerprint, COALESCE(in_flight_until > %(now)s, FALSE) AS busy
FROM idempotency_keys WHERE owner = %(owner)s AND key = %(key)s AND expires_at > %(now)s

-- name: drop_expired_key
-- Only an expired key may make way; a live one (committed meanwhile by a concurrent request)
-- stays, and take_key then fails on its primary key (see key_holder).
DELETE FROM idempotency_keys
WHERE owner = %(owner)s AND key = %(key)s AND expires_at <= %(now)s

-- name: take_key
INSERT INTO idempotency_keys (owner, key, fingerprint, task_id, expires_at, in_flight_until)
VALUES (%(owner)s, %(key)s, %(fingerprint)s, %(task_id)s, %(expires_at)s, %(in_flight_until)s)

-- name: key_holder
-- Who took the key first, when a concurrent request did so during ours.
SELECT task_id, fingerprint FROM idempotency_keys WHERE owner = %(owner)s AND key = %(key)s

-- name: settle_key
UPDATE idempotency_keys SET in_flight_until = NULL WHERE owner = %(owner)s AND key = %(key)s

-- name: claim
-- Up to limit ready tasks of the queues a claim may take: not paused, of the given names
-- (NULL: every queue), and no more of a queue than its concurrency leaves room for,
-- counting its running tasks (lock_limited_queues ran first in the same transaction). The
-- queues with queued tasks are found by skipping from one name to the next in the ready
-- index; each one's next tasks are read from it in order (highest priority, earliest ready,
-- first in), so a paused queue's backlog is never read; only the limit queues whose next
-- task comes first are read (no other could give one of the limit taken), so a claim locks
-- few rows beyond those it takes. Among tasks of one priority the queues take turns. A task
-- another claim holds is skipped, not waited for. RETURNING has no
-- order: seq (after the columns), priority and run_after let the caller sort.
WITH RECURSIVE {queued_names},
open AS MATERIALIZED (
    SELECT names.name, CASE WHEN settings.concurrency IS NULL THEN %(limit)s
        WHEN names.name = ANY(string_to_array(current_setting('taskapi.locked_queues', TRUE), ','))
        THEN LEAST(%(limit)s, settings.concurrency - (
            SELECT COUNT(*) FROM tasks
            WHERE tasks.queue = names.name AND tasks.status = 'running'))
        ELSE 0 END AS room
    FROM names LEFT JOIN queues AS settings ON settings.name = names.name
    WHERE names.name IS NOT NULL AND NOT COALESCE(settings.paused, FALSE)
        AND (%(queues)s::text[] IS NULL OR names.name = ANY(%(queues)s::text[]))),
ranked AS MATERIALIZED (
    SELECT open.name, open.room FROM open CROSS JOIN LATERAL (
        SELECT priority, run_after, seq FROM tasks
        WHERE status = 'queued' AND blocked_by IS NULL AND queue = open.name
            AND run_after <= %(now)s
        ORDER BY priority DESC, run_after, seq LIMIT 1) AS first
    WHERE open.room > 0
    ORDER BY first.priority DESC, first.run_after, first.seq LIMIT %(limit)s),
next AS (
    SELECT ready.seq, ready.priority, ready.run_after,
        row_number() OVER (PARTITION BY open.name, ready.priority
                           ORDER BY ready.run_after, ready.seq) AS turn
    FROM ranked AS open CROSS JOIN LATERAL (
        SELECT seq, priority, run_after FROM tasks
        WHERE status = 'queued' AND blocked_by IS NULL AND queue = open.name
            AND run_after <= %(now)s
        ORDER BY priority DESC, run_after, seq LIMIT open.room
        FOR UPDATE SKIP LOCKED) AS ready),
picked AS (
    SELECT seq FROM next ORDER BY priority DESC, turn, run_after, seq LIMIT %(limit)s)
UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = %(now)s,
    worker_id = %(worker_id)s, lease_expires_at = %(lease_until)s, progress = NULL,
    version = version + 1
FROM picked WHERE tasks.seq = picked.seq AND tasks.status IN ({claim})
RETURNING {columns}, tasks.seq

-- name: report_progress
UPDATE tasks SET progress = %(progress)s, version = version + 1
WHERE id = %(id)s AND worker_id = %(worker_id)s AND status = 'running'
RETURNING cancel_requested

-- name: end_leases
-- The leases of every task held by holders whose ids start with the prefix (a process known to
-- be gone): the recovery takes them back at its next look, as after any lost worker.
UPDATE tasks SET lease_expires_at = %(now)s
WHERE status = 'running' AND substr(worker_id, 1, length(%(prefix)s)) = %(prefix)s
    AND lease_expires_at > %(now)s

-- name: heartbeat
UPDATE tasks SET lease_expires_at = %(lease_until)s
WHERE id = %(id)s AND worker_id = %(worker_id)s AND status = 'running'
RETURNING cancel_requested

-- name: finish
-- running -> the given status, if this worker holds the task.
UPDATE tasks SET status = %(status)s, result = %(result)s, error = %(error)s,
    finished_at = %(now)s, expires_at = %(expires_at)s, worker_id = NULL,
    lease_expires_at = NULL, version = version + 1
WHERE id = %(id)s AND worker_id = %(worker_id)s AND status IN ({finish})
RETURNING status, dependants

-- name: retry
-- Back to the queue after a failed attempt, ready again at run_after; cancelled instead if
-- a cancel was asked. The attempt ended, so the run of lost attempts is over.
UPDATE tasks SET
    status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE WHEN cancel_requested THEN %(now)s END,
    expires_at = CASE WHEN cancel_requested THEN %(expires_at)s END,
    run_after = %(run_after)s,
    error = CASE WHEN cancel_requested THEN NULL ELSE %(error)s END,
    lost_in_a_row = 0,
    worker_id = NULL, lease_expires_at = NULL, version = version + 1
WHERE id = %(id)s AND worker_id = %(worker_id)s AND status IN ({retry})
RETURNING status, dependants

-- name: release
-- Back to the queue without using up the attempt (shutdown); cancelled instead if a cancel
-- was asked.
UPDATE tasks SET
    status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE WHEN cancel_requested THEN %(now)s END,
    expires_at = CASE WHEN cancel_requested THEN %(expires_at)s END,
    attempts = CASE WHEN cancel_requested THEN attempts ELSE GREATEST(attempts - 1, 0) END,
    started_at = CASE WHEN cancel_requested THEN started_at END,
    error = CASE WHEN cancel_requested THEN NULL ELSE error END,
    worker_id = NULL, lease_expires_at = NULL, version = version + 1
WHERE id = %(id)s AND worker_id = %(worker_id)s AND status IN ({release})
RETURNING status, dependants

-- name: recover_cancelled
-- Recovery, step 1 of 3 (one transaction): a task whose lease ended before now (its worker
-- is lost) and whose cancel was asked ends cancelled.
UPDATE tasks SET status = 'cancelled', error = NULL, finished_at = %(now)s,
    expires_at = %(expires_at)s, worker_id = NULL, lease_expires_at = NULL,
    version = version + 1, lost_attempts = lost_attempts + 1, lost_in_a_row = lost_in_a_row + 1
WHERE status IN ({recover}) AND lease_expires_at < %(now)s AND cancel_requested
RETURNING id, type, status, dependants

-- name: recover_failed
-- Step 2: one lost MAX_LOST_ATTEMPTS times in a row ends failed, with the lost_again error.
UPDATE tasks SET status = 'failed', error = %(lost_again)s, finished_at = %(now)s,
    expires_at = %(expires_at)s, worker_id = NULL, lease_expires_at = NULL,
    version = version + 1, lost_attempts = lost_attempts + 1, lost_in_a_row = lost_in_a_row + 1
WHERE status IN ({recover}) AND lease_expires_at < %(now)s AND lost_in_a_row + 1 >= %(most)s
RETURNING id, type, status, dependants

-- name: recover_queued
-- Step 3: every other one goes back to the queue, with the lost error.
UPDATE tasks SET status = 'queued', error = %(lost)s, run_after = %(now)s,
    worker_id = NULL, lease_expires_at = NULL,
    version = version + 1, lost_attempts = lost_attempts + 1, lost_in_a_row = lost_in_a_row + 1
WHERE status IN ({recover}) AND lease_expires_at < %(now)s
RETURNING id, type, status, dependants

-- name: cancel
-- A queued task ends cancelled, a running one is asked to stop (once), in one statement
-- whatever moves it between the two (a retry, a recovery) meanwhile.
UPDATE tasks SET cancel_requested = TRUE,
    status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    error = CASE WHEN status = 'queued' THEN NULL ELSE error END,
    finished_at = CASE WHEN status = 'queued' THEN %(now)s ELSE finished_at END,
    expires_at = CASE WHEN status = 'queued' THEN %(expires_at)s ELSE expires_at END,
    version = version + 1
WHERE id = %(id)s AND status IN ({cancel}) AND (status = 'queued' OR NOT cancel_requested)
RETURNING {columns}, dependants

-- name: delete
DELETE FROM tasks
WHERE id = %(id)s AND status IN ({delete}) AND (expires_at IS NULL OR expires_at > %(now)s)

-- name: purge_keys
DELETE FROM idempotency_keys WHERE ctid IN (
    SELECT ctid FROM idempotency_keys WHERE expires_at <= %(now)s LIMIT %(limit)s)

-- name: purge_tasks
-- Ended tasks past their expires_at: what a delete may delete, up to the limit; not one
-- whose callback is still to be delivered (the delivery reads it).
DELETE FROM tasks WHERE seq IN (
    SELECT seq FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= %(now)s
    AND status IN ({delete})
    AND (callback_url IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries WHERE task_id = tasks.id AND state = 'pending'))
    LIMIT %(limit)s)

-- name: put_schedule
-- Create a schedule, or replace what it does: its created_at, last run and last task stay,
-- its version grows. When its timing (cron, every_seconds, timezone, paused) is unchanged,
-- its next_run_at stays as stored: a deploy that declares it again moves no fire time, and
-- undoes no fire made meanwhile.
INSERT INTO schedules (owner, name, cron, every_seconds, timezone, task, paused, overlap,
    catch_up, next_run_at, created_at, updated_at)
VALUES (%(owner)s, %(name)s, %(cron)s, %(every_seconds)s, %(timezone)s, %(task)s, %(paused)s,
    %(overlap)s, %(catch_up)s, %(next_run_at)s, %(now)s, %(now)s)
ON CONFLICT (owner, name) DO UPDATE SET
    next_run_at = CASE
        WHEN schedules.cron IS NOT DISTINCT FROM excluded.cron
            AND schedules.every_seconds IS NOT DISTINCT FROM excluded.every_seconds
            AND schedules.timezone = excluded.timezone AND schedules.paused = excluded.paused
        THEN schedules.next_run_at ELSE excluded.next_run_at END,
    cron = excluded.cron,
    every_seconds = excluded.every_seconds,
    timezone = excluded.timezone,
    task = excluded.task,
    paused = excluded.paused,
    overlap = excluded.overlap,
    catch_up = excluded.catch_up,
    updated_at = excluded.updated_at,
    version = schedules.version + 1
RETURNING {schedule_columns}

-- name: get_schedule
SELECT {schedule_columns} FROM schedules WHERE owner = %(owner)s AND name = %(name)s

-- name: schedules_total
SELECT COUNT(*) AS n FROM schedules WHERE %(owner)s::text IS NULL OR owner = %(owner)s

-- name: schedules_page
-- By name as SQLite orders them (byte order), whatever the database's collation.
SELECT {schedule_columns} FROM schedules WHERE owner = %(owner)s
ORDER BY name COLLATE "C" LIMIT %(limit)s OFFSET %(offset)s

-- name: schedules_page_all
SELECT {schedule_columns} FROM schedules
ORDER BY name COLLATE "C", owner COLLATE "C" LIMIT %(limit)s OFFSET %(offset)s

-- name: delete_schedule
-- Its fire records go with it; its tasks stay.
DELETE FROM schedules WHERE owner = %(owner)s AND name = %(name)s

-- name: delete_fires
DELETE FROM schedule_fires WHERE owner = %(owner)s AND schedule = %(name)s

-- name: due_schedules
-- The schedules whose next fire time has come, the earliest first (paused ones have none).
SELECT {schedule_columns} FROM schedules
WHERE next_run_at IS NOT NULL AND next_run_at <= %(now)s
ORDER BY next_run_at LIMIT %(limit)s

-- name: next_schedule_at
SELECT MIN(next_run_at) AS due FROM schedules WHERE next_run_at IS NOT NULL

-- name: advance_schedule
-- The first step of a fire: move the schedule's next_run_at on, only if it is still the
-- version the ticker read and still due at the time it read (else another process fired it
-- first, or it changed: nothing happens). A schedule another transaction holds (a ticker of
-- another process firing it) is skipped at once rather than waited for: that process fires
-- it, or the next tick finds it again. Returns its last task, for the overlap check.
UPDATE schedules SET next_run_at = %(next_run_at)s
WHERE (owner, name) IN (
    SELECT owner, name FROM schedules
    WHERE owner = %(owner)s AND name = %(name)s AND version = %(version)s
        AND next_run_at = %(due)s
    FOR UPDATE SKIP LOCKED)
RETURNING last_task_id

-- name: task_busy
-- Whether the task is still queued or running (overlap: skip).
SELECT 1 AS busy FROM tasks WHERE id = %(id)s AND status IN ('queued', 'running')

-- name: record_fire
-- The fire time's unique key: no row back when it was recorded already.
INSERT INTO schedule_fires (owner, schedule, fire_at, outcome, task_id)
VALUES (%(owner)s, %(name)s, %(fire_at)s, %(outcome)s, %(task_id)s)
ON CONFLICT (owner, schedule, fire_at) DO NOTHING
RETURNING outcome

-- name: set_fire_outcome
UPDATE schedule_fires SET outcome = %(outcome)s, task_id = NULL
WHERE owner = %(owner)s AND schedule = %(name)s AND fire_at = %(fire_at)s

-- name: schedule_ran
-- A task was made for the schedule (a fire, or a trigger): its last run.
UPDATE schedules SET last_run_at = %(run_at)s, last_task_id = %(task_id)s
WHERE owner = %(owner)s AND name = %(name)s
RETURNING name

-- name: purge_fires
-- Fire records old enough that no clock of any process could compute their time again.
DELETE FROM schedule_fires WHERE ctid IN (
    SELECT ctid FROM schedule_fires WHERE fire_at < %(fires_before)s LIMIT %(limit)s)

-- name: mark_dependencies
-- A submit's dependencies that are tasks of the owner not expired, with their status. Those
-- not marked as waited for yet are marked (a row lock until the submit commits, taken in the
-- order of their ids, as a worker writes its endings); every one is then locked FOR SHARE in
-- that order: none can end meanwhile unseen (its end waits for the submit, then finds the new
-- task waiting for it), and submits that wait for the same task do not wait for each other.
WITH marked AS (
    UPDATE tasks SET dependants = TRUE
    FROM (SELECT id FROM tasks
          WHERE id = ANY(%(ids)s::text[]) AND owner = %(owner)s AND NOT dependants
              AND (expires_at IS NULL OR expires_at > %(now)s)
          ORDER BY id FOR UPDATE) AS unmarked
    WHERE tasks.id = unmarked.id
    RETURNING tasks.id)
SELECT COUNT(*) AS n FROM marked

-- name: share_dependencies
SELECT id, status FROM tasks
WHERE id = ANY(%(ids)s::text[]) AND owner = %(owner)s
    AND (expires_at IS NULL OR expires_at > %(now)s)
ORDER BY id FOR SHARE

-- name: insert_waits
-- The dependencies a new task waits for (a JSON list of [dependency, dependant]).
INSERT INTO task_waits (dependency, dependant)
SELECT edge ->> 0, edge ->> 1 FROM jsonb_array_elements(%(edges)s::jsonb) AS edge

-- name: free_dependants
-- The given tasks, which succeeded, no longer block the tasks waiting for them (their waits
-- are dropped); a task left with nothing to wait for is ready (blocked_by NULL: the store
-- then tells the workers of every process), its other waits stay in depends_on's order.
WITH freed AS (
    DELETE FROM task_waits WHERE dependency = ANY(%(ids)s::text[])
    RETURNING dependency, dependant),
gone AS (SELECT dependant, array_agg(dependency) AS deps FROM freed GROUP BY dependant),
updated AS (
    UPDATE tasks SET
        blocked_by = (SELECT jsonb_agg(waits.dep ORDER BY waits.n)::text
                      FROM jsonb_array_elements_text(tasks.blocked_by::jsonb)
                          WITH ORDINALITY AS waits(dep, n)
                      WHERE waits.dep <> ALL(gone.deps)),
        version = version + 1
    FROM gone
    WHERE tasks.id = gone.dependant AND tasks.status = 'queued' AND tasks.blocked_by IS NOT NULL
    RETURNING tasks.id, tasks.blocked_by IS NULL AS ready)
SELECT id, ready FROM updated

-- name: cancel_dependants
-- One step of a cancel down a chain: the queued tasks waiting for one of the given tasks
-- (which ended failed or cancelled) end cancelled, with a DependencyFailed error that names
-- the dependency; each is kept as long after now as that dependency is kept after its end
-- (the result TTL). The store runs it again with those it cancelled that others wait for:
-- each step a statement of its own, whose snapshot is taken after the locks the one before
-- waited for, so it sees the waits that a submit committed meanwhile.
WITH cause AS (
    SELECT DISTINCT ON (waits.dependant) waits.dependant, dependency.id, dependency.status,
        dependency.expires_at, dependency.finished_at
    FROM task_waits AS waits JOIN tasks AS dependency ON dependency.id = waits.dependency
    WHERE waits.dependency = ANY(%(ids)s::text[])
        AND dependency.status IN ('failed', 'cancelled')
    ORDER BY waits.dependant, dependency.id)
UPDATE tasks SET status = 'cancelled',
    error = json_build_object('type', 'DependencyFailed', 'message',
        'Task ' || cause.id || ', which this task depends on, ended ' || cause.status
        || ': this task will not run. Retry the dependency, then submit this task again.')::text,
    finished_at = %(now)s, expires_at = %(now)s + (cause.expires_at - cause.finished_at),
    version = tasks.version + 1
FROM cause WHERE tasks.id = cause.dependant AND tasks.status = 'queued'
RETURNING tasks.id, tasks.type, tasks.queue, tasks.batch_id, tasks.dependants

-- name: drop_waits
-- The waits on tasks that ended: their dependants are freed or cancelled.
DELETE FROM task_waits WHERE dependency = ANY(%(ids)s::text[])

-- name: insert_tasks
-- A batch's tasks in one statement (a JSON list of rows, each a list in the order of the
-- columns; params and the two id lists as JSON text).
INSERT INTO tasks (id, type, status, params, max_attempts, timeout_seconds, priority,
    created_at, run_after, owner, queue, schedule, scheduled_for, retry_of, batch_id,
    depends_on, blocked_by, callback_url)
SELECT item ->> 0, item ->> 1, 'queued', item ->> 2, (item ->> 3)::integer,
    (item ->> 4)::double precision, (item ->> 5)::integer, (item ->> 6)::timestamptz,
    (item ->> 7)::timestamptz, item ->> 8, item ->> 9, item ->> 10, (item ->> 11)::timestamptz,
    item ->> 12, item ->> 13, item ->> 14, item ->> 15, item ->> 16
FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS items(item, n) ORDER BY n

-- name: insert_batch
INSERT INTO batches (id, owner, task_ids, created_at)
VALUES (%(id)s, %(owner)s, %(task_ids)s, %(created_at)s)

-- name: get_batch
SELECT id, owner, task_ids, created_at FROM batches WHERE id = %(id)s

-- name: batch_counts
-- A batch's tasks not expired, by status: how many, the sum of their versions, their last end.
SELECT status, COUNT(*) AS n, SUM(version) AS versions, MAX(finished_at) AS finished
FROM tasks WHERE batch_id = %(id)s AND (expires_at IS NULL OR expires_at > %(now)s)
GROUP BY status

-- name: cancel_batch
-- Every task of the batch as cancel does one, in one statement.
UPDATE tasks SET cancel_requested = TRUE,
    status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    error = CASE WHEN status = 'queued' THEN NULL ELSE error END,
    finished_at = CASE WHEN status = 'queued' THEN %(now)s ELSE finished_at END,
    expires_at = CASE WHEN status = 'queued' THEN %(expires_at)s ELSE expires_at END,
    version = version + 1
WHERE batch_id = %(id)s AND status IN ({cancel}) AND (status = 'queued' OR NOT cancel_requested)
RETURNING {columns}, dependants

-- name: end_delivery_leases
-- The deliveries held by a process known to be gone are due again now.
UPDATE deliveries SET next_attempt_at = %(now)s
WHERE state = 'pending' AND substr(holder, 1, length(%(prefix)s)) = %(prefix)s
    AND next_attempt_at > %(now)s

-- name: deliveries
SELECT {delivery_columns} FROM deliveries WHERE task_id = ANY(%(ids)s)

-- name: next_delivery_at
SELECT next_attempt_at AS due FROM deliveries WHERE state = 'pending'
ORDER BY next_attempt_at LIMIT 1

-- name: claim_deliveries
-- The earliest pending deliveries due: each held by the holder, due again at lease_until
-- (if its sender is lost), one more attempt counted, under way (no answer yet). Rows
-- another claim holds are skipped.
UPDATE deliveries SET holder = %(holder)s, next_attempt_at = %(lease_until)s,
    attempts = attempts + 1, last_attempt_at = %(now)s, last_status = NULL,
    last_error = NULL
WHERE task_id IN (
    SELECT task_id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING {delivery_columns}

-- name: tasks_of
-- Tasks by id, expired or not (a delivery's task).
SELECT {columns} FROM tasks WHERE id = ANY(%(ids)s)

-- name: record_delivery
-- How an attempt went, if its holder still holds the delivery; the body sent is kept.
UPDATE deliveries SET state = %(state)s, next_attempt_at = %(next_attempt_at)s,
    last_status = %(status)s, last_error = %(error)s, holder = NULL,
    body = COALESCE(body, %(body)s),
    delivered_at = CASE WHEN %(state)s = 'delivered' THEN %(now)s ELSE delivered_at END
WHERE task_id = %(id)s AND holder = %(holder)s AND state = 'pending'
    AND (%(attempts)s::integer IS NULL OR attempts = %(attempts)s::integer)
RETURNING {delivery_columns}

-- name: resend_delivery
UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = %(now)s,
    holder = NULL, delivered_at = NULL
WHERE task_id = %(id)s AND state IN ('delivered', 'failed')
RETURNING {delivery_columns}

-- name: delivery_changed
-- Tasks whose delivery changed: so do they (their ETags).
UPDATE tasks SET version = version + 1 WHERE id = ANY(%(ids)s)
-- name: release_deliveries
-- Deliveries claimed and never attempted, handed back by their holder: due now, the claim's
-- attempt not counted.
UPDATE deliveries SET holder = NULL, next_attempt_at = %(now)s, attempts = attempts - 1
WHERE task_id = ANY(%(ids)s) AND holder = %(holder)s AND state = 'pending'
RETURNING task_id
