// Command room: the alert list with its workflow, the handling view, cameras; live over server-sent events.
"use strict";
const OPEN = new Set(["new", "acknowledged", "dispatched"]);
const STEPS = ["sent", "signed_for", "on_scene", "feedback"];
const STEP_AT = { sent: "sent_at", signed_for: "signed_for_at", on_scene: "on_scene_at", feedback: "feedback_at" };
const NEXT_ACTION = { null: "dispatch", sent: "signed_for", signed_for: "on_scene", on_scene: "feedback" };
const alertsEl = document.getElementById("alerts");
const tpl = document.getElementById("alert-tpl");
const alerts = new Map(); // alert_id -> alert (detection data + workflow state)
const items = new Map(); // alert_id -> <li>
const cellFilter = new URLSearchParams(location.search).get("cell"); // from the grid map
let selected = null;
let baseTitle = "";
let beepTimer = null;

function snapUrl(path) { return "/" + path.split("/").map(encodeURIComponent).join("/"); }

function kindText(kind) { return SE.messages[`kind.${kind}`] ? SE.t(`kind.${kind}`) : kind; }
// the rule's kind, and for a camera tamper alert which check fired (rule id "tamper:<check>")
function ruleText(rule) {
  if (rule.name) return rule.name; // the rule's configured name
  const check = rule.kind === "tamper" && typeof rule.id === "string" && rule.id.startsWith("tamper:")
    ? rule.id.slice(7) : null;
  const name = check && SE.messages[`tamper.${check}`] ? SE.t(`tamper.${check}`) : check;
  return name ? `${kindText(rule.kind)} · ${name}` : kindText(rule.kind);
}

// the page may already hold a newer detection than a stored row (the end pushed live while the archiver has
// not stored it yet): an alert that ended stays ended
function merge(old, fresh) {
  const a = Object.assign({}, old || {}, fresh);
  if (old && old.snapshot && !fresh.snapshot) a.snapshot = old.snapshot;
  if (old && old.phase === "end" && fresh.phase && fresh.phase !== "end") {
    for (const k of ["phase", "end_time", "end_reason", "orphaned_since"]) a[k] = old[k];
  }
  return a;
}

// a bus message (detection): new alert, or new data for one we know; the workflow state stays ours.
// An alert that joined an open incident (the server says which: incident_id) is an occurrence of that item.
function onBusAlert(msg) {
  const inc = msg.incident_id || msg.alert_id;
  if (inc !== msg.alert_id) { onOccurrence(inc, msg); return; }
  const old = alerts.get(msg.alert_id);
  const det = {
    alert_id: msg.alert_id, camera: msg.camera, grid_cell: msg.grid_cell, rule: msg.rule, labels: msg.labels,
    score: msg.score, start_time: msg.start_time, end_time: msg.end_time, phase: msg.phase,
    end_reason: msg.phase === "end" ? (msg.end_reason || null) : null,
  };
  if (msg.phase === "end") det.orphaned_since = null; // ended: nobody needs to own it any more
  if (msg.snapshot) det.snapshot = msg.snapshot;
  const a = merge(old || { state: "new", owner: null, dispatch: {}, version: null, escalation_level: 0 }, det);
  a.occurrences = a.occurrences || { count: 1, alert_ids: [a.alert_id], first_seen: a.start_time, last_seen: msg.time,
                                     severity: a.rule.severity, reasons: [{ rule_id: a.rule.id, kind: a.rule.kind }],
                                     active: 0 };
  noteOccurrence(a, msg);
  alerts.set(a.alert_id, a);
  render(a);
  if (selected === a.alert_id) showDetail(a);
  if (!old) notifyNew(a);
}

const SEV_RANK = { low: 0, medium: 1, high: 2, critical: 3 };
const occPhase = new Map(); // occurrence alert id -> its last phase seen live (how many are still going on)

// one message of an incident's occurrence: count, last seen, reasons, highest severity, still going on
function noteOccurrence(a, msg) {
  const o = a.occurrences;
  if (!o.alert_ids.includes(msg.alert_id)) { o.alert_ids.push(msg.alert_id); o.count = o.alert_ids.length; }
  o.last_seen = Math.max(o.last_seen || 0, msg.time);
  if ((SEV_RANK[msg.rule.severity] || 0) > (SEV_RANK[o.severity] || 0)) o.severity = msg.rule.severity;
  if (!(o.reasons || []).some(r => r.rule_id === msg.rule.id)) (o.reasons = o.reasons || []).push({ rule_id: msg.rule.id, kind: msg.rule.kind });
  const before = occPhase.get(msg.alert_id);
  if (before === undefined && msg.phase !== "end") o.active = (o.active || 0) + 1;
  else if (before !== undefined && before !== "end" && msg.phase === "end") o.active = Math.max(0, (o.active || 0) - 1);
  occPhase.set(msg.alert_id, msg.phase);
}

function onOccurrence(inc, msg) {
  const a = alerts.get(inc);
  if (!a || !a.occurrences) { resync().catch(console.error); return; } // an incident this page has not listed yet
  const fresh = !a.occurrences.alert_ids.includes(msg.alert_id);
  noteOccurrence(a, msg);
  render(a);
  if (selected === inc) showDetail(a);
  if (fresh) notifyNew(a);
}

// the incident is still going on while one of its occurrences is
function livePhase(a) {
  return a.phase === "end" && a.occurrences && a.occurrences.active > 0 ? "update" : a.phase;
}
function severityOf(a) {
  const o = a.occurrences;
  return o && (SEV_RANK[o.severity] || 0) > (SEV_RANK[a.rule.severity] || 0) ? o.severity : a.rule.severity;
}

// an action from any operator (or the system): the alert as stored now, plus the timeline row
function onAction(msg) {
  const before = alerts.get(msg.alert.alert_id);
  const a = merge(before, msg.alert);
  if (msg.action.action === "escalate") { beep(); if (before) notifyEscalated(a); }
  alerts.set(a.alert_id, a);
  render(a);
  if (selected === a.alert_id) { showDetail(a); addTimelineRow(msg.action); }
}

function render(a) {
  let li = items.get(a.alert_id);
  const isNew = !li;
  if (isNew) {
    li = tpl.content.firstElementChild.cloneNode(true);
    li.dataset.alertId = a.alert_id;
    li.addEventListener("click", () => select(a.alert_id));
    li.addEventListener("keydown", ev => { if (ev.key === "Enter") select(a.alert_id); });
    items.set(a.alert_id, li);
  }
  li.dataset.phase = livePhase(a);
  li.dataset.severity = severityOf(a);
  li.dataset.camera = a.camera.id;
  li.dataset.state = a.state;
  li.dataset.cell = (a.grid_cell || {}).id || "";
  li.dataset.overdue = String(overdue(a));
  if (SE.markShelved) SE.markShelved(li, a);
  const mark = li.querySelector(".overdue");
  mark.textContent = overdue(a) ? overdueText(a) : "";
  const occ = a.occurrences || { count: 1 };
  const badge = li.querySelector(".occ");
  badge.textContent = occ.count > 1 ? SE.t("incident.count", { n: occ.count }) : "";
  badge.title = occ.count > 1 ? SE.t("incident.count_title") : "";
  li.dataset.occurrences = String(occ.count);
  li.classList.toggle("selected", selected === a.alert_id);
  li.querySelector(".sev").textContent = SE.t(`severity.${severityOf(a)}`);
  li.querySelector(".label").textContent = a.labels.map(l => SE.messages[`label.${l}`] ? SE.t(`label.${l}`) : l).join(", ");
  li.querySelector(".rule").textContent = reasonsText(a);
  li.querySelector(".state-badge").textContent = SE.t(`state.${a.state}`);
  li.querySelector(".state-badge").dataset.state = a.state;
  li.querySelector(".phase").textContent = phaseText(a);
  li.dataset.orphaned = String(isOrphan(a));
  li.querySelector(".orphan").textContent = isOrphan(a) ? orphanText(a) : "";
  li.querySelector(".camera").textContent = a.camera.name;
  const cell = a.grid_cell || {};
  li.querySelector(".cell").textContent = SE.t("alert.cell_named", { name: cell.name || cell.id || "" });
  const off = cell.officer;
  li.querySelector(".officer").textContent = off ? SE.t("alert.officer_named", { name: off.name, phone: off.phone }) : "";
  const tm = li.querySelector(".time");
  const last = occ.count > 1 ? occ.last_seen : a.end_time;
  tm.textContent = SE.fmt(a.start_time) + (last ? ` – ${SE.fmt(last, false)}` : "");
  tm.dateTime = new Date(a.start_time * 1000).toISOString();
  li.querySelector(".owner").textContent = a.owner ? SE.t("alert.handled_by", { name: a.owner.name }) : "";
  const mini = li.querySelector(".mini-lights");
  mini.replaceChildren(...STEPS.map(s => SE.el("i", { "data-step": s, "data-on": String(!!(a.dispatch || {})[STEP_AT[s]]) })));
  if (a.snapshot && a.snapshot.path) {
    const img = li.querySelector(".snap");
    const url = snapUrl(a.snapshot.path);
    if (img.getAttribute("src") !== url) img.src = url;
  }
  li.hidden = !shown(a);
  const oc = li.querySelector(".outcome");
  oc.textContent = a.classification && !OPEN.has(a.state) ? SE.t(`class.${a.classification}`) : "";
  oc.dataset.class = a.classification || "";
  li.dataset.class = a.classification || "";
  li.querySelector(".pick").checked = picked.has(a.alert_id);
  const key = sortKey(a);
  if (isNew || parseFloat(li.dataset.start) !== key) { li.remove(); insertByTime(li, key); }
  updateCount();
}

// an alert still open on the bus whose camera no worker has reported for dashboard.orphan_alert_s: not live
function isOrphan(a) { return a.phase !== "end" && !!a.orphaned_since; }
function orphanText(a) { return SE.t("alert.orphaned", { since: SE.fmt(a.orphaned_since, false) }); }

// every rule that fired in the incident (intrusion · loitering ...), else the alert's own
function reasonsText(a) {
  const rs = (a.occurrences || {}).reasons || [];
  if (rs.length < 2) return ruleText(a.rule);
  return rs.map(r => ruleText({ id: r.rule_id, kind: r.kind })).filter((t, i, all) => all.indexOf(t) === i).join(" · ");
}

// the late step, by name: "overdue · sign for"
function overdueText(a) {
  const key = `overdue.${a.overdue}`;
  return SE.messages[key] ? SE.t(key) : SE.t("alert.overdue");
}

// "ended", with the reason when nobody saw it end (a worker restarted and ended what its predecessor left open)
function phaseText(a) {
  if (livePhase(a) !== a.phase) return SE.t(`phase.${livePhase(a)}`);
  const base = SE.t(`phase.${a.phase}`);
  if (a.phase !== "end" || !a.end_reason) return base;
  const key = `end_reason.${a.end_reason.replace(/\W+/g, "_")}`;
  return `${base} · ${SE.messages[key] ? SE.t(key) : a.end_reason}`;
}

// the server's list of orphaned open alerts replaces what the page thought
function onOrphans(map) {
  for (const a of alerts.values()) {
    const since = (a.phase !== "end" && map[a.alert_id]) || null;
    if ((a.orphaned_since || null) !== since) {
      a.orphaned_since = since;
      render(a);
      if (selected === a.alert_id) showDetail(a);
    }
  }
}

// the list is ordered by a key, highest first: by priority (overdue, then new, then other open ones, then closed;
// within each the higher severity; then the one waiting longest first), or by age alone (newest first)
function sortKey(a) {
  if (triage.sort === "age") return a.start_time;
  const group = !OPEN.has(a.state) ? 0 : overdue(a) ? 3 : a.state === "new" ? 2 : 1;
  return (group * 10 + (SEV_RANK[severityOf(a)] || 0)) * 1e10 + (1e10 - a.start_time);
}

// ------------------------------------------------------------------ triage: filters kept in the URL, bulk

const TRIAGE_KEYS = ["sort", "state", "severity", "camera", "cell", "owner", "rule", "classification", "q"];
const triage = { sort: "priority", state: "open" };
const picked = new Set();

function readTriage() {
  const p = new URLSearchParams(location.search);
  for (const k of TRIAGE_KEYS) if (p.has(k)) triage[k] = p.get(k);
}
function writeTriage() {
  const p = new URLSearchParams();
  for (const k of TRIAGE_KEYS) if (triage[k]) p.set(k, triage[k]);
  history.replaceState(null, "", p.toString() ? `?${p}` : location.pathname);
}

// the same filters as the API's (dashboard/services/triage.py)
function shown(a) {
  const t = triage;
  if (t.state && !(t.state === "open" ? OPEN.has(a.state) : a.state === t.state)) return false;
  if (t.severity && severityOf(a) !== t.severity) return false;
  if (t.camera && a.camera.id !== t.camera) return false;
  if (t.cell && (a.grid_cell || {}).id !== t.cell) return false;
  const owner = a.owner ? a.owner.name : null;
  if (t.owner && (t.owner === "none" ? owner !== null : owner !== t.owner)) return false;
  if (t.rule && !ruleNames(a).includes(t.rule)) return false;
  if (t.classification && a.classification !== t.classification) return false;
  if (t.q) {
    const o = a.occurrences || {};
    const text = [a.camera.name, a.camera.id, (a.grid_cell || {}).name, reasonsText(a), a.rule.id, owner,
                  a.close_comment, ...(a.labels || []), ...(o.alert_ids || [a.alert_id])].join(" ").toLowerCase();
    if (!text.includes(t.q.toLowerCase())) return false;
  }
  return true;
}
function ruleNames(a) {
  return [ruleText(a.rule), ...((a.occurrences || {}).reasons || []).map(r => ruleText({ id: r.rule_id, kind: r.kind }))];
}

// the choices of the filter menus: fixed ones, and what the list holds (cameras, owners, rules)
function fillChoices() {
  const form = document.getElementById("triage");
  const fill = (name, values, label) => {
    const sel = form.elements[name];
    const keep = [...sel.options].filter(o => o.value === "" || (name === "owner" && o.value === "none"));
    sel.replaceChildren(...keep, ...values.map(v => SE.el("option", { value: v, text: label(v) })));
    sel.value = triage[name] || "";
  };
  const all = [...alerts.values()];
  const uniq = xs => [...new Set(xs.filter(Boolean))].sort();
  fill("state", ["open", ...OPEN, "resolved", "false_alarm"], v => v === "open" ? SE.t("room.filter_open") : SE.t(`state.${v}`));
  fill("severity", ["critical", "high", "medium", "low"], v => SE.t(`severity.${v}`));
  const camNames = Object.fromEntries(all.map(a => [a.camera.id, a.camera.name]));
  fill("camera", uniq(all.map(a => a.camera.id)), v => camNames[v] || v);
  fill("owner", uniq(all.map(a => a.owner && a.owner.name)), v => v);
  fill("rule", uniq(all.flatMap(ruleNames)), v => v);
  fill("classification", ["genuine", "false_alarm", "duplicate", "test"], v => SE.t(`class.${v}`));
  form.elements.sort.value = triage.sort || "priority";
  form.elements.q.value = triage.q || "";
  const bc = document.getElementById("bulk-class");
  bc.replaceChildren(...[...bc.options].filter(o => o.value === ""),
    ...["genuine", "false_alarm", "duplicate", "test"].map(v => SE.el("option", { value: v, text: SE.t(`class.${v}`) })));
}

function applyTriage() {
  writeTriage();
  document.querySelectorAll(".filter").forEach(x => x.classList.toggle("here", (x.dataset.filter === "open") === (triage.state === "open")));
  for (const li of items.values()) li.dataset.start = "reorder"; // every item is placed again by the new key
  for (const a of alerts.values()) render(a);
  syncPicked();
}

function syncPicked() {
  for (const id of [...picked]) { const a = alerts.get(id); if (!a || !shown(a)) picked.delete(id); }
  document.getElementById("picked").textContent = picked.size ? SE.t("triage.picked", { n: picked.size }) : "";
  document.getElementById("bulk-ack").disabled = !picked.size;
  document.getElementById("bulk-close").disabled = !picked.size;
}

async function bulkAct(action, extra) {
  const out = document.getElementById("bulk-result");
  try {
    const res = await SE.api("/api/alerts/bulk", { method: "POST", body: Object.assign({ ids: [...picked], action }, extra || {}) });
    out.textContent = SE.t("triage.bulk_done", { done: res.done.length, skipped: Object.keys(res.skipped).length });
    for (const id of res.done) picked.delete(id);
    for (const a of alerts.values()) render(a);
    syncPicked();
  } catch (e) { out.textContent = SE.errorText(e); }
}

function wireTriage() {
  const form = document.getElementById("triage");
  const tr = root => {
    root.querySelectorAll("[data-l]").forEach(el => { el.textContent = SE.t(el.dataset.l); });
    root.querySelectorAll("[data-lp]").forEach(el => { el.placeholder = SE.t(el.dataset.lp); });
  };
  tr(form); tr(document.getElementById("bulk"));
  form.addEventListener("input", () => {
    for (const k of TRIAGE_KEYS) if (form.elements[k]) triage[k] = form.elements[k].value;
    applyTriage();
  });
  form.addEventListener("submit", ev => ev.preventDefault());
  alertsEl.addEventListener("click", ev => {
    if (!ev.target.classList.contains("pick")) return;
    ev.stopPropagation();
    const id = ev.target.closest("li").dataset.alertId;
    if (ev.target.checked) picked.add(id); else picked.delete(id);
    syncPicked();
  }, true);
  document.getElementById("pick-all").addEventListener("change", ev => {
    for (const li of alertsEl.children) {
      if (!li.dataset.alertId || li.hidden) continue;
      if (ev.target.checked) picked.add(li.dataset.alertId); else picked.delete(li.dataset.alertId);
      li.querySelector(".pick").checked = ev.target.checked;
    }
    syncPicked();
  });
  document.getElementById("bulk-ack").addEventListener("click", () => bulkAct("acknowledge"));
  document.getElementById("bulk-close").addEventListener("click", () => bulkAct("close", {
    classification: document.getElementById("bulk-class").value, note: document.getElementById("bulk-note").value }));
}


// escalated for the step it still waits for: the server names that step (a level of a step done is spent)
function overdue(a) { return !!a.overdue && OPEN.has(a.state); }

function insertByTime(li, t) {
  li.dataset.start = t;
  for (const other of alertsEl.children) {
    if (parseFloat(other.dataset.start) < t) { alertsEl.insertBefore(li, other); return; }
  }
  alertsEl.appendChild(li);
}

function renderCameraEvent(msg) {
  const li = tpl.content.firstElementChild.cloneNode(true);
  li.classList.add("camera-event");
  li.dataset.phase = msg.phase;
  li.dataset.camera = msg.camera.id;
  li.dataset.cell = (msg.grid_cell || {}).id || "";
  li.hidden = cellFilter !== null && li.dataset.cell !== cellFilter;
  li.querySelector(".label").textContent = SE.t(msg.phase === "offline" ? "camera.went_offline" : "camera.came_online");
  li.querySelector(".rule").textContent = msg.detail || "";
  li.querySelector(".camera").textContent = msg.camera.name;
  li.querySelector(".cell").textContent = SE.t("alert.cell_named", { name: (msg.grid_cell || {}).name || "" });
  li.querySelector(".time").textContent = SE.fmt(msg.time);
  insertByTime(li, msg.time);
}

function updateCount() {
  let open = 0, fresh = 0;
  for (const a of alerts.values()) { if (OPEN.has(a.state)) open++; if (a.state === "new") fresh++; }
  document.getElementById("alert-count").textContent = open;
  document.getElementById("no-alerts").hidden = [...alertsEl.children].some(li => !li.hidden);
  document.title = fresh ? `(${fresh}) ${baseTitle}` : baseTitle;
  syncBeep();
}

// sound per severity, repeating until someone takes the alert: critical (or overdue) high and fast, high,
// medium slower and lower; low alerts make no sound
const SOUND = { critical: [1320, 4000], high: [880, 8000], medium: [660, 20000] };
let beepLevel = null;
function syncBeep() {
  let level = null;
  for (const a of alerts.values()) {
    if (SE.shelved && SE.shelved(a)) continue; // shelved (屏蔽): listed, but silent
    const sev = overdue(a) ? "critical" : a.state === "new" ? severityOf(a) : null;
    if (SOUND[sev] && (!level || SOUND[sev][1] < SOUND[level][1])) level = sev;
  }
  if (level === beepLevel) return;
  if (beepTimer) { clearInterval(beepTimer); beepTimer = null; }
  beepLevel = level;
  if (level) { beep(); beepTimer = setInterval(beep, SOUND[level][1]); }
  document.body.dataset.sound = level || "none";
}

let audio = null;
function beep() {
  try {
    audio = audio || new AudioContext();
    if (audio.state !== "running") return; // the browser allows sound after the first click
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = SOUND[beepLevel || "high"][0]; g.gain.value = 0.15;
    o.connect(g).connect(audio.destination);
    o.start(); o.stop(audio.currentTime + 0.25);
  } catch (e) { /* no audio device */ }
}
document.addEventListener("click", () => { if (audio && audio.state === "suspended") audio.resume(); });

function notifyEscalated(a) {
  if (SE.shelved && SE.shelved(a)) return;
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  new Notification(SE.t("notify.escalated", { kind: ruleText(a.rule), camera: a.camera.name }));
}

function notifyNew(a) {
  if (SE.shelved && SE.shelved(a)) return;
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  new Notification(SE.t("notify.new_alert", { kind: ruleText(a.rule), camera: a.camera.name }));
}

// ------------------------------------------------------------------ handling view

async function select(id) {
  selected = id;
  for (const [aid, li] of items) li.classList.toggle("selected", aid === id);
  const a = alerts.get(id);
  showDetail(a);
  document.getElementById("d-timeline").replaceChildren();
  try {
    const data = await SE.api(`/api/alerts/${encodeURIComponent(id)}`);
    if (selected !== id) return;
    const merged = merge(alerts.get(id), data.alert);
    alerts.set(id, merged);
    render(merged);
    showDetail(merged);
    document.getElementById("d-timeline").replaceChildren();
    data.timeline.forEach(addTimelineRow);
    document.getElementById("d-procedure").textContent = data.procedure || "";
    document.getElementById("d-procedure-box").hidden = !data.procedure;
    if (window.Handling) Handling.detail(data); // related cameras
  } catch (e) { showError(e); }
}

function showDetail(a) {
  const panel = document.getElementById("detail");
  panel.hidden = false;
  panel.dataset.alertId = a.alert_id;
  panel.dataset.state = a.state;
  document.getElementById("d-print").href = `/alerts/${encodeURIComponent(a.alert_id)}/print`;
  document.getElementById("d-clip").href = `/clip/${encodeURIComponent(a.alert_id)}`;
  document.getElementById("d-title").textContent = `${reasonsText(a)} · ${a.camera.name}`;
  const img = document.getElementById("d-snap");
  if (a.snapshot && a.snapshot.path) { img.src = snapUrl(a.snapshot.path); img.hidden = false; } else img.hidden = true;
  const st = document.getElementById("d-state");
  st.textContent = SE.t(`state.${a.state}`);
  st.dataset.state = a.state;
  const outc = document.getElementById("d-outcome");
  outc.textContent = a.classification && !OPEN.has(a.state) ? SE.t(`class.${a.classification}`) : "";
  outc.dataset.class = a.classification || "";
  const od = document.getElementById("d-overdue");
  od.hidden = !overdue(a);
  od.textContent = overdue(a) ? overdueText(a) : "";
  showOccurrences(a);
  const orphan = document.getElementById("d-orphan");
  orphan.hidden = !isOrphan(a);
  orphan.textContent = isOrphan(a) ? orphanText(a) : "";
  document.getElementById("d-phase").textContent = phaseText(a);
  document.getElementById("d-owner").textContent = a.owner ? SE.t("alert.handled_by", { name: a.owner.name }) : SE.t("alert.nobody");
  document.getElementById("d-camera").textContent = a.camera.name;
  document.getElementById("d-cell").textContent = (a.grid_cell || {}).name || "";
  const off = (a.grid_cell || {}).officer;
  document.getElementById("d-officer").textContent = off ? `${off.name} ${off.phone}` : "";
  document.getElementById("d-time").textContent = SE.fmt(a.start_time);
  const d = a.dispatch || {};
  document.querySelectorAll("#d-lights .light").forEach(l => {
    const at = d[STEP_AT[l.dataset.step]];
    l.dataset.on = String(!!at);
    l.querySelector("time").textContent = at ? SE.fmt(at, false) : "";
  });
  const mine = a.owner && a.owner.id === SE.me.user.id;
  const open = OPEN.has(a.state);
  const next = a.state === "new" ? null : NEXT_ACTION[d.step || null];
  const show = {
    acknowledge: a.state === "new",
    take_over: open && a.owner && !mine,
    dispatch: open && mine && next === "dispatch",
    signed_for: open && mine && next === "signed_for",
    on_scene: open && mine && next === "on_scene",
    feedback: open && mine && next === "feedback",
  };
  document.querySelectorAll("#d-actions button").forEach(b => { b.hidden = !show[b.dataset.action]; });
  document.getElementById("d-forward-form").hidden = !(open && (mine || !a.owner));
  document.getElementById("d-close-form").hidden = !(open && (mine || !a.owner));
  document.getElementById("d-bulk").hidden = !open;
  document.getElementById("d-link-box").hidden = !(a.state === "dispatched" && mine && d.step !== "feedback");
  document.getElementById("d-link").value = links.get(a.alert_id) || "";
  document.getElementById("d-error").hidden = true;
  if (window.Handling) Handling.show(a); // the alarm camera live (room-handling.js)
}

// the incident's occurrences: how many, from when to when, each one's clip
function showOccurrences(a) {
  const o = a.occurrences || { count: 1, alert_ids: [a.alert_id] };
  document.getElementById("d-occ-box").hidden = o.count < 2;
  if (o.count < 2) return;
  document.getElementById("d-occ-label").textContent = SE.t("incident.occurrences");
  document.getElementById("d-occ-count").textContent = SE.t("incident.count", { n: o.count });
  document.getElementById("d-occ-span").textContent = SE.t("incident.span",
    { first: SE.fmt(o.first_seen || a.start_time), last: SE.fmt(o.last_seen || a.start_time, false) });
  document.getElementById("d-occ-list").replaceChildren(...o.alert_ids.map((id, i) => SE.el("li", {},
    SE.el("a", { href: `/clip/${encodeURIComponent(id)}`, target: "_blank", "data-alert-id": id,
                 text: SE.t("incident.occurrence", { n: i + 1 }) }))));
}

function addTimelineRow(act) {
  const who = (act.data || {}).by || act.username || SE.t("timeline.system");
  const vars = Object.assign({}, act.data || {});
  if (vars.reason) vars.reason = SE.t(`reason.${vars.reason}`);
  const parts = [SE.fmt(act.time), who, SE.t(`timeline.${act.action}`, vars)];
  if (act.to_state && act.to_state !== act.from_state) parts.push(`→ ${SE.t(`state.${act.to_state}`)}`);
  const li = SE.el("li", { "data-action": act.action }, SE.el("span", { text: parts.join(" · ") }));
  if (act.note) li.append(SE.el("q", { text: act.note }));
  const tl = document.getElementById("d-timeline");
  if (act.id && tl.querySelector(`[data-id="${act.id}"]`)) return;
  if (act.id) li.dataset.id = act.id;
  tl.append(li);
}

const links = new Map(); // alert_id -> the officer link made in this page (shown once, never stored in clear)
function showLink(id, path) {
  links.set(id, location.origin + path);
  if (selected === id) document.getElementById("d-link").value = links.get(id);
}

function showError(e) {
  const el = document.getElementById("d-error");
  el.textContent = SE.errorText(e);
  el.hidden = false;
}

async function act(action, extra) {
  const a = alerts.get(selected);
  if (!a) return;
  if (action === "take_over" && window.Handling && !Handling.confirmTakeOver(a)) return false;
  try {
    const res = await SE.api(`/api/alerts/${encodeURIComponent(a.alert_id)}/actions`, {
      method: "POST", body: Object.assign({ action, version: a.version === null ? undefined : a.version }, extra || {}),
    });
    onAction(res);
    if (res.officer_link) showLink(a.alert_id, res.officer_link);
    return true;
  } catch (e) { showError(e); return false; }
}

function wireDetail() {
  document.querySelectorAll("#d-actions button").forEach(b => b.addEventListener("click", () => act(b.dataset.action)));
  document.getElementById("d-close").addEventListener("click", () => {
    selected = null;
    document.getElementById("detail").hidden = true;
    if (window.Handling) Handling.close(); // its players stop
    for (const li of items.values()) li.classList.remove("selected");
  });
  document.getElementById("d-note-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const n = document.getElementById("d-note");
    if (await act("note", { note: n.value })) n.value = "";
  });
  document.getElementById("d-forward-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    await act("forward", { to: document.getElementById("d-forward-to").value,
                           note: document.getElementById("d-forward-msg").value });
  });
  document.getElementById("d-new-link").addEventListener("click", async () => {
    try {
      const res = await SE.api(`/api/alerts/${encodeURIComponent(selected)}/officer-link`, { method: "POST" });
      showLink(selected, res.officer_link);
    } catch (e) { showError(e); }
  });
  document.getElementById("d-bulk").addEventListener("click", async () => {
    const a = alerts.get(selected);
    if (!a) return;
    const note = document.getElementById("d-comment").value;
    if (!note.trim()) { showError({ code: "comment_required" }); return; }
    if (!confirm(SE.t("room.bulk_confirm", { camera: a.camera.name }))) return;
    try {
      const res = await SE.api("/api/alerts/bulk-close", { method: "POST", body: { camera: a.camera.id, note } });
      const el = document.getElementById("d-error");
      el.textContent = SE.t("room.bulk_done", res);
      el.hidden = false;
    } catch (e) { showError(e); }
  });
  document.getElementById("d-close-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    await act("close", { classification: document.getElementById("d-class").value,
                         note: document.getElementById("d-comment").value });
  });
  document.querySelectorAll(".filter").forEach(b => b.addEventListener("click", () => {
    triage.state = b.dataset.filter === "open" ? "open" : "";
    fillChoices();
    applyTriage();
  }));
  // keyboard: j/k move, a acknowledge, d next dispatch step, t take over, Esc closes the view
  document.addEventListener("keydown", ev => {
    if (["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName)) return;
    const visible = [...alertsEl.children].filter(li => !li.hidden && li.dataset.alertId);
    const i = visible.findIndex(li => li.dataset.alertId === selected);
    if (ev.key === "j" && visible.length) select(visible[Math.min(visible.length - 1, i + 1)].dataset.alertId);
    else if (ev.key === "k" && visible.length) select(visible[Math.max(0, i - 1)].dataset.alertId);
    else if (ev.key === "Escape") document.getElementById("d-close").click();
    else if (selected && ev.key === "a") act("acknowledge");
    else if (selected && ev.key === "t") act("take_over");
    else if (selected && ev.key === "d") {
      const a = alerts.get(selected);
      act(NEXT_ACTION[(a.dispatch || {}).step || null] || "dispatch");
    }
  });
}

// ------------------------------------------------------------------ cameras

function renderCameras(cams) {
  const ul = document.getElementById("cameras");
  ul.replaceChildren(...cams.map(c => {
    const li = SE.el("li", { class: "camera-item", "data-camera": c.id, "data-online": String(c.online) });
    const left = SE.el("span", { text: c.name },
      SE.el("span", { class: "cell", text: `${c.id} · ${SE.t("alert.cell_named", { name: c.grid_cell.name })}` }));
    const st = SE.el("span", { class: "state", text: c.online ? SE.t("camera.online") : SE.t("camera.offline_state", { state: SE.t(`cstate.${c.state}`) }) });
    if (c.detector === "unavailable") { // the worker has no model: the camera records, nothing is analysed
      li.dataset.detector = "unavailable";
      st.append(SE.el("span", { class: "detector-off", text: SE.t("camera.detector_unavailable"),
                                title: SE.t("camera.detector_unavailable_title", { reason: c.detector_error || "" }) }));
    }
    li.append(left, st);
    return li;
  }));
  const on = cams.filter(c => c.online).length;
  document.getElementById("camera-summary").textContent = SE.t("camera.summary", { on, n: cams.length });
}

// ------------------------------------------------------------------ live stream

// The stream beats every few seconds while the server hears from the bus.  No beat for STALE_MS and the
// page says so (banner "connection lost", everything dimmed) and reconnects; after any error the
// EventSource is recreated with backoff (1 s doubling to 8 s), resuming from the last id it saw, and
// once beats come again the list is reloaded (actions the bus could not push meanwhile).
const STALE_MS = 10000;
const live = {
  es: null, cursor: "$|$", lastBeat: Date.now(), lastTry: Date.now(), backoff: 1000, timer: null, resync: false,

  connect() {
    live.lastTry = Date.now();
    const es = new EventSource(`/api/stream?cursor=${encodeURIComponent(live.cursor)}`);
    live.es = es;
    const on = (name, fn) => es.addEventListener(name, ev => {
      if (live.es !== es) return; // a stream we already gave up on
      if (ev.lastEventId) live.cursor = ev.lastEventId;
      fn(ev);
    });
    on("heartbeat", () => live.beat());
    on("message", ev => {
      const m = JSON.parse(ev.data);
      if (m.type === "alert") onBusAlert(m); else if (m.type === "camera") renderCameraEvent(m);
    });
    on("action", ev => onAction(JSON.parse(ev.data)));
    on("cameras", ev => renderCameras(JSON.parse(ev.data)));
    on("orphans", ev => onOrphans(JSON.parse(ev.data)));
    on("notice", ev => { if (window.Handling) Handling.notice(JSON.parse(ev.data), ev.lastEventId); });
    on("unavailable", () => live.retry());
    es.addEventListener("error", () => { if (live.es === es) live.retry(); });
  },

  retry() {
    live.resync = true;
    setConn("lost");
    SE.reconnectLater(live);
  },

  beat() {
    live.lastBeat = Date.now();
    live.backoff = 1000;
    setConn("live");
    showStale(false);
    if (live.resync) { live.resync = false; resync().catch(console.error); }
  },

  // once a second: stale after STALE_MS without a beat; a stream silent that long (a frozen server, a cut
  // network that never errors) is dropped and made again
  watch() {
    const now = Date.now();
    if (now - live.lastBeat > STALE_MS) showStale(true);
    if (now - Math.max(live.lastBeat, live.lastTry) > STALE_MS && !live.timer) live.retry();
  },
};

function setConn(state) {
  const conn = document.getElementById("conn");
  conn.dataset.state = state;
  conn.textContent = SE.t(`conn.${state}`);
}

function showStale(on) {
  const b = document.getElementById("stale-banner");
  if (on) b.textContent = SE.t("conn.stale", { since: SE.fmt(live.lastBeat / 1000, false) });
  b.hidden = !on;
  document.body.dataset.stale = String(on);
}

// after an outage: the list as stored now (what the stream could not carry), merged into the page
async function resync() {
  const data = await SE.api("/api/alerts?limit=300");
  for (const a of data.alerts.slice().reverse()) {
    const m = merge(alerts.get(a.alert_id), a);
    seedOccurrences(m);
    alerts.set(m.alert_id, m);
    render(m);
  }
  onOrphans(data.orphans || {});
  updateCount();
}

// ------------------------------------------------------------------ start

// the room's own strings (incidents, late steps), merged into the page's catalogue
async function loadRoomCatalogue() {
  const res = await fetch(`/static/i18n/incidents.${SE.locale}.json`);
  if (res.ok) Object.assign(SE.messages, await res.json());
}

// the listed incident's occurrences still going on, so live messages count them right
function seedOccurrences(a) {
  const o = a.occurrences;
  if (!o) return;
  for (const id of o.alert_ids || []) occPhase.set(id, (o.active_ids || []).includes(id) ? "update" : "end");
}

async function main() {
  await SE.start();
  await loadRoomCatalogue();
  baseTitle = document.title; // before the parts below may count alerts into the title
  if (window.Handling) await Handling.start(); // the handling view's live video, related cameras, notices
  if (SE.roomStart) await SE.roomStart(); // the room's parts in files of their own (room-shelves.js)
  readTriage();
  wireDetail();
  wireTriage();
  if (cellFilter !== null) {
    const name = (SE.me.cells[cellFilter] || {}).name || cellFilter;
    document.querySelector(".filters").append(SE.el("a", { id: "cell-filter", class: "cell-filter", href: "/",
                                                            text: SE.t("room.cell_filter", { name }) }));
  }
  const data = await SE.api("/api/alerts?limit=300");
  for (const a of data.alerts.slice().reverse()) { seedOccurrences(a); alerts.set(a.alert_id, a); }
  fillChoices();
  applyTriage();
  for (const m of data.camera_events.slice().reverse()) renderCameraEvent(m);
  updateCount();
  SE.api("/api/cameras").then(renderCameras).catch(console.error);
  if ("Notification" in window && Notification.permission === "default") {
    document.addEventListener("click", () => Notification.requestPermission(), { once: true });
  }
  live.cursor = data.cursor;
  onOrphans(data.orphans || {});
  live.connect();
  setInterval(live.watch, 1000);
  setInterval(() => { for (const a of alerts.values()) if (OPEN.has(a.state)) render(a); }, 30000);
}
main().catch(e => console.error(e));
