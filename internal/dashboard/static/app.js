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

const pages = {
  async overview() {
    const [st, jobs, sum] = await Promise.all([getJSON("/v1/status"), getJSON("/v1/jobs"), getJSON("/v1/tasks/summary")]);
    const alive = st.nodes.alive || 0;
    const nodes = Object.values(st.nodes).reduce((a, b) => a + b, 0);
    const running = jobs.filter((j) => j.state === "running").length;
    const byState = {};
    for (const r of sum.functions) for (const [s, n] of Object.entries(r.states)) byState[s] = (byState[s] || 0) + n;
    const res = (k) => [st.used[k] || 0, st.total[k] || 0];
    const [cpuU, cpuT] = res("CPU"), [memU, memT] = res("memory"), [gpuU, gpuT] = res("GPU");
    return [
      el("h1", {}, "Overview"),
      el("div", { className: "cards" },
        card("Nodes alive", alive + " / " + nodes),
        card("CPU in use", cpuU + " / " + cpuT, cpuU, cpuT),
        card("Memory in use", fmtBytes(memU) + " / " + fmtBytes(memT), memU, memT),
        card("GPU in use", gpuU + " / " + gpuT, gpuU, gpuT),
        card("Jobs running", running + " of " + jobs.length),
        card("Tasks running", byState.running || 0),
        card("Tasks pending", byState.pending || 0),
        card("Tasks finished", byState.finished || 0),
        card("Tasks failed", byState.failed || 0),
        card("Worker processes", st.workers.processes || 0)),
      el("h2", {}, "Tasks by function"),
      table(["Function", "Kind", "Pending", "Running", "Finished", "Failed"],
        sum.functions.map((r) => [r.name, r.kind, r.states.pending || 0, r.states.running || 0, r.states.finished || 0, r.states.failed || 0])),
    ];
  },

  async nodes() {
    const ns = await getJSON("/v1/nodes");
    const amt = (n, k, bytes) => (bytes ? fmtBytes : String)(n.used[k] || 0) + " / " + (bytes ? fmtBytes : String)(n.resources[k] || 0);
    return [el("h1", {}, "Nodes"),
      table(["Node", "Status", "Role", "Address", "CPU", "Memory", "GPU", "Labels"],
        ns.map((n) => [el("span", { className: "mono" }, n.id), state(n.status), n.role, n.gossip, amt(n, "CPU"), amt(n, "memory", true), amt(n, "GPU"),
          Object.entries(n.labels || {}).map(([k, v]) => k + "=" + v).join(", ") || "-"]))];
  },

  async jobs(id) {
    if (id) return jobPage(id);
    const jobs = await getJSON("/v1/jobs");
    jobs.reverse();
    return [el("h1", {}, "Jobs"),
      table(["Job", "State", "Node", "Submitted", "Duration", "Error"],
        jobs.map((j) => [el("a", { href: "#/jobs/" + encodeURIComponent(j.id) }, j.id), state(j.state), j.node, fmtTime(j.submitted),
          duration(j.started, j.ended), el("span", { className: "error" }, (j.error || "").split("\n")[0])]))];
  },

  async tasks() {
    const filter = sessionStorage.getItem("taskState") || "";
    const list = await getJSON("/v1/tasks?limit=200" + (filter ? "&state=" + filter : ""));
    const tasks = list.tasks.slice().reverse();
    const sel = el("select", { id: "task-state" }, ["", "pending", "running", "finished", "failed"].map((s) => el("option", { value: s, selected: s === filter }, s || "any state")));
    sel.addEventListener("change", () => { sessionStorage.setItem("taskState", sel.value); selected = null; render(); });
    const out = [el("h1", {}, "Tasks"), el("div", { className: "filters" }, sel, el("span", { className: "muted" }, tasks.length + " of " + list.total))];
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
    const list = await getJSON("/v1/actors?limit=500");
    return [el("h1", {}, "Actors"),
      table(["Actor", "Class", "Name", "Job", "State", "Node", "Restarts", "Age", "Death cause"],
        list.actors.map((a) => [short(a.actor_id), a.class, a.name || "-", a.job, state(a.state), a.node, a.restarts, since(a.created),
          el("span", { className: "error" }, (a.death_cause || "").split("\n")[0])]))];
  },

  async objects() {
    const list = await getJSON("/v1/objects?limit=500");
    return [el("h1", {}, "Objects"),
      table(["Object", "Job", "Size", "State", "Locations", "Spilled", "Refs", "Producer"],
        list.objects.map((o) => [short(o.object_id), o.job || "-", fmtBytes(o.size), state(o.state), o.locations.join(", ") || "-",
          o.spilled ? "yes" : "no", o.refs, o.producer || "-"]))];
  },
};

async function jobPage(id) {
  const enc = encodeURIComponent(id);
  const [job, tasks, actors, logs] = await Promise.all([
    getJSON("/v1/jobs/" + enc), getJSON("/v1/tasks?limit=200&job=" + enc), getJSON("/v1/actors?job=" + enc),
    api("/v1/jobs/" + enc + "/logs").then((r) => r.text()),
  ]);
  const tail = logs.split("\n").slice(-200).join("\n");
  return [
    el("h1", {}, "Job " + job.id),
    el("p", {}, "State: ", state(job.state), " · node " + job.node + " · submitted " + fmtTime(job.submitted) + " · duration " + duration(job.started, job.ended)),
    job.error ? el("pre", { className: "error" }, job.error) : null,
    el("h2", {}, "Output (last 200 lines)"),
    el("pre", { id: "job-log" }, tail || "(no output yet)"),
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
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  const status = document.getElementById("status");
  try {
    const content = await pages[page](arg);
    const section = document.getElementById("page");
    section.replaceChildren(...content.filter((c) => c));
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
