// Fabric's dashboard: reads the agent's API with the token the user gave,
// which stays in this tab's session storage. Every value shown comes from
// the cluster (guests name their tasks and write their errors), so text
// goes into the page as text, never as markup.
"use strict";

const refreshMs = 2000;
let token = sessionStorage.getItem("fabricToken") || "";
let timer = null;
let selected = null; // the row whose details are open, by page

// el makes an element: attrs are properties (and data-* attributes),
// children are nodes or text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "onclick") e.addEventListener("click", v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

async function api(path, opts) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + token }, ...opts });
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    try { msg = (await resp.json()).error || msg; } catch (_) { /* not JSON */ }
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  return resp;
}
const getJSON = async (path) => (await api(path)).json();

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}
function fmtTime(s) { return s ? new Date(s).toLocaleTimeString() : "-"; }
function since(s) {
  if (!s) return "-";
  const d = (Date.now() - new Date(s).getTime()) / 1000;
  return d < 120 ? Math.round(d) + "s" : d < 7200 ? Math.round(d / 60) + "m" : Math.round(d / 3600) + "h";
}
function duration(from, to) {
  if (!from) return "-";
  const ms = (to ? new Date(to) : new Date()) - new Date(from);
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s";
}
function state(s) { return el("span", { className: "state-" + s }, s); }
function short(id) { return el("span", { className: "mono", title: id }, (id || "").slice(0, 12)); }

function table(heads, rows, onRow) {
  return el("table", {},
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r, i) => {
      const tr = el("tr", onRow ? { className: "clickable", onclick: () => onRow(i) } : {}, r.map((c) => el("td", {}, c)));
      return tr;
    })));
}

function card(label, value, used, total) {
  const c = el("div", { className: "card" }, el("div", { className: "label" }, label), el("div", { className: "value" }, value));
  if (total > 0) {
    const fill = el("span");
    fill.style.width = Math.min(100, (100 * used) / total) + "%"; // the CSSOM: allowed by the page's CSP
    c.append(el("div", { className: "bar" }, fill));
  }
  return c;
}

// chart draws series over time as an SVG line chart: series are
// {label, cls, values: [[ms, value], ...]}; fmt formats the axis.
const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function chart(title, series, fmt, id) {
  const W = 560, H = 140, L = 64, B = 20, T = 8;
  const all = series.flatMap((s) => s.values);
  const wrap = el("div", { className: "chart", id: id || "" }, el("div", { className: "label" }, title));
  if (all.length === 0) {
    wrap.append(el("p", { className: "muted" }, "No samples yet: each node samples itself every 10 s."));
    return wrap;
  }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const top = Math.max(...all.map((p) => p[1]), 0) || 1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 4), y = (v) => T + (1 - v / top) * (H - T - B);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  g.append(svg("line", { x1: L, x2: W - 4, y1: y(0), y2: y(0), class: "axis" }), svg("line", { x1: L, x2: W - 4, y1: y(top), y2: y(top), class: "grid" }),
    svg("text", { x: L - 6, y: y(top) + 4, "text-anchor": "end" }, fmt(top)), svg("text", { x: L - 6, y: y(0) + 4, "text-anchor": "end" }, fmt(0)),
    svg("text", { x: L, y: H - 4 }, new Date(t0).toLocaleTimeString()), svg("text", { x: W - 4, y: H - 4, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()));
  const legend = el("div", { className: "legend" });
  for (const s of series) {
    if (s.values.length === 0) continue;
    const pts = s.values.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
    g.append(svg("polyline", { points: pts, class: "line " + s.cls }));
    // A gauge shows its latest value; a count per step (total: true) its
    // sum over the chart.
    const shown = s.total ? s.values.reduce((a, p) => a + p[1], 0) : s.values[s.values.length - 1][1];
    legend.append(el("span", { className: "key " + s.cls }, s.label + (s.total ? " in all" : "") + ": " + fmt(shown)));
  }
  wrap.append(g, legend);
  return wrap;
}
const num = (v) => (Math.round(v * 100) / 100).toLocaleString();

// Elements that live across refreshes: the job submission form (what the
// user typed stays) and a job's followed output.
let submitForm = null;
let logStream = null; // {job, pre, ctrl}

function stopLog() {
  if (logStream) logStream.ctrl.abort();
  logStream = null;
}

// followLog streams a job's output into a <pre> as it is written (the
// API's follow=1), keeping its last 64 KiB.
function followLog(id) {
  if (logStream && logStream.job === id) return logStream.pre;
  stopLog();
  const pre = el("pre", { id: "job-log" });
  const ctrl = new AbortController();
  // pinned: the view stays at the end, as a tail does, until the user
  // scrolls up.
  const stream = { job: id, pre, ctrl, pinned: true };
  logStream = stream;
  pre.addEventListener("scroll", () => { stream.pinned = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4; });
  const append = (text) => {
    const all = pre.textContent + text;
    pre.textContent = all.length > 65536 ? all.slice(all.length - 65536) : all;
    if (stream.pinned) pre.scrollTop = pre.scrollHeight;
  };
  (async () => {
    try {
      const resp = await api("/v1/jobs/" + encodeURIComponent(id) + "/logs?follow=1", { signal: ctrl.signal });
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        append(value);
      }
      pre.dataset.ended = "true";
    } catch (e) {
      if (e.name !== "AbortError") append("\n[the output's stream broke: " + e.message + "]\n");
    }
  })();
  return pre;
}

// jobForm is the form that submits a job: a module file, an ID and
// arguments; the page goes to the job once it is recorded.
function jobForm() {
  if (submitForm) return submitForm;
  const file = el("input", { type: "file", id: "submit-module", accept: ".wasm,application/wasm" });
  const id = el("input", { type: "text", id: "submit-id", placeholder: "job ID (optional)" });
  const args = el("input", { type: "text", id: "submit-args", placeholder: "arguments, separated by spaces" });
  const msg = el("span", { className: "error", id: "submit-error" });
  const f = el("form", { id: "submit-job", className: "filters" }, el("strong", {}, "Submit a job "), file, id, args, el("button", { type: "submit" }, "Submit"), msg);
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    msg.textContent = "";
    if (!file.files.length) { msg.textContent = "Choose a .wasm module first."; return; }
    const q = new URLSearchParams({ detach: "1" });
    if (id.value.trim()) q.set("id", id.value.trim());
    for (const a of args.value.split(/\s+/).filter((a) => a)) q.append("arg", a);
    try {
      const body = await file.files[0].arrayBuffer();
      const job = await (await api("/v1/jobs?" + q, { method: "POST", body, headers: { Authorization: "Bearer " + token, "Content-Type": "application/wasm" } })).json();
      f.reset();
      if (f.contains(document.activeElement)) document.activeElement.blur();
      location.hash = "#/jobs/" + encodeURIComponent(job.id);
    } catch (e) {
      msg.textContent = "Not submitted: " + e.message;
    }
  });
  submitForm = f;
  return f;
}

// history keeps the last hour's points: the whole hour once, then the
// last 30 s at each refresh, merged by time (a step sampled late by a
// node is replaced by its fuller sum).
let histPoints = null; // time (ms) -> point
let histStep = 10;
async function history() {
  const h = await getJSON(histPoints ? "/v1/history?window=30" : "/v1/history");
  histPoints = histPoints || new Map();
  histStep = h.step_seconds;
  for (const p of h.points) histPoints.set(new Date(p.time).getTime(), p);
  const cut = Date.now() - 3600 * 1000;
  for (const t of histPoints.keys()) if (t < cut) histPoints.delete(t);
  const points = [...histPoints.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  return { step_seconds: histStep, points };
}

const pages = {
  async overview() {
    const [st, jobs, sum, hist] = await Promise.all([getJSON("/v1/status"), getJSON("/v1/jobs"), getJSON("/v1/tasks/summary"), history()]);
    const alive = st.nodes.alive || 0;
    const nodes = Object.values(st.nodes).reduce((a, b) => a + b, 0);
    const byNodeState = Object.entries(st.nodes).filter(([, n]) => n > 0).map(([s, n]) => n + " " + s).join(", ");
    const running = jobs.filter((j) => j.state === "running").length;
    const byState = {};
    for (const r of sum.functions) for (const [s, n] of Object.entries(r.states)) byState[s] = (byState[s] || 0) + n;
    const res = (k) => [st.used[k] || 0, st.total[k] || 0];
    const [cpuU, cpuT] = res("CPU"), [memU, memT] = res("memory"), [gpuU, gpuT] = res("GPU");
    const pts = hist.points, last = pts.length ? pts[pts.length - 1] : null;
    const at = (f) => pts.map((p) => [new Date(p.time).getTime(), f(p)]);
    const charts = [
      chart("CPU (cores)", [{ label: "used", cls: "s1", values: at((p) => p.used.CPU || 0) }, { label: "total", cls: "s0", values: at((p) => p.total.CPU || 0) }], num, "chart-cpu"),
      chart("Memory", [{ label: "reserved", cls: "s1", values: at((p) => p.used.memory || 0) }, { label: "total", cls: "s0", values: at((p) => p.total.memory || 0) }], fmtBytes),
      chart("Object store", [{ label: "used", cls: "s1", values: at((p) => p.store_used) }, { label: "capacity", cls: "s0", values: at((p) => p.store_capacity) }], fmtBytes),
      chart("Tasks", [{ label: "running", cls: "s1", values: at((p) => p.running) }, { label: "pending", cls: "s2", values: at((p) => p.pending) }], num, "chart-tasks"),
      chart("Tasks ended per " + hist.step_seconds + " s", [{ label: "finished", cls: "s3", total: true, values: at((p) => p.finished) }, { label: "failed", cls: "s4", total: true, values: at((p) => p.failed) }], num, "chart-ended"),
    ];
    if (pts.some((p) => p.total.GPU)) charts.push(chart("GPU", [{ label: "used", cls: "s1", values: at((p) => p.used.GPU || 0) }, { label: "total", cls: "s0", values: at((p) => p.total.GPU || 0) }], num));
    return [
      el("h1", {}, "Overview"),
      el("div", { className: "cards" },
        card("Nodes alive", alive + " / " + nodes + (byNodeState && alive !== nodes ? " (" + byNodeState + ")" : "")),
        card("CPU in use", num(cpuU) + " / " + num(cpuT), cpuU, cpuT),
        card("Memory in use", fmtBytes(memU) + " / " + fmtBytes(memT), memU, memT),
        card("GPU in use", gpuU + " / " + gpuT, gpuU, gpuT),
        last ? card("Object store", fmtBytes(last.store_used) + " / " + fmtBytes(last.store_capacity), last.store_used, last.store_capacity) : null,
        card("Jobs running", running + " of " + jobs.length),
        card("Tasks running", byState.running || 0),
        card("Tasks pending", byState.pending || 0),
        card("Tasks finished", byState.finished || 0),
        card("Tasks failed", byState.failed || 0),
        card("Worker processes", st.workers.processes || 0)),
      el("h2", {}, "The last hour"),
      el("div", { className: "charts" }, charts),
      el("h2", {}, "Tasks by function"),
      table(["Function", "Kind", "Pending", "Running", "Finished", "Failed"],
        sum.functions.map((r) => [r.name, r.kind, r.states.pending || 0, r.states.running || 0, r.states.finished || 0, r.states.failed || 0])),
    ];
  },

  async nodes() {
    const [ns, hist] = await Promise.all([getJSON("/v1/nodes"), getJSON("/v1/history?window=30")]);
    const stats = Object.fromEntries(hist.nodes.map((n) => [n.node, n]));
    const amt = (n, k, bytes) => (bytes ? fmtBytes : num)(n.used[k] || 0) + " / " + (bytes ? fmtBytes : num)(n.resources[k] || 0);
    const stat = (id, f) => (stats[id] ? f(stats[id]) : "-");
    return [el("h1", {}, "Nodes"),
      table(["Node", "Status", "Role", "Address", "CPU", "Memory", "GPU", "Object store", "Worker processes", "Sandboxes (busy / parked / idle)", "Round trip", "Labels"],
        ns.map((n) => [el("span", { className: "mono" }, n.id), state(n.status), n.role, n.gossip, amt(n, "CPU"), amt(n, "memory", true), amt(n, "GPU"),
          stat(n.id, (s) => fmtBytes(s.store_used) + " / " + fmtBytes(s.store_capacity)), stat(n.id, (s) => s.worker_processes),
          stat(n.id, (s) => s.sandboxes_busy + " / " + s.sandboxes_parked + " / " + s.sandboxes_idle),
          stat(n.id, (s) => (s.rtt_ms < 1 ? s.rtt_ms.toFixed(2) : s.rtt_ms.toFixed(1)) + " ms"),
          Object.entries(n.labels || {}).map(([k, v]) => k + "=" + v).join(", ") || "-"])),
      el("p", { className: "muted" }, "Round trips are from the node serving this page, estimated from the gossip layer's network coordinates; sandboxes are instances of jobs' modules in the worker processes.")];
  },

  async jobs(id) {
    if (id) return jobPage(id);
    const jobs = await getJSON("/v1/jobs");
    jobs.reverse();
    return [el("h1", {}, "Jobs"), jobForm(),
      table(["Job", "State", "Node", "Submitted", "Duration", "Error"],
        jobs.map((j) => [el("a", { href: "#/jobs/" + encodeURIComponent(j.id) }, j.id), state(j.state), j.node, fmtTime(j.submitted),
          duration(j.started, j.ended), el("span", { className: "error" }, (j.error || "").split("\n")[0])]))];
  },

  async tasks() {
    const filter = sessionStorage.getItem("taskState") || "";
    const [list, sum] = await Promise.all([getJSON("/v1/tasks?limit=200" + (filter ? "&state=" + filter : "")), getJSON("/v1/tasks/summary")]);
    const tasks = list.tasks.slice().reverse();
    const byState = {};
    let retries = 0;
    for (const r of sum.functions) {
      retries += r.retries || 0;
      for (const [s, n] of Object.entries(r.states)) byState[s] = (byState[s] || 0) + n;
    }
    const sel = el("select", { id: "task-state" }, ["", "pending", "running", "finished", "failed"].map((s) => el("option", { value: s, selected: s === filter }, s || "any state")));
    sel.addEventListener("change", () => { sessionStorage.setItem("taskState", sel.value); selected = null; render(); });
    const out = [el("h1", {}, "Tasks"),
      el("div", { className: "cards", id: "task-counts" }, ["pending", "running", "finished", "failed"].map((s) => card(s[0].toUpperCase() + s.slice(1), byState[s] || 0)), card("Retries", retries)),
      el("div", { className: "filters" }, sel, el("span", { className: "muted" }, tasks.length + " of " + list.total + " (the newest; an attempt past 1 is a retry)"))];
    out.push(table(["Task", "Job", "Function", "Kind", "State", "Node", "Attempt", "Duration", "Error"],
      tasks.map((t) => [short(t.task_id), t.job, t.name, t.kind, state(t.state), t.node, t.attempt, duration(t.started || t.placed, t.ended),
        el("span", { className: "error" }, (t.error_type ? t.error_type + ": " : "") + (t.error || "").split("\n")[0])]),
      (i) => { selected = { page: "tasks", id: tasks[i].task_id + "/" + tasks[i].attempt }; render(); }));
    const open = selected && selected.page === "tasks" && tasks.find((t) => t.task_id + "/" + t.attempt === selected.id);
    if (open) {
      out.push(el("h2", { id: "task-detail" }, "Task " + open.name + " (" + open.task_id + ", attempt " + open.attempt + ")"),
        el("p", {}, "State: ", state(open.state), " on node " + open.node + (open.pid ? ", process " + open.pid : "")),
        open.error ? el("pre", { id: "task-error" }, (open.error_type ? open.error_type + ": " : "") + open.error) : el("p", { className: "muted" }, "No error."));
    }
    return out;
  },

  async actors() {
    const [list, sum] = await Promise.all([getJSON("/v1/actors?limit=500"), getJSON("/v1/actors/summary")]);
    const byState = {};
    let restarts = 0;
    for (const r of sum.classes) {
      restarts += r.restarts;
      for (const [s, n] of Object.entries(r.states)) byState[s] = (byState[s] || 0) + n;
    }
    return [el("h1", {}, "Actors"),
      el("div", { className: "cards", id: "actor-counts" }, ["pending", "alive", "restarting", "dead"].map((s) => card(s[0].toUpperCase() + s.slice(1), byState[s] || 0)), card("Restarts", restarts)),
      el("p", { className: "muted" }, list.actors.length + " of " + sum.total + " (the newest)"),
      table(["Actor", "Class", "Name", "Job", "State", "Node", "Process", "Restarts", "Age", "Death cause"],
        list.actors.slice().reverse().map((a) => [short(a.actor_id), a.class, a.name || "-", a.job, state(a.state), a.node, a.pid || "-", a.restarts, since(a.created),
          el("span", { className: "error" }, (a.death_cause || "").split("\n")[0])]))];
  },

  async objects() {
    const list = await getJSON("/v1/objects?limit=500");
    return [el("h1", {}, "Objects"),
      el("p", { className: "muted" }, list.objects.length + " of " + list.total),
      table(["Object", "Owner (job)", "Size", "State", "Locations", "Spilled", "Refs", "Producer"],
        list.objects.map((o) => [short(o.object_id), (o.job || "-") + (o.tenant ? " (" + o.tenant + ")" : ""), fmtBytes(o.size), state(o.state), o.locations.join(", ") || "-",
          o.spilled ? "yes" : "no", o.refs, o.producer || "-"]))];
  },
};

async function jobPage(id) {
  const enc = encodeURIComponent(id);
  const [job, tasks, actors] = await Promise.all([
    getJSON("/v1/jobs/" + enc), getJSON("/v1/tasks?limit=200&job=" + enc), getJSON("/v1/actors?limit=200&job=" + enc),
  ]);
  return [
    el("h1", {}, "Job " + job.id),
    el("p", { id: "job-state" }, "State: ", state(job.state), " · node " + job.node + " · submitted " + fmtTime(job.submitted) + " · duration " + duration(job.started, job.ended)),
    job.error ? el("pre", { className: "error" }, job.error) : null,
    el("h2", {}, "Output (live)"),
    followLog(job.id),
    el("h2", {}, "Tasks (" + tasks.total + ")"),
    table(["Task", "Function", "Kind", "State", "Node", "Attempt", "Duration", "Error"],
      tasks.tasks.slice().reverse().map((t) => [short(t.task_id), t.name, t.kind, state(t.state), t.node, t.attempt, duration(t.started || t.placed, t.ended),
        el("span", { className: "error" }, (t.error || "").split("\n")[0])])),
    el("h2", {}, "Actors (" + actors.total + ")"),
    table(["Actor", "Class", "Name", "State", "Node", "Restarts"],
      actors.actors.map((a) => [short(a.actor_id), a.class, a.name || "-", state(a.state), a.node, a.restarts])),
  ];
}

function route() {
  const [, page, ...rest] = (location.hash || "#/overview").split("/");
  return { page: pages[page] ? page : "overview", arg: rest.length ? decodeURIComponent(rest.join("/")) : "" };
}

let rendering = false;
async function render() {
  if (!token || rendering) return;
  rendering = true;
  const { page, arg } = route();
  if (!(page === "jobs" && arg)) stopLog();
  if (submitForm && submitForm.contains(document.activeElement) && document.activeElement.type === "text") {
    rendering = false; // the user is typing: the next tick redraws
    return;
  }
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  const status = document.getElementById("status");
  try {
    const content = await pages[page](arg);
    const section = document.getElementById("page");
    section.replaceChildren(...content.filter((c) => c));
    if (logStream && logStream.pinned) logStream.pre.scrollTop = logStream.pre.scrollHeight; // moved back in: at its end again
    section.dataset.page = page;
    status.textContent = "Updated " + new Date().toLocaleTimeString();
    status.className = "muted";
  } catch (e) {
    if (e.status === 401) { logout("Your token was refused: " + e.message); return; }
    status.textContent = e.message;
    status.className = "error";
  } finally {
    rendering = false;
  }
}

async function login(t) {
  token = t;
  try {
    const who = await getJSON("/v1/whoami");
    sessionStorage.setItem("fabricToken", t);
    document.getElementById("who").textContent = who.cluster ? "cluster admin" : who.token.tenant + " (" + who.token.role + ")";
    document.getElementById("login").hidden = true;
    document.getElementById("nav").hidden = false;
    document.getElementById("logout").hidden = false;
    document.getElementById("page").hidden = false;
    await render();
    clearInterval(timer);
    timer = setInterval(render, refreshMs);
  } catch (e) {
    logout(e.status === 401 ? "That token was refused: " + e.message : e.message);
  }
}

function logout(why) {
  token = "";
  histPoints = null;
  stopLog();
  sessionStorage.removeItem("fabricToken");
  clearInterval(timer);
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("page").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = why || "";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    login(document.getElementById("token").value.trim());
  });
  document.getElementById("logout").addEventListener("click", () => logout(""));
  window.addEventListener("hashchange", () => { selected = null; render(); });
  if (token) login(token); else logout("");
});
