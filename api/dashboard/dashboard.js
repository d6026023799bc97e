// taskapi dashboard: polls GET /tasks, GET /queues, GET /schedules and GET /activity, draws the
// last minutes as inline SVG, lists the queues with a pause switch each (PATCH /queues/{name})
// and the schedules with a pause switch (GET, then PUT with paused flipped) and a Run now button
// (POST /schedules/{name}/trigger) each, follows the batches of the newest tasks (GET
// /batches/{id}, conditional on its ETag) with a Cancel button each (POST
// /batches/{id}/cancel), pages and filters the task list, and shows one task in full (with its
// callback's delivery, and Send callback again: POST /tasks/{id}/callback/retry). No
// libraries. Every value from the API reaches the DOM as text (textContent / attributes),
// never as HTML: task params, results, error messages, callback URLs and receivers' errors
// are user data.
"use strict";

(function () {
  const POLL_MS = 2000;
  const WINDOW_MS = 5 * 60 * 1000;
  const PAGE_SIZE = 20;
  const TOKEN_KEY = "taskapi.dashboard.token";
  const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
  const SVG_NS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  // {t, queued, running, ended, failed}: the store's counts, as GET /activity answers them
  // (kept by the server, so the charts show the last minutes from the first paint).
  let points = [];
  // What the list shows.
  const view = { page: 1, status: "", type: "", queue: "", schedule: "", batch: "" };
  const switching = new Set(); // queues whose PATCH is on its way: their switch waits
  const scheduling = new Set(); // schedules whose change or trigger is on its way
  // The fields of a Schedule that PUT /schedules/{name} takes back (ScheduleWrite).
  const WRITE_FIELDS = ["cron", "every_seconds", "timezone", "task", "paused", "overlap",
    "catch_up"];
  const SCHEDULE_PAGE_SIZE = 100;
  // Batches cannot be listed: those shown are the batches of the newest BATCH_SCAN tasks, at
  // most BATCHES_SHOWN of them (and the one the list is filtered by).
  const BATCH_SCAN = 100;
  const BATCHES_SHOWN = 10;
  const batchReads = new Map(); // batch id → {etag, batch}: the last read, for If-None-Match
  const cancelling = new Set(); // batches whose cancel is on its way
  let selected = null; // the id of the task shown in full, or null
  let typesShown = false;
  let timer = null;
  let busy = false;
  let again = false;

  // ---- DOM helpers -------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child); // strings become text
    }
    return node;
  }

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function shorten(text, max) {
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function json(value) {
    try {
      return JSON.stringify(value);
    } catch (e) {
      return String(value);
    }
  }

  // An id in few characters: its end. The tasks of a batch have UUIDv7 ids, which begin
  // with the time they were made: a batch's tasks (and the batch) share their first twelve
  // characters, and only their ends tell them apart.
  function shortId(id) {
    const text = String(id);
    return text.length > 8 ? "…" + text.slice(-8) : text;
  }

  function knownStatus(status) {
    return STATUSES.includes(status) ? status : "unknown";
  }

  // ---- API calls ---------------------------------------------------------------------------

  class AuthNeeded extends Error {
    constructor(detail, token) {
      super(detail);
      this.token = token; // the token refused, or null
    }
  }

  // A request with the token; a GET is sent again once when the connection failed: the
  // server may close an idle keep-alive connection just as the next poll reuses it.
  async function call(path, accept, method, body, extra) {
    const headers = { Accept: accept, ...extra };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const send = () => fetch(path, {
      method: method || "GET",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "same-origin",
      signal: AbortSignal.timeout(10000),
    });
    let response;
    try {
      response = await send();
    } catch (e) {
      if (!(e instanceof TypeError) || (method && method !== "GET")) throw e;
      response = await send();
    }
    if (response.status === 401) throw new AuthNeeded(await problemDetail(response), token);
    return response;
  }

  async function problemDetail(response) {
    try {
      const problem = await response.json();
      const said = String(problem.detail || problem.title || response.status);
      const fields = [];
      for (const [where, byField] of Object.entries(problem.errors || {})) {
        for (const [field, messages] of Object.entries(byField || {})) {
          fields.push(where + "." + field + ": " + [].concat(messages).join(" "));
        }
      }
      return fields.length ? said + " " + fields.join("; ") : said;
    } catch (e) {
      return "HTTP " + response.status;
    }
  }

  function listPath() {
    const query = new URLSearchParams({ page: String(view.page), page_size: String(PAGE_SIZE) });
    if (view.status) query.append("status", view.status);
    if (view.type) query.append("type", view.type);
    if (view.queue) query.append("queue", view.queue);
    if (view.schedule) query.append("schedule", view.schedule);
    if (view.batch) query.append("batch", view.batch);
    return "tasks?" + query.toString();
  }

  // One page of the list, as filtered, and its X-Pagination.
  async function loadTasks() {
    const response = await call(listPath(), "application/json");
    if (!response.ok) {
      const detail = await problemDetail(response);
      throw new Error("GET /tasks answered " + response.status + ": " + detail);
    }
    let page = {};
    try {
      page = JSON.parse(response.headers.get("X-Pagination") || "{}");
    } catch (e) {
      page = {};
    }
    return { tasks: await response.json(), page };
  }

  // The task shown in full: the task, or {gone: detail} when there is no such task any more.
  async function loadDetail(id) {
    const response = await call("tasks/" + encodeURIComponent(id), "application/json");
    if (response.status === 404) return { gone: await problemDetail(response) };
    if (!response.ok) {
      throw new Error("GET /tasks/" + id + " answered " + response.status + ": " +
        await problemDetail(response));
    }
    return { task: await response.json() };
  }

  // The type filter's choices, once: the names of GET /task-types.
  async function loadTypes() {
    const response = await call("task-types", "application/json");
    if (!response.ok) return;
    const select = $("filter-type");
    for (const type of await response.json()) {
      const name = String(type.name);
      if (![...select.options].some((o) => o.value === name)) {
        select.append(el("option", { value: name }, name));
      }
    }
    typesShown = true;
  }

  // Every queue, or {unavailable: reason}; never throws (the list works without them).
  async function loadQueues() {
    try {
      const response = await call("queues", "application/json");
      if (!response.ok) return { unavailable: "GET /queues answered " + response.status };
      const body = await response.json();
      return { queues: Array.isArray(body) ? body : [] };
    } catch (e) {
      const reason = e instanceof AuthNeeded ? "GET /queues refused the token" : e.message;
      return { unavailable: String(reason) };
    }
  }

  // The caller's schedules (the first page: 100), or {unavailable: reason}; never throws.
  async function loadSchedules() {
    try {
      const response = await call("schedules?page_size=" + SCHEDULE_PAGE_SIZE,
        "application/json");
      if (!response.ok) return { unavailable: "GET /schedules answered " + response.status };
      const body = await response.json();
      return { schedules: Array.isArray(body) ? body : [] };
    } catch (e) {
      const reason = e instanceof AuthNeeded ? "GET /schedules refused the token" : e.message;
      return { unavailable: String(reason) };
    }
  }

  // One batch: read again only when its ETag changed (a 304 answers the last read); null when
  // it is gone (every task of it deleted or expired).
  async function loadBatch(id) {
    const last = batchReads.get(id);
    const response = await call("batches/" + encodeURIComponent(id), "application/json", "GET",
      undefined, last ? { "If-None-Match": last.etag } : undefined);
    if (response.status === 304 && last) return last.batch;
    if (response.status === 404) {
      batchReads.delete(id);
      return null;
    }
    if (!response.ok) throw new Error("GET /batches/" + id + " answered " + response.status);
    const batch = await response.json();
    const etag = response.headers.get("ETag");
    if (etag) batchReads.set(id, { etag, batch });
    else batchReads.delete(id);
    return batch;
  }

  // The batches of the newest tasks, newest first, or {unavailable: reason}; never throws.
  async function loadBatches() {
    try {
      const response = await call("tasks?page_size=" + BATCH_SCAN, "application/json");
      if (!response.ok) return { unavailable: "GET /tasks answered " + response.status };
      const body = await response.json();
      const ids = [];
      for (const task of Array.isArray(body) ? body : []) {
        const id = task.batch_id ? String(task.batch_id) : null;
        if (id && !ids.includes(id) && ids.length < BATCHES_SHOWN) ids.push(id);
      }
      if (view.batch && !ids.includes(view.batch)) ids.push(view.batch);
      for (const id of [...batchReads.keys()]) if (!ids.includes(id)) batchReads.delete(id);
      const batches = (await Promise.all(ids.map(loadBatch))).filter(Boolean);
      batches.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
      return { batches };
    } catch (e) {
      const reason = e instanceof AuthNeeded ? "the token was refused" : e.message;
      return { unavailable: String(reason) };
    }
  }

  // Counts by status from the list's X-Pagination totals: used only while /activity is missing.
  async function countsFromList() {
    const counts = {};
    await Promise.all(STATUSES.map(async (status) => {
      const response = await call("tasks?page_size=1&status=" + status, "application/json");
      const page = response.ok ? JSON.parse(response.headers.get("X-Pagination") || "{}") : {};
      counts[status] = page.total;
    }));
    return counts;
  }

  // The last minutes, or {unavailable: reason}; never throws (the list works without them).
  async function loadActivity() {
    try {
      const response = await call("activity", "application/json");
      if (!response.ok) return { unavailable: "GET /activity answered " + response.status };
      const body = await response.json();
      return { samples: Array.isArray(body.samples) ? body.samples : [], now: body.now };
    } catch (e) {
      const reason = e instanceof AuthNeeded ? "GET /activity refused the token" : e.message;
      return { unavailable: String(reason) };
    }
  }

  // ---- The last minutes -------------------------------------------------------------------

  function record(samples) {
    const count = (sample, status) => (Number.isFinite(sample[status]) ? sample[status] : 0);
    points = samples
      .map((sample) => ({
        t: Date.parse(sample.time),
        queued: count(sample, "queued"),
        running: count(sample, "running"),
        ended: count(sample, "succeeded") + count(sample, "failed") + count(sample, "cancelled"),
        failed: count(sample, "failed"),
      }))
      .filter((p) => Number.isFinite(p.t))
      .sort((a, b) => a.t - b.t);
  }

  // Per second between consecutive readings: the rise of the finished counts. Deleting
  // finished tasks lowers them; such an interval counts as none rather than negative.
  function rates(key) {
    const out = [];
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1];
      const b = points[i];
      const seconds = (b.t - a.t) / 1000;
      if (seconds < 0.5) continue; // readings are seconds apart; closer ones would spike
      out.push([b.t, Math.max(0, b[key] - a[key]) / seconds]);
    }
    return out;
  }

  // ---- Chart -------------------------------------------------------------------------------

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  function label(value) {
    return Number.isInteger(value) ? String(value) : value.toFixed(value < 1 ? 2 : 1);
  }

  function ago(ms) {
    if (ms < 60000) return "−" + Math.round(ms / 1000) + " s";
    const m = ms / 60000;
    return "−" + (Number.isInteger(m) ? m : m.toFixed(1)) + " min";
  }

  // The time axis spans the data kept, from 1 minute up to the whole window.
  function drawChart(svg, series, unit) {
    const W = 480, H = 170, L = 44, R = 10, T = 10, B = 24;
    const now = Date.now();
    const span = Math.min(WINDOW_MS, Math.max(60000, now - (points.length ? points[0].t : now)));
    const t0 = now - span;
    const top = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))));
    const x = (t) => L + ((t - t0) / span) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const nodes = [];
    for (const v of [0, top / 2, top]) {
      nodes.push(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      nodes.push(svgEl("text", { class: "axis", x: L - 6, y: y(v) + 4, "text-anchor": "end" },
        label(v) + unit));
    }
    for (const [t, text] of [[t0, ago(span)], [now - span / 2, ago(span / 2)], [now, "now"]]) {
      const anchor = t === t0 ? "start" : t === now ? "end" : "middle";
      nodes.push(svgEl("text", { class: "axis", x: x(t), y: H - 6, "text-anchor": anchor }, text));
    }
    for (const s of series) {
      const shown = s.points.filter((p) => p[0] >= t0);
      if (!shown.length) continue;
      const coords = shown.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
      const attrs = { class: "series " + s.name, "data-series": s.name, points: coords };
      nodes.push(svgEl("polyline", attrs));
      const [t, v] = shown[shown.length - 1];
      nodes.push(svgEl("circle", { class: "dot " + s.name, cx: x(t), cy: y(v), r: 2.5 }));
    }
    svg.replaceChildren(...nodes);
  }

  function drawCharts() {
    drawChart($("chart-depth"), [
      { name: "queued", points: points.map((p) => [p.t, p.queued]) },
      { name: "running", points: points.map((p) => [p.t, p.running]) },
    ], "");
    drawChart($("chart-rate"), [
      { name: "finished", points: rates("ended") },
      { name: "failed", points: rates("failed") },
    ], "/s");
  }

  // ---- Queues ------------------------------------------------------------------------------

  // Seconds as a short age: "45 s", "3 min", "2 h", "4 d"; "—" for none.
  function age(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
    const s = Math.max(0, seconds);
    if (s < 60) return Math.round(s) + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    if (s < 86400) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  function queueRow(queue) {
    const name = String(queue.name);
    const paused = queue.paused === true;
    const counts = queue.counts || {};
    const count = (status) => el("td", { class: "num", "data-field": status },
      Number.isFinite(counts[status]) ? String(counts[status]) : "–");
    const limit = Number.isFinite(queue.concurrency) ? String(queue.concurrency) : "no limit";
    const toggle = el("button", {
      type: "button", role: "switch", class: "switch", "data-queue": name,
      "aria-checked": paused ? "true" : "false", "aria-label": "Pause queue " + name,
      title: paused ? "Paused: it starts none of its tasks. Click to resume."
        : "Active: its tasks start. Click to pause (running ones finish).",
    }, el("span", { class: "knob" }), el("span", { class: "switch-text" },
      paused ? "paused" : "active"));
    if (switching.has(name)) toggle.disabled = true;
    return el("tr", { "data-queue": name, class: "queue" + (paused ? " paused" : "") },
      el("th", { scope: "row", class: "queue-name" }, name),
      ...STATUSES.map(count),
      el("td", { class: "num", "data-field": "oldest",
        title: "Age of the oldest task ready to start" }, age(queue.oldest_queued_seconds)),
      el("td", { class: "num", "data-field": "concurrency" }, limit),
      el("td", { "data-field": "paused" }, toggle));
  }

  function showQueues(result) {
    if (!result.queues) {
      $("queues-state").textContent = "The queues are unavailable (" + result.unavailable + ").";
      return;
    }
    $("queues-state").textContent = "";
    $("queue-rows").replaceChildren(...result.queues.map(queueRow));
    const select = $("filter-queue");
    for (const queue of result.queues) {
      const name = String(queue.name);
      if (![...select.options].some((o) => o.value === name)) {
        select.append(el("option", { value: name }, name));
      }
    }
  }

  // Pause or resume a queue; the answer (or the refusal, such as a 403 for a caller who is
  // not an admin) is said under the table.
  async function switchQueue(name, pause) {
    switching.add(name);
    $("queue-message").textContent = (pause ? "Pausing " : "Resuming ") + name + "…";
    try {
      const response = await call("queues/" + encodeURIComponent(name), "application/json",
        "PATCH", { paused: pause });
      if (!response.ok) {
        $("queue-message").textContent = "Refused (" + response.status + "): " +
          await problemDetail(response);
        return;
      }
      const queue = await response.json();
      $("queue-message").textContent = "Queue " + name + " " +
        (queue.paused ? "paused: it starts none of its tasks." : "resumed.");
    } catch (e) {
      if (e instanceof AuthNeeded) askToken(e);
      else $("queue-message").textContent = "Cannot reach the service (" + e.message + ").";
    } finally {
      switching.delete(name);
      poll();
    }
  }

  $("queue-rows").addEventListener("click", (event) => {
    const toggle = event.target.closest("button[data-queue]");
    if (!toggle || toggle.disabled) return;
    toggle.disabled = true;
    switchQueue(toggle.dataset.queue, toggle.getAttribute("aria-checked") !== "true");
  });

  // ---- Schedules ---------------------------------------------------------------------------

  // every_seconds exactly, in the largest unit that divides it: "every 30 s", "every 2 h".
  function every(seconds) {
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
      if (seconds % size === 0) return "every " + seconds / size + " " + unit;
    }
    return "every " + seconds + " s";
  }

  function whenOf(schedule) {
    if (schedule.cron) return String(schedule.cron) + " " + String(schedule.timezone || "UTC");
    return Number.isFinite(schedule.every_seconds) ? every(schedule.every_seconds) : "—";
  }

  // A time to come, for people: "in 12 s", "in 5 min", "in 3 h", else the date.
  function until(iso) {
    const seconds = (Date.parse(iso) - Date.now()) / 1000;
    if (!Number.isFinite(seconds)) return String(iso);
    if (seconds < 0) return "due";
    if (seconds < 60) return "in " + Math.round(seconds) + " s";
    if (seconds < 3600) return "in " + Math.round(seconds / 60) + " min";
    if (seconds < 86400) return "in " + Math.round(seconds / 3600) + " h";
    return new Date(iso).toLocaleString();
  }

  function scheduleRow(schedule) {
    const name = String(schedule.name);
    const paused = schedule.paused === true;
    const task = schedule.task || {};
    const busy = scheduling.has(name);
    const next = paused ? el("span", { class: "muted" }, "paused")
      : schedule.next_run_at ? el("span", { title: new Date(schedule.next_run_at).toLocaleString() },
        until(schedule.next_run_at)) : "—";
    let last = "—";
    if (schedule.last_run_at) {
      const text = since(schedule.last_run_at);
      last = schedule.last_task_id
        ? el("button", { type: "button", class: "link", "data-task-id": String(schedule.last_task_id),
          title: "Show task " + schedule.last_task_id }, text)
        : text;
    }
    const toggle = el("button", {
      type: "button", role: "switch", class: "switch", "data-schedule": name,
      "aria-checked": paused ? "true" : "false", "aria-label": "Pause schedule " + name,
      title: paused ? "Paused: it makes no task. Click to resume."
        : "Active: it makes a task at each fire time. Click to pause.",
    }, el("span", { class: "knob" }), el("span", { class: "switch-text" },
      paused ? "paused" : "active"));
    const run = el("button", { type: "button", class: "run-now", "data-run": name,
      "aria-label": "Run schedule " + name + " now",
      title: "Make its task now (even while it is paused)" }, "Run now");
    toggle.disabled = busy;
    run.disabled = busy;
    const params = json(task.params || {});
    return el("tr", { "data-schedule": name, class: "schedule" + (paused ? " paused" : "") },
      el("th", { scope: "row", class: "schedule-name" }, name),
      el("td", { class: "when", "data-field": "when" }, whenOf(schedule)),
      el("td", { class: "task-template", "data-field": "task" },
        el("div", {}, el("span", { class: "type" }, String(task.type || "")),
          task.queue ? el("span", { class: "muted" }, " · " + String(task.queue)) : null),
        el("div", { class: "params muted", title: params }, shorten(params, 60))),
      el("td", { "data-field": "next_run" }, next),
      el("td", { "data-field": "last_run", title: String(schedule.last_run_at || "") }, last),
      el("td", { "data-field": "paused" }, toggle),
      el("td", {}, run));
  }

  function showSchedules(result) {
    if (!result.schedules) {
      $("schedules-state").textContent =
        "The schedules are unavailable (" + result.unavailable + ").";
      $("schedules-empty").hidden = true;
      return;
    }
    $("schedules-state").textContent = "";
    $("schedule-rows").replaceChildren(...result.schedules.map(scheduleRow));
    $("schedules-empty").hidden = result.schedules.length > 0;
    const select = $("filter-schedule");
    for (const schedule of result.schedules) {
      const name = String(schedule.name);
      if (![...select.options].some((o) => o.value === name)) {
        select.append(el("option", { value: name }, name));
      }
    }
  }

  function schedulePath(name) {
    return "schedules/" + encodeURIComponent(name);
  }

  // Say a refusal as the queues do: "Refused (status): detail".
  async function refused(response) {
    $("schedule-message").textContent = "Refused (" + response.status + "): " +
      await problemDetail(response);
  }

  // Pause or resume a schedule: read it, and put it back with only paused changed.
  async function switchSchedule(name, pause) {
    $("schedule-message").textContent = (pause ? "Pausing " : "Resuming ") + name + "…";
    const read = await call(schedulePath(name), "application/json");
    if (!read.ok) return refused(read);
    const current = await read.json();
    const body = {};
    for (const key of WRITE_FIELDS) {
      if (current[key] !== null && current[key] !== undefined) body[key] = current[key];
    }
    body.paused = pause;
    const response = await call(schedulePath(name), "application/json", "PUT", body);
    if (!response.ok) return refused(response);
    const schedule = await response.json();
    $("schedule-message").textContent = "Schedule " + name + " " + (schedule.paused
      ? "paused: it makes no task until it is resumed."
      : "resumed" + (schedule.next_run_at ? ": next run " + until(schedule.next_run_at) : "") +
        ".");
  }

  // Make a schedule's task now, and show that task in full.
  async function runSchedule(name) {
    $("schedule-message").textContent = "Running " + name + "…";
    const response = await call(schedulePath(name) + "/trigger", "application/json", "POST");
    if (!response.ok) return refused(response);
    const task = await response.json();
    $("schedule-message").textContent = "Schedule " + name + " made task " + task.id + ".";
    openDetail(String(task.id));
  }

  async function scheduleAction(name, action) {
    scheduling.add(name);
    try {
      await action();
    } catch (e) {
      if (e instanceof AuthNeeded) askToken(e);
      else $("schedule-message").textContent = "Cannot reach the service (" + e.message + ").";
    } finally {
      scheduling.delete(name);
      poll();
    }
  }

  $("schedule-rows").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || button.disabled) return;
    if (button.dataset.taskId) {
      openDetail(button.dataset.taskId);
      return;
    }
    const name = button.dataset.schedule || button.dataset.run;
    if (!name) return;
    for (const b of button.closest("tr").querySelectorAll("button[data-schedule], button[data-run]")) {
      b.disabled = true;
    }
    if (button.dataset.run) scheduleAction(name, () => runSchedule(name));
    else {
      const pause = button.getAttribute("aria-checked") !== "true";
      scheduleAction(name, () => switchSchedule(name, pause));
    }
  });

  // ---- Batches -----------------------------------------------------------------------------

  // A batch's tasks by how they stand: those deleted or expired since (only ended tasks can
  // be) count as ended, so a batch that is done is full.
  function batchShares(batch) {
    const counts = batch.counts || {};
    const n = (status) => (Number.isFinite(counts[status]) ? counts[status] : 0);
    const size = Number.isFinite(batch.size) ? batch.size : 0;
    const kept = STATUSES.reduce((sum, status) => sum + n(status), 0);
    const shares = { succeeded: n("succeeded"), failed: n("failed"), cancelled: n("cancelled"),
      gone: Math.max(0, size - kept) };
    const ended = shares.succeeded + shares.failed + shares.cancelled + shares.gone;
    return { size, ended, shares };
  }

  // A bar of the ended share, in parts: succeeded, failed, cancelled, gone.
  function batchProgress(batch) {
    const { size, ended, shares } = batchShares(batch);
    const said = [];
    for (const [name, words] of [["failed", "failed"], ["cancelled", "cancelled"],
      ["gone", "deleted or expired"]]) {
      if (shares[name]) said.push(shares[name] + " " + words);
    }
    const parts = Object.entries(shares).filter(([, count]) => count > 0).map(([name, count]) => {
      const part = el("div", { class: "part " + name, "data-part": name });
      part.style.width = (size ? (count / size) * 100 : 0).toFixed(2) + "%";
      return part;
    });
    const text = ended + " / " + size + " ended" + (said.length ? " · " + said.join(" · ") : "");
    const bar = el("div", {
      class: "bar parts", role: "progressbar", "aria-label": "Batch " + batch.id + " ended",
      "aria-valuemin": "0", "aria-valuemax": String(size), "aria-valuenow": String(ended),
      "aria-valuetext": text,
    }, ...parts);
    return el("div", { class: "progress" }, bar, el("div", { class: "progress-text" }, text));
  }

  function batchRow(batch) {
    const id = String(batch.id);
    const counts = batch.counts || {};
    const count = (status) => el("td", { class: "num", "data-field": status },
      Number.isFinite(counts[status]) ? String(counts[status]) : "–");
    const done = batch.done === true;
    const show = el("button", { type: "button", class: "link", "data-show-batch": id,
      "aria-label": "Show tasks of batch " + id }, "Show tasks");
    const cancel = el("button", { type: "button", class: "run-now", "data-cancel-batch": id,
      "aria-label": "Cancel batch " + id,
      title: done ? "Every task of it has ended." : "Cancel every task of it not ended yet" },
    "Cancel");
    cancel.disabled = done || cancelling.has(id);
    const attrs = { "data-batch": id, class: "batch" + (done ? " done" : "") };
    if (view.batch === id) attrs["aria-current"] = "true";
    return el("tr", attrs,
      el("th", { scope: "row", class: "batch-id" }, el("code", {}, id),
        el("div", { class: "muted" }, batch.size + (batch.size === 1 ? " task" : " tasks"))),
      el("td", { "data-field": "progress" }, batchProgress(batch)),
      ...STATUSES.map(count),
      el("td", { "data-field": "created_at", title: String(batch.created_at) },
        since(batch.created_at)),
      el("td", { "data-field": "finished_at", title: String(batch.finished_at || "") },
        batch.finished_at ? since(batch.finished_at) : "—"),
      el("td", { class: "batch-actions" }, show, cancel));
  }

  function showBatches(result) {
    if (!result.batches) {
      $("batches-state").textContent = "The batches are unavailable (" + result.unavailable + ").";
      $("batches-empty").hidden = true;
      return;
    }
    $("batches-state").textContent = "";
    $("batch-rows").replaceChildren(...result.batches.map(batchRow));
    $("batches-empty").hidden = result.batches.length > 0;
    for (const batch of result.batches) offerBatch(String(batch.id));
  }

  // Cancel what is left of a batch; the answer (or the refusal) is said under the table.
  async function cancelBatch(id) {
    cancelling.add(id);
    $("batch-message").textContent = "Cancelling batch " + id + "…";
    try {
      const response = await call("batches/" + encodeURIComponent(id) + "/cancel",
        "application/json", "POST");
      if (!response.ok) {
        $("batch-message").textContent = "Refused (" + response.status + "): " +
          await problemDetail(response);
        return;
      }
      const batch = await response.json();
      const running = batch.counts && batch.counts.running;
      $("batch-message").textContent = "Batch " + id + " cancelled: no more of its tasks start" +
        (running ? "; " + running + (running === 1 ? " running task stops when it" :
          " running tasks stop when they") + " next check." : ".");
    } catch (e) {
      if (e instanceof AuthNeeded) askToken(e);
      else $("batch-message").textContent = "Cannot reach the service (" + e.message + ").";
    } finally {
      cancelling.delete(id);
      poll();
    }
  }

  $("batch-rows").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || button.disabled) return;
    if (button.dataset.showBatch) filterByBatch(button.dataset.showBatch);
    else if (button.dataset.cancelBatch) {
      button.disabled = true; // one click, one request
      cancelBatch(button.dataset.cancelBatch);
    }
  });

  // ---- Header, table, notices --------------------------------------------------------------

  function showCounts(counts) {
    for (const node of document.querySelectorAll("[data-count]")) {
      const n = counts[node.dataset.count];
      node.textContent = Number.isFinite(n) ? String(n) : "–";
    }
  }

  function since(iso) {
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (!Number.isFinite(seconds)) return "";
    if (seconds < 60) return Math.round(seconds) + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    return new Date(iso).toLocaleString();
  }

  function runTime(task) {
    if (!task.started_at) return "";
    const end = task.finished_at ? Date.parse(task.finished_at) : Date.now();
    const seconds = Math.max(0, (end - Date.parse(task.started_at)) / 1000);
    return seconds < 60 ? seconds.toFixed(1) + " s" : (seconds / 60).toFixed(1) + " min";
  }

  function progressOf(progress) {
    const words = progress.message ? " · " + progress.message : "";
    if (!(progress.total > 0)) {
      return el("div", { class: "progress-text" }, label(progress.current) + words);
    }
    const share = Math.min(1, Math.max(0, progress.current / progress.total));
    const fill = el("div", { class: "fill" });
    fill.style.width = (share * 100).toFixed(1) + "%";
    const bar = el("div", {
      class: "bar", role: "progressbar", "aria-label": "Progress",
      "aria-valuemin": "0", "aria-valuemax": String(progress.total),
      "aria-valuenow": String(progress.current),
    }, fill);
    return el("div", { class: "progress" }, bar,
      el("div", { class: "progress-text" },
        label(progress.current) + " / " + label(progress.total) + words));
  }

  // The dependencies a queued task still waits for: "waiting for 2 dependencies", or null.
  function waitingFor(task) {
    const blocked = Array.isArray(task.blocked_by) ? task.blocked_by.length : 0;
    if (task.status !== "queued" || !blocked) return null;
    return "waiting for " + blocked + (blocked === 1 ? " dependency" : " dependencies");
  }

  function detailOf(task) {
    const parts = [];
    const waiting = waitingFor(task);
    if (waiting) parts.push(el("div", { class: "waiting" }, waiting));
    if (task.progress && (task.status === "running" || task.status === "queued")) {
      parts.push(progressOf(task.progress));
    }
    if (task.error) {
      // Why it ended, said as such; any other error is its last attempt's. A task cancelled
      // for a dependency (DependencyFailed) made no attempt.
      const why = task.status === "failed" || task.error.type === "DependencyFailed";
      const lead = why ? null : el("span", { class: "muted" }, "last attempt: ");
      parts.push(el("div", { class: "error" }, lead,
        el("strong", { class: "error-type" }, String(task.error.type)), " ",
        el("span", { class: "error-message" }, String(task.error.message))));
    }
    if (task.status === "succeeded") {
      const text = json(task.result);
      parts.push(el("div", { class: "result", title: text }, "→ " + shorten(text, 100)));
    }
    if (task.cancel_requested && task.status === "running") {
      parts.push(el("div", { class: "muted" }, "cancel requested"));
    }
    return parts;
  }

  function taskRow(task) {
    const status = knownStatus(task.status);
    const params = json(task.params);
    const attrs = { "data-task-id": String(task.id), class: "task " + status, tabindex: "0",
      title: "Show this task in full" };
    if (task.id === selected) attrs["aria-selected"] = "true";
    return el("tr", attrs,
      el("td", { class: "task-cell" },
        el("div", {},
          el("span", { class: "type" }, String(task.type)), " ",
          el("code", { class: "id", title: String(task.id) }, shortId(task.id))),
        el("div", { class: "params muted", title: params }, shorten(params, 80))),
      el("td", { class: "queue-cell" }, String(task.queue || "")),
      el("td", {}, el("span", { class: "badge " + status }, String(task.status))),
      el("td", { class: "detail" }, ...detailOf(task)),
      el("td", { class: "num", title: "at most " + task.max_attempts + " may fail" },
        String(task.attempts)),
      el("td", { title: String(task.created_at) }, since(task.created_at)),
      el("td", { class: "num" }, runTime(task)));
  }

  function showTasks(tasks, page) {
    $("task-rows").replaceChildren(...tasks.map(taskRow));
    const filtered = view.status || view.type || view.queue || view.schedule || view.batch;
    $("empty").textContent = filtered ? "No tasks match." : "No tasks yet.";
    $("empty").hidden = tasks.length > 0;
    const total = Number.isFinite(page.total) ? page.total : tasks.length;
    const pages = Math.max(1, page.total_pages || 1);
    $("page-info").textContent = "page " + view.page + " of " + pages + " · " + total +
      (total === 1 ? " task" : " tasks");
    $("page-newer").disabled = view.page <= 1;
    $("page-older").disabled = !page.next_page;
  }

  $("task-rows").addEventListener("click", (event) => {
    const tr = event.target.closest("tr[data-task-id]");
    if (tr) openDetail(tr.dataset.taskId);
  });
  $("task-rows").addEventListener("keydown", (event) => {
    const tr = event.target.closest("tr[data-task-id]");
    if (tr && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      openDetail(tr.dataset.taskId);
    }
  });

  function changeView(change) {
    Object.assign(view, change);
    poll();
  }

  $("filter-status").addEventListener("change", (e) => changeView({ status: e.target.value, page: 1 }));
  $("filter-type").addEventListener("change", (e) => changeView({ type: e.target.value, page: 1 }));
  $("filter-queue").addEventListener("change", (e) => changeView({ queue: e.target.value, page: 1 }));
  $("filter-schedule").addEventListener("change",
    (e) => changeView({ schedule: e.target.value, page: 1 }));
  $("filter-batch").addEventListener("change", (e) => changeView({ batch: e.target.value, page: 1 }));
  $("page-newer").addEventListener("click", () => changeView({ page: Math.max(1, view.page - 1) }));
  $("page-older").addEventListener("click", () => changeView({ page: view.page + 1 }));
  $("list-controls").addEventListener("submit", (e) => e.preventDefault());

  // A batch among the filter's choices (batches cannot be listed: the choices are those seen),
  // by the end of its id, as the tasks are (the full id is in the Batches table).
  function offerBatch(id) {
    const select = $("filter-batch");
    if (![...select.options].some((o) => o.value === id)) {
      select.append(el("option", { value: id, title: id }, shortId(id)));
    }
  }

  // The list filtered by one batch, and brought into view.
  function filterByBatch(id) {
    offerBatch(id);
    $("filter-batch").value = id;
    changeView({ batch: id, page: 1 });
    $("tasks-title").scrollIntoView({ block: "start" });
  }

  // ---- One task in full --------------------------------------------------------------------

  function when(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString() + " (" + since(iso) + ")";
  }

  function pretty(value) {
    try {
      return JSON.stringify(value, null, 2);
    } catch (e) {
      return String(value);
    }
  }

  function field(name, label, ...value) {
    return [el("dt", { "data-field": name }, label), el("dd", { "data-field": name }, ...value)];
  }

  // Another task, opened in this panel when followed (the task a retry retries).
  function taskLink(id) {
    return el("a", { href: "#task-" + id, class: "task-link", "data-open-task": id }, id);
  }

  // The list of this batch's tasks, when followed.
  function batchLink(id) {
    return el("a", { href: "#batch-" + id, class: "task-link", "data-filter-batch": id,
      title: "List the tasks of this batch" }, id);
  }

  const LINKS_SHOWN = 50; // of a task's dependencies: a fan-in may have a thousand

  function taskLinks(ids) {
    const shown = ids.slice(0, LINKS_SHOWN).map((id) => taskLink(String(id)));
    const more = ids.length - shown.length;
    return el("span", { class: "task-links" }, ...shown,
      more > 0 ? el("span", { class: "muted" }, "and " + more + " more") : null);
  }

  $("detail-fields").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-open-task], a[data-filter-batch]");
    if (!link) return;
    event.preventDefault();
    if (link.dataset.filterBatch) filterByBatch(link.dataset.filterBatch);
    else openDetail(link.dataset.openTask);
  });

  // A task's callback, when it has a callback_url: where it goes, how its delivery stands
  // (a badge: pending, delivered, failed), its attempts, the receiver's last answer, and the
  // next attempt or when it was delivered. The URL and the receiver's error are other
  // people's text: they reach the page as text only.
  const CALLBACK_ATTEMPTS = 8; // the first, then one after each of the server's 7 delays
  const DELIVERY_STATES = ["pending", "delivered", "failed"];

  function lastAnswer(delivery) {
    const said = delivery.last_status === null || delivery.last_status === undefined
      ? (delivery.attempts ? "no answer" : "") : "HTTP " + delivery.last_status;
    const error = delivery.last_error ? String(delivery.last_error) : "";
    if (!said && !error) return "—";
    return el("span", { class: "last-answer" }, said, said && error ? ": " : "",
      error ? el("span", { class: "last-error" }, error) : null);
  }

  function callbackFields(task) {
    if (!task.callback_url) return [];
    const url = el("code", { class: "callback-url" }, String(task.callback_url));
    const delivery = task.callback;
    if (!delivery) {
      return [...field("callback_url", "Callback", url),
        ...field("callback", "Delivery", el("span", { class: "muted" },
          "sent when the task ends"))];
    }
    const state = DELIVERY_STATES.includes(delivery.state) ? delivery.state : "unknown";
    const attempts = Number(delivery.attempts) || 0;
    const fields = [
      ...field("callback_url", "Callback", url),
      ...field("callback", "Delivery",
        el("span", { class: "badge delivery-" + state }, String(delivery.state)),
        " · " + String(delivery.event || ""),
        " · " + attempts + " of " + CALLBACK_ATTEMPTS + " attempts"),
      ...field("callback_last", "Last answer", lastAnswer(delivery)),
    ];
    if (state === "pending") {
      fields.push(...field("callback_next", "Next attempt", when(delivery.next_attempt_at)));
    } else if (state === "delivered") {
      fields.push(...field("callback_delivered", "Delivered", when(delivery.delivered_at)));
    }
    return fields;
  }

  function showDetail(task) {
    const status = knownStatus(task.status);
    $("detail-id").textContent = String(task.id);
    const progress = task.progress ? progressOf(task.progress) : "—";
    const error = task.error
      ? el("div", { class: "error" },
        el("strong", { class: "error-type" }, String(task.error.type)), " ",
        el("span", { class: "error-message" }, String(task.error.message)))
      : "—";
    const result = task.status === "succeeded" ? el("pre", {}, pretty(task.result)) : "—";
    const dependsOn = Array.isArray(task.depends_on) ? task.depends_on : [];
    const blockedBy = Array.isArray(task.blocked_by) ? task.blocked_by : [];
    const waiting = waitingFor(task);
    $("detail-fields").replaceChildren(
      ...field("status", "Status", el("span", { class: "badge " + status }, String(task.status)),
        waiting ? el("span", { class: "waiting" }, " · " + waiting) : null,
        task.cancel_requested && (status === "queued" || status === "running")
          ? el("span", { class: "muted" }, " · cancel requested") : null),
      ...field("type", "Type", String(task.type)),
      ...field("queue", "Queue", String(task.queue || "—")),
      ...(task.batch_id ? field("batch_id", "Batch", batchLink(String(task.batch_id))) : []),
      ...(dependsOn.length ? field("depends_on", "Depends on", taskLinks(dependsOn)) : []),
      ...(blockedBy.length ? field("blocked_by", "Blocked by", taskLinks(blockedBy)) : []),
      ...(task.retry_of ? field("retry_of", "Retry of", taskLink(String(task.retry_of))) : []),
      ...(task.schedule ? field("schedule", "Schedule", String(task.schedule)) : []),
      ...(task.scheduled_for ? field("scheduled_for", "Fire time", when(task.scheduled_for)) : []),
      ...field("params", "Params", el("pre", {}, pretty(task.params))),
      ...field("result", "Result", result),
      ...field("error", "Error", error),
      ...field("progress", "Progress", progress),
      ...field("attempts", "Attempts",
        task.attempts + " (at most " + task.max_attempts + " may fail)"),
      ...field("priority", "Priority", String(task.priority)),
      ...field("timeout", "Timeout",
        task.timeout_seconds === null || task.timeout_seconds === undefined
          ? "none" : task.timeout_seconds + " s"),
      ...field("created_at", "Created", when(task.created_at)),
      ...field("run_after", "Runs after", when(task.run_after)),
      ...field("started_at", "Started", when(task.started_at)),
      ...field("finished_at", "Finished", when(task.finished_at)),
      ...field("run_time", "Run time", runTime(task) || "—"),
      ...field("expires_at", "Expires", when(task.expires_at)),
      ...callbackFields(task),
    );
    const ended = ["succeeded", "failed", "cancelled"].includes(task.status);
    $("detail-retry").hidden = !(status === "failed" || status === "cancelled");
    const delivery = task.callback ? task.callback.state : null;
    $("detail-resend").hidden = !(delivery === "delivered" || delivery === "failed");
    $("detail-cancel").hidden = ended;
    $("detail-delete").hidden = !ended;
    $("detail").hidden = false;
  }

  function showGone(detail) {
    $("detail-fields").replaceChildren();
    $("detail-retry").hidden = true;
    $("detail-resend").hidden = true;
    $("detail-cancel").hidden = true;
    $("detail-delete").hidden = true;
    $("detail-message").textContent = detail;
    $("detail").hidden = false;
  }

  function openDetail(id) {
    selected = id;
    $("detail-id").textContent = id;
    $("detail-message").textContent = "";
    $("detail-fields").replaceChildren();
    $("detail").hidden = false;
    for (const tr of document.querySelectorAll("#task-rows tr")) {
      if (tr.dataset.taskId === id) tr.setAttribute("aria-selected", "true");
      else tr.removeAttribute("aria-selected");
    }
    poll();
    $("detail").scrollIntoView({ block: "nearest" });
  }

  function closeDetail() {
    selected = null;
    $("detail").hidden = true;
    for (const tr of document.querySelectorAll("#task-rows tr[aria-selected]")) {
      tr.removeAttribute("aria-selected");
    }
  }

  // Cancel, delete or retry the task shown, or send its callback again; the answer (or
  // refusal) is said in the panel.
  // A retry answers the new task: it is opened in the panel in place of the old one.
  async function act(button, method, path, done) {
    const id = selected;
    if (!id) return;
    button.disabled = true; // one click, one request: a second retry would make a second task
    try {
      const response = await call("tasks/" + encodeURIComponent(id) + path, "application/json",
        method);
      if (!response.ok) {
        $("detail-message").textContent = "Refused (" + response.status + "): " +
          await problemDetail(response);
        return;
      }
      if (path === "/retry") {
        const task = await response.json();
        openDetail(String(task.id)); // polls
        $("detail-message").textContent = "Task " + task.id + " retries " + id + ".";
        return;
      }
      $("detail-message").textContent = done;
      if (method === "DELETE") {
        closeDetail();
        showNotice("");
        $("list-message").textContent = "Task " + id + " deleted.";
      }
    } catch (e) {
      if (e instanceof AuthNeeded) askToken(e);
      else $("detail-message").textContent = "Cannot reach the service (" + e.message + ").";
      return;
    } finally {
      button.disabled = false;
    }
    poll();
  }

  for (const [name, method, path, done] of [
    ["detail-retry", "POST", "/retry", ""],
    ["detail-resend", "POST", "/callback/retry", "The callback is sent again."],
    ["detail-cancel", "POST", "/cancel", "Cancel asked."],
    ["detail-delete", "DELETE", "", "Deleted."],
  ]) {
    $(name).addEventListener("click", (e) => act(e.currentTarget, method, path, done));
  }
  $("detail-close").addEventListener("click", closeDetail);

  function showNotice(text) {
    $("notice").textContent = text || "";
    $("notice").hidden = !text;
  }

  function showLive(ok) {
    const live = $("live");
    live.classList.toggle("ok", ok);
    live.classList.toggle("down", !ok);
    live.textContent = (ok ? "live · updated " : "offline · last tried ") +
      new Date().toLocaleTimeString();
  }

  // ---- Token -------------------------------------------------------------------------------

  function askToken(refusal) {
    if (refusal.token && sessionStorage.getItem(TOKEN_KEY) === refusal.token) {
      sessionStorage.removeItem(TOKEN_KEY);
    }
    $("auth").hidden = false;
    $("forget").hidden = true;
    $("auth-message").textContent =
      (refusal.token ? "The token was refused: " : "") + refusal.message;
    $("live").textContent = "waiting for a token";
    $("token").focus();
  }

  $("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("auth").hidden = true;
    poll();
  });

  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    poll();
  });

  // ---- Polling -----------------------------------------------------------------------------

  // One poll at a time: a poll asked for while one runs happens right after it.
  async function poll() {
    clearTimeout(timer);
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    let next = true;
    try {
      const shown = selected;
      const [list, activity, queues, schedules, batches, detail] = await Promise.all([
        loadTasks(), loadActivity(), loadQueues(), loadSchedules(), loadBatches(),
        shown ? loadDetail(shown) : null,
      ]);
      const pages = Math.max(1, list.page.total_pages || 1);
      if (view.page > pages) {
        view.page = pages; // the list shrank under this page: show its last one
        again = true;
      }
      showTasks(list.tasks, list.page);
      showQueues(queues);
      showSchedules(schedules);
      showBatches(batches);
      if (detail && shown === selected) {
        if (detail.task) showDetail(detail.task);
        else showGone(detail.gone);
      }
      if (activity.now) {
        record(activity.samples);
        const counts = {};
        for (const s of STATUSES) counts[s] = activity.now[s];
        showCounts(counts);
        $("history-state").textContent = activity.samples.length
          ? "" : "The server keeps no readings yet; the charts start with its next ones.";
      } else {
        showCounts(await countsFromList());
        $("history-state").textContent = "The last minutes are unavailable (" +
          (activity.unavailable || "no readings") + "); the charts wait for them.";
      }
      if (!typesShown) await loadTypes();
      drawCharts();
      $("auth").hidden = true;
      $("forget").hidden = !sessionStorage.getItem(TOKEN_KEY);
      showNotice("");
      showLive(true);
    } catch (e) {
      if (e instanceof AuthNeeded) {
        if (!again) askToken(e);
        next = false; // polling resumes when a token is given
      } else {
        showNotice("Cannot read the service (" + e.message + "); retrying.");
        showLive(false);
      }
    } finally {
      busy = false;
    }
    if (again) {
      again = false;
      poll();
    } else if (next) {
      timer = setTimeout(poll, POLL_MS);
    }
  }

  drawCharts();
  poll();
})();
