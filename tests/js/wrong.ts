// Usage that the generated types must refuse: tsc reports an error on every line marked
// `// error` and on no other line (tests/test_generated_clients.py checks exactly that).
import type { components } from "taskapi-openapi";

type Schemas = components["schemas"];

export const stringAddend: Schemas["AddTaskCreate"] = {
  type: "add",
  params: { x: "2", y: 3 }, // error
};

export const missingParams: Schemas["TaskCreate"] = { type: "sleep" }; // error

export const paramsOfAnotherType: Schemas["TaskCreate"] = {
  type: "sleep",
  params: { x: 1, y: 2 }, // error
};

export const unknownType: Schemas["TaskCreate"] = { type: "mine", params: {} }; // error

export const unknownField: Schemas["SleepTaskCreate"] = {
  type: "sleep",
  params: { seconds: 1 },
  retries: 3, // error
};

export function isDone(task: Schemas["TaskStatus"]): boolean {
  return task.status === "done"; // error
}

export function errorMessage(task: Schemas["TaskStatus"]): string {
  return task.error.message; // error
}

export function problemStatus(problem: Schemas["Problem"]): string {
  return problem.status; // error
}

export const pausedAsText: Schemas["QueueUpdate"] = { paused: "yes" }; // error

export const queueSize: Schemas["QueueUpdate"] = { size: 3 }; // error

export function queueConcurrency(queue: Schemas["Queue"]): number {
  return queue.concurrency; // error
}

export const delayedTemplate: Schemas["ScheduleWrite"] = {
  every_seconds: 60,
  task: { type: "add", params: { x: 1, y: 2 }, delay_seconds: 5 }, // error
};

export const unknownOverlap: Schemas["ScheduleWrite"] = {
  cron: "@daily",
  overlap: "queue", // error
  task: { type: "sleep", params: { seconds: 1 } },
};

export const everyAsText: Schemas["ScheduleWrite"] = {
  every_seconds: "60", // error
  task: { type: "sleep", params: { seconds: 1 } },
};

export const batchOfOne: Schemas["BatchCreate"] = { type: "add", params: { x: 1, y: 2 } }; // error

export const dependsOnOne: Schemas["AddTaskCreate"] = {
  type: "add",
  params: { x: 1, y: 2 },
  depends_on: "0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10", // error
};

export const scheduledAfter: Schemas["ScheduleWrite"] = {
  every_seconds: 60,
  task: { type: "add", params: { x: 1, y: 2 }, depends_on: [] }, // error
};

export function batchFinished(batch: Schemas["Batch"]): string {
  return batch.finished_at; // error
}
