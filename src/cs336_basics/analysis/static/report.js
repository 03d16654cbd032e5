// cs336-exp report --html: the page's script (inlined into the file, after plotly.min.js).
// It reads the data from <script id="report-data">, draws one plotly chart per metric group,
// and keeps what it drew in window.__report for tests. Nothing here loads anything.
"use strict";
const D = JSON.parse(document.getElementById("report-data").textContent);
const R = window.__report = { ready: false, errors: [], charts: {}, mode: "band", band: "minmax" };
const hasBands = D.bands.length > 0;
const state = { logy: false, mode: hasBands ? "band" : "each", band: "minmax" };
function grouped(run) { return state.mode === "band" && D.bands.some((b) => b.runs.includes(run)); }
function traces(chart) {
  const out = [];
  for (const s of D.series) {
    if (!chart.metrics.includes(s.metric) || grouped(s.run)) continue;
    const run = D.runs[s.run];
    const val = s.metric === "val_loss";
    out.push({ x: s.x, y: s.y, name: `${run.key} ${s.metric}`, legendgroup: run.key,
      type: "scatter", mode: val && s.x.length < 80 ? "lines+markers" : "lines",
      line: { color: run.colour, width: 1.5, dash: val ? "dash" : "solid" }, marker: { size: 4 },
      meta: { run: run.id, metric: s.metric } });
    if (s.diverged) {
      out.push({ x: [s.diverged.x], y: [s.diverged.y], name: `${run.key} diverged`,
        legendgroup: run.key, showlegend: false, type: "scatter", mode: "markers+text",
        text: ["diverged"], textposition: "top right",
        marker: { symbol: "x", size: 11, color: run.colour }, meta: { run: run.id, metric: s.metric } });
    }
  }
  if (state.mode === "band") {
    for (const b of D.bands) {
      if (!chart.metrics.includes(b.metric)) continue;
      const lo = state.band === "std" ? b.mean.map((m, i) => m - b.std[i]) : b.low;
      const hi = state.band === "std" ? b.mean.map((m, i) => m + b.std[i]) : b.high;
      const name = `${b.group} ${b.metric} (mean of ${b.runs.length})`;
      const meta = { group: b.group, metric: b.metric };
      out.push({ x: b.x, y: lo, type: "scatter", mode: "lines", line: { width: 0, color: b.colour },
        legendgroup: name, showlegend: false, hoverinfo: "skip", meta });
      out.push({ x: b.x, y: hi, type: "scatter", mode: "lines", fill: "tonexty",
        line: { width: 0, color: b.colour }, fillcolor: b.colour + "33", legendgroup: name,
        showlegend: false, hoverinfo: "skip", meta });
      out.push({ x: b.x, y: b.mean, type: "scatter", mode: "lines", name, legendgroup: name,
        line: { color: b.colour, width: 2, dash: b.metric === "val_loss" ? "dash" : "solid" },
        customdata: b.n, hovertemplate: "%{y:.4g} (n=%{customdata})", meta });
    }
  }
  return out;
}
function draw() {
  for (const chart of D.charts) {
    const div = document.getElementById("chart-" + chart.key);
    const data = traces(chart);
    Plotly.react(div, data, {
      margin: { l: 56, r: 12, t: 8, b: 40 }, hovermode: "x unified", font: { size: 11 },
      xaxis: { title: { text: D.x_title }, zeroline: false },
      yaxis: { type: state.logy ? "log" : "linear", zeroline: false, exponentformat: "e" },
      legend: { font: { size: 10 } }, uirevision: chart.key + state.logy,
    }, { displaylogo: false, responsive: true });
    R.charts[chart.key] = { traces: data.length,
      runs: [...new Set(data.filter((t) => t.meta && t.meta.run).map((t) => t.meta.run))],
      groups: [...new Set(data.filter((t) => t.meta && t.meta.group).map((t) => t.meta.group))],
      points: data.reduce((n, t) => n + t.x.length, 0) };
  }
  R.mode = state.mode; R.band = state.band; R.draws = (R.draws || 0) + 1;
}
try {
  const charts = document.getElementById("charts");
  for (const chart of D.charts) {
    const card = document.createElement("div");
    card.className = "chart";
    card.innerHTML = `<h3></h3><div class="plot" id="chart-${chart.key}"></div>`;
    card.querySelector("h3").textContent = chart.title;
    charts.appendChild(card);
  }
  document.getElementById("logy").onchange = (e) => { state.logy = e.target.checked; draw(); };
  const mode = document.getElementById("mode"), band = document.getElementById("band");
  if (mode) mode.onchange = (e) => { state.mode = e.target.value; draw(); };
  if (band) band.onchange = (e) => { state.band = e.target.value; draw(); };
  draw();
  R.ready = true;
} catch (e) {
  R.errors.push(String(e));
  document.body.insertAdjacentHTML("afterbegin", `<p>charts failed: ${String(e)}</p>`);
}
