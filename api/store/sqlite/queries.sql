-- The SQLite store's statements, by name (api/store/queries.py loads them once).
--
-- Parameters are named (:now). Times are seconds since the epoch (REAL). Filled in at load:
-- {columns}, the columns every task read selects, and {claim}, {finish}, {retry}, {release},
-- {recover}, {cancel}, {delete}: the statuses a task may have for that verb to change it,
-- from the lifecycle table api.models.VERBS. {queued_names} is the fragment of that
-- name below. Filled in at each call: {matching}, and a claim's {each} and {n}.
--
-- Each change is one statement. SQLite takes the write lock at the start of a writing
-- statement (or of a transaction: a claim's two steps, the worker's endings and claim), so a
-- claim never races another one, whichever thread or process runs it.

-- name: queued_names
-- A fragment of the statements below (a WITH RECURSIVE step): the queues that have queued
-- tasks, one row each and a last NULL, found by skipping from one name to the next in an
-- index that leads with the queue: a look per queue, whatever the number of tasks.
names(name) AS (
    SELECT MIN(queue) FROM tasks INDEXED BY tasks_queued_at
    WHERE status = 'queued' AND blocked_by IS NULL
    UNION ALL
    SELECT (SELECT MIN(queue) FROM tasks INDEXED BY tasks_queued_at
            WHERE status = 'queued' AND blocked_by IS NULL AND queue > names.name)
    FROM names WHERE names.name IS NOT NULL)

-- name: get
SELECT {columns} FROM tasks WHERE id = :id AND (expires_at IS NULL OR expires_at > :now)

-- name: list_total
-- Every match ({matching}: the filter's conditions), less those expired and not purged yet:
-- both counts use an index, and one statement reads them from one snapshot.
SELECT (SELECT COUNT(*) FROM tasks WHERE {matching})
     - (SELECT COUNT(*) FROM tasks INDEXED BY tasks_expiry
        WHERE expires_at IS NOT NULL AND expires_at <= :now AND {matching}) AS n

-- name: list_page
SELECT {columns} FROM tasks WHERE {matching} AND (expires_at IS NULL OR expires_at > :now)
ORDER BY seq DESC LIMIT :limit OFFSET :offset

-- name: count_by_status
-- The trigger-kept rows of queue_counts, less the tasks expired and not purged yet (a
-- minute's worth).
SELECT status, SUM(n) AS n FROM (
    SELECT status, n FROM queue_counts
    UNION ALL
    SELECT status, -COUNT(*) AS n FROM tasks INDEXED BY tasks_expiry
    WHERE expires_at IS NOT NULL AND expires_at <= :now GROUP BY status)
GROUP BY status

-- name: queue_counts
-- Tasks by queue and status (of the queue :name; NULL: of every queue), less the expired.
SELECT queue, status, SUM(n) AS n FROM (
    SELECT queue, status, n FROM queue_counts WHERE :name IS NULL OR queue = :name
    UNION ALL
    SELECT queue, status, -COUNT(*) AS n FROM tasks INDEXED BY tasks_expiry
    WHERE expires_at IS NOT NULL AND expires_at <= :now AND (:name IS NULL OR queue = :name)
    GROUP BY queue, status)
GROUP BY queue, status

-- name: queue_settings
SELECT name, paused, concurrency FROM queues WHERE :name IS NULL OR name = :name

-- name: queue_oldest
-- When the oldest queued task of each queue (or of :name) became due: the queues that have
-- queued tasks are found by skipping from one name to the next in the index, each one's
-- earliest run_after by one more look.
WITH RECURSIVE {queued_names}
SELECT name, (SELECT MIN(run_after) FROM tasks INDEXED BY tasks_queued_at
              WHERE status = 'queued' AND blocked_by IS NULL AND queue = names.name) AS oldest
FROM names WHERE name IS NOT NULL AND (:name IS NULL OR name = :name)

-- name: update_queue
-- The settings given (:set_paused, :set_concurrency say which), the others kept.
INSERT INTO queues (name, paused, concurrency)
VALUES (:name, COALESCE(:paused, 0), :concurrency)
ON CONFLICT (name) DO UPDATE SET
    paused = CASE WHEN :set_paused THEN excluded.paused ELSE paused END,
    concurrency = CASE WHEN :set_concurrency THEN excluded.concurrency ELSE concurrency END

-- name: next_run_after
-- When the earliest queued task due after :after (NULL: any) becomes ready, of the queues a
-- claim may take (not paused; of :queues, a JSON list, unless NULL): the queues with queued
-- tasks by skipping from one name to the next, each one's earliest by one more look.
WITH RECURSIVE {queued_names}
SELECT MIN((SELECT MIN(run_after) FROM tasks INDEXED BY tasks_queued_at
            WHERE status = 'queued' AND blocked_by IS NULL AND queue = names.name
                AND (:after IS NULL OR run_after > :after))) AS due
FROM names WHERE name IS NOT NULL
    AND name NOT IN (SELECT name FROM queues WHERE paused)
    AND (:queues IS NULL OR name IN (SELECT value FROM json_each(:queues)))

-- name: insert_task
-- A new task, unless :max_queued tasks are queued already (NULL: no bound). The count is the
-- trigger-kept rows of queue_counts: the bound and the insert are one statement, one commit.
INSERT INTO tasks (id, type, status, params, max_attempts, timeout_seconds, priority,
    created_at, run_after, owner, queue, schedule, scheduled_for, retry_of, batch_id,
    depends_on, blocked_by, callback_url)
SELECT :id, :type, 'queued', :params, :max_attempts, :timeout_seconds, :priority,
    :created_at, :run_after, :owner, :queue, :schedule, :scheduled_for, :retry_of, :batch_id,
    :depends_on, :blocked_by, :callback_url
WHERE :max_queued IS NULL
    OR (SELECT COALESCE(SUM(n), 0) FROM queue_counts WHERE status = 'queued') < :max_queued
RETURNING {columns}

-- name: find_key
-- The live idempotency key of this name, if any; busy while its request is in flight.
SELECT task_id, fingerprint, COALESCE(in_flight_until > :now, 0) AS busy
FROM idempotency_keys WHERE owner = :owner AND key = :key AND expires_at > :now

-- name: take_key
-- After find_key found none live, in the same write transaction: an expired key makes way.
INSERT OR REPLACE INTO idempotency_keys
    (owner, key, fingerprint, task_id, expires_at, in_flight_until)
VALUES (:owner, :key, :fingerprint, :task_id, :expires_at, :in_flight_until)

-- name: settle_key
UPDATE idempotency_keys SET in_flight_until = NULL WHERE owner = :owner AND key = :key

-- name: claim_queues
-- A claim's first step (api/store/sqlite/claims.py writes the second): the queues a claim may
-- take from, with the room each leaves, in the transaction of the claim. The queues with
-- queued tasks are found by skipping from one name to the next in the ready index; a paused
-- one is left out, and one not of :queues (a JSON list; NULL: every queue); a queue with a
-- concurrency leaves that less its running tasks (in the trigger-kept queue_counts), others
-- :limit. Of those with a ready task and room, the :limit whose next task comes first in
-- claim order: no task of any other could be among the :limit taken (and never more than
-- 256, for a compound SELECT of SQLite takes at most 500 parts).
WITH RECURSIVE {queued_names},
open(name, room) AS (
    SELECT names.name, CASE WHEN settings.concurrency IS NULL THEN :limit
        ELSE MIN(:limit, settings.concurrency - COALESCE((
            SELECT n FROM queue_counts WHERE status = 'running' AND queue = names.name), 0)) END
    FROM names LEFT JOIN queues AS settings ON settings.name = names.name
    WHERE names.name IS NOT NULL AND NOT COALESCE(settings.paused, 0)
        AND (:queues IS NULL OR names.name IN (SELECT value FROM json_each(:queues)))),
firsts(name, room, first) AS (
    SELECT name, room, (SELECT seq FROM tasks INDEXED BY tasks_ready
                        WHERE status = 'queued' AND blocked_by IS NULL AND queue = open.name AND run_after <= :now
                        ORDER BY priority DESC, run_after, seq LIMIT 1)
    FROM open WHERE room > 0)
SELECT firsts.name AS name, firsts.room AS room
FROM firsts JOIN tasks ON tasks.seq = firsts.first
ORDER BY tasks.priority DESC, tasks.run_after, tasks.seq LIMIT MIN(:limit, 256)

-- name: claim
-- The second step for one queue: up to :room ready tasks of :queue in claim order, read from
-- the ready index (highest priority, earliest ready, first in). INDEXED BY keeps the planner
-- on it, whatever the statistics say; the unary + keeps it from looking the tasks up by
-- another index instead of their key. RETURNING has no order: seq (after the columns),
-- priority and run_after let the caller sort.
UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = :now,
    worker_id = :worker_id, lease_expires_at = :lease_until, progress = NULL,
    version = version + 1
WHERE seq IN (SELECT seq FROM tasks INDEXED BY tasks_ready
              WHERE status = 'queued' AND blocked_by IS NULL AND queue = :queue AND run_after <= :now
              ORDER BY priority DESC, run_after, seq LIMIT :room)
    AND +status IN ({claim})
RETURNING {columns}, seq

-- name: claim_turns
-- The second step for several queues: each one's next tasks (up to its room, {each}: one
-- SELECT per queue, joined by UNION ALL), then up to :limit of them with the highest
-- priority first and, among tasks of one priority, the queues taking turns (the first of
-- each, then the second of each, ...).
UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = :now,
    worker_id = :worker_id, lease_expires_at = :lease_until, progress = NULL,
    version = version + 1
WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, priority, run_after,
            row_number() OVER (PARTITION BY queue, priority ORDER BY run_after, seq) AS turn
        FROM ({each}))
    ORDER BY priority DESC, turn, run_after, seq LIMIT :limit)
    AND +status IN ({claim})
RETURNING {columns}, seq

-- name: claim_each
-- One queue's part of claim_turns ({n}: its number).
SELECT * FROM (SELECT seq, queue, priority, run_after FROM tasks INDEXED BY tasks_ready
               WHERE status = 'queued' AND blocked_by IS NULL AND queue = :queue_{n} AND run_after <= :now
               ORDER BY priority DESC, run_after, seq LIMIT :room_{n})

-- name: report_progress
UPDATE tasks SET progress = :progress, version = version + 1
WHERE id = :id AND worker_id = :worker_id AND status = 'running'
RETURNING cancel_requested

-- name: end_leases
-- The leases of every task held by holders whose ids start with the prefix (a process known to
-- be gone): the recovery takes them back at its next look, as after any lost worker.
UPDATE tasks SET lease_expires_at = :now
WHERE status = 'running' AND substr(worker_id, 1, length(:prefix)) = :prefix
    AND lease_expires_at > :now

-- name: heartbeat
UPDATE tasks SET lease_expires_at = :lease_until
WHERE id = :id AND worker_id = :worker_id AND status = 'running'
RETURNING cancel_requested

-- name: finish
-- running -> :status, if :worker_id holds the task.
UPDATE tasks SET status = :status, result = :result, error = :error,
    finished_at = :now, expires_at = :expires_at, worker_id = NULL, lease_expires_at = NULL,
    version = version + 1
WHERE id = :id AND worker_id = :worker_id AND status IN ({finish})
RETURNING status, dependants

-- name: retry
-- Back to the queue after a failed attempt, ready again at :run_after; cancelled instead if
-- a cancel was asked. The attempt ended, so the run of lost attempts is over.
UPDATE tasks SET
    status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE WHEN cancel_requested = 1 THEN :now END,
    expires_at = CASE WHEN cancel_requested = 1 THEN :expires_at END,
    run_after = :run_after,
    error = CASE WHEN cancel_requested = 1 THEN NULL ELSE :error END,
    lost_in_a_row = 0,
    worker_id = NULL, lease_expires_at = NULL, version = version + 1
WHERE id = :id AND worker_id = :worker_id AND status IN ({retry})
RETURNING status, dependants

-- name: release
-- Back to the queue without using up the attempt (shutdown); cancelled instead if a cancel
-- was asked.
UPDATE tasks SET
    status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE WHEN cancel_requested = 1 THEN :now END,
    expires_at = CASE WHEN cancel_requested = 1 THEN :expires_at END,
    attempts = CASE WHEN cancel_requested = 1 THEN attempts ELSE MAX(attempts - 1, 0) END,
    started_at = CASE WHEN cancel_requested = 1 THEN started_at END,
    error = CASE WHEN cancel_requested = 1 THEN NULL ELSE error END,
    worker_id = NULL, lease_expires_at = NULL, version = version + 1
WHERE id = :id AND worker_id = :worker_id AND status IN ({release})
RETURNING status, dependants

-- name: recover_cancelled
-- Recovery, step 1 of 3 (one transaction): a task whose lease ended before :now (its worker
-- is lost) and whose cancel was asked ends cancelled.
UPDATE tasks SET status = 'cancelled', error = NULL, finished_at = :now,
    expires_at = :expires_at, worker_id = NULL, lease_expires_at = NULL,
    version = version + 1, lost_attempts = lost_attempts + 1, lost_in_a_row = lost_in_a_row + 1
WHERE status IN ({recover}) AND lease_expires_at < :now AND cancel_requested = 1
RETURNING id, type, status, dependants

-- name: recover_failed
-- Step 2: one lost :most times in a row ends failed, with the :lost_again error.
UPDATE tasks SET status = 'failed', error = :lost_again, finished_at = :now,
    expires_at = :expires_at, worker_id = NULL, lease_expires_at = NULL,
    version = version + 1, lost_attempts = lost_attempts + 1, lost_in_a_row = lost_in_a_row + 1
WHERE status IN ({recover}) AND lease_expires_at < :now AND lost_in_a_row + 1 >= :most
RETURNING id, type, status, dependants

-- name: recover_queued
-- Step 3: every other one goes back to the queue, with the :lost error.
UPDATE tasks SET status = 'queued', error = :lost, run_after = :now,
    worker_id = NULL, lease_expires_at = NULL,
    version = version + 1, lost_attempts = lost_attempts + 1, lost_in_a_row = lost_in_a_row + 1
WHERE status IN ({recover}) AND lease_expires_at < :now
RETURNING id, type, status, dependants

-- name: cancel
-- A queued task ends cancelled, a running one is asked to stop (once), in one statement
-- whatever moves it between the two (a retry, a recovery) meanwhile.
UPDATE tasks SET cancel_requested = 1,
    status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    error = CASE WHEN status = 'queued' THEN NULL ELSE error END,
    finished_at = CASE WHEN status = 'queued' THEN :now ELSE finished_at END,
    expires_at = CASE WHEN status = 'queued' THEN :expires_at ELSE expires_at END,
    version = version + 1
WHERE id = :id AND status IN ({cancel}) AND (status = 'queued' OR cancel_requested = 0)
RETURNING {columns}, dependants

-- name: delete
DELETE FROM tasks
WHERE id = :id AND status IN ({delete}) AND (expires_at IS NULL OR expires_at > :now)

-- name: purge_keys
DELETE FROM idempotency_keys WHERE rowid IN (
    SELECT rowid FROM idempotency_keys WHERE expires_at <= :now LIMIT :limit)

-- name: purge_tasks
-- Ended tasks past their expires_at: what a delete may delete, up to :limit of them; not one
-- whose callback is still to be delivered (the delivery reads it).
DELETE FROM tasks WHERE seq IN (
    SELECT seq FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= :now
    AND status IN ({delete})
    AND (callback_url IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries WHERE task_id = tasks.id AND state = 'pending'))
    LIMIT :limit)

-- name: put_schedule
-- Create a schedule, or replace what it does: its created_at, last run and last task stay,
-- its version grows. When its timing (cron, every_seconds, timezone, paused) is unchanged,
-- its next_run_at stays as stored: a deploy that declares it again moves no fire time, and
-- undoes no fire made meanwhile.
INSERT INTO schedules (owner, name, cron, every_seconds, timezone, task, paused, overlap,
    catch_up, next_run_at, created_at, updated_at)
VALUES (:owner, :name, :cron, :every_seconds, :timezone, :task, :paused, :overlap, :catch_up,
    :next_run_at, :now, :now)
ON CONFLICT (owner, name) DO UPDATE SET
    next_run_at = CASE
        WHEN cron IS excluded.cron AND every_seconds IS excluded.every_seconds
            AND timezone = excluded.timezone AND paused = excluded.paused
        THEN next_run_at ELSE excluded.next_run_at END,
    cron = excluded.cron,
    every_seconds = excluded.every_seconds,
    timezone = excluded.timezone,
    task = excluded.task,
    paused = excluded.paused,
    overlap = excluded.overlap,
    catch_up = excluded.catch_up,
    updated_at = excluded.updated_at,
    version = version + 1
RETURNING {schedule_columns}

-- name: get_schedule
SELECT {schedule_columns} FROM schedules WHERE owner = :owner AND name = :name

-- name: schedules_total
SELECT COUNT(*) AS n FROM schedules WHERE :owner IS NULL OR owner = :owner

-- name: schedules_page
SELECT {schedule_columns} FROM schedules WHERE owner = :owner
ORDER BY name LIMIT :limit OFFSET :offset

-- name: schedules_page_all
SELECT {schedule_columns} FROM schedules ORDER BY name, owner LIMIT :limit OFFSET :offset

-- name: delete_schedule
-- Its fire records go with it; its tasks stay.
DELETE FROM schedules WHERE owner = :owner AND name = :name

-- name: delete_fires
DELETE FROM schedule_fires WHERE owner = :owner AND schedule = :name

-- name: due_schedules
-- The schedules whose next fire time has come, the earliest first (paused ones have none).
SELECT {schedule_columns} FROM schedules INDEXED BY schedules_due
WHERE next_run_at IS NOT NULL AND next_run_at <= :now
ORDER BY next_run_at LIMIT :limit

-- name: next_schedule_at
SELECT MIN(next_run_at) AS due FROM schedules WHERE next_run_at IS NOT NULL

-- name: advance_schedule
-- The first step of a fire: move the schedule's next_run_at on, only if it is still the
-- version the ticker read and still due at the time it read (else another process fired it
-- first, or it changed: nothing happens). Returns its last task, for the overlap check.
UPDATE schedules SET next_run_at = :next_run_at
WHERE owner = :owner AND name = :name AND version = :version AND next_run_at = :due
RETURNING last_task_id

-- name: task_busy
-- Whether the task is still queued or running (overlap: skip).
SELECT 1 AS busy FROM tasks WHERE id = :id AND status IN ('queued', 'running')

-- name: record_fire
-- The fire time's unique key: no row back when it was recorded already.
INSERT INTO schedule_fires (owner, schedule, fire_at, outcome, task_id)
VALUES (:owner, :name, :fire_at, :outcome, :task_id)
ON CONFLICT (owner, schedule, fire_at) DO NOTHING
RETURNING outcome

-- name: set_fire_outcome
UPDATE schedule_fires SET outcome = :outcome, task_id = NULL
WHERE owner = :owner AND schedule = :name AND fire_at = :fire_at

-- name: schedule_ran
-- A task was made for the schedule (a fire, or a trigger): its last run.
UPDATE schedules SET last_run_at = :run_at, last_task_id = :task_id
WHERE owner = :owner AND name = :name
RETURNING name

-- name: purge_fires
-- Fire records old enough that no clock of any process could compute their time again.
DELETE FROM schedule_fires WHERE rowid IN (
    SELECT rowid FROM schedule_fires WHERE fire_at < :fires_before LIMIT :limit)

-- name: mark_dependencies
-- A submit's dependencies (:ids, a JSON list) that are tasks of :owner not expired, marked as
-- waited for, with their status: what the new task waits for, and whether it can ever run.
-- Found by id (the unary + keeps the planner off the owner's and the expiry's indexes, which
-- would walk every task of the owner).
UPDATE tasks SET dependants = 1
WHERE id IN (SELECT value FROM json_each(:ids)) AND +owner = :owner
    AND (+expires_at IS NULL OR +expires_at > :now)
RETURNING id, status

-- name: insert_waits
-- The dependencies a new task waits for (:edges, a JSON list of [dependency, dependant]).
INSERT INTO task_waits (dependency, dependant)
SELECT value ->> 0, value ->> 1 FROM json_each(:edges)

-- name: free_dependants
-- Tasks (:ids, a JSON list) that succeeded no longer block the tasks waiting for them; a
-- task left with nothing to wait for is ready (blocked_by NULL), its other waits stay in
-- depends_on's order. The waiting tasks are found from the waits, then by id.
UPDATE tasks SET
    blocked_by = (SELECT CASE WHEN COUNT(*) > 0 THEN json_group_array(value) END
                  FROM json_each(tasks.blocked_by)
                  WHERE value NOT IN (SELECT value FROM json_each(:ids))),
    version = version + 1
WHERE id IN (SELECT waits.dependant FROM json_each(:ids) AS ended
             CROSS JOIN task_waits AS waits ON waits.dependency = ended.value)
    AND +status = 'queued' AND blocked_by IS NOT NULL
RETURNING id, blocked_by IS NULL AS ready

-- name: cancel_dependants
-- One step of a cancel down a chain: the queued tasks waiting for one of :ids (tasks that
-- ended failed or cancelled) end cancelled, with a DependencyFailed error that names the
-- dependency; each is kept as long after now as that dependency is kept after its end (the
-- result TTL). The store runs it again with those it cancelled that others wait for: each
-- step a statement of its own, so it sees waits that a submit committed meanwhile. The tasks
-- are found from the waits on the ended tasks, then by id (an UPDATE ... FROM had the planner
-- scan the table instead).
UPDATE tasks SET status = 'cancelled', finished_at = :now, version = version + 1,
    (error, expires_at) = (
        SELECT json_object('type', 'DependencyFailed', 'message',
                   'Task ' || dependency.id || ', which this task depends on, ended '
                   || dependency.status || ': this task will not run. Retry the dependency, '
                   || 'then submit this task again.'),
               :now + (dependency.expires_at - dependency.finished_at)
        FROM json_each(:ids) AS ended
        CROSS JOIN task_waits AS waits
            ON waits.dependency = ended.value AND waits.dependant = tasks.id
        CROSS JOIN tasks AS dependency ON dependency.id = waits.dependency
        WHERE +dependency.status IN ('failed', 'cancelled')
        ORDER BY dependency.id LIMIT 1)
WHERE id IN (SELECT waits.dependant FROM json_each(:ids) AS ended
             CROSS JOIN task_waits AS waits ON waits.dependency = ended.value
             CROSS JOIN tasks AS dependency ON dependency.id = waits.dependency
             WHERE +dependency.status IN ('failed', 'cancelled'))
    AND +status = 'queued'
RETURNING id, type, queue, batch_id, dependants

-- name: drop_waits
-- The waits on tasks (:ids) that ended: their dependants are freed or cancelled.
DELETE FROM task_waits WHERE dependency IN (SELECT value FROM json_each(:ids))

-- name: queued_total
SELECT COALESCE(SUM(n), 0) AS n FROM queue_counts WHERE status = 'queued'

-- name: insert_tasks
-- A batch's tasks in one statement ({values}: a row for each, filled at the call: its
-- parameters, in the order of the columns, and 'queued').
INSERT INTO tasks (id, type, params, max_attempts, timeout_seconds, priority,
    created_at, run_after, owner, queue, schedule, scheduled_for, retry_of, batch_id,
    depends_on, blocked_by, callback_url, status)
VALUES {values}

-- name: open_queue_counts
-- A queue's rows of queue_counts, if it has none yet (as the insert trigger makes them).
INSERT INTO queue_counts (status, queue, n)
SELECT statuses.status, :queue, 0
FROM (SELECT 'queued' AS status UNION ALL SELECT 'running' UNION ALL SELECT 'succeeded'
      UNION ALL SELECT 'failed' UNION ALL SELECT 'cancelled') AS statuses
WHERE NOT EXISTS (SELECT 1 FROM queue_counts WHERE status = 'queued' AND queue = :queue)

-- name: count_batch
-- A batch's :count tasks of :queue, just inserted queued: the insert trigger leaves a batch's
-- tasks to this one statement per queue.
UPDATE queue_counts SET n = n + :count WHERE status = 'queued' AND queue = :queue

-- name: insert_batch
INSERT INTO batches (id, owner, task_ids, created_at)
VALUES (:id, :owner, :task_ids, :created_at)

-- name: get_batch
SELECT id, owner, task_ids, created_at FROM batches WHERE id = :id

-- name: batch_counts
-- A batch's tasks not expired, by status: how many, the sum of their versions, their last end.
SELECT status, COUNT(*) AS n, SUM(version) AS versions, MAX(finished_at) AS finished
FROM tasks INDEXED BY tasks_by_batch
WHERE batch_id = :id AND (expires_at IS NULL OR expires_at > :now)
GROUP BY status

-- name: cancel_batch
-- Every task of the batch as cancel does one, in one statement.
UPDATE tasks SET cancel_requested = 1,
    status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    error = CASE WHEN status = 'queued' THEN NULL ELSE error END,
    finished_at = CASE WHEN status = 'queued' THEN :now ELSE finished_at END,
    expires_at = CASE WHEN status = 'queued' THEN :expires_at ELSE expires_at END,
    version = version + 1
WHERE batch_id = :id AND status IN ({cancel}) AND (status = 'queued' OR cancel_requested = 0)
RETURNING {columns}, dependants

-- name: end_delivery_leases
-- The deliveries held by a process known to be gone are due again now.
UPDATE deliveries SET next_attempt_at = :now
WHERE state = 'pending' AND substr(holder, 1, length(:prefix)) = :prefix
    AND next_attempt_at > :now

-- name: deliveries
SELECT {delivery_columns} FROM deliveries WHERE task_id IN (SELECT value FROM json_each(:ids))

-- name: next_delivery_at
SELECT next_attempt_at AS due FROM deliveries WHERE state = 'pending'
ORDER BY next_attempt_at LIMIT 1

-- name: claim_deliveries
-- The earliest pending deliveries due: each held by :holder, due again at :lease_until (if
-- its sender is lost), one more attempt counted, under way (no answer yet).
UPDATE deliveries SET holder = :holder, next_attempt_at = :lease_until,
    attempts = attempts + 1, last_attempt_at = :now, last_status = NULL, last_error = NULL
WHERE task_id IN (
    SELECT task_id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= :now
    ORDER BY next_attempt_at LIMIT :limit)
RETURNING {delivery_columns}

-- name: tasks_of
-- Tasks by id, expired or not (a delivery's task).
SELECT {columns} FROM tasks WHERE id IN (SELECT value FROM json_each(:ids))

-- name: record_delivery
-- How an attempt went, if its holder still holds the delivery; the body sent is kept.
UPDATE deliveries SET state = :state, next_attempt_at = :next_attempt_at,
    last_status = :status, last_error = :error, holder = NULL, body = COALESCE(body, :body),
    delivered_at = CASE WHEN :state = 'delivered' THEN :now ELSE delivered_at END
WHERE task_id = :id AND holder = :holder AND state = 'pending'
    AND (:attempts IS NULL OR attempts = :attempts)
RETURNING {delivery_columns}

-- name: resend_delivery
UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = :now, holder = NULL,
    delivered_at = NULL
WHERE task_id = :id AND state IN ('delivered', 'failed')
RETURNING {delivery_columns}

-- name: delivery_changed
-- Tasks whose delivery changed: so do they (their ETags).
UPDATE tasks SET version = version + 1 WHERE id IN (SELECT value FROM json_each(:ids))
-- name: release_deliveries
-- Deliveries claimed and never attempted, handed back by their holder: due now, the claim's
-- attempt not counted.
UPDATE deliveries SET holder = NULL, next_attempt_at = :now, attempts = attempts - 1
WHERE task_id IN (SELECT value FROM json_each(:ids)) AND holder = :holder AND state = 'pending'
RETURNING task_id
