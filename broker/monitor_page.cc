// The page relay-monitor --http serves at "/": one HTML document with its
// style and script inline, so that it needs nothing but this server. The
// script polls /api/state (to_json(), monitor_state.h) every 500 ms and
// redraws: the graph (groups laid out by their distance from the sources,
// edges labelled with their counts and rate, red when backpressured), the
// actors, the edges, the log tail with its filters, and the end.
#include "broker/monitor_http.h"

namespace relay::monitor {

const char* const kPage = R"PAGE(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>relay monitor</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 15px; margin: 16px 0 6px; }
#status { padding: 6px 10px; border-radius: 4px; display: inline-block; font-weight: 600; }
#status.running { background: #e3f0ff; }
#status.ended { background: #dff5df; }
#status.stopped { background: #fde0e0; }
#status.waiting { background: #eee; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th, td.t { text-align: left; }
tr.bp td { background: #fde0e0; }
svg { background: #fff; border: 1px solid #ddd; }
svg .box { fill: #eef4ff; stroke: #4a74c9; }
svg .edge { stroke: #888; stroke-width: 2; fill: none; }
svg .edge.bp { stroke: #d33; stroke-width: 4; }
svg text { font: 12px system-ui, sans-serif; }
#logs { font: 12px monospace; background: #fff; border: 1px solid #ddd; height: 220px;
        overflow-y: auto; white-space: pre-wrap; padding: 4px; }
.l4, .l5 { color: #c00; } .l3 { color: #a60; } .l0, .l1 { color: #888; }
#err { color: #c00; }
</style>
</head>
<body>
<h1>relay monitor</h1>
<div><span id="status" class="waiting">waiting for the first report</span>
  <span id="elapsed"></span> <span id="err"></span></div>
<h2>Graph</h2>
<svg id="graph" width="900" height="120"></svg>
<h2>Edges</h2>
<table id="edges"><thead><tr><th class="t">edge</th><th class="t">grouping</th><th>window</th>
<th>sent</th><th>received</th><th>waiting</th><th>msg/s</th><th class="t">backpressure</th></tr>
</thead><tbody></tbody></table>
<h2>Actors</h2>
<table id="actors"><thead><tr><th class="t">group</th><th class="t">actor</th>
<th class="t">host</th><th>pid</th><th>sent</th><th>received</th><th>waiting</th><th>msg/s</th>
<th>restarts</th><th class="t">state</th></tr></thead>
<tbody></tbody></table>
<h2>Log</h2>
<div>level at least <select id="level"><option value="0">trace</option>
<option value="1">debug</option><option value="2">info</option><option value="3">warning</option>
<option value="4">error</option><option value="5">critical</option></select>
group <select id="group"><option value="">all</option></select>
<span id="logcounts"></span></div>
<div id="logs"></div>
<script>
"use strict";
const LEVELS = ["trace", "debug", "info", "warning", "error", "critical"];
const $ = (id) => document.getElementById(id);
function el(tag, attrs, text) {
  const e = document.createElementNS(tag === "svg" || attrs.svg ? "http://www.w3.org/2000/svg"
                                                               : "http://www.w3.org/1999/xhtml", tag);
  for (const k in attrs) if (k !== "svg") e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function cell(text, cls) { return el("td", cls ? {class: cls} : {}, String(text)); }
function rate(r) { return r >= 100 ? r.toFixed(0) : r.toFixed(1); }
let state = null;

function drawGraph(s) {
  const svg = $("graph");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  // Level of a group: the longest path to it from a group nothing enters.
  const level = {};
  for (const g of s.groups) level[g.name] = 0;
  for (let round = 0; round < s.groups.length; ++round) {
    for (const e of s.edges) {
      if (e.from in level && e.to in level && e.from !== e.to && level[e.to] < level[e.from] + 1)
        level[e.to] = level[e.from] + 1;
    }
  }
  const rows = {}, pos = {};
  for (const g of s.groups) {
    const l = level[g.name];
    rows[l] = (rows[l] || 0) + 1;
    pos[g.name] = {x: 20 + l * 300, y: 20 + (rows[l] - 1) * 90};
  }
  const actors = {};
  for (const a of s.actors) {
    const t = actors[a.group] || (actors[a.group] = {sent: 0, received: 0, rate: 0});
    t.sent += a.sent; t.received += a.received; t.rate += a.rate;
  }
  let width = 0, height = 0;
  for (const e of s.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const x1 = a.x + 175, y1 = a.y + 25, x2 = b.x, y2 = b.y + 25;
    svg.appendChild(el("path", {svg: 1, class: "edge" + (e.backpressure ? " bp" : ""),
      d: `M${x1},${y1} C${x1 + 40},${y1} ${x2 - 40},${y2} ${x2},${y2}`,
      "data-edge": e.name}));
    const out = e.name.match(/^'[^']*'\.'([^']*)'/);
    const fill = e.backpressure ? "#d33" : "#555", mx = x1 + 10, my = (y1 + y2) / 2;
    svg.appendChild(el("text", {svg: 1, x: mx, y: my - 6, fill: fill},
                       (out ? out[1] + ": " : "") + `${e.received}/${e.sent}`));
    svg.appendChild(el("text", {svg: 1, x: mx, y: my + 14, fill: fill},
                       rate(e.rate) + "/s" + (e.waiting ? `, w ${e.waiting}` : "")));
  }
  for (const g of s.groups) {
    const p = pos[g.name], t = actors[g.name] || {sent: 0, received: 0, rate: 0};
    const box = el("g", {svg: 1, class: "group", "data-group": g.name});
    box.appendChild(el("rect", {svg: 1, class: "box", x: p.x, y: p.y, width: 175, height: 50, rx: 6}));
    box.appendChild(el("text", {svg: 1, x: p.x + 8, y: p.y + 18, "font-weight": "bold"},
                       `${g.name} (${g.actors})`));
    box.appendChild(el("text", {svg: 1, x: p.x + 8, y: p.y + 38},
                       `in ${t.received} out ${t.sent} ${rate(t.rate)}/s`));
    svg.appendChild(box);
    width = Math.max(width, p.x + 195); height = Math.max(height, p.y + 70);
  }
  svg.setAttribute("width", Math.max(width, 300));
  svg.setAttribute("height", Math.max(height, 80));
}

function drawTables(s) {
  const eb = $("edges").tBodies[0];
  eb.replaceChildren(...s.edges.map((e) => {
    const tr = el("tr", {"data-edge": e.name, "data-sent": e.sent, "data-received": e.received,
                         class: e.backpressure ? "bp" : ""});
    // The window is per (sender, receiver) pair; backpressure is waiting at
    // three quarters of all the pairs' windows (e.threshold), held 2 s.
    tr.append(cell(e.name, "t"), cell(e.grouping || "", "t"), cell(e.window || ""), cell(e.sent),
              cell(e.received), cell(e.waiting), cell(rate(e.rate)),
              cell(e.backpressure ? "yes: senders wait on credit" : "", "t"));
    return tr;
  }));
  const ab = $("actors").tBodies[0];
  ab.replaceChildren(...s.actors.map((a) => {
    const tr = el("tr", {"data-actor": a.group + "/" + a.name, "data-sent": a.sent,
                         "data-received": a.received, "data-state": a.state,
                         "data-host": a.host, "data-pid": a.pid, "data-restarts": a.restarts});
    tr.append(cell(a.group, "t"), cell(a.name, "t"), cell(a.host, "t"), cell(a.pid || ""),
              cell(a.sent), cell(a.received), cell(a.waiting), cell(rate(a.rate)),
              cell(a.restarts), cell(a.state, "t"));
    return tr;
  }));
}

function drawLogs(s) {
  const sel = $("group"), have = new Set([...sel.options].map((o) => o.value));
  for (const g of s.groups) if (!have.has(g.name)) sel.appendChild(el("option", {value: g.name}, g.name));
  const min = Number($("level").value), group = sel.value, box = $("logs");
  const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  box.replaceChildren(...s.logs.filter((l) => LEVELS.indexOf(l.level) >= min &&
                                              (!group || l.group === group)).map((l) => {
    const t = new Date(l.unix_ms).toTimeString().slice(0, 8);
    return el("div", {class: "l" + LEVELS.indexOf(l.level)},
              `${t} ${l.level} [${l.group}] (${l.name}) ${l.text}`);
  }));
  if (atBottom) box.scrollTop = box.scrollHeight;
  $("logcounts").textContent = LEVELS.map((l) => `${l} ${s.log_counts[l]}`).join(", ");
}

function draw(s) {
  const st = $("status");
  if (s.end) {
    st.className = s.end.ok ? "ended" : "stopped";
    st.textContent = s.end.ok ? "ended well" : "stopped: " + s.end.reason;
  } else if (s.actors.length || s.logs.length || s.edges.length) {
    st.className = "running"; st.textContent = "running";
  }
  $("elapsed").textContent = s.seconds ? s.seconds.toFixed(1) + " s" : "";
  drawGraph(s); drawTables(s); drawLogs(s);
}

async function poll() {
  try {
    const r = await fetch("/api/state", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    state = await r.json();
    $("err").textContent = "";
    draw(state);
  } catch (e) {
    $("err").textContent = "monitor unreachable (" + e.message + ")";
  }
}
$("level").onchange = $("group").onchange = () => state && drawLogs(state);
poll();
setInterval(poll, 500);
</script>
</body>
</html>
)PAGE";

}  // namespace relay::monitor
