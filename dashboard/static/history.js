// History search: the room's filters (state, severity, camera, cell, owner, rule by the name operators read,
// outcome, free text) plus who acknowledged and who closed, kept in the URL; key-paged results; an alert's
// timeline on click.  Strings of its own come from i18n/history-filters.<locale>.json (elements marked
// data-hi18n), merged into the page's catalogue.
"use strict";
let next = null;
const FIELDS = ["cell", "camera", "rule", "kind", "label", "severity", "state", "classification", "owner",
                "acknowledged_by", "closed_by", "q"];

async function catalogue() {
  const res = await fetch(`/static/i18n/history-filters.${SE.locale}.json`);
  if (res.ok) Object.assign(SE.messages, await res.json());
  document.querySelectorAll("[data-hi18n]").forEach(el => { el.textContent = SE.t(el.dataset.hi18n); });
  document.querySelectorAll("[data-hi18n-placeholder]").forEach(el => { el.placeholder = SE.t(el.dataset.hi18nPlaceholder); });
}

// "YYYY-MM-DD HH:MM[:SS]" (24-hour) read as wall time in the config's zone -> epoch seconds
function parseLocal(v) {
  v = v.trim();
  if (!v) return null;
  const [d, t] = v.split(/[T ]+/);
  const [y, mo, da] = d.split("-").map(Number);
  const [h, mi, s] = ((t || "00:00") + ":0").split(":").map(Number);
  const guess = Date.UTC(y, mo - 1, da, h, mi, s || 0) / 1000;
  if (!Number.isFinite(guess)) return null;
  const shown = SE.fmt(guess); // the same instant as wall time in the zone
  const [sd, st] = shown.split(" ");
  const [sy, smo, sda] = sd.split("-").map(Number);
  const [sh, smi, ss] = st.split(":").map(Number);
  const offset = Date.UTC(sy, smo - 1, sda, sh, smi, ss) / 1000 - guess;
  return guess - offset;
}

// the filters as URL parameters (the page's own URL keeps them, so a search can be reloaded or sent)
function filters() {
  const p = new URLSearchParams();
  const add = (k, v) => { if (v !== null && v !== undefined && v !== "") p.set(k, v); };
  add("start", parseLocal(document.getElementById("h-from").value));
  add("end", parseLocal(document.getElementById("h-to").value));
  for (const f of FIELDS) add(f, document.getElementById(`h-${f}`).value.trim());
  return p;
}

// clear: also empty the filters the URL leaves out (back/forward); at start they keep what was already chosen
function fromUrl(clear = false) {
  const p = new URLSearchParams(location.search);
  const time = k => (p.get(k) && Number.isFinite(Number(p.get(k))) ? SE.fmt(Number(p.get(k))).slice(0, 16) : "");
  if (p.has("start") || clear) document.getElementById("h-from").value = time("start");
  if (p.has("end") || clear) document.getElementById("h-to").value = time("end");
  for (const f of FIELDS) {
    if (!p.has(f) && !clear) continue; // not in the link: keep what was chosen while the page loaded
    const el = document.getElementById(`h-${f}`);
    const v = p.get(f) || "";
    if (el.tagName === "SELECT" && v && ![...el.options].some(o => o.value === v)) {
      el.append(SE.el("option", { value: v, text: v })); // a value the menus do not offer (an old rule id)
    }
    el.value = v;
  }
}

async function run(more) {
  const body = document.querySelector("#results tbody");
  const t0 = performance.now();
  document.getElementById("h-status").textContent = "";
  const p = filters();
  if (!more) history.replaceState(null, "", p.toString() ? `?${p}` : location.pathname);
  if (more && next) p.set("before", next);
  p.set("limit", "50");
  let data;
  try {
    data = await SE.api(`/api/history?${p}`);
  } catch (err) {
    document.getElementById("h-status").textContent = SE.errorText(err);
    return;
  }
  if (!more) body.replaceChildren();
  next = data.next;
  for (const a of data.alerts) body.append(row(a));
  document.getElementById("h-more").hidden = !next;
  document.getElementById("h-status").textContent = SE.t("history.status", {
    n: body.querySelectorAll("tr.result").length, ms: Math.round(performance.now() - t0), db: data.query_ms });
}

function outcome(a) {
  // the same label and colour as the room's list and handling view (style.css .outcome[data-class])
  return SE.el("span", { class: "outcome", "data-class": a.classification || "",
                         text: a.classification ? SE.t(`class.${a.classification}`) : "" });
}

function row(a) {
  const tr = SE.el("tr", { class: "result", "data-alert-id": a.alert_id, "data-state": a.state,
                           "data-class": a.classification || "" },
    SE.el("td", { text: SE.fmt(a.start_time) }), SE.el("td", { text: a.camera.name }),
    SE.el("td", { text: a.grid_cell.name }), SE.el("td", { class: "rule", text: SE.ruleName(a.rule) }),
    SE.el("td", { text: a.labels.map(l => SE.messages[`label.${l}`] ? SE.t(`label.${l}`) : l).join(", ") }),
    SE.el("td", { "data-severity": a.rule.severity, text: SE.t(`severity.${a.rule.severity}`) }),
    SE.el("td", { text: SE.t(`state.${a.state}`) }), SE.el("td", { text: a.owner ? a.owner.name : "" }),
    SE.el("td", { class: "acknowledged-by", text: a.acknowledged_by || "" }),
    SE.el("td", { class: "closed-by", text: a.closed_by || "" }),
    SE.el("td", { class: "how" }, outcome(a)), SE.el("td", { class: "comment", text: a.close_comment || "" }));
  tr.addEventListener("click", () => toggle(tr, a));
  return tr;
}

async function toggle(tr, a) {
  const open = tr.nextElementSibling;
  if (open && open.classList.contains("timeline-row")) { open.remove(); return; }
  const data = await SE.api(`/api/alerts/${encodeURIComponent(a.alert_id)}`);
  const list = SE.el("ol", { class: "timeline" }, ...data.timeline.map(timelineItem));
  const td = SE.el("td", { colspan: String(tr.children.length) }, list);
  if (a.snapshot) td.prepend(SE.el("img", { class: "snap", src: "/" + a.snapshot.path.split("/").map(encodeURIComponent).join("/"), alt: "" }));
  tr.after(SE.el("tr", { class: "timeline-row" }, td));
}

// the menus: cells and cameras of the user, rules by the name operators read, the people of their cells
function fillMenus(cams, choices) {
  const cellSel = document.getElementById("h-cell");
  for (const [id, c] of Object.entries(SE.me.cells)) cellSel.append(SE.el("option", { value: id, text: c.name }));
  const camSel = document.getElementById("h-camera");
  for (const c of cams) camSel.append(SE.el("option", { value: c.id, text: c.name }));
  const ruleSel = document.getElementById("h-rule");
  // by the name operators read: the configured one, else the kind's (every unnamed rule of that kind)
  for (const r of choices.rules) ruleSel.append(SE.el("option", { value: r.value, text: SE.ruleName(r) }));
  for (const sel of document.querySelectorAll("select.people")) {
    for (const name of choices.people) sel.append(SE.el("option", { value: name, text: name }));
  }
}

SE.start().then(async () => {
  await catalogue();
  const [cams, choices] = await Promise.all([SE.api("/api/cameras"), SE.api("/api/history/choices")]);
  fillMenus(cams, choices);
  fromUrl();
  document.getElementById("search").addEventListener("submit", ev => { ev.preventDefault(); run(false).catch(console.error); });
  document.getElementById("h-more").addEventListener("click", () => run(true).catch(console.error));
  document.getElementById("h-clear").addEventListener("click", () => {
    document.getElementById("h-from").value = "";
    document.getElementById("h-to").value = "";
    for (const f of FIELDS) document.getElementById(`h-${f}`).value = "";
    run(false).catch(console.error);
  });
  window.addEventListener("popstate", () => { fromUrl(true); run(false).catch(console.error); });
  run(false).catch(console.error);
}).catch(console.error);
