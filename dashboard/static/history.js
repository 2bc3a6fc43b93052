// History search: filters, key-paged results, an alert's timeline on click.
"use strict";
let next = null;

// "YYYY-MM-DD HH:MM[:SS]" (24-hour) read as wall time in the config's zone -> epoch seconds
function parseLocal(v) {
  v = v.trim();
  if (!v) return null;
  const [d, t] = v.split(/[T ]+/);
  const [y, mo, da] = d.split("-").map(Number);
  const [h, mi, s] = ((t || "00:00") + ":0").split(":").map(Number);
  const guess = Date.UTC(y, mo - 1, da, h, mi, s || 0) / 1000;
  const shown = SE.fmt(guess); // the same instant as wall time in the zone
  const [sd, st] = shown.split(" ");
  const [sy, smo, sda] = sd.split("-").map(Number);
  const [sh, smi, ss] = st.split(":").map(Number);
  const offset = Date.UTC(sy, smo - 1, sda, sh, smi, ss) / 1000 - guess;
  return guess - offset;
}

function query(before) {
  const p = new URLSearchParams();
  const add = (k, v) => { if (v !== null && v !== "") p.set(k, v); };
  add("start", parseLocal(document.getElementById("h-from").value));
  add("end", parseLocal(document.getElementById("h-to").value));
  add("cell", document.getElementById("h-cell").value);
  add("camera", document.getElementById("h-camera").value);
  add("kind", document.getElementById("h-kind").value);
  add("rule", document.getElementById("h-rule").value.trim());
  add("label", document.getElementById("h-label").value);
  add("state", document.getElementById("h-state").value);
  add("before", before);
  p.set("limit", "50");
  return p.toString();
}

async function run(more) {
  const body = document.querySelector("#results tbody");
  const t0 = performance.now();
  document.getElementById("h-status").textContent = "";
  const data = await SE.api(`/api/history?${query(more ? next : null)}`);
  if (!more) body.replaceChildren();
  next = data.next;
  for (const a of data.alerts) body.append(row(a));
  document.getElementById("h-more").hidden = !next;
  document.getElementById("h-status").textContent = SE.t("history.status", {
    n: body.querySelectorAll("tr.result").length, ms: Math.round(performance.now() - t0), db: data.query_ms });
}

function row(a) {
  const tr = SE.el("tr", { class: "result", "data-alert-id": a.alert_id, "data-state": a.state },
    SE.el("td", { text: SE.fmt(a.start_time) }), SE.el("td", { text: a.camera.name }),
    SE.el("td", { text: a.grid_cell.name }), SE.el("td", { text: SE.ruleName(a.rule) }),
    SE.el("td", { text: a.labels.map(l => SE.messages[`label.${l}`] ? SE.t(`label.${l}`) : l).join(", ") }),
    SE.el("td", { text: SE.t(`state.${a.state}`) }), SE.el("td", { text: a.owner ? a.owner.name : "" }),
    SE.el("td", { text: a.classification ? SE.t(`class.${a.classification}`) : "" }));
  tr.addEventListener("click", () => toggle(tr, a));
  return tr;
}

async function toggle(tr, a) {
  const open = tr.nextElementSibling;
  if (open && open.classList.contains("timeline-row")) { open.remove(); return; }
  const data = await SE.api(`/api/alerts/${encodeURIComponent(a.alert_id)}`);
  const list = SE.el("ol", { class: "timeline" }, ...data.timeline.map(act => {
    const vars = Object.assign({}, act.data || {});
    if (vars.reason) vars.reason = SE.t(`reason.${vars.reason}`);
    const who = vars.by || act.username || SE.t("timeline.system");
    const li = SE.el("li", { "data-action": act.action, text: `${SE.fmt(act.time)} · ${who} · ${SE.t(`timeline.${act.action}`, vars)}` });
    if (act.note) li.append(SE.el("q", { text: act.note }));
    return li;
  }));
  const td = SE.el("td", { colspan: "8" }, list);
  if (a.snapshot) td.prepend(SE.el("img", { class: "snap", src: "/" + a.snapshot.path.split("/").map(encodeURIComponent).join("/"), alt: "" }));
  tr.after(SE.el("tr", { class: "timeline-row" }, td));
}

SE.start().then(async () => {
  const cams = await SE.api("/api/cameras");
  const cellSel = document.getElementById("h-cell");
  for (const [id, c] of Object.entries(SE.me.cells)) cellSel.append(SE.el("option", { value: id, text: c.name }));
  const camSel = document.getElementById("h-camera");
  for (const c of cams) camSel.append(SE.el("option", { value: c.id, text: c.name }));
  document.getElementById("search").addEventListener("submit", ev => { ev.preventDefault(); run(false).catch(console.error); });
  document.getElementById("h-more").addEventListener("click", () => run(true).catch(console.error));
  run(false).catch(console.error);
}).catch(console.error);
