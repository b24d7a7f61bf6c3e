// refine-proc pages: Processes (list, tree, detail) and System.
//
// Everything shown is read from the API, which returns what the CLI's
// --json prints; the page keeps no state of its own beyond what it last
// read. Updates come from the event stream (server-sent events); on an
// event the page reads again what changed. Every string from the API goes
// into the page as text (textContent), never as HTML.
"use strict";

const API = "/api/v1";
// The history, then live; a reconnect resumes after the last event seen.
const EVENTS_URL = API + "/events?follow=true";
const LOG_URL_QUERY = "/logs?follow=true&lines=200";
const LOG_LINES_KEPT = 5000;
const ENDED = new Set(["exited", "failed", "stopped", "lost", "ended"]);
const FILTERS = ["owner", "workflow", "session", "gap", "state"];

const $ = (id) => document.getElementById(id);

// --- DOM and formatting helpers -------------------------------------------

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Sets text only when it changed, so unchanged rows cost no DOM work. */
function setText(el, text) {
  const t = text === null || text === undefined ? "" : String(text);
  if (el.textContent !== t) el.textContent = t;
}
function setAttr(el, name, value) {
  if (value === null || value === undefined || value === "") {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== String(value)) el.setAttribute(name, value);
}

function fmtDuration(sec) {
  if (sec === null || sec === undefined || !isFinite(sec)) return "-";
  if (sec < 1) return (sec * 1000).toFixed(sec < 0.01 ? 1 : 0) + "ms";
  if (sec < 60) return sec.toFixed(sec < 10 ? 1 : 0) + "s";
  const m = Math.floor(sec / 60), s = Math.floor(sec % 60);
  if (m < 60) return m + "m" + (s ? " " + s + "s" : "");
  const hr = Math.floor(m / 60);
  if (hr < 48) return hr + "h" + (m % 60 ? " " + (m % 60) + "m" : "");
  return Math.floor(hr / 24) + "d " + (hr % 24) + "h";
}
function fmtCpu(usec) {
  return usec === null || usec === undefined ? "-" : fmtDuration(usec / 1e6);
}
function fmtBytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "K", "M", "G", "T"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + units[i];
}
/** How long ago, in whole units ("42s", "5m", "3h", "2d"). */
function age(iso) {
  if (!iso) return "";
  const sec = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  if (sec < 60) return sec + "s";
  return fmtDuration(sec).split(" ")[0];
}
const pad = (n, w = 2) => String(n).padStart(w, "0");
/** Local time as systemctl prints it: 2026-12-01 09:41:02. */
function fmtTime(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + clock(d);
}
function clock(d) {
  return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
}
/** A log line's time as journalctl -o short-precise shows it, without the date. */
function fmtLogTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : clock(d) + "." + pad(d.getMilliseconds(), 3);
}
/** A command as a shell would read it back (quotes only where needed). */
function shellJoin(argv) {
  if (!Array.isArray(argv)) return "";
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : "'" + String(a).replace(/'/g, "'\\''") + "'")).join(" ");
}
function compact(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// --- API ------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || "HTTP " + status);
    this.status = status;
    this.problem = problem;
  }
}

/** One API call; errors are RFC 9457 problems, shown with their hint. */
async function api(path, opts = {}) {
  const res = await fetch(API + path, {
    method: opts.method || "GET",
    credentials: "same-origin",
    headers: { Accept: "application/json", ...(opts.body ? { "Content-Type": "application/json" } : {}) },
    body: opts.body ? JSON.stringify(opts.body) : undefined,
  });
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = { detail: text }; }
  if (!res.ok) {
    if (res.status === 401) showNoSession();
    throw new ApiError(res.status, body || {});
  }
  return body;
}

function showBanner(message, kind) {
  const b = $("banner");
  b.className = "banner" + (kind ? " " + kind : "");
  setText(b, message);
  b.hidden = !message;
}
function showError(what, err) {
  const p = (err && err.problem) || {};
  const lines = [what + ": " + (p.title || err.message || String(err))];
  if (p.detail && p.detail !== p.title) lines.push(p.detail);
  if (p.hint) lines.push("hint: " + p.hint);
  showBanner(lines.join("\n"));
}
function showNoSession() {
  showBanner("This page has no session. Run `refine-proc web` for a link that signs in (its code works once).");
}

/** `http://127.0.0.1:PORT/#CODE` from `refine-proc web`: trade the one-time
 * code for the session cookie, then drop it from the address bar. */
async function signIn() {
  const code = location.hash.slice(1);
  if (!code || code.startsWith("/") || !/^[\w-]{8,}$/.test(code)) return;
  history.replaceState(null, "", location.pathname + "#/processes");
  try {
    await api("/session", { method: "POST", body: { code } });
  } catch (err) {
    showError("signing in with the code failed", err);
  }
}

// --- Event stream ---------------------------------------------------------

const live = { source: null, pending: new Set(), timer: null, listeners: new Set(), openedAt: Date.now() };

/** The one stream of lifecycle events; reconnects resume by Last-Event-ID
 * (EventSource does that), and after a gap everything is read again. */
function openEvents() {
  const conn = $("conn");
  const es = new EventSource(EVENTS_URL);
  live.source = es;
  es.onopen = () => {
    live.retry = 0;
    conn.className = "conn live";
    setText(conn, "live");
    conn.title = "event stream open (" + EVENTS_URL + ")";
    // After an outage, read everything again (the first open follows the
    // page's own first read).
    if (live.opened) scheduleRefresh(null);
    live.opened = true;
  };
  es.onerror = () => {
    conn.className = "conn down";
    setText(conn, es.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting");
    // Refused (no session, daemon gone): try again, less and less often.
    if (es.readyState === EventSource.CLOSED) {
      live.retry = Math.min(30000, (live.retry || 1000) * 2);
      setTimeout(openEvents, live.retry);
    }
  };
  const onEvent = (msg) => {
    let ev = null;
    try { ev = JSON.parse(msg.data); } catch (_) { return; }
    // The stream starts with the history: what happened before the page
    // first read its state is in that state already (2 s of slack for
    // the clocks; the server is on this machine).
    if (ev.time && Date.parse(ev.time) < live.openedAt - 2000) return;
    scheduleRefresh(ev);
  };
  es.onmessage = onEvent;
  // Events were lost (the history rotated past where the stream was):
  // read everything again.
  es.addEventListener("gap", () => scheduleRefresh(null));
}

/** Coalesces events: a burst (a group pause, the history on connect) is
 * one read of what changed, 60 ms after its first event. */
function scheduleRefresh(ev) {
  live.pending.add(ev ? ev.id || "*" : "*");
  if (live.timer) return;
  live.timer = setTimeout(() => {
    const ids = live.pending;
    live.pending = new Set();
    live.timer = null;
    for (const fn of live.listeners) fn(ids);
  }, 60);
}

// --- Processes: the list --------------------------------------------------

const list = {
  rows: new Map(), // id -> { rec, el, cells }
  order: [],
  loading: false,
  again: false,
  focusId: null,
  filters: {},
};

function readFilters() {
  const f = $("filters");
  const out = {};
  for (const name of FILTERS) {
    const v = f.elements[name].value.trim();
    if (v) out[name] = v;
  }
  if (f.elements.all.checked) out.all = "1";
  if (f.elements.tree.checked) out.tree = "1";
  return out;
}
function writeFilters(q) {
  const f = $("filters");
  for (const name of FILTERS) f.elements[name].value = q[name] || "";
  f.elements.all.checked = !!q.all;
  f.elements.tree.checked = !!q.tree;
}
function filterQuery(q) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (k !== "tree") p.set(k, v === "1" ? "true" : v);
  const s = p.toString();
  return s ? "?" + s : "";
}

/** After events: reads again only the records they name (a pause, a
 * health change, a start or an end), else the whole list. Without filters
 * the list is what `list` shows: every record with --all, else those not
 * ended (the rule of ListFilter), so a read record is placed by that rule;
 * with filters, or in the tree, the server decides: the list is read. */
async function refreshChanged(ids) {
  const filtered = FILTERS.some((f) => list.filters[f]) || list.filters.tree;
  if (ids.has("*") || ids.size > 10 || list.loading || (filtered && [...ids].some((id) => !list.rows.has(id)))) {
    return loadList();
  }
  for (const id of ids) {
    let rec;
    try {
      rec = await api("/processes/" + encodeURIComponent(id));
    } catch (err) {
      if (err.status === 404 && !filtered) { dropRow(id); continue; }
      return loadList();
    }
    const row = list.rows.get(id);
    const member = list.filters.all || !ENDED.has(rec.state);
    if (filtered && row && (ENDED.has(rec.state) !== ENDED.has(row.rec.state) || (list.filters.state && rec.state !== row.rec.state))) {
      return loadList();
    }
    if (!member) dropRow(id);
    else if (row) updateRow(row, rec, row.depth);
    else appendRow(rec);
  }
  listChanged();
}

function dropRow(id) {
  const row = list.rows.get(id);
  if (!row) return;
  row.el.remove();
  list.rows.delete(id);
  list.order = list.order.filter((x) => x !== id);
}

function appendRow(rec) {
  const row = makeRow(rec.id);
  list.rows.set(rec.id, row);
  updateRow(row, rec, 0);
  $("prows").append(row.el);
  list.order.push(rec.id);
}

/** The owners the policy knows, for the owner filter. */
async function loadOwners() {
  try {
    const pol = await api("/policy");
    const sel = $("filters").elements.owner;
    const keep = sel.value;
    const names = (pol.actors || []).map((a) => a.actor).filter((a) => a !== "person");
    sel.replaceChildren(h("option", { value: "" }, "any"), ...names.map((n) => h("option", { value: n }, n)));
    sel.value = keep;
  } catch (_) { /* the list's own error says more */ }
}

/** Reads the list with the current filters (the CLI's `list --json`). */
async function loadList() {
  if (list.loading) { list.again = true; return; }
  list.loading = true;
  try {
    const recs = await api("/processes" + filterQuery(list.filters));
    renderList(Array.isArray(recs) ? recs : recs.processes || []);
    if ($("banner").textContent.startsWith("reading the process list")) showBanner("");
  } catch (err) {
    showError("reading the process list failed", err);
  } finally {
    list.loading = false;
    if (list.again) { list.again = false; loadList(); }
  }
}

function makeRow(id) {
  const cells = {};
  const el = h("div", { class: "prow", role: "row", tabindex: "-1", "data-id": id });
  for (const c of ["state", "id", "owner", "label", "meta", "pid", "since", "cpu", "mem", "health", "act"]) {
    cells[c] = h("span", { class: "c-" + c, role: "gridcell" });
    el.append(cells[c]);
  }
  cells.idLink = h("a", { href: "#/p/" + encodeURIComponent(id), tabindex: "-1" });
  cells.id.append(cells.idLink);
  cells.tree = h("span", { class: "tw" });
  cells.lbl = h("span", { class: "lbl" });
  cells.cmd = h("span", { class: "cmd" });
  cells.label.append(cells.tree, cells.lbl, cells.cmd);
  el.addEventListener("dblclick", () => openDetail(id));
  el.addEventListener("focus", () => { list.focusId = id; });
  return { el, cells, actKey: "" };
}

function healthOf(rec) {
  if (rec.health_status) return rec.health_status;
  const st = rec.health && rec.health.state;
  return st ? st.status : rec.health ? "starting" : null;
}

function stateTitle(rec) {
  const parts = [rec.unit];
  if (rec.result) parts.push("result: " + rec.result);
  if (rec.exit_code !== null && rec.exit_code !== undefined) parts.push("exit code " + rec.exit_code);
  if (rec.exit_signal) parts.push("signal " + rec.exit_signal);
  if (rec.paused_by) parts.push("paused by " + compact(rec.paused_by));
  return parts.join(", ");
}

function updateRow(row, rec, depth) {
  const c = row.cells;
  const st = rec.state || "?";
  setText(c.state, st);
  c.state.className = "c-state state st-" + st;
  setAttr(c.state, "title", stateTitle(rec));
  row.el.classList.toggle("ended", ENDED.has(st));
  setText(c.idLink, rec.id);
  setText(c.owner, rec.owner);
  setText(c.tree, depth > 0 ? "  ".repeat(depth - 1) + "\u2514 " : "");
  setText(c.lbl, rec.label || "");
  setText(c.cmd, shellJoin(rec.command));
  setAttr(c.label, "title", (rec.label ? rec.label + "\n" : "") + shellJoin(rec.command));
  const m = rec.metadata || {};
  setText(c.meta, [m.workflow, m.session && "session " + m.session, m.gap && "gap " + m.gap].filter(Boolean).join(" \u00b7 "));
  setText(c.pid, ENDED.has(st) ? "" : rec.pid || "");
  setText(c.since, age(rec.ended_at || rec.started_at));
  setAttr(c.since, "title", (rec.ended_at ? "ended " + fmtTime(rec.ended_at) : "started " + fmtTime(rec.started_at)));
  const u = rec.usage || null;
  setText(c.cpu, u ? fmtCpu(u.cpu_usec) : "-");
  setText(c.mem, u ? fmtBytes(u.memory_current) : "-");
  setAttr(c.mem, "title", u && u.memory_current === null && u.unavailable ? u.unavailable.memory : u && u.memory_peak ? "peak " + fmtBytes(u.memory_peak) : null);
  const hs = healthOf(rec);
  setText(c.health, hs || "-");
  c.health.className = "c-health" + (hs ? " state st-" + (hs === "starting" ? "health-starting" : hs) : "");
  const key = actionsFor(rec).join(",");
  if (row.actKey !== key) {
    row.actKey = key;
    c.act.replaceChildren(actionButtons(rec));
  }
  row.rec = rec;
  row.depth = depth;
}

/** What the page offers for a record; the server still decides (409, 403). */
function actionsFor(rec) {
  const st = rec.state;
  const acts = [];
  if (st === "running" || st === "starting") acts.push("pause");
  if (st === "paused") acts.push("resume");
  if (rec.kind !== "scope" && st !== "queued" && st !== "ended") acts.push("restart");
  if (!ENDED.has(st) && st !== "queued") acts.push("stop");
  return acts;
}

function actionButtons(rec, withMore) {
  const box = h("span", { class: "actions" });
  const acts = actionsFor(rec);
  if (withMore && !ENDED.has(rec.state) && rec.state !== "queued") acts.push("kill");
  if (withMore && ENDED.has(rec.state)) acts.push("forget");
  for (const a of acts) {
    box.append(h("button", {
      type: "button", tabindex: "-1", "data-action": a,
      class: a === "stop" || a === "kill" || a === "forget" ? "danger" : null,
      title: a + " " + rec.unit,
      onclick: (e) => { e.stopPropagation(); act(rec, a); },
    }, a));
  }
  return box;
}

/** Tree order: each record under the one that launched it
 * (requested_by.parent), as `list --tree` shows; unknown parents make roots. */
function treeOrder(recs) {
  const byId = new Map(recs.map((r) => [r.id, r]));
  const kids = new Map();
  const roots = [];
  for (const r of recs) {
    const p = r.requested_by && r.requested_by.parent;
    const pid = p && (typeof p === "object" ? p.id : p);
    if (pid && byId.has(pid) && pid !== r.id) {
      if (!kids.has(pid)) kids.set(pid, []);
      kids.get(pid).push(r);
    } else roots.push(r);
  }
  const out = [];
  const seen = new Set();
  const walk = (r, d) => {
    if (seen.has(r.id)) return;
    seen.add(r.id);
    out.push([r, d]);
    for (const k of kids.get(r.id) || []) walk(k, d + 1);
  };
  for (const r of roots) walk(r, 0);
  for (const r of recs) walk(r, 0); // cycles, if any, still show
  return out;
}

/** Keyed reconciliation: rows are created once per id, updated cell by
 * cell, moved only when out of place; off-screen rows are not painted. */
function renderList(recs) {
  const ordered = list.filters.tree ? treeOrder(recs) : recs.map((r) => [r, 0]);
  const container = $("prows");
  const keep = new Set(ordered.map(([r]) => r.id));
  for (const [id, row] of list.rows) {
    if (!keep.has(id)) { row.el.remove(); list.rows.delete(id); }
  }
  let i = 0;
  for (const [rec, depth] of ordered) {
    let row = list.rows.get(rec.id);
    if (!row) { row = makeRow(rec.id); list.rows.set(rec.id, row); }
    updateRow(row, rec, depth);
    const at = container.children[i];
    if (at !== row.el) container.insertBefore(row.el, at || null);
    i++;
  }
  list.order = ordered.map(([r]) => r.id);
  listChanged();
}

/** The count, the empty note, the filter suggestions, the focus. */
function listChanged() {
  const recs = list.order.map((id) => list.rows.get(id).rec);
  $("plist").setAttribute("aria-rowcount", String(recs.length + 1));
  const running = recs.filter((r) => !ENDED.has(r.state)).length;
  setText($("count"), recs.length + " shown, " + running + " not ended");
  $("empty").hidden = recs.length > 0;
  fillSuggestions(recs);
  fixFocus();
}

function fillSuggestions(recs) {
  const pick = { workflow: (r) => r.metadata?.workflow, session: (r) => r.metadata?.session, gap: (r) => r.metadata?.gap };
  for (const [name, get] of Object.entries(pick)) {
    const values = [...new Set(recs.map(get).filter(Boolean))].sort().slice(0, 200);
    const dl = $("dl-" + name);
    const key = values.join("\n");
    if (dl.dataset.key === key) continue;
    dl.dataset.key = key;
    dl.replaceChildren(...values.map((v) => h("option", { value: v })));
  }
}

// Roving focus: one row is in the tab order; arrows move it.
function fixFocus() {
  if (!list.order.length) return;
  if (!list.rows.has(list.focusId)) list.focusId = list.order[0];
  for (const [id, row] of list.rows) setAttr(row.el, "tabindex", id === list.focusId ? "0" : "-1");
}
function focusRow(idx) {
  if (!list.order.length) return;
  const i = Math.max(0, Math.min(list.order.length - 1, idx));
  list.focusId = list.order[i];
  fixFocus();
  const el = list.rows.get(list.focusId).el;
  el.focus({ preventScroll: true });
  el.scrollIntoView({ block: "nearest" });
}
function focusedRec() {
  const row = list.rows.get(list.focusId);
  return row && document.activeElement === row.el ? row.rec : null;
}

// --- Actions --------------------------------------------------------------

const CONFIRM = {
  stop: (r) => ["Stop " + r.unit + "?", "Its processes get SIGTERM, then SIGKILL after the stop timeout (systemctl --user stop)."],
  kill: (r) => ["Send SIGTERM to every process of " + r.unit + "?", "refine-proc kill " + r.id],
  restart: (r) => [ENDED.has(r.state) ? "Start " + r.unit + " again?" : "Restart " + r.unit + "?", ENDED.has(r.state) ? "The same command, environment and limits, under the same id." : "It is stopped, then started with the same command (systemctl --user restart)."],
  forget: (r) => ["Forget the record of " + r.id + "?", "Its record leaves the index; the journal keeps its lines (refine-proc forget)."],
};

function confirmDialog(text, sub, okLabel) {
  return new Promise((resolve) => {
    const d = $("confirm");
    setText($("confirm-text"), text);
    setText($("confirm-sub"), sub || "");
    setText($("confirm-ok"), okLabel);
    d.returnValue = "cancel";
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.showModal();
    $("confirm-ok").focus();
  });
}

async function act(rec, action) {
  if (CONFIRM[action]) {
    const [text, sub] = CONFIRM[action](rec);
    if (!(await confirmDialog(text, sub, action))) return;
  }
  const back = document.activeElement;
  try {
    if (action === "forget") await api("/processes/" + encodeURIComponent(rec.id), { method: "DELETE" });
    else await api("/processes/" + encodeURIComponent(rec.id) + "/" + action, { method: "POST" });
    showBanner("");
  } catch (err) {
    showError(action + " " + rec.id + " failed", err);
  }
  // The event stream reports the change too; read it now, for a quick answer.
  if (current === "processes") refreshChanged(new Set([rec.id]));
  else scheduleRefresh({ id: rec.id });
  if (back && back.focus) back.focus({ preventScroll: true });
}

// --- Processes: one process -----------------------------------------------

const detail = { id: null, rec: null, events: null, logs: null, lines: 0 };

function openDetail(id) { location.hash = "#/p/" + encodeURIComponent(id); }

function closeDetailStreams() {
  for (const k of ["events", "logs"]) if (detail[k]) { detail[k].close(); detail[k] = null; }
  closeTerminal();
  term.id = null;
}

function showDetail(id) {
  if (detail.id !== id) {
    closeDetailStreams();
    detail.id = id;
    detail.rec = null;
    detail.lines = 0;
    for (const el of ["d-record", "d-systemd", "d-usage", "d-events", "d-log", "d-json", "d-actions"]) $(el).replaceChildren();
    setText($("d-title"), id);
    setText($("d-state"), "");
    setText($("d-sub"), "");
    followEvents(id);
    followLog(id);
  }
  loadDetail();
}

async function loadDetail() {
  const id = detail.id;
  try {
    const rec = await api("/processes/" + encodeURIComponent(id));
    if (detail.id === id) renderDetail(rec);
  } catch (err) {
    if (detail.id !== id) return;
    if (err.status === 404) {
      setText($("d-state"), "forgotten");
      showError("process " + id, err);
    } else showError("reading " + id + " failed", err);
  }
}

/** A definition list; pairs whose value is null or undefined are left out. */
function kv(dl, pairs) {
  dl.replaceChildren(...pairs.filter(([, v]) => v !== undefined && v !== null).flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v === null || v === "" ? "-" : String(v) })]));
}

function requestedBy(r) {
  if (!r) return null;
  const parts = ["uid " + r.uid];
  if (r.acting_owner) parts.push("as " + r.acting_owner);
  if (r.parent) parts.push("from " + compact(r.parent));
  if (r.policy) parts.push("policy " + r.policy);
  return parts.join(", ");
}

function limitsText(l) {
  if (!l) return "-";
  const parts = Object.entries(l).filter(([, v]) => v !== null).map(([k, v]) => k + "=" + v);
  return parts.length ? parts.join(" ") : "none (systemd's defaults)";
}

function renderDetail(rec) {
  detail.rec = rec;
  setText($("d-title"), (rec.label || rec.id) + "  " + rec.id);
  const st = $("d-state");
  setText(st, rec.state);
  st.className = "state st-" + rec.state;
  setAttr(st, "title", stateTitle(rec));
  setText($("d-sub"), rec.unit + "  \u00b7  " + shellJoin(rec.command));
  $("d-actions").replaceChildren(actionButtons(rec, true));
  const m = rec.metadata || {};
  kv($("d-record"), [
    ["id", rec.id], ["unit", rec.unit], ["kind", rec.kind], ["owner", rec.owner], ["label", rec.label],
    ["details", rec.details], ["command", shellJoin(rec.command)], ["cwd", rec.cwd],
    ["workflow", m.workflow], ["session", m.session], ["gap", m.gap], ["mode", m.mode], ["runner", m.runner],
    ["state", rec.state], ["pid", rec.pid], ["started", fmtTime(rec.started_at)], ["ended", fmtTime(rec.ended_at)],
    ["result", rec.result], ["exit code", rec.exit_code], ["exit signal", rec.exit_signal], ["exit source", rec.exit_source],
    ["restart", rec.restart ? rec.restart.policy + ", " + rec.restart.count + " so far" + (rec.restart.by ? ", by " + rec.restart.by : "") : null],
    ["limits", limitsText(rec.limits)], ["environment", Object.keys(rec.environment || {}).join(" ") || null],
    ["requested by", requestedBy(rec.requested_by)], ["paused by", rec.paused_by ? compact(rec.paused_by) : undefined],
    ["logs", rec.logs && rec.logs.journal],
  ]);
  const s = rec.systemd;
  if (s) {
    kv($("d-systemd"), [
      ["ActiveState", s.active_state], ["SubState", s.sub_state], ["FreezerState", s.freezer_state], ["LoadState", s.load_state],
      ["Result", s.result], ["MainPID", s.main_pid], ["NRestarts", s.n_restarts], ["ControlGroup", s.control_group],
      ["InvocationID", s.invocation_id], ["Description", s.description],
    ]);
  } else kv($("d-systemd"), [["unit", "not loaded in the user manager (the run has ended)"]]);
  const u = rec.usage;
  const hst = rec.health && rec.health.state;
  kv($("d-usage"), [
    ["cpu time", u ? fmtCpu(u.cpu_usec) : "-"],
    ["memory", u ? fmtBytes(u.memory_current) + (u.memory_peak ? " (peak " + fmtBytes(u.memory_peak) + ")" : "") : "-"],
    ["tasks", u ? u.tasks ?? "-" : "-"],
    ...(u && u.unavailable ? Object.entries(u.unavailable).map(([k, v]) => ["no " + k, v]) : []),
    ["health", rec.health ? (hst ? hst.status + " since " + fmtTime(hst.since) + (hst.failures ? ", " + hst.failures + " failures" : "") : "not probed yet") : "no check"],
    ["last probe", hst && hst.last ? (hst.last.ok ? "ok" : "failed") + " in " + hst.last.duration_ms + "ms: " + (hst.last.output || "") : undefined],
    ["warnings", rec.warnings && rec.warnings.length ? rec.warnings.join("; ") : undefined],
  ]);
  setText($("d-json"), JSON.stringify(rec, null, 2));
  showTerminal(rec);
}

/** The process's events: the history, then live (its own stream). */
function followEvents(id) {
  const box = $("d-events");
  const es = new EventSource(EVENTS_URL + "&id=" + encodeURIComponent(id));
  detail.events = es;
  const onEvent = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (_) { return; }
    const extra = Object.entries(ev).filter(([k]) => !["time", "event", "id", "unit", "owner", "workflow", "actor", "caller"].includes(k));
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.append(h("div", {},
      h("span", { class: "t", text: fmtTime(ev.time) }),
      h("span", { class: "ev state st-" + evClass(ev.event), text: ev.event }),
      "by " + (ev.actor || "?") + (extra.length ? "  " + extra.map(([k, v]) => k + "=" + eventValue(v)).join(" ") : "")));
    if (atBottom) box.scrollTop = box.scrollHeight;
  };
  es.onmessage = onEvent;
}
function eventValue(v) {
  return Array.isArray(v) && v.every((x) => typeof x === "string") ? shellJoin(v) : compact(v);
}
function evClass(name) {
  return { started: "running", adopted: "running", resumed: "running", healthy: "healthy", exited: "exited", stopped: "stopped", failed: "failed", lost: "lost", unhealthy: "unhealthy", paused: "paused", refused: "failed", queued: "queued" }[name] || "stopped";
}

/** Its log, following live; the stream resumes from the journald cursor. */
function followLog(id) {
  const box = $("d-log");
  const stateEl = $("d-logstate");
  const es = new EventSource(API + "/processes/" + encodeURIComponent(id) + LOG_URL_QUERY);
  detail.logs = es;
  es.onopen = () => setText(stateEl, "following (refine-proc logs -f " + id + ")");
  es.onerror = () => setText(stateEl, es.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
  const onLine = (msg) => {
    let line;
    try { line = JSON.parse(msg.data); } catch (_) { line = { message: msg.data }; }
    const follow = $("d-follow").checked;
    box.append(h("div", { class: "p" + (line.priority ?? 6) },
      h("span", { class: "t", text: line.time ? fmtLogTime(line.time) : "" }), line.message ?? ""));
    if (++detail.lines > LOG_LINES_KEPT) { box.firstChild.remove(); detail.lines--; }
    if (follow) box.scrollTop = box.scrollHeight;
  };
  es.onmessage = onLine;
}

// --- Processes: a session's terminal (run --pty) ----------------------------
//
// xterm.js over GET /processes/ID/terminal, a WebSocket: binary frames are
// the terminal's bytes (the first draws the current screen, so a reload
// shows it again), text frames JSON messages (hello, lease, refused,
// exit). Keys go back as binary frames only when the hello says `write`.

const TERM_VENDOR = "/assets/vendor/";
const term = { id: null, xt: null, fit: null, ws: null, write: false, held: false, ended: false, timer: null, tries: 0 };
const encoder = new TextEncoder();
let xtermLoading = null;

function loadVendor(tag, attrs) {
  return new Promise((resolve, reject) => {
    const el = h(tag, attrs);
    el.onload = resolve;
    el.onerror = () => reject(new Error("cannot load " + (attrs.src || attrs.href)));
    document.head.append(el);
  });
}

/** xterm.js, loaded the first time a session is shown. */
function loadXterm() {
  xtermLoading ||= Promise.all([
    loadVendor("link", { rel: "stylesheet", href: TERM_VENDOR + "xterm.css" }),
    loadVendor("script", { src: TERM_VENDOR + "xterm.js" }),
  ]).then(() => loadVendor("script", { src: TERM_VENDOR + "addon-fit.js" }));
  return xtermLoading;
}

/** The terminal's state line; `kind` "bad" (an error) or "warn" (read-only). */
function termState(text, kind) {
  term.said = [text, kind];
  if (!term.paused) showTermState(text, kind);
}
function showTermState(text, kind) {
  const el = $("d-termstate");
  setText(el, text);
  el.classList.toggle("bad", kind === "bad");
  el.classList.toggle("warn", kind === "warn");
}

/**
 * Opens xterm.js in `box`. It draws with <style> elements, which the
 * page's CSP (style-src 'self') refuses: while it opens, they are made
 * inert <template>s whose rules a constructed style sheet (CSSOM, which
 * CSP does not govern) mirrors, instead of weakening the policy.
 */
function openXterm(box) {
  const sheet = new CSSStyleSheet();
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  const mirror = () => sheet.replaceSync([...box.querySelectorAll("template[data-xterm-style]")].map((t) => t.textContent).join("\n"));
  new MutationObserver(mirror).observe(box, { subtree: true, childList: true, characterData: true });
  const xt = new Terminal({
    fontFamily: getComputedStyle(document.body).getPropertyValue("--mono"), fontSize: 13, scrollback: 2000,
    theme: { background: "#0d1117", foreground: "#e6edf3", cursor: "#4493f8" },
  });
  const fit = new FitAddon.FitAddon();
  xt.loadAddon(fit);
  const createElement = document.createElement;
  document.createElement = function (tag, options) {
    if (String(tag).toLowerCase() !== "style") return createElement.call(document, tag, options);
    const t = createElement.call(document, "template");
    t.dataset.xtermStyle = "";
    return t;
  };
  try { xt.open(box); } finally { document.createElement = createElement; }
  mirror();
  // Ctrl-\ leaves the terminal, as it detaches `refine-proc attach`.
  xt.attachCustomKeyEventHandler((e) => {
    if (e.type === "keydown" && e.ctrlKey && e.key === "\\") { xt.blur(); $("d-log").focus(); return false; }
    return true;
  });
  xt.onData((d) => { if (term.write && term.ws && term.ws.readyState === WebSocket.OPEN) term.ws.send(encoder.encode(d)); });
  window.addEventListener("resize", () => { clearTimeout(term.resizing); term.resizing = setTimeout(fitTerminal, 150); });
  return { xt, fit };
}

/** A writer sizes the session to the box; a viewer draws at its size. */
function fitTerminal() {
  if (!term.xt || !term.write || $("d-terminal").hidden) return;
  const d = term.fit.proposeDimensions();
  if (!d || !(d.cols >= 2 && d.rows >= 2)) return;
  const size = { rows: Math.min(d.rows, 1000), cols: Math.min(d.cols, 1000) };
  // Without the keyboard it draws at the session's size; the holder keeps
  // this one for when it takes the keyboard.
  if (term.held && (size.rows !== term.xt.rows || size.cols !== term.xt.cols)) term.xt.resize(size.cols, size.rows);
  if (term.ws && term.ws.readyState === WebSocket.OPEN) term.ws.send(JSON.stringify({ resize: size }));
}

function termPaused(paused) {
  if (paused === !!term.paused) return;
  term.paused = paused;
  if (paused) showTermState("paused: a frozen session neither prints nor reads (resume it)");
  else if (term.said) showTermState(...term.said);
}

function closeTerminal() {
  term.paused = false;
  clearTimeout(term.timer);
  term.timer = null;
  if (term.ws) { const ws = term.ws; term.ws = null; ws.close(1000); }
}

/** Shows the terminal of `rec`, connecting when its session is live. */
async function showTerminal(rec) {
  $("d-terminal").hidden = !rec.pty;
  if (!rec.pty) { if (term.id === rec.id) closeTerminal(); return; }
  if (term.id !== rec.id) { closeTerminal(); term.id = rec.id; term.ended = false; term.tries = 0; if (term.xt) term.xt.reset(); }
  // A session paused while shown: frozen, it neither prints nor reads.
  if (term.ws) { termPaused(rec.state === "paused"); return; }
  if (term.timer || term.ended) return;
  if (ENDED.has(rec.state)) { if (!term.ended) termState("the session has ended: its output is in the log"); return; }
  if (rec.state === "paused") { termState("paused: a frozen session neither prints nor reads (resume it)"); return; }
  try { await loadXterm(); } catch (err) { termState(err.message, "bad"); return; }
  if (!term.xt) Object.assign(term, openXterm($("d-term")));
  if (detail.id === rec.id && !term.ws && !term.timer) connectTerminal(rec.id);
}

function connectTerminal(id) {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + API + "/processes/" + encodeURIComponent(id) + "/terminal";
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  term.ws = ws;
  termState("connecting");
  ws.onmessage = (m) => {
    if (term.ws !== ws) return;
    if (typeof m.data !== "string") { term.xt.write(new Uint8Array(m.data)); return; }
    let msg;
    try { msg = JSON.parse(m.data); } catch (_) { return; }
    if (msg.hello) onTermHello(msg.hello);
    else if (msg.size) termSize(msg.size);
    else if (msg.lease) { term.held = msg.lease.held; termLease(); }
    else if (msg.refused) termState("refused: " + msg.refused.detail + (msg.refused.hint ? " (" + msg.refused.hint + ")" : ""), "bad");
    else if (msg.exit) {
      term.ended = true;
      const e = msg.exit;
      termState("the program ended" + (e.signal ? " (signal " + e.signal + ")" : e.code !== null && e.code !== undefined ? " (exit code " + e.code + ")" : ""));
    }
  };
  ws.onclose = () => {
    if (term.ws !== ws) return;
    term.ws = null;
    $("d-take").hidden = true;
    if (term.ended || detail.id !== id) return;
    // Refused (ended, paused) or broken: read the record again, then retry.
    termState("disconnected: reconnecting", "bad");
    const wait = Math.min(1000 * 2 ** term.tries++, 10000);
    term.timer = setTimeout(() => { term.timer = null; if (detail.id === id) loadDetail(); }, wait);
  };
}

function onTermHello(hello) {
  term.tries = 0;
  term.write = hello.write;
  term.held = false;
  term.xt.reset();
  term.xt.options.disableStdin = !hello.write;
  $("d-term").classList.toggle("read-only", !hello.write);
  if (hello.write) {
    termState("live");
    fitTerminal();
  } else {
    term.xt.resize(hello.cols, hello.rows);
    termState("read-only: " + (hello.read_only ? hello.read_only.detail : "input is not allowed"), "warn");
  }
}

/** The session's size: who does not size it (a viewer, a writer without
 * the keyboard) draws at it; the fresh screen that follows fills it. */
function termSize(size) {
  term.size = size;
  if (term.write && term.held) return;
  if (size.rows !== term.xt.rows || size.cols !== term.xt.cols) term.xt.resize(size.cols, size.rows);
}

function termLease() {
  const other = term.write && !term.held;
  // The keyboard's holder sizes the session to its box again.
  if (term.write && term.held) fitTerminal();
  else if (term.size) termSize(term.size);
  $("d-take").hidden = !other;
  if (term.write) termState(other ? "watching: another client holds the keyboard (typing takes it once free)" : "live");
}

// --- System ---------------------------------------------------------------

// Doctor probes the machine: on a busy stream, read the System page at
// most every 2 s.
const system = { loading: false, last: 0, timer: null };

function refreshSystem() {
  const wait = system.last + 2000 - Date.now();
  if (wait <= 0) return loadSystem();
  if (!system.timer) system.timer = setTimeout(() => { system.timer = null; loadSystem(); }, wait);
}

function table(rows, columns) {
  if (!rows || !rows.length) return h("p", { class: "muted", text: "none" });
  const cols = columns || [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return h("table", { class: "t" },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { text: Array.isArray(c) ? c[0] : c })))),
    h("tbody", {}, rows.map((r) => h("tr", {}, cols.map((c) => {
      const v = Array.isArray(c) ? c[1](r) : r[c];
      return h("td", { text: typeof v === "string" ? v : compact(v) });
    })))));
}

function renderDoctor(doc) {
  if (!doc) { setText($("s-doctor-sum"), "not reported"); return; }
  const checks = doc.checks || [];
  const bad = checks.filter((c) => c.status === "fail").length;
  const warn = checks.filter((c) => c.status === "warn").length;
  const sum = $("s-doctor-sum");
  sum.className = "state st-" + (doc.ok ? (warn ? "warn" : "ok") : "fail");
  setText(sum, doc.ok ? "every required check passed" + (warn ? ", " + warn + " warnings" : "") : bad + " required checks failed");
  $("s-doctor").replaceChildren(...checks.map((c) => h("div", { "data-check": c.name },
    h("span", { class: "state st-" + c.status, text: c.status }),
    h("span", { class: "name", text: c.name + (c.required ? "" : " (optional)") }),
    h("span", { class: "detail", text: c.detail || "" }),
    c.fix ? h("span", { class: "fix", text: c.fix }) : null)));
  $("s-notes").replaceChildren(...(doc.notes || []).map((n) => h("li", { text: n })));
}

function renderDaemon(d, doc) {
  // The daemon's STATUS= line and watchdog are what doctor's check saw.
  const check = doc && (doc.checks || []).find((c) => c.name === "daemon");
  if (!d || typeof d !== "object") { kv($("s-daemon"), [["daemon", "not reported"], ["unit", check && check.detail]]); return; }
  kv($("s-daemon"), [
    ["pid", d.pid], ["version", d.version], ["started", fmtTime(d.started_at)],
    ["uptime", typeof d.uptime_sec === "number" ? (d.uptime_sec < 60 ? d.uptime_sec + "s" : fmtDuration(d.uptime_sec)) : null],
    ["unit", check ? check.status + ": " + check.detail : null],
    ["watchdog", typeof d.watchdog_usec === "number" ? "every " + fmtDuration(d.watchdog_usec / 1e6) + (d.watchdog_last_fed ? ", last fed " + fmtTime(d.watchdog_last_fed) : ", not fed yet") : "none (WatchdogSec= not set)"],
    ["socket", d.socket], ["page", d.url], ["state dir", d.state_dir],
  ]);
}

function renderOwners(owners) {
  $("s-owners").replaceChildren(table(owners || [], [
    ["owner", (o) => o.owner], ["slice", (o) => o.slice],
    ["limits (set --owner)", (o) => (o.limits ? limitsText(o.limits.limits) : "none")],
    ["since", (o) => (o.limits && o.limits.updated_at ? fmtTime(o.limits.updated_at) : "-")],
    ["memory", (o) => (o.usage ? fmtBytes(o.usage.memory_current) : "-")],
    ["cpu", (o) => (o.usage ? fmtCpu(o.usage.cpu_usec) : "-")],
    ["tasks", (o) => (o.usage && typeof o.usage.tasks === "number" ? String(o.usage.tasks) : "-")],
  ]));
}

function renderPauses(p) {
  p = p || {};
  $("s-pauses").replaceChildren(table(p.active || [], [
    ["selector", (g) => g.selector], ["since", (g) => fmtTime(g.since)], ["by", (g) => g.by],
    ["frozen", (g) => String((g.frozen || []).length)], ["stopped", (g) => String((g.stopped || []).length)],
    ["owners", (g) => [...(g.frozen_owners || []).map((o) => o + " frozen"), ...(g.stopped_owners || []).map((o) => o + " stopped")].join(", ") || "-"],
  ]));
  const q = p.queued || [];
  $("s-queued").replaceChildren(q.length
    ? h("p", { class: "mono" }, q.flatMap((id, i) => [i ? " " : "", h("a", { href: "#/p/" + encodeURIComponent(id), text: id })]))
    : h("p", { class: "muted", text: "none" }));
}

function renderPolicy(pol) {
  if (!pol) return;
  setText($("s-policy-src"), (pol.from_file ? "from " : "no file at ") + pol.path + (pol.from_file ? "" : ": built-in defaults"));
  $("s-policy").replaceChildren(table(pol.actors || [], [
    ["actor", (a) => a.actor], ["launch as", (a) => a.launch_as || "-"],
    ["commands", (a) => (a.commands ? a.commands.join(" ") : "any")], ["acts on", (a) => a.act_on],
    ["default limits", (a) => limitsText(a.default_limits)], ["max limits", (a) => limitsText(a.max_limits)],
    ["source", (a) => a.source],
  ]));
}

async function loadSystem() {
  if (system.loading) return;
  system.loading = true;
  system.last = Date.now();
  try {
    const [sys, pol] = await Promise.all([api("/system"), api("/policy").catch(() => null)]);
    renderDoctor(sys.doctor);
    renderDaemon(sys.daemon, sys.doctor);
    renderPauses(sys.pauses);
    renderOwners(sys.owners);
    renderPolicy(pol || sys.policy);
  } catch (err) {
    showError("reading the system failed", err);
  } finally {
    system.loading = false;
  }
}

// --- Routing and keys -----------------------------------------------------

function route() {
  const hash = location.hash || "#/processes";
  const [path, query] = hash.slice(1).split("?");
  const views = { processes: $("view-processes"), detail: $("view-detail"), system: $("view-system") };
  let view = "processes";
  if (path.startsWith("/p/")) view = "detail";
  else if (path === "/system") view = "system";
  for (const [k, el] of Object.entries(views)) el.hidden = k !== view;
  for (const a of document.querySelectorAll("[data-nav]")) {
    setAttr(a, "aria-current", a.dataset.nav === (view === "detail" ? "processes" : view) ? "page" : null);
  }
  if (view !== "detail" && detail.id) { closeDetailStreams(); detail.id = null; }
  if (view === "processes") {
    list.filters = Object.fromEntries(new URLSearchParams(query || ""));
    writeFilters(list.filters);
    document.title = "Processes \u00b7 refine-proc";
    loadList();
  } else if (view === "detail") {
    const id = decodeURIComponent(path.slice(3));
    document.title = id + " \u00b7 refine-proc";
    showDetail(id);
  } else {
    document.title = "System \u00b7 refine-proc";
    loadSystem();
  }
  return view;
}
let current = "processes";

function onFiltersChanged() {
  const q = new URLSearchParams(readFilters()).toString();
  history.replaceState(null, "", "#/processes" + (q ? "?" + q : ""));
  route();
}

function onKey(e) {
  // Every key in the terminal is the program's.
  if (e.target.closest && e.target.closest("#d-term")) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const tag = (e.target.tagName || "").toLowerCase();
  if (document.querySelector("dialog[open]")) return;
  if (tag === "input" || tag === "select" || tag === "textarea") {
    if (e.key === "Escape") e.target.blur();
    return;
  }
  const k = e.key;
  if (k === "?") { $("help").showModal(); }
  else if (k === "1") location.hash = "#/processes";
  else if (k === "2") location.hash = "#/system";
  else if (k === "Escape" && current === "detail") history.length > 1 ? history.back() : (location.hash = "#/processes");
  else if (current === "detail" && detail.rec && "psR".includes(k)) {
    keyAction(detail.rec, k);
  } else if (current === "detail" && k === "t" && term.xt && !$("d-terminal").hidden) term.xt.focus(); else if (current === "processes") {
    const i = list.order.indexOf(list.focusId);
    if (k === "j" || k === "ArrowDown") focusRow(document.activeElement?.dataset?.id ? i + 1 : i);
    else if (k === "k" || k === "ArrowUp") focusRow(i - 1);
    else if (k === "Home") focusRow(0);
    else if (k === "End") focusRow(list.order.length - 1);
    else if (k === "Enter" && focusedRec()) openDetail(focusedRec().id);
    else if (k === "/") $("filters").elements.owner.focus();
    else if (k === "t") { const t = $("filters").elements.tree; t.checked = !t.checked; onFiltersChanged(); }
    else if (k === "r") loadList();
    else if ("psR".includes(k) && focusedRec()) keyAction(focusedRec(), k);
    else return;
  } else if (k === "r" && current === "system") loadSystem();
  else return;
  e.preventDefault();
}

function keyAction(rec, k) {
  const acts = actionsFor(rec);
  const a = k === "p" ? (acts.includes("pause") ? "pause" : acts.includes("resume") ? "resume" : null) : k === "s" ? "stop" : "restart";
  if (a && acts.includes(a)) act(rec, a);
}

// Ages are relative to now; redraw them without asking the server.
function tickAges() {
  for (const row of list.rows.values()) {
    if (row.rec) setText(row.cells.since, age(row.rec.ended_at || row.rec.started_at));
  }
}

async function main() {
  await signIn();
  const f = $("filters");
  f.addEventListener("input", () => { clearTimeout(f.timer); f.timer = setTimeout(onFiltersChanged, 250); });
  f.addEventListener("change", onFiltersChanged);
  f.addEventListener("reset", () => setTimeout(onFiltersChanged, 0));
  f.addEventListener("submit", (e) => { e.preventDefault(); onFiltersChanged(); });
  $("help-btn").addEventListener("click", () => $("help").showModal());
  $("d-take").addEventListener("click", () => { if (term.ws) term.ws.send(JSON.stringify({ take: {} })); term.xt.focus(); });
  $("prows").addEventListener("click", (e) => {
    const row = e.target.closest(".prow");
    if (row) { list.focusId = row.dataset.id; fixFocus(); row.focus({ preventScroll: true }); }
  });
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", () => { current = route(); });
  live.listeners.add((ids) => {
    if (current === "processes") refreshChanged(ids);
    else if (current === "system") refreshSystem();
    else if (current === "detail" && (ids.has("*") || ids.has(detail.id))) loadDetail();
    if (current !== "processes") list.stale = true;
  });
  setInterval(tickAges, 15000);
  await loadOwners();
  current = route();
  openEvents();
}

main();
