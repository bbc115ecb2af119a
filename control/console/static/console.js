// semroute console: plain DOM and inline SVG, no dependencies. Every value from the server is
// set as text (textContent), never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "semroute-console-key";
const MAX_ROWS = 500;
const COLORS = ["#2d6cdf", "#e07b39", "#1f8f4e", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d4ac0d"];
const FLAG_KIND = { jailbreak: "bad", harmful: "bad", pii: "bad", cache: "info", degraded: "info", fallback: "info" };
const state = { rows: [], ids: new Set(), openId: null, filter: "", colors: {}, started: false };

class AuthNeeded extends Error {}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const time = (t) => new Date(t * 1000).toLocaleTimeString();
const usd = (v) => (!v ? "–" : "$" + (v >= 1 ? v.toFixed(2) : v >= 0.01 ? v.toFixed(4) : v.toFixed(6)));
const pct = (v) => (v == null ? "–" : (100 * v).toFixed(1) + "%");
const num = (v, digits = 1) => (v == null ? "–" : Number(v).toFixed(digits));

// ---- API ---------------------------------------------------------------------------------
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 || response.status === 403) {
    const body = await response.clone().json().catch(() => ({}));
    const code = body.error && body.error.code;
    if (response.status === 401 || code === "admin_required") {
      askForKey(body.error ? body.error.message : response.statusText);
      throw new AuthNeeded();
    }
  }
  return response;
}

async function errorMessage(response) {
  const body = await response.json().catch(() => null);
  return (body && body.error && body.error.message) || `${response.status} ${response.statusText}`;
}

async function getJSON(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

function askForKey(message) {
  $("key-form").hidden = false;
  $("key-error").textContent = sessionStorage.getItem(KEY) ? message : "";
}

// ---- decisions ---------------------------------------------------------------------------
function colorOf(backend) {
  if (!(backend in state.colors)) state.colors[backend] = COLORS[Object.keys(state.colors).length % COLORS.length];
  return state.colors[backend];
}

function flagBadges(flags) {
  return Object.entries(flags || {}).filter(([, on]) => on)
    .map(([name]) => el("span", { class: `flag ${FLAG_KIND[name] || ""}`, text: name }));
}

function decisionRow(d) {
  const cells = [
    el("td", { text: time(d.time) }),
    el("td", { text: d.backend || "–", class: "backend" }),
    el("td", { text: d.rule }),
    el("td", { text: d.domain }),
    el("td", { text: d.task }),
    el("td", { text: num(d.strong_prob, 2), class: "num" }),
    el("td", { class: "flags" }, ...flagBadges(d.flags)),
    el("td", { text: `${num(d.latency_ms, 0)} ms`, class: "num" }),
    el("td", { text: usd(d.cost_usd), class: "num" }),
    el("td", { text: usd(d.saving_usd), class: "num" }),
    el("td", { text: String(d.status), class: d.status >= 400 ? "status-bad" : "" }),
  ];
  const row = el("tr", { "data-id": d.id }, ...cells);
  row.dataset.search = [d.backend, d.rule, d.domain, d.task, d.status, d.error_code,
    ...Object.entries(d.flags || {}).filter(([, on]) => on).map(([name]) => name)].join(" ").toLowerCase();
  row.addEventListener("click", () => openExplanation(d.id));
  applyFilter(row);
  return row;
}

function addDecisions(list) {
  const body = $("decision-rows");
  for (const d of list) {   // oldest first: each goes to the top
    if (state.ids.has(d.id)) continue;
    state.ids.add(d.id);
    body.prepend(decisionRow(d));
  }
  while (body.rows.length > MAX_ROWS) {
    state.ids.delete(body.lastElementChild.dataset.id);
    body.lastElementChild.remove();
  }
  $("no-decisions").hidden = body.rows.length > 0;
}

function applyFilter(row) {
  row.hidden = Boolean(state.filter) && !row.dataset.search.includes(state.filter);
}

async function openExplanation(id) {
  for (const row of $("decision-rows").rows) row.classList.toggle("open", row.dataset.id === id);
  state.openId = id;
  try {
    const summary = await getJSON(`/ui/api/decisions/${encodeURIComponent(id)}`);
    const explanation = summary.explanation || {};
    $("explanation-reason").textContent = explanation.reason || summary.error || "no decision was made";
    $("explanation-json").textContent = JSON.stringify(explanation, null, 2);
  } catch (err) {
    if (err instanceof AuthNeeded) return;
    $("explanation-reason").textContent = err.message;
    $("explanation-json").textContent = "";
  }
  $("explanation").hidden = false;
}

async function follow() {
  for (;;) {
    try {
      const response = await api("/ui/api/feed");
      if (!response.ok) throw new Error(await errorMessage(response));
      setFeedStatus("live", true);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          handleEvent(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
    } catch (err) {
      if (err instanceof AuthNeeded) return;
    }
    setFeedStatus("reconnecting…", false);
    await sleep(2000);
  }
}

function handleEvent(text) {
  const data = text.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
  if (data) addDecisions([JSON.parse(data)]);
}

function setFeedStatus(text, live) {
  $("feed-status").textContent = text;
  $("feed-status").style.background = live ? "#cdebd8" : "#f3e2c0";
}

// ---- charts (inline SVG) -----------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function lineChart(svg, lines, format) {
  svg.replaceChildren();
  const W = 360, H = 150, left = 54, right = 6, top = 8, bottom = 30;
  const points = lines.flatMap((l) => l.values.filter(([, v]) => v != null));
  if (!points.length) {
    svg.append(Object.assign(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }), { textContent: "no data yet" }));
    return;
  }
  const ts = points.map(([t]) => t), vs = points.map(([, v]) => v);
  const t0 = Math.min(...ts), t1 = Math.max(...ts, t0 + 1), vmax = Math.max(...vs, 0) || 1;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
  const y = (v) => top + (1 - v / vmax) * (H - top - bottom);
  svg.append(svgEl("line", { x1: left, y1: y(0), x2: W - right, y2: y(0), stroke: "#ccd3da" }));
  for (const [v, label] of [[0, format(0)], [vmax, format(vmax)]]) {
    svg.append(Object.assign(svgEl("text", { x: left - 4, y: y(v) + 3, "text-anchor": "end" }), { textContent: label }));
  }
  svg.append(Object.assign(svgEl("text", { x: left, y: H - 18 }), { textContent: time(t0) }));
  svg.append(Object.assign(svgEl("text", { x: W - right, y: H - 18, "text-anchor": "end" }), { textContent: time(t1) }));
  lines.forEach((line, i) => {
    const coords = line.values.filter(([, v]) => v != null).map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    if (coords.length === 1) coords.push(coords[0].replace(/^[\d.]+/, (s) => String(Number(s) + 2)));
    svg.append(svgEl("polyline", { points: coords.join(" "), fill: "none", stroke: line.color, "stroke-width": 1.6 }));
    const legend = svgEl("text", { x: left + (i % 4) * 80, y: H - 5 });
    legend.textContent = `■ ${line.name}`;
    legend.style.fill = line.color;  // CSSOM: the page's CSP allows no inline style attributes
    svg.append(legend);
  });
}

function cumulative(points, pick) {
  let sum = 0;
  return points.map((p) => [p.t, (sum += pick(p))]);
}

function drawSeries(series) {
  const points = series.points;
  const backends = series.backends.filter((b) => b !== "none");
  lineChart($("chart-requests"), backends.map((b) => ({ name: b, color: colorOf(b),
    values: points.map((p) => [p.t, p.requests[b] || 0]) })), (v) => num(v, 0));
  lineChart($("chart-cost"), backends.map((b) => ({ name: b, color: colorOf(b),
    values: cumulative(points, (p) => p.cost_usd[b] || 0) })), usd);
  lineChart($("chart-saving"), [{ name: "saving", color: "#1f8f4e",
    values: cumulative(points, (p) => Object.values(p.saving_usd).reduce((a, b) => a + b, 0)) }], usd);
  lineChart($("chart-latency"), [
    { name: "p50", color: "#2d6cdf", values: points.map((p) => [p.t, p.decision_ms.p50]) },
    { name: "p99", color: "#c0392b", values: points.map((p) => [p.t, p.decision_ms.p99]) }], (v) => num(v, 1));
  lineChart($("chart-rates"), [
    { name: "errors", color: "#c0392b", values: points.map((p) => [p.t, p.error_rate]) },
    { name: "blocked", color: "#e07b39", values: points.map((p) => [p.t, p.block_rate]) }], pct);
  const totals = series.totals;
  const requests = Object.values(totals.requests).reduce((a, b) => a + b, 0);
  const cost = Object.values(totals.cost_usd).reduce((a, b) => a + b, 0);
  const saving = Object.values(totals.saving_usd).reduce((a, b) => a + b, 0);
  $("totals").textContent = `${requests} requests · cost ${usd(cost)} · saved ${usd(saving)} · blocked ${totals.blocked}`;
}

// ---- health, config ----------------------------------------------------------------------
function drawHealth(health) {
  $("workers").textContent = health.workers > 1 ? `${health.workers} workers` : "";
  $("health-rows").replaceChildren(...health.backends.map((b) => {
    const circuit = b.circuit + (b.circuit === "open" && b.workers > 1 ? ` (${b.workers_open} of ${b.workers} workers)` : "");
    const error = b.last_error ? `${time(b.last_error.time)} ${b.last_error.code}: ${b.last_error.message}` : "–";
    return el("tr", { "data-backend": b.backend },
      el("td", { text: b.backend }), el("td", { class: `circuit state-${b.circuit}`, text: circuit }),
      el("td", { class: "num", text: String(b.requests) }), el("td", { class: "num", text: pct(b.error_rate) }),
      el("td", { class: "num", text: `${num(b.latency_ms_p50, 0)} / ${num(b.latency_ms_p99, 0)}` }),
      el("td", { class: "last-error", text: error }));
  }));
}

function drawConfig(view) {
  $("config-json").textContent = JSON.stringify(view.config, null, 2);
  const reload = view.reload;
  $("reload-status").textContent = !reload ? "hot reload is off (no config file)"
    : `loaded from ${reload.path} at ${time(reload.loaded_at)}; last reload: `
      + (reload.last_error ? `refused (${reload.last_error})` : "applied");
}

async function poll(path, draw, everyMs) {
  for (;;) {
    try {
      draw(await getJSON(path));
    } catch (err) {
      if (err instanceof AuthNeeded) return;
    }
    await sleep(everyMs);
  }
}

// ---- try a prompt ------------------------------------------------------------------------
function highlighted(text, spans) {
  // Offsets count code points (Python's str), so slice an array of code points, not UTF-16.
  const chars = Array.from(text);
  const parts = [];
  let at = 0;
  for (const span of [...spans].sort((a, b) => a.start - b.start)) {
    if (span.start < at) continue;   // overlapping spans: the first one is shown
    parts.push(chars.slice(at, span.start).join(""));
    parts.push(el("mark", { "data-type": span.type, title: `${span.type} (${span.source}, ${span.score})`,
      text: chars.slice(span.start, span.end).join("") }));
    at = span.end;
  }
  parts.push(chars.slice(at).join(""));
  return parts;
}

function top3(probabilities) {
  return Object.entries(probabilities || {}).sort((a, b) => b[1] - a[1]).slice(0, 3)
    .map(([name, p]) => `${name} ${p.toFixed(3)}`).join(", ");
}

function signalRows(result) {
  const s = result.signals || {};
  const rows = [
    ["domain", top3(s.domain)], ["task", top3(s.task)], ["strong_prob", num(s.strong_prob, 3)],
    ["jailbreak_prob", num(s.jailbreak_prob, 4)], ["harmful_prob", num(s.harmful_prob, 4)],
    ["language", s.language ? `${s.language.code} (${num(s.language.confidence, 2)}), reliable: ${s.reliable}` : "–"],
    ["PII", (s.pii || []).map((p) => `${p.type} [${p.start}, ${p.end}) ${p.source} ${p.score}`).join("; ") || "none"],
    ["routes", top3(s.routes) || "none"],
    ["candidates", (result.costs || []).map((c) => `${c.backend} ${usd(c.estimated_cost_usd)}`).join(", ")],
    ["dropped", Object.entries(result.dropped || {}).map(([b, why]) => `${b}: ${why}`).join("; ") || "none"],
    ["saving", `${usd(result.saving_usd)} against ${result.saving_against || "–"}`],
    ["timings (ms)", Object.entries(result.timings_ms || {}).map(([k, v]) => `${k} ${v}`).join(", ")],
  ];
  return rows.map(([name, value]) => el("tr", {}, el("th", { text: name }), el("td", { text: value })));
}

async function tryPrompt(event) {
  event.preventDefault();
  const text = $("try-text").value || $("try-text").placeholder;
  $("try-error").textContent = "";
  try {
    const response = await api("/v1/route", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text }) });
    if (!response.ok) throw new Error(await errorMessage(response));
    const result = await response.json();
    $("try-backend").textContent = result.backend;
    $("try-rule").textContent = result.rule;
    $("try-reason").textContent = result.reason;
    $("try-highlighted").replaceChildren(...highlighted(text, (result.signals && result.signals.pii) || []));
    $("try-signals").replaceChildren(...signalRows(result));
    $("try-result").hidden = false;
  } catch (err) {
    if (!(err instanceof AuthNeeded)) $("try-error").textContent = err.message;
  }
}

// ---- start -------------------------------------------------------------------------------
async function start() {
  try {
    addDecisions((await getJSON("/ui/api/decisions?limit=200")).data.reverse());
  } catch (err) {
    if (err instanceof AuthNeeded) return;
  }
  $("key-form").hidden = true;
  if (state.started) return;
  state.started = true;
  follow();
  poll("/ui/api/series", drawSeries, 5000);
  poll("/ui/api/health", drawHealth, 2000);
  poll("/ui/api/config", drawConfig, 10000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("filter").addEventListener("input", (event) => {
    state.filter = event.target.value.trim().toLowerCase();
    for (const row of $("decision-rows").rows) applyFilter(row);
  });
  $("close-explanation").addEventListener("click", () => { $("explanation").hidden = true; });
  $("try-form").addEventListener("submit", tryPrompt);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key-input").value);
    state.started = false;
    start();
  });
  start();
});
