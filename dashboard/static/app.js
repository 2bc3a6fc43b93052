// Command-room page: recent alerts once, then a live server-sent event stream.
"use strict";
const alertsEl = document.getElementById("alerts");
const tpl = document.getElementById("alert-tpl");
const byId = new Map(); // alert_id -> <li>
const KIND = { presence: "presence 出现", intrusion: "intrusion 区域入侵", line_crossing: "line crossing 越线",
               loitering: "loitering 徘徊", crowding: "crowding 人员聚集" };
const PHASE = { new: "new 待处理", update: "active", end: "ended" };

function fmtTime(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }

function render(msg) {
  if (msg.type === "camera") return renderCamera(msg);
  if (msg.type !== "alert") return;
  let li = byId.get(msg.alert_id);
  const isNew = !li;
  if (isNew) {
    li = tpl.content.firstElementChild.cloneNode(true);
    li.dataset.alertId = msg.alert_id;
    byId.set(msg.alert_id, li);
  }
  li.dataset.phase = msg.phase;
  li.dataset.severity = msg.rule.severity;
  li.dataset.camera = msg.camera.id;
  li.querySelector(".sev").textContent = msg.rule.severity;
  li.querySelector(".label").textContent = msg.labels.join(", ");
  li.querySelector(".rule").textContent = KIND[msg.rule.kind] || msg.rule.kind;
  li.querySelector(".phase").textContent = PHASE[msg.phase] || msg.phase;
  li.querySelector(".camera").textContent = msg.camera.name;
  const cell = msg.grid_cell || {};
  li.querySelector(".cell").textContent = `grid ${cell.name || cell.id || ""}`;
  const off = cell.officer;
  li.querySelector(".officer").textContent = off ? `duty officer ${off.name} ${off.phone}` : "";
  const tm = li.querySelector(".time");
  tm.textContent = fmtTime(msg.start_time) + (msg.end_time ? ` – ${new Date(msg.end_time * 1000).toLocaleTimeString()}` : "");
  tm.dateTime = new Date(msg.start_time * 1000).toISOString();
  if (msg.snapshot && msg.snapshot.path) {
    li.querySelector(".snap").src = "/" + msg.snapshot.path.split("/").map(encodeURIComponent).join("/");
  }
  if (isNew) insertByTime(li, msg.start_time);
  li.dataset.start = msg.start_time;
  updateCount();
}

function insertByTime(li, t) {
  li.dataset.start = t;
  for (const other of alertsEl.children) {
    if (parseFloat(other.dataset.start) < t) { alertsEl.insertBefore(li, other); return; }
  }
  alertsEl.appendChild(li);
}

function renderCamera(msg) {
  const li = tpl.content.firstElementChild.cloneNode(true);
  li.classList.add("camera-event");
  li.dataset.phase = msg.phase;
  li.querySelector(".label").textContent = msg.phase === "offline" ? "camera offline 视频离线" : "camera back online";
  li.querySelector(".rule").textContent = msg.detail || "";
  li.querySelector(".phase").textContent = msg.state;
  li.querySelector(".camera").textContent = msg.camera.name;
  li.querySelector(".cell").textContent = `grid ${(msg.grid_cell || {}).name || ""}`;
  li.querySelector(".time").textContent = fmtTime(msg.time);
  insertByTime(li, msg.time);
  updateCount();
}

function updateCount() {
  document.getElementById("alert-count").textContent = byId.size;
  document.getElementById("no-alerts").hidden = alertsEl.children.length > 0;
}

function renderCameras(cams) {
  const ul = document.getElementById("cameras");
  ul.replaceChildren(...cams.map(c => {
    const li = document.createElement("li");
    li.className = "camera-item";
    li.dataset.camera = c.id;
    li.dataset.online = String(c.online);
    const left = document.createElement("span");
    left.textContent = c.name;
    const cell = document.createElement("span");
    cell.className = "cell";
    cell.textContent = `${c.id} · grid ${c.grid_cell.name}`;
    left.appendChild(cell);
    const st = document.createElement("span");
    st.className = "state";
    st.textContent = c.online ? "online 在线" : `offline 离线 (${c.state})`;
    st.title = c.last_error || "";
    li.append(left, st);
    return li;
  }));
  const on = cams.filter(c => c.online).length;
  document.getElementById("camera-summary").textContent = `${on}/${cams.length} online`;
}

async function start() {
  const conn = document.getElementById("conn");
  let last = "$";
  try {
    const res = await fetch("/api/alerts?count=300");
    const data = await res.json();
    for (const m of data.messages.slice().reverse()) render(m);
    last = data.last_id;
  } catch (e) { console.error(e); }
  fetch("/api/cameras").then(r => r.json()).then(renderCameras).catch(console.error);
  const es = new EventSource(`/api/stream?last_id=${encodeURIComponent(last)}`);
  es.addEventListener("open", () => { conn.dataset.state = "live"; conn.textContent = "live"; });
  es.addEventListener("error", () => { conn.dataset.state = "lost"; conn.textContent = "reconnecting…"; });
  es.addEventListener("message", ev => render(JSON.parse(ev.data)));
  es.addEventListener("cameras", ev => renderCameras(JSON.parse(ev.data)));
}
updateCount();
start();
