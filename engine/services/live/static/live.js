// mc live: follows one project's mission over Server-Sent Events and renders six panes.
// Plain DOM, textContent only (agent output is never parsed as HTML).
"use strict";

const AGENT_LINES = 60, EVENTS_MAX = 400, COST_POINTS_MAX = 2000;
const TABLES = ["epochs", "units", "attempts", "merges", "verifications", "approvals"];
const $ = (id) => document.getElementById(id);
let state = null, source = null, project = null, missionChoice = "", dirty = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c != null) node.append(c instanceof Node ? c : String(c));
  return node;
}
const badge = (status) => el("span", { class: "badge s-" + status }, status);
const usd = (v) => "$" + Number(v || 0).toFixed(2);
function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)mc_live_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}
function notice(text) { $("notice").textContent = text; }

// ---------------------------------------------------------------- state
function load(snap) {
  state = { mission: snap.mission, missions: snap.missions || [], follow: snap.follow_newest,
            rows: {}, events: snap.events || [], agent: {}, costs: snap.costs || [] };
  for (const t of TABLES) {
    state.rows[t] = new Map();
    for (const r of (snap.rows || {})[t] || []) state.rows[t].set(String(r.id), r);
  }
  for (const a of snap.agent || []) addAgent(a);
  renderMissions();
  schedule();
}
function addAgent(a) {
  const lines = state.agent[a.slot] || (state.agent[a.slot] = []);
  lines.push(a.line);
  if (lines.length > AGENT_LINES) lines.splice(0, lines.length - AGENT_LINES);
}
function apply(up) {
  if (!state) return;
  for (const [t, rows] of Object.entries(up.rows || {}))
    for (const r of rows) state.rows[t].set(String(r.id), r);
  if (up.mission) state.mission = up.mission;
  for (const [ts, usd] of up.cost_add || []) {
    const total = state.costs.length ? state.costs[state.costs.length - 1][1] : 0;
    state.costs.push([ts, total + usd]);
  }
  if (state.costs.length > COST_POINTS_MAX) state.costs = state.costs.filter((_, i) => i % 2 === 0 || i === state.costs.length - 1);
  for (const a of up.agent || []) addAgent(a);
  state.events.push(...(up.events || []));
  if (state.events.length > EVENTS_MAX) state.events.splice(0, state.events.length - EVENTS_MAX);
  schedule();
}
function schedule() { if (!dirty) { dirty = true; requestAnimationFrame(render); } }

// ---------------------------------------------------------------- panes
function render() {
  dirty = false;
  if (!state) return;
  const m = state.mission;
  const shown = m ? (m.lost ? "lost" : m.status) : "none";
  $("mission-status").textContent = m ? `#${m.id} ${shown}` : "no mission yet";
  $("mission-status").className = "badge s-" + shown;
  // its engine died without closing the mission (no heartbeat): say how to take it up again
  $("mission-status").title = m && m.lost ? `no heartbeat: resume with \`${m.resume}\`` : "";
  if (m && m.lost) notice(`mission #${m.id} is lost (its engine stopped): resume with \`${m.resume}\``);
  $("objective").textContent = m ? m.objective : "";
  $("objective").title = m ? m.objective : "";
  const active = m && ["pending", "running", "paused"].includes(m.status);
  $("pause").disabled = !active || m.status === "paused";
  $("resume").disabled = !active || m.status !== "paused";
  $("stop").disabled = !active;
  renderPlan(); renderWorkers(); renderMerges(); renderApprovals(); renderCost(); renderEvents();
}

function renderPlan() {
  const units = [...state.rows.units.values()];
  const kids = new Map();
  for (const u of units) {
    const p = u.parent_id && state.rows.units.has(String(u.parent_id)) ? String(u.parent_id) : "";
    (kids.get(p) || kids.set(p, []).get(p)).push(u);
  }
  const branch = (parent) => {
    const list = (kids.get(parent) || []).sort((a, b) => a.created_at - b.created_at);
    if (!list.length) return null;
    return el("ul", { class: parent ? "" : "tree" }, ...list.map((u) => el("li", {},
      el("div", { class: "unit", "data-unit-id": u.id, "data-status": u.status },
        badge(u.status), el("span", { class: "uid" }, u.id), el("span", { class: "title", title: u.title }, u.title),
        u.cost_usd ? el("span", { class: "cost" }, usd(u.cost_usd)) : null),
      branch(String(u.id)))));
  };
  $("plan").replaceChildren(branch("") || el("div", { class: "empty" }, "no plan yet"));
}

function renderWorkers() {
  const bySlot = new Map();
  for (const a of state.rows.attempts.values()) {
    if (a.slot == null) continue;
    const cur = bySlot.get(a.slot);
    if (!cur || a.id > cur.id) bySlot.set(a.slot, a);
  }
  for (const slot of Object.keys(state.agent)) if (!bySlot.has(Number(slot))) bySlot.set(Number(slot), null);
  const slots = [...bySlot.keys()].sort((a, b) => a - b);
  $("workers").replaceChildren(...(slots.length ? slots.map((slot) => {
    const a = bySlot.get(slot);
    return el("div", { class: "worker", "data-slot": slot },
      el("div", { class: "worker-head" }, el("b", {}, `slot ${slot}`),
        a ? badge(a.status) : null, a ? el("span", {}, `${a.role} ${a.unit_id || ""}`) : null,
        a && a.model ? el("span", { class: "uid" }, a.model) : null,
        a && a.host ? el("span", { class: "uid host" }, `on ${a.host}`) : null),
      el("pre", {}, (state.agent[slot] || []).join("\n")));
  }) : [el("div", { class: "empty" }, "no agents yet")]));
  for (const pre of $("workers").querySelectorAll("pre")) pre.scrollTop = pre.scrollHeight;
}

function renderMerges() {
  const merges = [...state.rows.merges.values()].sort((a, b) => a.id - b.id);
  $("merges").replaceChildren(...(merges.length ? merges.map((g) => el("div",
    { class: "merge", "data-merge-id": g.id, "data-status": g.status },
    badge(g.status), el("span", { class: "uid" }, g.unit_id || ""), el("span", {}, g.branch),
    g.reason ? el("span", { class: "uid", title: g.reason }, g.reason.slice(0, 60)) : null))
    : [el("div", { class: "empty" }, "queue empty")]));
}

function renderApprovals() {
  const all = [...state.rows.approvals.values()].sort((a, b) => a.id - b.id);
  const pending = all.filter((a) => a.status === "pending");
  const done = all.filter((a) => a.status !== "pending").slice(-5).reverse();
  const card = (a) => el("div", { class: "approval " + a.status, "data-approval-id": a.id },
    el("div", {}, badge(a.status), ` #${a.id} ${a.gate}: `, el("b", {}, a.title)),
    a.diffstat ? el("pre", {}, a.diffstat) : null,
    a.status === "pending" ? el("div", { class: "actions" },
      el("button", { class: "approve", type: "button", onclick: () => decide(a.id, "approve") }, "approve"),
      el("button", { class: "deny", type: "button", onclick: () => decide(a.id, "deny") }, "deny"))
      : el("div", { class: "uid" }, a.decided_by ? `decided by ${a.decided_by}` : ""));
  $("approvals").replaceChildren(...(all.length ? [...pending, ...done].map(card)
    : [el("div", { class: "empty" }, "nothing to approve")]));
}

function renderCost() {
  const NS = "http://www.w3.org/2000/svg", W = 400, H = 160, pad = 30;
  const pts = state.costs, budget = state.mission && state.mission.budget_usd;
  const spent = pts.length ? pts[pts.length - 1][1] : (state.mission ? state.mission.total_cost_usd : 0);
  $("cost-total").textContent = `${usd(spent)}${budget ? " of " + usd(budget) : ""}`;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text != null) n.textContent = text;
    svg.append(n); return n;
  };
  const top = Math.max(budget || 0, spent, 0.01) * 1.05;
  const t0 = pts.length ? pts[0][0] : 0, t1 = pts.length ? Math.max(pts[pts.length - 1][0], t0 + 1) : 1;
  const x = (t) => pad + (W - pad - 5) * (t - t0) / (t1 - t0), y = (v) => H - 15 - (H - 25) * v / top;
  if (budget) {
    add("line", { class: "budget", x1: pad, x2: W - 5, y1: y(budget), y2: y(budget) });
    add("text", { x: 2, y: y(budget) + 3 }, usd(budget));
  }
  add("text", { x: 2, y: H - 12 }, "$0");
  if (pts.length) {
    const d = [[t0, 0], ...pts].map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    add("path", { class: "spent", d });
    add("text", { x: W - 60, y: H - 2 }, `${Math.round(t1 - t0)} s`);
  }
  $("cost").replaceChildren(svg);
}

function renderEvents() {
  const start = state.mission ? state.mission.started_at : 0;
  const list = $("events"), stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
  list.replaceChildren(...state.events.map((e) => {
    const rel = Math.max(0, Math.round(e.ts - start));
    const stamp = `+${String(Math.floor(rel / 60)).padStart(2, "0")}:${String(rel % 60).padStart(2, "0")}`;
    return el("li", { "data-event-id": e.id }, stamp + " ", el("span", { class: "kind" }, e.kind),
      e.unit ? ` [${e.unit}]` : "", " " + e.detail);
  }));
  if (stick) list.scrollTop = list.scrollHeight;
}

// ---------------------------------------------------------------- actions
async function post(path) {
  const res = await fetch(path, { method: "POST", headers: { "X-MC-CSRF": csrf() }, credentials: "same-origin" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}
const base = () => `/api/projects/${encodeURIComponent(project)}`;
async function decide(id, decision) {
  try { await post(`${base()}/approvals/${id}/${decision}`); notice(`approval #${id}: ${decision === "approve" ? "approved" : "denied"}`); }
  catch (err) { notice(`approval #${id}: ${err.message}`); }
}
async function command(kind) {
  if (!state || !state.mission) return;
  if (kind === "stop" && !confirm("Stop the mission gracefully? Running agents finish; nothing new starts.")) return;
  try { await post(`${base()}/missions/${state.mission.id}/${kind}`); notice(`${kind} requested`); }
  catch (err) { notice(`${kind}: ${err.message}`); }
}

// ---------------------------------------------------------------- connection and pickers
function connect() {
  if (source) source.close();
  state = null;
  if (!project) return;
  const query = missionChoice ? `?mission=${encodeURIComponent(missionChoice)}` : "";
  source = new EventSource(`${base()}/stream${query}`);
  $("conn").textContent = "connecting…"; $("conn").className = "conn";
  source.addEventListener("open", () => { $("conn").textContent = "live"; $("conn").className = "conn live"; });
  source.addEventListener("error", () => { $("conn").textContent = "reconnecting…"; $("conn").className = "conn down"; });
  source.addEventListener("snapshot", (e) => load(JSON.parse(e.data)));
  source.addEventListener("update", (e) => apply(JSON.parse(e.data)));
}

function renderMissions() {
  const sel = $("mission"), opts = [el("option", { value: "" }, "newest (follow)")];
  for (const m of state.missions) opts.push(el("option", { value: String(m.id) }, `#${m.id} ${m.status}`));
  sel.replaceChildren(...opts);
  sel.value = missionChoice;
}

async function loadProjects() {
  try {
    const res = await fetch("/api/projects", { credentials: "same-origin" });
    if (!res.ok) throw new Error(res.statusText);
    const list = await res.json();
    const sel = $("project");
    sel.replaceChildren(...list.map((p) => el("option", { value: p.name },
      `${p.name}${p.last_status ? " (" + p.last_status + ")" : ""}`)));
    const wanted = new URLSearchParams(location.hash.slice(1)).get("project");
    const pick = project || (list.some((p) => p.name === wanted) ? wanted : list.length ? list[0].name : null);
    if (pick) sel.value = pick;
    if (!list.length) notice("no projects: register one with `mc register --config PATH`");
    if (pick !== project) { project = pick; connect(); }
    // the newest mission's heartbeat stopped (checked on every poll, events or not)
    const cur = list.find((p) => p.name === project);
    const m = state && state.mission;
    if (cur && m && m.id === cur.last_mission_id && Boolean(cur.lost) !== Boolean(m.lost)) {
      m.lost = Boolean(cur.lost); schedule();
    }
  } catch (err) { notice(`projects: ${err.message}`); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("project").addEventListener("change", (e) => {
    project = e.target.value; missionChoice = "";
    history.replaceState(null, "", `#project=${encodeURIComponent(project)}`);
    connect();
  });
  $("mission").addEventListener("change", (e) => { missionChoice = e.target.value; connect(); });
  for (const kind of ["pause", "resume", "stop"]) $(kind).addEventListener("click", () => command(kind));
  loadProjects();
  setInterval(loadProjects, 10000);
});
