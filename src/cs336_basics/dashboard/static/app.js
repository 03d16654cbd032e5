// cs336-exp serve: the page. Runs table + one chart per metric group (the training rows),
// then a "system" section (one chart per system metric: CPU, memory, GPUs), drawn with plotly
// (served from the installed plotly wheel, loaded by this script once the first curves are
// drawn on a canvas). The server thins
// every curve (min and max per bin); the page asks again for the visible x-range after a
// zoom and for the runs that changed after each live event. Alerts (spikes, explosions,
// NaN/inf) are dotted vertical lines where their events began; a click on a chart (or a
// number in "at") puts the budget cursor there: every shown run's train and val loss at
// that x, by the rule of `cs336-exp compare --at`. Its state is in window.__dash for tests.
"use strict";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
  "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#e6550d", "#6b6ecf",
  "#843c39", "#7b4173", "#3182bd", "#31a354", "#756bb1"];
const ORDER = ["loss", "learning_rate", "grad_norm", "tokens_per_sec", "iter_time_ms"];
const TITLES = { loss: "train / val loss", learning_rate: "learning rate", grad_norm: "grad norm",
  tokens_per_sec: "tokens / s", iter_time_ms: "iteration time (ms)" };
const X_TITLES = { gradient_step: "gradient step", iteration: "iteration",
  tokens: "tokens seen", wallclock: "wall-clock time (s since start)", flops: "FLOPs (model)" };
// Charts of system metrics are keyed "sys:<name>" and read the runs' system samples.
const SYS = "sys:";
const isSys = (key) => key.startsWith(SYS);
// The runs table: [header, key in the runs payload, cell class]. Two runs of one name are
// told apart by run id and start time; the losses are the server's (RunResults: for a run
// that did not finish, its history so far).
const COLUMNS = [
  ["", null, ""], ["name", "name", ""], ["run id", "id", "id"], ["started", "start_time", ""],
  ["status", "status", ""], ["group", "group", ""], ["tags", "tags", ""], ["rows", "rows", "num"],
  ["best train", "best_train_loss", "num"], ["last train", "last_train_loss", "num"],
  ["best val", "best_val_loss", "num"], ["last val", "last_val_loss", "num"],
  ["alerts", "alerts", "num"], ["MFU", "mfu", "num"], ["mirror", "mirror", ""]];

const S = {
  runs: new Map(), selected: new Set(), seen: new Set(), colours: new Map(), highlight: null,
  x: "gradient_step", smoothing: 0.6, logy: false, outliers: false, metricFilter: "",
  runFilter: null, sort: { key: "start_time", dir: 1 }, charts: new Map(),
  tagFilter: "", groupFilter: "", groupMode: "minmax",  // groups: "each" | "minmax" | "std"
  unsmoothed: new Set(["learning_rate"]),  // replaced by the server's list (api "unsmoothed")
  cursor: null, interpolate: false,  // the budget cursor's x (on S.x), or null
  cursorRuns: "",  // the runs its table was asked for
};
const dash = window.__dash = { ready: false, runs: {}, charts: {}, draws: 0, previews: 0,
  firstChartMs: null, interactiveMs: null,
  lastDrawMs: null, errors: [], x: S.x, smoothing: S.smoothing, events: 0,
  groupMode: S.groupMode, cursor: null };
const $ = (id) => document.getElementById(id);

function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en");
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : String(Number(v.toPrecision(4)));
}

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// ---------------------------------------------------------------- runs and selection
function colour(id) {
  if (!S.colours.has(id)) S.colours.set(id, PALETTE[S.colours.size % PALETTE.length]);
  return S.colours.get(id);
}

function mergeRuns(payload) {
  $("logdir").textContent = payload.log_dir;
  if (payload.unsmoothed) S.unsmoothed = new Set(payload.unsmoothed);
  if (payload.axes) fillAxes(payload.axes);
  const ids = new Set(payload.ids);
  for (const id of [...S.runs.keys()]) if (!ids.has(id)) { S.runs.delete(id); S.selected.delete(id); }
  // New runs get colours in start order, so a colour never changes while the page is open.
  const fresh = payload.runs.filter((r) => !S.seen.has(r.id) && r.status !== "loading")
    .sort((a, b) => String(a.start_time).localeCompare(String(b.start_time)) || a.id.localeCompare(b.id));
  for (const r of payload.runs) S.runs.set(r.id, r);
  for (const r of fresh) { S.seen.add(r.id); S.selected.add(r.id); colour(r.id); }
  for (const r of S.runs.values()) {
    dash.runs[r.id] = { name: r.name, status: r.status, rows: r.rows, last: r.last,
      version: r.version, colour: S.colours.get(r.id), start_time: r.start_time,
      mirror: r.mirror, best_train_loss: r.best_train_loss, last_train_loss: r.last_train_loss,
      best_val_loss: r.best_val_loss, last_val_loss: r.last_val_loss, group: r.group,
      tags: r.tags, alerts: r.alerts, mfu: r.mfu, system_metrics: r.system_metrics };
  }
  fillChoices("tag-filter", "any tag", [...new Set([...S.runs.values()].flatMap((r) => r.tags || []))]);
  fillChoices("group-filter", "any group", [...new Set([...S.runs.values()].map((r) => r.group).filter(Boolean))]);
  for (const id of Object.keys(dash.runs)) if (!S.runs.has(id)) delete dash.runs[id];
  $("message").textContent = payload.loading ? `loading ${payload.loading} run(s)...` : "";
}

// The x-axis choices: the server's (core.row.AXES), titled.
function fillAxes(axes) {
  const select = $("x");
  if ([...select.options].map((o) => o.value).join() === axes.join()) return;
  select.replaceChildren(...axes.map((a) => {
    const o = document.createElement("option");
    o.value = a;
    o.textContent = X_TITLES[a] || a;
    return o;
  }));
  select.value = S.x;
}

// The tag and group filters' choices: every tag and group the runs have.
function fillChoices(id, any, values) {
  const select = $(id);
  const wanted = [any, ...values.sort()];
  const have = [...select.options].map((o) => o.textContent);
  if (have.length === wanted.length && have.every((v, i) => v === wanted[i])) return;
  const chosen = select.value;
  select.replaceChildren(...wanted.map((v, i) => {
    const o = document.createElement("option");
    o.value = i === 0 ? "" : v;
    o.textContent = v;
    return o;
  }));
  select.value = values.includes(chosen) ? chosen : "";
}

function matches(r) {
  if (S.tagFilter && !(r.tags || []).includes(S.tagFilter)) return false;
  if (S.groupFilter && r.group !== S.groupFilter) return false;
  return !S.runFilter || S.runFilter.test(r.name) || S.runFilter.test(r.id);
}

// Runs drawn as their group's mean and band (not each on its own line).
const banded = (r) => S.groupMode !== "each" && Boolean(r.group);

function shownRuns() {
  return [...S.runs.values()].filter((r) => r.rows !== undefined && S.selected.has(r.id) && matches(r))
    .sort((a, b) => a.id.localeCompare(b.id));
}

function setRunFilter(text) {
  const input = $("run-filter");
  input.classList.remove("bad");
  S.runFilter = null;
  if (!text) return;
  try {
    if (/[*?]/.test(text) && !/[()[\]^$+|\\{}]/.test(text)) {
      const re = text.replace(/[.]/g, "\\.").replace(/\*/g, ".*").replace(/\?/g, ".");
      S.runFilter = new RegExp(`^${re}$`, "i");
    } else {
      S.runFilter = new RegExp(text, "i");
    }
  } catch (e) {
    input.classList.add("bad");
  }
}

function differingConfig(runs) {
  const keys = new Set();
  for (const r of runs) for (const k of Object.keys(r.config || {})) keys.add(k);
  keys.delete("experiment_name");
  return [...keys].filter((k) => new Set(runs.map((r) => JSON.stringify((r.config || {})[k]))).size > 1)
    .sort();
}

function renderTable() {
  const all = [...S.runs.values()].filter(matches);
  const cfg = differingConfig(all.filter((r) => S.selected.has(r.id)));
  const cols = [...COLUMNS, ...cfg.map((k) => [k, "config." + k, ""])];
  const value = (r, key) => (key.startsWith("config.") ? (r.config || {})[key.slice(7)] : r[key]);
  const { key, dir } = S.sort;
  all.sort((a, b) => {
    const va = value(a, key), vb = value(b, key);
    if (va === vb) return a.id.localeCompare(b.id);
    if (va === null || va === undefined) return 1;
    if (vb === null || vb === undefined) return -1;
    return (typeof va === "number" && typeof vb === "number" ? va - vb : String(va).localeCompare(String(vb))) * dir;
  });
  const head = document.createElement("tr");
  for (const [label, k] of cols) {
    const th = document.createElement("th");
    th.textContent = label;
    if (k) {
      th.dataset.key = k;
      if (k === key) th.className = dir > 0 ? "sorted" : "sorted desc";
    }
    head.appendChild(th);
  }
  const rows = all.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    if (r.id === S.highlight) tr.className = "highlight";
    const box = `<input type="checkbox" ${S.selected.has(r.id) ? "checked" : ""}>`;
    const sw = `<span class="swatch" style="background:${S.colours.get(r.id) || "#ccc"}"></span>`;
    const status = `<span class="status ${esc(r.status)}">${esc(r.status)}${r.source === "wandb" ? " (W&amp;B)" : ""}</span>`;
    const cell = (k) => {
      if (k === null) return `${box} ${sw}`;
      if (k === "status") return status;
      if (k === "start_time") return esc(startTime(r.start_time));
      if (k === "tags") return esc((r.tags || []).join(", "));
      if (k === "mfu") return typeof r.mfu === "number" ? `${(100 * r.mfu).toFixed(1)}%` : "";
      return esc(fmt(value(r, k)));
    };
    tr.innerHTML = cols.map(([, k, cls]) => `<td class="${cls}" data-key="${k || ""}">${cell(k)}</td>`).join("");
    if (r.error) tr.title = r.error;
    return tr;
  });
  $("runs").tHead.replaceChildren(head);
  $("runs").tBodies[0].replaceChildren(...rows);
  // The cursor's table lists the shown runs: asked again when they change (a checkbox, a filter).
  if (S.cursor !== null && shownRuns().map((r) => r.id).join(",") !== S.cursorRuns) refreshCursor();
}

// "2026-12-05T11:17:00.082044" -> "2026-12-05 11:17:00" (the run's own clock, as written).
function startTime(t) {
  return t ? String(t).slice(0, 19).replace("T", " ") : "";
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// ---------------------------------------------------------------- charts
function chartKeys() {
  const metrics = new Set();
  for (const r of S.runs.values()) for (const m of r.metrics || []) metrics.add(m);
  const keys = [];
  if (metrics.has("train_loss") || metrics.has("val_loss")) keys.push("loss");
  for (const m of [...metrics].sort()) if (m !== "train_loss" && m !== "val_loss") keys.push(m);
  keys.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const system = new Set();
  for (const r of S.runs.values()) for (const m of r.system_metrics || []) system.add(SYS + m);
  return [...keys, ...[...system].sort()];
}
const rank = (k) => (isSys(k) ? ORDER.length + 1 : ORDER.includes(k) ? ORDER.indexOf(k) : ORDER.length);
const metricsOf = (key) => (key === "loss" ? ["train_loss", "val_loss"] : [isSys(key) ? key.slice(SYS.length) : key]);
const titleOf = (key) => (isSys(key) ? key.slice(SYS.length) : TITLES[key] || key);
// The smoothing a chart asks for: the slider's, except for metrics the server never smooths
// (schedules such as the learning rate: smoothing would move the warmup peak).
const smoothingOf = (key) => (metricsOf(key).every((m) => S.unsmoothed.has(m)) ? 0 : S.smoothing);

function ensureCharts() {
  const filter = S.metricFilter.toLowerCase();
  for (const key of chartKeys()) {
    let chart = S.charts.get(key);
    if (!chart) {
      const card = document.createElement("div");
      card.className = "chart";
      card.innerHTML = `<header><h2></h2><span class="note"></span>
        <button type="button" data-act="csv">CSV</button>
        <button type="button" data-act="png">PNG</button></header><div class="plot"></div>`;
      card.querySelector("h2").textContent = titleOf(key);
      (isSys(key) ? $("system-charts") : $("charts")).appendChild(card);
      if (isSys(key)) $("system-section").hidden = false;
      chart = { key, card, div: card.querySelector(".plot"), data: new Map(), bands: new Map(), range: null,
        busy: false, queued: null, drawn: false, system: isSys(key) };
      card.querySelector("[data-act=csv]").onclick = () => exportCSV(chart);
      card.querySelector("[data-act=png]").onclick = () =>
        Plotly.downloadImage(chart.div, { format: "png", filename: `cs336_${key}`, width: 1200, height: 600 });
      S.charts.set(key, chart);
      order();
    }
    const metricNames = metricsOf(key).join(" ");
    chart.card.style.display = !filter || (key + " " + metricNames + " " + titleOf(key)).toLowerCase().includes(filter) ? "" : "none";
  }
}

function order() {
  const cards = [...S.charts.values()].sort((a, b) => rank(a.key) - rank(b.key) || a.key.localeCompare(b.key));
  for (const c of cards) (c.system ? $("system-charts") : $("charts")).appendChild(c.card);
}

const plotWidth = (div) => Math.max(300, div.clientWidth || 600);
const pointsFor = (width) => Math.round(width * 2);
let prefetched = null;
const waiting = new Set();  // charts whose curves came before plotly did

// Run before plotly is loaded (a deferred script after this one): the first chart's curves,
// for every run, are asked for at once, so the server thins them while the browser
// compiles plotly (most of a fresh page's time). load() uses them if they fit.
function prefetch() {
  const probe = document.createElement("div");
  probe.className = "chart";
  probe.style.visibility = "hidden";
  probe.innerHTML = `<div class="plot"></div>`;
  $("charts").appendChild(probe);
  const points = pointsFor(plotWidth(probe.firstChild));
  probe.remove();
  const smoothing = smoothingOf("loss");
  const params = new URLSearchParams({ runs: "*", x: S.x, smoothing, points: String(points) });
  const answers = metricsOf("loss").map((m) => {
    params.set("metric", m);
    return getJSON("/api/series?" + params).catch(() => null);
  });
  prefetched = { x: S.x, smoothing, points, answers: Promise.all(answers) };
}

// The prefetched curves, when they are what load() would ask for (the width may differ a
// little: a scroll bar came since).
async function takePrefetched(chart, runs, points) {
  const pre = prefetched;
  if (!pre || chart.key !== "loss" || chart.range) return null;
  prefetched = null;
  if (pre.x !== S.x || pre.smoothing !== smoothingOf(chart.key) || Math.abs(pre.points - points) > 0.15 * points) return null;
  const answers = await pre.answers;
  const same = (a) => a && a.runs.length === runs.length && [...a.runs].sort().every((id, i) => id === runs[i]);
  return answers.every(same) ? answers : null;
}

// Ask for curves: all shown runs (ids=null) or only some (live updates).
async function load(chart, ids) {
  if (chart.busy) {  // one request per chart at a time; what comes meanwhile is merged
    chart.queued = ids === null || chart.queued === "all" ? "all" : new Set([...(chart.queued || []), ...ids]);
    return;
  }
  const all = (ids || shownRuns().map((r) => r.id)).filter((id) => S.runs.has(id));
  // System charts draw every run (a stuck machine is one run's, not a group's mean).
  const runs = chart.system ? all : all.filter((id) => !banded(S.runs.get(id)));
  const grouped = chart.system ? [] : shownRuns().filter(banded).map((r) => r.id);
  if (!runs.length && !grouped.length && ids === null) chart.bands = new Map();
  if (!runs.length && !grouped.length) { draw(chart); return; }
  chart.busy = true;
  try {
    const points = pointsFor(plotWidth(chart.div));
    const smoothing = smoothingOf(chart.key);
    const params = new URLSearchParams({ runs: runs.join(","), x: S.x, smoothing,
      points: String(points), source: chart.system ? "system" : "train" });
    if (chart.range) { params.set("x0", chart.range[0]); params.set("x1", chart.range[1]); }
    const wanted = `${S.x}|${smoothing}|${chart.range}|${S.groupMode}`;
    const answers = !runs.length ? [] :
      (ids === null && !grouped.length && await takePrefetched(chart, [...runs].sort(), points)) ||
      await Promise.all(metricsOf(chart.key).map((m) => {
        params.set("metric", m);
        return getJSON("/api/series?" + params);
      }));
    // A group's band depends on every run of it: asked again whole after any change.
    const bandAnswers = !grouped.length ? [] : await Promise.all(metricsOf(chart.key).map((m) => {
      const p = new URLSearchParams(params);
      p.set("metric", m);
      p.set("runs", grouped.join(","));
      p.delete("source");
      if (m === "val_loss") p.set("smoothing", "0");  // drawn raw, as a run's val curve is
      return getJSON("/api/bands?" + p);
    }));
    if (wanted === `${S.x}|${smoothingOf(chart.key)}|${chart.range}|${S.groupMode}`) {
      if (ids === null) chart.data.clear();
      for (const a of answers) {
        for (const id of runs) chart.data.delete(`${id}|${a.metric}`);
        for (const s of a.series) chart.data.set(`${s.run}|${s.metric}`, s);
      }
      chart.bands = new Map();
      for (const a of bandAnswers) for (const b of a.bands) chart.bands.set(`${b.group}|${b.metric}`, b);
      draw(chart);
    } else {
      chart.queued = "all";  // the view changed while this was asked: ask again
    }
  } catch (e) {
    dash.errors.push(String(e));
    $("message").textContent = String(e);
  } finally {
    chart.busy = false;
    const q = chart.queued;
    chart.queued = null;
    if (q) load(chart, q === "all" ? null : [...q]);
  }
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.floor(q * (sorted.length - 1))))];
}

// Until plotly has loaded (compiling it is most of a fresh page's time), the curves that
// came are drawn on a canvas: same data, colours and axes, not interactive. The chart
// replaces it as soon as plotly runs.
// Round tick values (1, 2 or 5 times a power of ten apart), about five across the range.
function niceTicks(lo, hi) {
  const raw = (hi - lo) / 5, power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function drawPreview(chart) {
  const lines = [];
  for (const r of shownRuns()) {
    for (const m of metricsOf(chart.key)) {
      const s = chart.data.get(`${r.id}|${m}`);
      if (s) lines.push({ x: s.s ? s.sx : s.x, y: s.s ? s.s : s.y, colour: colour(r.id), dash: m === "val_loss" });
    }
  }
  if (!lines.length) {  // only groups' bands to draw: plotly draws them
    if (chart.bands && chart.bands.size) setTimeout(loadPlotly, 0);
    return;
  }
  const div = chart.div;
  let canvas = div.querySelector("canvas.preview");
  if (!canvas) {
    canvas = document.createElement("canvas");
    canvas.className = "preview";
    div.appendChild(canvas);
  }
  const w = plotWidth(div), h = div.clientHeight || 320, ratio = window.devicePixelRatio || 1;
  canvas.width = w * ratio; canvas.height = h * ratio;
  canvas.style.width = `${w}px`; canvas.style.height = `${h}px`;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  const ty = (v) => (S.logy ? (v > 0 ? Math.log10(v) : NaN) : v);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const l of lines) {
    for (let i = 0; i < l.x.length; i++) {
      const y = ty(l.y[i]);
      if (!Number.isFinite(y) || !Number.isFinite(l.x[i])) continue;
      if (l.x[i] < x0) x0 = l.x[i]; if (l.x[i] > x1) x1 = l.x[i];
      if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
  }
  if (!(x1 >= x0) || !(y1 >= y0)) return;
  if (x1 === x0) x1 = x0 + 1;
  if (y1 - y0 <= 1e-9 * Math.max(Math.abs(y1), 1e-300)) { const p = Math.abs(y1) * 0.05 || 1; y0 -= p; y1 += p; }
  const L = 56, R = w - 12, T = 8, B = h - 40;
  const px = (v) => L + (v - x0) / (x1 - x0) * (R - L), py = (v) => B - (v - y0) / (y1 - y0) * (B - T);
  g.font = "11px sans-serif"; g.fillStyle = "#444"; g.strokeStyle = "#eee"; g.lineWidth = 1;
  for (const xv of niceTicks(x0, x1)) {
    g.beginPath(); g.moveTo(px(xv), T); g.lineTo(px(xv), B); g.stroke();
    g.textAlign = "center"; g.fillText(fmt(xv), px(xv), B + 14);
  }
  for (const yv of niceTicks(y0, y1)) {
    g.beginPath(); g.moveTo(L, py(yv)); g.lineTo(R, py(yv)); g.stroke();
    g.textAlign = "right"; g.fillText(fmt(S.logy ? 10 ** yv : yv), L - 4, py(yv) + 4);
  }
  g.textAlign = "center"; g.fillText(X_TITLES[S.x], (L + R) / 2, h - 6);
  g.save(); g.beginPath(); g.rect(L, T, R - L, B - T); g.clip();
  for (const l of lines) {
    g.strokeStyle = l.colour; g.lineWidth = 1.5; g.setLineDash(l.dash ? [5, 4] : []);
    g.beginPath();
    let pen = false;
    for (let i = 0; i < l.x.length; i++) {
      const y = ty(l.y[i]);
      if (!Number.isFinite(y)) { pen = false; continue; }
      if (pen) g.lineTo(px(l.x[i]), py(y)); else g.moveTo(px(l.x[i]), py(y));
      pen = true;
    }
    g.stroke();
  }
  g.restore();
  if (dash.firstChartMs === null) dash.firstChartMs = performance.now();
  dash.previews += 1;
  setTimeout(loadPlotly, 0);  // after this frame is painted
}

function draw(chart) {
  if (typeof Plotly === "undefined") { waiting.add(chart); drawPreview(chart); return; }
  const preview = chart.div.querySelector("canvas.preview");
  if (preview) preview.remove();
  const t0 = performance.now();
  const traces = [];
  const info = { series: 0, points: {}, smoothed: {}, lastX: {}, diverged: [] };
  const ys = [];
  info.bands = {};
  for (const [key, b] of chart.bands || []) {
    const members = b.runs.filter((id) => S.runs.has(id) && S.selected.has(id) && matches(S.runs.get(id)));
    if (!members.length) continue;
    const c = colour("group:" + b.group);
    const lo = S.groupMode === "std" ? b.mean.map((m, i) => m - b.std[i]) : b.low;
    const hi = S.groupMode === "std" ? b.mean.map((m, i) => m + b.std[i]) : b.high;
    const name = `${b.group} ${b.metric} (mean of ${b.runs.length}, ${S.groupMode === "std" ? "±std" : "min-max"})`;
    traces.push({ x: b.x, y: lo, type: "scatter", mode: "lines", line: { width: 0, color: c },
      hoverinfo: "skip", showlegend: false, name: name + " low" });
    traces.push({ x: b.x, y: hi, type: "scatter", mode: "lines", fill: "tonexty", line: { width: 0, color: c },
      fillcolor: c + "40", hoverinfo: "skip", showlegend: false, name: name + " high" });
    traces.push({ x: b.x, y: b.mean, type: "scatter", mode: "lines", name, customdata: b.n,
      hovertemplate: "%{y:.4g} (n=%{customdata})", line: { color: c, width: 2, dash: b.metric === "val_loss" ? "dash" : "solid" } });
    info.bands[key] = { runs: members, points: b.x.length };
    info.series += 1;
    for (const v of b.mean) ys.push(v);
  }
  const shapes = [], notes = [];
  info.alerts = [];
  for (const r of shownRuns()) {
    if (banded(r) && !chart.system) continue;
    const c = colour(r.id);
    const dim = S.highlight && S.highlight !== r.id;
    const width = S.highlight === r.id ? 3 : 1.5;
    let firstBad = null;
    for (const m of metricsOf(chart.key)) {
      const s = chart.data.get(`${r.id}|${m}`);
      if (!s) continue;
      const label = `${r.name} ${m}`;
      info.series += 1;
      info.points[`${r.id}|${m}`] = s.x.length;
      info.lastX[`${r.id}|${m}`] = s.x.length ? s.x[s.x.length - 1] : null;
      for (const v of s.y) ys.push(v);
      if (m === "val_loss") {
        traces.push({ x: s.x, y: s.y, name: label, mode: s.x.length < 80 ? "lines+markers" : "lines",
          type: "scatter", line: { color: c, width, dash: "dash" }, marker: { size: 5 },
          opacity: dim ? 0.25 : 1 });
      } else if (s.s) {
        info.smoothed[`${r.id}|${m}`] = s.s.length;
        traces.push({ x: s.x, y: s.y, name: label + " (raw)", mode: "lines", type: "scatter",
          line: { color: c, width: 1 }, opacity: dim ? 0.08 : 0.25, hoverinfo: "skip", showlegend: false });
        traces.push({ x: s.sx, y: s.s, name: label, mode: "lines", type: "scatter",
          line: { color: c, width }, opacity: dim ? 0.25 : 1 });
      } else {
        traces.push({ x: s.x, y: s.y, name: label, mode: "lines", type: "scatter",
          line: { color: c, width }, opacity: dim ? 0.25 : 1 });
      }
      for (const a of s.alerts || []) {  // where the event began, as the PNG plots mark it
        info.alerts.push({ run: r.id, metric: m, x: a.x, kind: a.kind, iteration: a.iteration });
        shapes.push({ type: "line", xref: "x", yref: "paper", x0: a.x, x1: a.x, y0: 0, y1: 1,
          line: { color: c, width: 1, dash: "dot" } });
        notes.push({ x: a.x, y: 1, xref: "x", yref: "paper", text: `${a.kind}: ${m}`, showarrow: false,
          textangle: -90, xanchor: "right", yanchor: "top", font: { size: 9, color: c },
          hovertext: `${r.name}: ${a.kind} on ${m} at iteration ${a.iteration} (value ${fmt(a.value)}, baseline ${fmt(a.baseline)})` });
      }
      if (s.diverged) {
        info.diverged.push({ run: r.id, metric: m, x: s.diverged.x });
        if (!firstBad || s.diverged.x < firstBad.x) firstBad = s.diverged;
      }
    }
    if (firstBad) {  // one mark per run, where its loss first went NaN/inf (as the PNG plots)
      traces.push({ x: [firstBad.x], y: [firstBad.y], name: `${r.name} diverged`,
        mode: "markers+text", type: "scatter", text: ["diverged"], textposition: "top right",
        textfont: { color: c }, marker: { symbol: "x", size: 12, color: c, line: { width: 2 } } });
    }
  }
  const layout = {
    margin: { l: 56, r: 12, t: 8, b: 40 }, hovermode: "x unified", showlegend: false,
    uirevision: `${chart.key}|${S.x}|${S.logy}`,
    xaxis: { title: { text: X_TITLES[S.x] }, zeroline: false },
    yaxis: { type: S.logy ? "log" : "linear", zeroline: false, exponentformat: "e" },
    font: { size: 11 }, shapes, annotations: notes,
  };
  if (S.cursor !== null) {
    shapes.push({ type: "line", xref: "x", yref: "paper", x0: S.cursor, x1: S.cursor, y0: 0, y1: 1,
      line: { color: "#333", width: 1.5 } });
  }
  info.cursor = S.cursor;
  let lo = Infinity, hi = -Infinity;
  for (const v of ys) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (ys.length && !S.logy && hi - lo <= 1e-9 * Math.max(Math.abs(hi), 1e-300)) {
    const pad = Math.abs(hi) * 0.05 || 1;  // a constant: no axis over rounding noise
    layout.yaxis.range = [lo - pad, hi + pad];
    layout.yaxis.autorange = false;
  }
  if (S.outliers && ys.length > 10) {
    ys.sort((a, b) => a - b);
    let lo = quantile(ys, 0.02), hi = quantile(ys, 0.98);
    const pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.1 || 1;
    lo -= pad; hi += pad;
    layout.yaxis.autorange = false;
    layout.yaxis.range = S.logy ? [Math.log10(Math.max(lo, ys[0] || 1e-12, 1e-12)), Math.log10(hi)] : [lo, hi];
    layout.uirevision += "|outliers";
  }
  Plotly.react(chart.div, traces, layout, { displaylogo: false, responsive: true });
  if (!chart.drawn) {
    chart.drawn = true;
    chart.div.on("plotly_relayout", (ev) => onRelayout(chart, ev));
    chart.div.on("plotly_click", (ev) => { if (ev.points && ev.points.length) setCursor(ev.points[0].x); });
  }
  const now = performance.now();
  dash.draws += 1;
  dash.lastDrawMs = now - t0;
  if (dash.firstChartMs === null && info.series > 0) dash.firstChartMs = now;
  if (dash.interactiveMs === null && info.series > 0) dash.interactiveMs = now;
  info.range = chart.range;
  info.x = S.x;
  info.smoothing = smoothingOf(chart.key);
  dash.charts[chart.key] = info;
  const total = [...chart.data.values()].reduce((n, s) => n + s.points, 0) +
    [...(chart.bands || new Map()).values()].reduce((n, b) => n + b.x.length, 0);
  chart.card.querySelector(".note").textContent = `${total.toLocaleString("en")} points`;
}

function onRelayout(chart, ev) {
  if (ev["xaxis.autorange"] || ev["autosize"]) {
    if (chart.range !== null) { chart.range = null; load(chart, null); }
  } else if ("xaxis.range[0]" in ev || Array.isArray(ev["xaxis.range"])) {
    const r = ev["xaxis.range"] || [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
    chart.range = [Number(r[0]), Number(r[1])];
    load(chart, null);
  }
}

async function reloadAll() {
  // One chart after the other, in page order: the first one is not slowed by the rest.
  ensureCharts();
  const charts = [...S.charts.values()].sort((a, b) => rank(a.key) - rank(b.key) || a.key.localeCompare(b.key));
  for (const chart of charts) await load(chart, null);
}

function exportCSV(chart) {
  const lines = ["run,metric,x_axis,x,y,smoothed"];
  for (const r of shownRuns()) {
    for (const m of metricsOf(chart.key)) {
      const s = chart.data.get(`${r.id}|${m}`);
      if (!s) continue;
      const smooth = new Map();
      if (s.s) s.sx.forEach((x, i) => smooth.set(x, s.s[i]));
      s.x.forEach((x, i) => lines.push([JSON.stringify(r.name), m, S.x, x, s.y[i], smooth.get(x) ?? ""].join(",")));
    }
  }
  const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `cs336_${chart.key}_${S.x}.csv`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// ---------------------------------------------------------------- budget cursor
// Every shown run's train and val loss at the cursor's x, from the server (api.at: the last
// value logged at or before it, and how far before; interpolated only when asked).
async function setCursor(x) {
  S.cursor = x === null || x === "" || !Number.isFinite(Number(x)) ? null : Number(x);
  $("at").value = S.cursor === null ? "" : String(S.cursor);
  S.charts.forEach(draw);
  await refreshCursor();
}

async function refreshCursor() {
  const box = $("cursor");
  const ids = shownRuns().map((r) => r.id);
  S.cursorRuns = ids.join(",");
  if (S.cursor === null || !ids.length) {
    box.hidden = true; dash.cursor = null; return;
  }
  const params = new URLSearchParams({ runs: ids.join(","), x: S.x, at: String(S.cursor),
    interpolate: S.interpolate ? "1" : "0" });
  try {
    const answer = await getJSON("/api/at?" + params);
    const say = (v) => {
      if (v.value === null || v.value === undefined) return v.how.replace("_", " ");
      const where = v.how === "interpolated" ? " (interpolated)" : v.before ? ` (${fmt(v.before)} before)` : "";
      return fmt(v.value) + where;
    };
    const rows = answer.runs.map((a) => {
      const r = S.runs.get(a.run) || { name: a.run };
      return `<tr data-run="${esc(a.run)}"><td><span class="swatch" style="background:${colour(a.run)}"></span> ${esc(r.name)}</td>` +
        answer.metrics.map((m) => `<td class="num" data-metric="${esc(m)}">${esc(say(a.values[m]))}</td>`).join("") + "</tr>";
    });
    box.innerHTML = `<table><thead><tr><th>at ${esc(X_TITLES[answer.x] || answer.x)} = ${esc(fmt(answer.at))}</th>` +
      answer.metrics.map((m) => `<th>${esc(m)}</th>`).join("") + `</tr></thead><tbody>${rows.join("")}</tbody></table>`;
    box.hidden = false;
    dash.cursor = { x: answer.x, at: answer.at, runs: Object.fromEntries(answer.runs.map((a) => [a.run, a.values])) };
  } catch (e) {
    dash.errors.push(String(e));
    $("message").textContent = String(e);
  }
}

// ---------------------------------------------------------------- live events
function connect() {
  const source = new EventSource("/api/events");
  source.onopen = () => { $("live").textContent = "\u25CF live"; $("live").className = "on"; };
  source.onerror = () => { $("live").textContent = "\u25CF reconnecting"; $("live").className = ""; };
  source.onmessage = (ev) => {
    const payload = JSON.parse(ev.data);
    const first = !dash.ready;
    const before = new Map([...S.runs].map(([id, r]) => [id, r.version]));
    mergeRuns(payload);
    renderTable();
    dash.events += 1;
    if (first) { dash.ready = true; reloadAll(); return; }
    const changed = payload.runs.filter((r) => r.rows !== undefined && before.get(r.id) !== r.version)
      .map((r) => r.id).filter((id) => S.selected.has(id));
    const known = S.charts.size;
    ensureCharts();
    for (const chart of S.charts.values()) {
      if (!chart.drawn && S.charts.size !== known) load(chart, null);
      else if (changed.length) load(chart, changed);
    }
    if (changed.length && S.cursor !== null) refreshCursor();
  };
}

// ---------------------------------------------------------------- controls
function debounce(fn, ms) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

function bind() {
  $("x").onchange = (e) => {
    S.x = dash.x = e.target.value;
    for (const c of S.charts.values()) c.range = null;
    setCursor(null);  // a number on another axis
    reloadAll();
  };
  const smooth = debounce(() => reloadAll(), 150);
  $("smoothing").oninput = (e) => {
    S.smoothing = dash.smoothing = Number(e.target.value);
    $("smoothing-value").textContent = S.smoothing.toFixed(2);
    smooth();
  };
  $("logy").onchange = (e) => { S.logy = e.target.checked; S.charts.forEach(draw); };
  $("outliers").onchange = (e) => { S.outliers = e.target.checked; S.charts.forEach(draw); };
  $("metric-filter").oninput = (e) => { S.metricFilter = e.target.value; ensureCharts(); };
  $("run-filter").oninput = debounce((e) => { setRunFilter(e.target.value); renderTable(); reloadAll(); }, 150);
  $("tag-filter").onchange = (e) => { S.tagFilter = e.target.value; renderTable(); reloadAll(); };
  $("group-filter").onchange = (e) => { S.groupFilter = e.target.value; renderTable(); reloadAll(); };
  $("group-mode").onchange = (e) => { S.groupMode = dash.groupMode = e.target.value; reloadAll(); };
  $("at").onchange = (e) => setCursor(e.target.value.trim() === "" ? null : Number(e.target.value));
  $("interpolate").onchange = (e) => { S.interpolate = e.target.checked; refreshCursor(); };
  $("select-all").onclick = () => { for (const r of S.runs.values()) if (matches(r)) S.selected.add(r.id); renderTable(); reloadAll(); };
  $("select-none").onclick = () => { S.selected.clear(); renderTable(); S.charts.forEach(draw); };
  $("runs").onclick = (e) => {
    const th = e.target.closest("th");
    if (th && th.dataset.key) {
      S.sort = { key: th.dataset.key, dir: S.sort.key === th.dataset.key ? -S.sort.dir : 1 };
      renderTable();
      return;
    }
    const tr = e.target.closest("tbody tr");
    if (!tr) return;
    const id = tr.dataset.id;
    if (e.target.type === "checkbox") {
      if (e.target.checked) S.selected.add(id); else S.selected.delete(id);
      renderTable();
      if (e.target.checked) S.charts.forEach((c) => load(c, [id])); else S.charts.forEach(draw);
      return;
    }
    S.highlight = S.highlight === id ? null : id;
    renderTable();
    S.charts.forEach(draw);
  };
}

// plotly is loaded by this script, after the first curves are drawn on a canvas (see
// drawPreview): compiling it blocks the page for most of a second, and no answer from the
// server could be handled meanwhile. Without curves to draw it is loaded after a second.
let plotlyAsked = false;
function loadPlotly() {
  if (plotlyAsked) return;
  plotlyAsked = true;
  const script = document.createElement("script");
  script.src = "/vendor/plotly.min.js";
  script.onload = () => {
    for (const chart of waiting) draw(chart);
    waiting.clear();
  };
  script.onerror = () => {
    document.body.insertAdjacentHTML("afterbegin",
      "<p class=\"error\">plotly is not installed: pip install 'cs336-basics[dashboard]'</p>");
    dash.errors.push("plotly missing");
  };
  document.head.appendChild(script);
}

bind();
prefetch();
connect();
setTimeout(loadPlotly, 1000);
