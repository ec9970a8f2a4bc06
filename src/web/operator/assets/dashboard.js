"use strict";
// One page, no external scripts: everything here reads /api/v1 (see
// src/web/api.rs, src/web/exports_admin.rs and src/web/audit.rs) every two
// seconds. Who is signed in (GET /api/v1/me) is read with the rest: a
// viewer sees everything and is offered no action (the server refuses
// them anyway), and no action is offered before the role is known.
const PAGE = 50;
const view = {
  queue: "push", failedOffset: 0, jobsState: "pending", jobsOffset: 0,
  // The audit trail's page: null for the newest, else the id its records
  // are older than; `auditNewer` holds the pages before it, for going back.
  auditBefore: null, auditNewer: [],
};
const selected = new Set();
let historyAt = 0;
// {name, role, via} from /api/v1/me, once known.
let me = null;

// Whether the signed-in operator may act (retry, discard, pause, cancel,
// download): only the role "operator" may.
function mayAct() { return me !== null && me.role === "operator"; }

async function api(method, path, body) {
  const init = { method, headers: { "X-Herald-Csrf": "1" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

const q = () => `/api/v1/queues/${encodeURIComponent(view.queue)}`;

function cell(row, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
  return td;
}

function button(label, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = label; if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

function age(seconds) {
  if (!seconds) return "";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function isoAge(text) { return text ? age(Date.parse(text) / 1000) : ""; }

function say(text) { document.getElementById("message").textContent = text; }

// Shows who is signed in, and offers the static actions to operators only.
function renderMe(who) {
  me = who;
  const label = document.getElementById("whoami");
  label.textContent = `${who.name} · ${who.role}`;
  label.dataset.role = who.role;
  label.title = `signed in as ${who.name} (${who.role}, via ${who.via})`;
  document.body.dataset.role = who.role;
  const acting = mayAct();
  for (const el of document.querySelectorAll(".op-only")) {
    el.hidden = !acting;
    el.disabled = !acting;
  }
  document.getElementById("viewer-note").hidden = who.role !== "viewer";
  if (!acting) selected.clear();
}

async function act(promise, verb) {
  try {
    const r = await promise;
    if (r.operation) say(`${verb}: ${r.operation.total} job(s), in progress below`);
    else say(verb + (r.retried !== undefined || r.discarded !== undefined ? ": " + (r.retried ?? r.discarded) : ""));
  }
  catch (e) { say(verb + " failed: " + e.message); }
  await refresh();
}

// ---- filters ------------------------------------------------------------

function filter() {
  const labels = {};
  const event = document.getElementById("filter-event").value;
  const account = document.getElementById("filter-account").value.trim();
  if (event) labels.event = event;
  if (account) labels.account = account;
  const error = document.getElementById("filter-error").value;
  return { labels, error: error || undefined };
}

function filterQuery(f) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(f.labels)) p.set(k, v);
  if (f.error) p.set("error", f.error);
  return p;
}

function filterCount(f) { return Object.keys(f.labels).length + (f.error ? 1 : 0); }

function filtersChanged() { view.failedOffset = 0; selected.clear(); refresh(); }

// ---- queues -------------------------------------------------------------

function renderMessages(m) {
  const size = m.bytes >= 1048576 ? `${(m.bytes / 1048576).toFixed(1)} MiB` : `${(m.bytes / 1024).toFixed(1)} KiB`;
  const oldest = m.oldestCreatedAt ? `oldest stored ${m.oldestCreatedAt}` : "none stored";
  const kept = m.keepDays === null ? "kept until their own expiresAt, else forever (message.keep_days 0)" : `kept ${m.keepDays} days unless their expiresAt says otherwise`;
  document.getElementById("messages-stats").textContent = `${m.documents} messages, ${size}; ${oldest}; ${kept}.`;
}

function renderQueues(queues) {
  const body = document.querySelector("#queues tbody");
  body.replaceChildren();
  for (const qu of queues) {
    const row = document.createElement("tr");
    row.dataset.queue = qu.name;
    const link = document.createElement("a");
    link.href = "#"; link.className = "queue-link"; link.textContent = qu.name;
    link.addEventListener("click", e => { e.preventDefault(); chooseQueue(qu.name); });
    cell(row, qu.name === view.queue ? "▸ " : "").appendChild(link);
    for (const k of ["pending", "scheduled", "running", "done", "failed"]) cell(row, qu[k], "num");
    cell(row, (qu.done_last_5_min / 5).toFixed(1), "num");
    cell(row, qu.workers, "num");
    cell(row, `${qu.trimmed_by_age} / ${qu.trimmed_by_cap}`, "num");
    const state = cell(row, qu.paused ? "paused " : "running ");
    state.className = qu.paused ? "paused" : "";
    if (mayAct()) {
      const toggle = button(qu.paused ? "Resume" : "Pause", "toggle-pause", () => {
        const verb = qu.paused ? "resume" : "pause";
        act(api("POST", `/api/v1/queues/${encodeURIComponent(qu.name)}/${verb}`), qu.paused ? "Resumed" : "Paused");
      });
      toggle.dataset.queue = qu.name;
      state.appendChild(toggle);
    }
    body.appendChild(row);
  }
}

function chooseQueue(name) {
  view.queue = name; view.failedOffset = 0; view.jobsOffset = 0; historyAt = 0;
  selected.clear();
  document.getElementById("filter-error").value = "";
  refresh();
}

// ---- charts (inline SVG) ------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function svgEl(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function renderHistory(minutes) {
  const W = 600, H = 150, n = minutes.length, bw = W / Math.max(n, 1);
  const through = document.getElementById("chart-throughput");
  through.replaceChildren();
  const peak = Math.max(1, ...minutes.map(m => m.done + m.failed));
  minutes.forEach((m, i) => {
    const done = (m.done / peak) * (H - 10), failed = (m.failed / peak) * (H - 10);
    const title = `${new Date(m.at * 1000).toLocaleTimeString()}: ${m.done} done, ${m.failed} failed`;
    const d = svgEl("rect", { x: i * bw + 1, y: H - done, width: bw - 2, height: done, fill: "#3a7d44" });
    const f = svgEl("rect", { x: i * bw + 1, y: H - done - failed, width: bw - 2, height: failed, fill: "#c0392b" });
    for (const r of [d, f]) { const t = svgEl("title", {}); t.textContent = title; r.appendChild(t); through.appendChild(r); }
  });
  document.getElementById("throughput-peak").textContent = `(peak ${peak}/min)`;

  const lat = document.getElementById("chart-latency");
  lat.replaceChildren();
  const y = ms => H - (Math.log10(Math.max(ms, 1)) / Math.log10(600000)) * (H - 6) - 3;
  for (const ms of [10, 100, 1000, 10000, 100000]) {
    lat.appendChild(svgEl("line", { x1: 0, x2: W, y1: y(ms), y2: y(ms), stroke: "#e5e5e5" }));
    const label = svgEl("text", { x: 2, y: y(ms) - 2, "font-size": 10, fill: "#999" });
    label.textContent = ms >= 1000 ? ms / 1000 + " s" : ms + " ms";
    lat.appendChild(label);
  }
  for (const [key, colour] of [["latency_p50_ms", "#2d6cb5"], ["latency_p99_ms", "#e08e0b"]]) {
    const points = minutes.map((m, i) => m[key] == null ? null : `${i * bw + bw / 2},${y(m[key])}`).filter(Boolean);
    if (points.length) lat.appendChild(svgEl("polyline", { points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
  }
  const last = [...minutes].reverse().find(m => m.latency_p50_ms != null);
  document.getElementById("latency-now").textContent = last ? `(latest: p50 ≤ ${last.latency_p50_ms} ms, p99 ≤ ${last.latency_p99_ms} ms)` : "(no jobs measured)";
}

// ---- failed jobs, groups, operations ------------------------------------

function renderFailed(data) {
  const body = document.querySelector("#failed tbody");
  body.replaceChildren();
  document.getElementById("failed-total").textContent = "(" + data.total + ")";
  document.getElementById("failed-empty").hidden = data.jobs.length !== 0;
  const pager = document.querySelector("#failed-pager span");
  pager.textContent = data.total ? `${data.offset + 1}–${data.offset + data.jobs.length} of ${data.total}` : "";
  const present = new Set(data.jobs.map(j => j.id));
  for (const id of [...selected]) if (!present.has(id)) selected.delete(id);
  for (const job of data.jobs) {
    const row = document.createElement("tr");
    row.dataset.id = job.id;
    const pick = cell(row, "");
    if (mayAct()) {
      const box = document.createElement("input");
      box.type = "checkbox"; box.className = "select";
      box.checked = selected.has(job.id);
      box.addEventListener("change", () => box.checked ? selected.add(job.id) : selected.delete(job.id));
      pick.appendChild(box);
    }
    const link = document.createElement("a");
    link.href = "/jobs/" + encodeURIComponent(view.queue) + "/" + encodeURIComponent(job.id);
    link.textContent = job.event || (job.payload && typeof job.payload === "object" ? view.queue : "(unreadable)");
    cell(row, "").appendChild(link);
    cell(row, job.channel);
    cell(row, job.account_id);
    cell(row, job.attempts, "num");
    cell(row, job.last_error, "error");
    cell(row, age(job.failed_at));
    const actions = cell(row, "");
    if (mayAct()) {
      actions.append(
        button("Retry", "retry", () => act(api("POST", `${q()}/failed/${encodeURIComponent(job.id)}/retry`), "Retried")),
        " ",
        button("Discard", "discard danger", () => {
          if (confirm("Discard this job for good?")) act(api("POST", `${q()}/failed/${encodeURIComponent(job.id)}/discard`), "Discarded");
        }));
    }
    body.appendChild(row);
  }
}

function renderGroups(data) {
  const body = document.querySelector("#groups tbody");
  body.replaceChildren();
  document.getElementById("groups-empty").hidden = data.groups.length !== 0;
  const select = document.getElementById("filter-error");
  const chosen = select.value;
  select.replaceChildren(new Option("any", ""));
  for (const g of data.groups) {
    select.appendChild(new Option(`${g.error.slice(0, 60)} (${g.count})`, g.id));
    const row = document.createElement("tr");
    row.dataset.group = g.id;
    cell(row, g.error, "error");
    cell(row, g.count, "num");
    cell(row, age(g.last_failed_at));
    const actions = cell(row, "");
    actions.append(
      button("Show", "show-group", () => { document.getElementById("filter-error").value = g.id; filtersChanged(); }));
    if (mayAct()) {
      actions.append(
        " ",
        button("Retry group", "retry-group", () => {
          if (confirm(`Retry the ${g.count} job(s) of this group?`)) act(api("POST", `${q()}/failed/retry`, { filter: { error: g.id } }), "Retrying the group");
        }),
        " ",
        button("Discard group", "discard-group danger", () => {
          if (confirm(`Discard the ${g.count} job(s) of this group for good?`)) act(api("POST", `${q()}/failed/discard`, { filter: { error: g.id } }), "Discarding the group");
        }));
    }
    body.appendChild(row);
  }
  if ([...select.options].some(o => o.value === chosen)) select.value = chosen;
}

function renderOperations(data) {
  const box = document.getElementById("operations");
  box.replaceChildren();
  const now = Date.now() / 1000;
  for (const op of data.operations.filter(o => o.state === "running" || now - o.updated_at < 60)) {
    const p = document.createElement("div");
    p.className = "operation"; p.dataset.state = op.state;
    const bar = document.createElement("progress");
    bar.max = Math.max(op.total, 1); bar.value = op.done;
    const stalled = op.state === "running" && now - op.updated_at > 30 ? " (no progress for 30 s: its process may have stopped; run it again)" : "";
    p.append(`${op.action} ${describe(op.filter)}: `, bar, ` ${op.done} of ${op.total}, ${op.state}${op.error ? ": " + op.error : ""}${stalled}`);
    box.appendChild(p);
  }
}

function describe(f) {
  const parts = (f.labels || []).map(([k, v]) => `${k} ${v}`);
  if (f.error) parts.push("one error group");
  return parts.length ? parts.join(", ") : "every failed job";
}

// ---- queue pages --------------------------------------------------------

function renderJobs(data) {
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  document.getElementById("jobs-total").textContent = `${data.total} ${data.state}`;
  document.querySelector("#jobs-pager span").textContent = data.total ? `${data.offset + 1}–${data.offset + data.jobs.length} of ${data.total}` : "";
  for (const job of data.jobs) {
    const row = document.createElement("tr");
    const link = document.createElement("a");
    link.href = "/jobs/" + encodeURIComponent(view.queue) + "/" + encodeURIComponent(job.id);
    link.textContent = job.id;
    cell(row, "").appendChild(link);
    const p = job.payload || {};
    cell(row, (p.event && p.event.name) || p.title || p.collection || "");
    cell(row, p.accountId);
    cell(row, job.attempts, "num");
    cell(row, age(job.enqueued_at));
    cell(row, job.worker || (job.run_at ? new Date(job.run_at * 1000).toLocaleString() : ""));
    body.appendChild(row);
  }
}

// ---- exports ------------------------------------------------------------

function renderExports(data) {
  const body = document.querySelector("#exports tbody");
  body.replaceChildren();
  document.getElementById("exports-empty").hidden = data.exports.length !== 0;
  for (const x of data.exports) {
    const row = document.createElement("tr");
    row.dataset.key = x.key;
    cell(row, x.key); cell(row, x.accountId); cell(row, x.collection); cell(row, x.status);
    const progress = cell(row, "");
    const bar = document.createElement("progress");
    bar.max = 100; bar.value = x.percent || 0;
    progress.append(bar, ` ${x.processed}${x.total != null ? " / " + x.total : ""}`);
    cell(row, isoAge(x.queuedAt));
    const actions = cell(row, "");
    if (!mayAct()) {
      if (x.error) actions.textContent = x.error;
    } else if (x.status === "queued" || x.status === "running") {
      actions.appendChild(button("Cancel", "cancel-export danger", () => {
        if (confirm(`Cancel export ${x.key}?`)) act(api("POST", `/api/v1/exports/${encodeURIComponent(x.accountId)}/${encodeURIComponent(x.key)}/cancel`), "Cancelled");
      }));
    } else if (x.status === "finished") {
      const a = document.createElement("a");
      a.href = `/api/v1/exports/${encodeURIComponent(x.accountId)}/${encodeURIComponent(x.key)}/file`; a.textContent = "Download"; a.className = "download";
      actions.appendChild(a);
    } else if (x.error) {
      actions.textContent = x.error;
    }
    body.appendChild(row);
  }
}

// ---- audit trail --------------------------------------------------------

function auditQuery() {
  const p = new URLSearchParams({ limit: PAGE });
  const actor = document.getElementById("audit-actor").value.trim();
  const action = document.getElementById("audit-action").value;
  if (actor) p.set("actor", actor);
  if (action) p.set("action", action);
  if (view.auditBefore) p.set("before", view.auditBefore);
  return p;
}

// What an action was done to, in a few words: the queue and the job ids
// (their count) or the filter, the export, the token.
function summarise(target) {
  if (!target || typeof target !== "object") return target == null ? "" : String(target);
  const parts = [];
  if (target.queue) parts.push("queue " + target.queue);
  if (Array.isArray(target.ids)) {
    parts.push(target.ids.length === 1 ? "job " + target.ids[0] : `${target.ids.length} jobs`);
  }
  if (target.filter && typeof target.filter === "object") parts.push(describe(target.filter));
  if (target.key || target.accountId) parts.push(`export ${target.key ?? "?"} of account ${target.accountId ?? "?"}`);
  if (target.kind === "operator") parts.push(`operator token of ${target.name} (${target.role})`);
  else if (target.kind === "api") parts.push(`API token ${target.name}${target.scope ? " (" + target.scope + ")" : ""}`);
  else if (target.kind === undefined && target.id && !target.queue) parts.push("token " + target.id);
  if (parts.length) return parts.join(", ");
  const text = JSON.stringify(target);
  return text === "{}" ? "" : text;
}

function renderAudit(data) {
  const body = document.querySelector("#audit tbody");
  body.replaceChildren();
  document.getElementById("audit-empty").hidden = data.records.length !== 0;
  for (const r of data.records) {
    const row = document.createElement("tr");
    const actor = r.actor || {};
    row.dataset.id = r.id;
    row.dataset.action = r.action;
    row.dataset.actor = actor.name || "";
    row.dataset.outcome = r.outcome;
    const when = cell(row, r.at ? new Date(r.at).toLocaleString() : "", "when");
    when.title = r.at || "";
    const who = cell(row, `${actor.name || "?"} · ${actor.role || "?"}`);
    if (actor.via) who.title = "via " + actor.via;
    cell(row, r.action);
    const target = cell(row, summarise(r.target), "target");
    target.title = JSON.stringify(r.target);
    cell(row, r.count, "num");
    cell(row, r.outcome, r.outcome && r.outcome.startsWith("failed") ? "outcome failed" : "outcome");
    cell(row, actor.from);
    body.appendChild(row);
  }
  view.auditNext = data.next || null;
  const page = view.auditNewer.length + 1;
  document.querySelector("#audit-pager span").textContent = data.records.length ? `page ${page}` : "";
  document.getElementById("audit-older").disabled = !data.next;
  document.getElementById("audit-newer").disabled = view.auditBefore === null;
  document.getElementById("audit-newest").disabled = view.auditBefore === null;
}

function auditFiltersChanged() {
  view.auditBefore = null; view.auditNewer = [];
  refresh();
}

// ---- refresh ------------------------------------------------------------

async function refresh() {
  for (const el of document.querySelectorAll(".queue-name")) el.textContent = view.queue;
  const f = filter();
  const failedQuery = filterQuery(f);
  failedQuery.set("offset", view.failedOffset); failedQuery.set("limit", PAGE);
  const wantHistory = Date.now() - historyAt > 10000;
  const auditAsked = auditQuery().toString();
  try {
    const [who, messages, queues, failed, groups, operations, jobs, exports, history, audit] = await Promise.all([
      api("GET", "/api/v1/me"),
      api("GET", "/api/v1/messages/stats"),
      api("GET", "/api/v1/queues"),
      api("GET", `${q()}/failed?${failedQuery}`),
      api("GET", `${q()}/failed/groups?limit=50`),
      api("GET", `${q()}/operations`),
      api("GET", `${q()}/jobs?state=${view.jobsState}&offset=${view.jobsOffset}&limit=${PAGE}`),
      api("GET", "/api/v1/exports?limit=20"),
      wantHistory ? api("GET", `${q()}/history?minutes=60`) : Promise.resolve(null),
      // The trail's trouble (a bad filter, say) stays in its section.
      api("GET", `/api/v1/audit?${auditAsked}`).catch(e => ({ failure: e })),
    ]);
    renderMe(who);
    renderMessages(messages);
    renderQueues(queues.queues);
    renderFailed(failed);
    renderGroups(groups);
    renderOperations(operations);
    renderJobs(jobs);
    renderExports(exports);
    if (history) { renderHistory(history.minutes); historyAt = Date.now(); }
    if (auditAsked !== auditQuery().toString()) {
      // The page or a filter changed meanwhile: the refresh that followed shows it.
    } else if (audit.failure) {
      document.getElementById("audit-error").textContent = "audit trail not read: " + audit.failure.message;
    } else {
      document.getElementById("audit-error").textContent = "";
      renderAudit(audit);
    }
    document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("status").textContent = "update failed: " + e.message;
  }
}

// ---- controls -----------------------------------------------------------

document.getElementById("retry-selected").addEventListener("click", () => {
  if (!mayAct()) return;
  if (selected.size === 0) { say("Select failed jobs first."); return; }
  act(api("POST", `${q()}/failed/retry`, { ids: [...selected] }), "Retried");
});
for (const [id, verb, label] of [["retry-all", "retry", "Retrying"], ["discard-all", "discard", "Discarding"]]) {
  document.getElementById(id).addEventListener("click", () => {
    if (!mayAct()) return;
    const f = filter();
    if (filterCount(f) > 1) { say("A bulk action takes one filter: an event, an account or an error group."); return; }
    const body = filterCount(f) === 0 ? { all: true } : { filter: f };
    if (confirm(`${verb} every failed job of ${view.queue} that matches (${describe({ labels: Object.entries(f.labels), error: f.error })})?`)) {
      act(api("POST", `${q()}/failed/${verb}`, body), label);
    }
  });
}
document.getElementById("select-all").addEventListener("change", e => {
  document.querySelectorAll("#failed tbody tr").forEach(tr => {
    e.target.checked ? selected.add(tr.dataset.id) : selected.delete(tr.dataset.id);
  });
  refresh();
});
document.getElementById("filter-event").addEventListener("change", filtersChanged);
document.getElementById("filter-error").addEventListener("change", filtersChanged);
document.getElementById("filter-account").addEventListener("change", filtersChanged);
document.getElementById("filter-clear").addEventListener("click", () => {
  document.getElementById("filter-event").value = "";
  document.getElementById("filter-account").value = "";
  document.getElementById("filter-error").value = "";
  filtersChanged();
});
document.querySelectorAll("#failed-pager button").forEach(b => b.addEventListener("click", () => {
  view.failedOffset = Math.max(0, view.failedOffset + Number(b.dataset.step) * PAGE);
  refresh();
}));
document.querySelectorAll("#jobs-pager button").forEach(b => b.addEventListener("click", () => {
  view.jobsOffset = Math.max(0, view.jobsOffset + Number(b.dataset.step) * PAGE);
  refresh();
}));
document.querySelectorAll("#job-states button").forEach(b => b.addEventListener("click", () => {
  view.jobsState = b.dataset.state; view.jobsOffset = 0;
  document.querySelectorAll("#job-states button").forEach(o => o.classList.toggle("chosen", o === b));
  refresh();
}));

document.getElementById("audit-action").addEventListener("change", auditFiltersChanged);
let actorTyping = 0;
document.getElementById("audit-actor").addEventListener("input", () => {
  clearTimeout(actorTyping);
  actorTyping = setTimeout(auditFiltersChanged, 400);
});
document.getElementById("audit-clear").addEventListener("click", () => {
  document.getElementById("audit-actor").value = "";
  document.getElementById("audit-action").value = "";
  auditFiltersChanged();
});
document.getElementById("audit-older").addEventListener("click", () => {
  if (!view.auditNext) return;
  view.auditNewer.push(view.auditBefore);
  view.auditBefore = view.auditNext;
  refresh();
});
document.getElementById("audit-newer").addEventListener("click", () => {
  if (view.auditNewer.length === 0) return;
  view.auditBefore = view.auditNewer.pop();
  refresh();
});
document.getElementById("audit-newest").addEventListener("click", () => {
  view.auditBefore = null; view.auditNewer = [];
  refresh();
});

// Look up: an account id filters the failed list; anything else is a job
// id, searched in every queue.
document.getElementById("lookup").addEventListener("submit", async e => {
  e.preventDefault();
  const text = document.getElementById("lookup-text").value.trim();
  if (!text) return;
  if (/^[0-9a-fA-F]{24}$/.test(text)) {
    document.getElementById("filter-account").value = text.toLowerCase();
    filtersChanged();
    say(`Failed jobs of account ${text} (queue ${view.queue}).`);
    return;
  }
  const queues = (await api("GET", "/api/v1/queues")).queues.map(x => x.name);
  for (const name of queues) {
    const res = await fetch(`/api/v1/queues/${encodeURIComponent(name)}/jobs/${encodeURIComponent(text)}`, { credentials: "same-origin" });
    if (res.ok) { location.href = `/jobs/${encodeURIComponent(name)}/${encodeURIComponent(text)}`; return; }
  }
  say(`No job '${text}' in any queue (finished jobs are kept retention.done_secs).`);
});

refresh();
setInterval(refresh, 2000);
