// What a TypeScript user writes against the types that openapi-typescript generates from
// openapi.yaml. tests/test_generated_clients.py generates them into a temporary folder, maps the
// module name "taskapi-openapi" to that file in a generated tsconfig, and runs `tsc --noEmit`.
// This file must type-check; wrong.ts, the same usage done wrong, must not.
import type { components, operations, paths } from "taskapi-openapi";

type Schemas = components["schemas"];
export type TaskCreate = Schemas["TaskCreate"];
export type TaskStatus = Schemas["TaskStatus"];
export type Problem = Schemas["Problem"];
export type ValidationProblem = Schemas["ValidationProblem"];

// Request bodies: only `type` and `params` are required; the rest have server-side defaults.
export function addBody(x: number, y: number): Schemas["AddTaskCreate"] {
  return { type: "add", params: { x, y } };
}

export const bodies: TaskCreate[] = [
  addBody(2, 3),
  { type: "add", params: { x: 1, y: 2, delay_seconds: 0.5 }, priority: 10 },
  { type: "sleep", params: { seconds: 30 }, timeout_seconds: 60, delay_seconds: 5 },
  { type: "fail", params: { message: "boom", succeed_after: 1 }, max_attempts: 2 },
  { type: "fail", params: { message: "always", succeed_after: null } },
];

// The discriminator narrows the union to the params of that type.
export function paramsSummary(body: TaskCreate): string {
  switch (body.type) {
    case "add":
      return `${body.params.x} + ${body.params.y}`;
    case "sleep":
      return `sleep ${body.params.seconds}s`;
    case "fail":
      return `fail: ${body.params.message}`;
    default: {
      const unreachable: never = body;
      return unreachable;
    }
  }
}

// The request body of createTask is that union.
export const createRequest: operations["createTask"]["requestBody"]["content"]["application/json"] =
  addBody(40, 2);

const TERMINAL: ReadonlySet<TaskStatus["status"]> = new Set(["succeeded", "failed", "cancelled"]);

export function isTerminal(task: TaskStatus): boolean {
  return TERMINAL.has(task.status);
}

export function describeTask(task: TaskStatus): string {
  switch (task.status) {
    case "queued":
      return `${task.id} queued, runs after ${task.run_after}`;
    case "running": {
      const progress = task.progress;
      const done = progress === null ? "" : ` ${progress.current}/${progress.total ?? "?"}`;
      return `${task.id} running (attempt ${task.attempts} of ${task.max_attempts})${done}`;
    }
    case "succeeded":
      return `${task.id} = ${JSON.stringify(task.result)} at ${task.finished_at ?? "?"}`;
    case "failed":
      return `${task.id} failed: ${task.error === null ? "?" : `${task.error.type}: ${task.error.message}`}`;
    case "cancelled":
      return `${task.id} cancelled${task.cancel_requested ? " on request" : ""}`;
    default: {
      const unreachable: never = task.status;
      return unreachable;
    }
  }
}

// Responses and problems, as the operations declare them.
type Created = operations["createTask"]["responses"][202]["content"]["application/json"];
type NotFound = operations["getTask"]["responses"][404]["content"]["application/problem+json"];
type Invalid = operations["createTask"]["responses"][422]["content"]["application/problem+json"];

export function createdId(task: Created): string {
  return task.id;
}

export function problemText(problem: NotFound | Problem): string {
  return `${problem.status} ${problem.title}: ${problem.detail} (${problem.type})`;
}

export function fieldErrors(problem: Invalid | ValidationProblem): string[] {
  const lines: string[] = [];
  for (const [location, fields] of Object.entries(problem.errors)) {
    for (const [field, messages] of Object.entries(fields)) {
      lines.push(`${location}.${field}: ${messages.join(" ")}`);
    }
  }
  return lines;
}

// Query parameters of listTasks, with the filters typed.
export const listQuery: NonNullable<operations["listTasks"]["parameters"]["query"]> = {
  status: ["queued", "running"],
  type: "sleep",
  page: 2,
  page_size: 50,
};

export type TaskPath = keyof paths;
export const taskPath: TaskPath = "/tasks/{task_id}";

export function typeNames(types: Schemas["TaskType"][]): string[] {
  return types.map((t) => `${t.name} (max ${t.max_attempts}, timeout ${t.timeout_seconds ?? "none"})`);
}

// Queues: a task names its queue; a queue's settings change with a QueueUpdate.
export const toEmails: TaskCreate = { type: "add", params: { x: 1, y: 2 }, queue: "emails" };

export function queueLine(queue: Schemas["Queue"]): string {
  const limit = queue.concurrency === null ? "no limit" : `at most ${queue.concurrency}`;
  const oldest = queue.oldest_queued_seconds ?? 0;
  return `${queue.name}${queue.paused ? " (paused)" : ""}: ${queue.counts.queued} queued, ${limit}, oldest ${oldest}s`;
}

export const pause: Schemas["QueueUpdate"] = { paused: true };
export const unlimited: operations["updateQueue"]["requestBody"]["content"]["application/json"] = {
  concurrency: null,
};
export const byQueue: NonNullable<operations["listTasks"]["parameters"]["query"]> = {
  queue: "emails",
};
export function queueOf(task: TaskStatus): string {
  return task.queue;
}

// Schedules: the task a schedule makes is a TaskCreate less delay_seconds, one type per task type.
export const nightly: Schemas["ScheduleWrite"] = {
  cron: "0 3 * * *",
  timezone: "Europe/Paris",
  task: { type: "add", params: { x: 1, y: 2 }, priority: 5 },
};
export const everyTenMinutes: operations["putSchedule"]["requestBody"]["content"]["application/json"] = {
  every_seconds: 600,
  overlap: "allow",
  catch_up: "none",
  task: { type: "sleep", params: { seconds: 5 } },
};

export function scheduleLine(schedule: Schemas["Schedule"]): string {
  const when = schedule.cron ?? `every ${schedule.every_seconds ?? "?"}s`;
  const next = schedule.next_run_at ?? "paused";
  return `${schedule.name} (${when}, ${schedule.timezone}): ${schedule.task.type}, next ${next}`;
}

export function madeBy(task: TaskStatus): string | null {
  return task.schedule === null ? null : `${task.schedule} at ${task.scheduled_for ?? "?"}`;
}
export const bySchedule: NonNullable<operations["listTasks"]["parameters"]["query"]> = {
  schedule: "nightly",
};
type Triggered = operations["triggerSchedule"]["responses"][202]["content"]["application/json"];
export function triggeredId(task: Triggered): string {
  return task.id;
}

// Batches: a BatchCreate is a list of TaskCreate; a Batch counts its tasks by status.
export const batchBody: Schemas["BatchCreate"] = {
  tasks: [addBody(1, 2), { type: "sleep", params: { seconds: 1 }, queue: "reports" }],
};
export const createBatchRequest: operations["createBatch"]["requestBody"]["content"]["application/json"] =
  batchBody;
export function batchLine(batch: Schemas["Batch"]): string {
  const ended = batch.counts.succeeded + batch.counts.failed + batch.counts.cancelled;
  const finished = batch.finished_at ?? "not yet";
  return `${batch.id}: ${ended}/${batch.size} ended, done ${batch.done}, finished ${finished}`;
}
type CreatedBatch = operations["createBatch"]["responses"][202]["content"]["application/json"];
export function firstTaskOf(batch: CreatedBatch): string | undefined {
  return batch.task_ids[0];
}
export const byBatch: NonNullable<operations["listTasks"]["parameters"]["query"]> = {
  batch: "0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10",
};
export const afterOthers: TaskCreate = {
  type: "add",
  params: { x: 1, y: 2 },
  depends_on: ["0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10"],
};
export function waitingFor(task: TaskStatus): string[] {
  return task.blocked_by.filter((id) => task.depends_on.includes(id));
}
export function batchOf(task: TaskStatus): string | null {
  return task.batch_id;
}

// A callback: asked for at submit, followed in TaskStatus, received as a CallbackEvent.
export const withCallback: TaskCreate = {
  type: "add",
  params: { x: 1, y: 2 },
  callback_url: "https://hooks.example.com/taskapi",
};

export function callbackSummary(task: TaskStatus): string {
  const callback = task.callback;
  if (callback === null) {
    return task.callback_url === null ? "no callback" : "sent once the task ends";
  }
  switch (callback.state) {
    case "pending":
      return `${callback.webhook_id}: attempt ${callback.attempts + 1} at ${callback.next_attempt_at}`;
    case "delivered":
      return `${callback.event} delivered at ${callback.delivered_at}`;
    case "failed":
      return `failed: ${callback.last_status ?? "no answer"} ${callback.last_error ?? ""}`;
  }
}

export function onTaskEnded(event: Schemas["CallbackEvent"]): string {
  const ended: TaskStatus = event.data;
  return `${event.type} at ${event.timestamp}: ${ended.id} ${event.omitted?.join(",") ?? ""}`;
}
