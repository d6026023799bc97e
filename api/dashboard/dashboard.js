// taskapi dashboard: polls GET /tasks and GET /metrics, draws the last minutes as inline SVG.
// No libraries. Every value from the API reaches the DOM as text (textContent / attributes),
// never as HTML: task params, results and error messages are user data.
"use strict";

(function () {
  const POLL_MS = 2000;
  const WINDOW_MS = 5 * 60 * 1000;
  const TOKEN_KEY = "taskapi.dashboard.token";
  const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
  const SVG_NS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  const points = []; // {t, queued, running, finished, failed}: one per /metrics answer
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

  // A GET, sent again once when the connection failed: the server may close an idle
  // keep-alive connection just as the next poll reuses it.
  async function call(path, accept) {
    const headers = { Accept: accept };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const get = () => fetch(path, {
      headers,
      cache: "no-store",
      credentials: "same-origin",
      signal: AbortSignal.timeout(10000),
    });
    let response;
    try {
      response = await get();
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      response = await get();
    }
    if (response.status === 401) throw new AuthNeeded(await problemDetail(response), token);
    return response;
  }

  async function problemDetail(response) {
    try {
      const problem = await response.json();
      return String(problem.detail || problem.title || response.status);
    } catch (e) {
      return "HTTP " + response.status;
    }
  }

  async function loadTasks() {
    const response = await call("tasks?page_size=20", "application/json");
    if (!response.ok) {
      const detail = await problemDetail(response);
      throw new Error("GET /tasks answered " + response.status + ": " + detail);
    }
    return response.json();
  }

  // Counts by status from the list's X-Pagination totals: used only while /metrics is missing.
  async function countsFromList() {
    const counts = {};
    await Promise.all(STATUSES.map(async (status) => {
      const response = await call("tasks?page_size=1&status=" + status, "application/json");
      const page = response.ok ? JSON.parse(response.headers.get("X-Pagination") || "{}") : {};
      counts[status] = page.total;
    }));
    return counts;
  }

  // The metrics, or {unavailable: reason}; never throws (the task list works without them).
  async function loadMetrics() {
    try {
      const response = await call("metrics", "text/plain");
      if (!response.ok) return { unavailable: "GET /metrics answered " + response.status };
      return { samples: parseMetrics(await response.text()) };
    } catch (e) {
      const reason = e instanceof AuthNeeded ? "GET /metrics refused the token" : e.message;
      return { unavailable: String(reason) };
    }
  }

  // ---- Prometheus text format --------------------------------------------------------------

  const SAMPLE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
  const LABEL = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;

  function parseMetrics(text) {
    const samples = [];
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line || line.startsWith("#")) continue;
      const m = SAMPLE.exec(line);
      if (m) samples.push({ name: m[1], labels: parseLabels(m[2] || ""), value: parseValue(m[3]) });
    }
    return samples;
  }

  function parseLabels(text) {
    const labels = Object.create(null);
    LABEL.lastIndex = 0;
    let m;
    while ((m = LABEL.exec(text)) !== null) {
      labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    return labels;
  }

  function parseValue(text) {
    if (text === "+Inf") return Infinity;
    if (text === "-Inf") return -Infinity;
    return Number(text);
  }

  // The sum of one family's samples over every label, or over those that match `where`.
  function sum(samples, name, where) {
    let total = 0;
    for (const s of samples) {
      if (s.name !== name || !Number.isFinite(s.value)) continue;
      if (where && Object.entries(where).some(([k, v]) => s.labels[k] !== v)) continue;
      total += s.value;
    }
    return total;
  }

  // ---- Rolling window and rates ------------------------------------------------------------

  function record(samples) {
    const now = Date.now();
    points.push({
      t: now,
      queued: sum(samples, "taskapi_tasks", { status: "queued" }),
      running: sum(samples, "taskapi_tasks", { status: "running" }),
      finished: sum(samples, "taskapi_tasks_finished_total"),
      failed: sum(samples, "taskapi_tasks_finished_total", { outcome: "failed" }),
    });
    while (points.length && points[0].t < now - WINDOW_MS) points.shift();
  }

  // Per second between consecutive polls; a counter that went down was reset (a restart).
  function rates(key) {
    const out = [];
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1];
      const b = points[i];
      const seconds = (b.t - a.t) / 1000;
      if (seconds <= 0) continue;
      const delta = b[key] >= a[key] ? b[key] - a[key] : b[key];
      out.push([b.t, delta / seconds]);
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
      { name: "finished", points: rates("finished") },
      { name: "failed", points: rates("failed") },
    ], "/s");
  }

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

  function detailOf(task) {
    const parts = [];
    if (task.progress && (task.status === "running" || task.status === "queued")) {
      parts.push(progressOf(task.progress));
    }
    if (task.error) {
      const lead = task.status === "failed"
        ? null : el("span", { class: "muted" }, "last attempt: ");
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
    return el("tr", { "data-task-id": String(task.id), class: "task " + status },
      el("td", { class: "task-cell" },
        el("div", {},
          el("span", { class: "type" }, String(task.type)), " ",
          el("code", { class: "id", title: String(task.id) }, String(task.id).slice(0, 8))),
        el("div", { class: "params muted", title: params }, shorten(params, 80))),
      el("td", {}, el("span", { class: "badge " + status }, String(task.status))),
      el("td", { class: "detail" }, ...detailOf(task)),
      el("td", { class: "num" }, task.attempts + " / " + task.max_attempts),
      el("td", { title: String(task.created_at) }, since(task.created_at)),
      el("td", { class: "num" }, runTime(task)));
  }

  function showTasks(tasks) {
    $("task-rows").replaceChildren(...tasks.map(taskRow));
    $("empty").hidden = tasks.length > 0;
  }

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
      const [tasks, metrics] = await Promise.all([loadTasks(), loadMetrics()]);
      showTasks(tasks);
      if (metrics.samples) {
        record(metrics.samples);
        const counts = {};
        for (const s of STATUSES) counts[s] = sum(metrics.samples, "taskapi_tasks", { status: s });
        showCounts(counts);
        $("metrics-state").textContent = "";
      } else {
        showCounts(await countsFromList());
        $("metrics-state").textContent =
          "Metrics are unavailable (" + metrics.unavailable + "); the charts wait for them.";
      }
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
