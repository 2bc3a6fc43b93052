// The search page (研判): sightings by plate (exact, prefix, one wrong character), label, colour, camera, cell and
// time; the results as crops on a timeline per camera and as cards that open the clip at that time, add the
// sighting to a case or start an export; a plate's path across cameras in time order.  Also the clip page of
// one sighting (/search/clip?id=…&t=…).  Strings come from i18n/search.<locale>.json (data-si18n).
"use strict";
const SS = {
  LABELS: ["person", "car", "bus", "truck", "motorcycle", "bicycle"],
  COLOURS: ["red", "orange", "yellow", "green", "blue", "purple", "black", "white", "grey", "brown"],
  rows: [],
  cameras: [],
};
window.__search = SS; // the browser test reads the last answer from here

async function catalogue() {
  const res = await fetch(`/static/i18n/search.${SE.locale}.json`);
  Object.assign(SE.messages, await res.json());
  document.querySelectorAll("[data-si18n]").forEach(el => { el.textContent = SE.t(el.dataset.si18n); });
  document.querySelectorAll("[data-si18n-placeholder]").forEach(el => { el.placeholder = SE.t(el.dataset.si18nPlaceholder); });
  document.title = SE.t(document.body.dataset.titleKey);
}

function showError(e) {
  const el = document.getElementById("s-error") || document.getElementById("c-none");
  el.textContent = e && e.code ? SE.errorText(e) : String(e);
  el.hidden = false;
}

const labelText = l => (SE.messages[`label.${l}`] ? SE.t(`label.${l}`) : l);
const colourText = c => SE.t(`search.colour.${c}`);

// "YYYY-MM-DD HH:MM[:SS]" in the config's time zone -> epoch seconds (null when empty, NaN when unreadable)
function parseLocal(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(text.trim());
  if (!text.trim()) return null;
  if (!m) return NaN;
  const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0)) / 1000;
  const shown = SE.fmt(guess).replace(" ", "T") + "Z"; // what the zone's clock says at that instant
  return guess - (Date.parse(shown) / 1000 - guess);
}

// what a sighting looked like, in words: "person · upper grey, lower grey" or "car · body red"
function describe(s) {
  const parts = [];
  for (const p of ["upper", "lower", "body"]) {
    const shares = (s.colours || {})[p] || [];
    if (shares.length) parts.push(`${SE.t(`search.part_${p}`)} ${shares.slice(0, 2).map(c => colourText(c.name)).join("/")}`);
  }
  return `${labelText(s.label)}${parts.length ? " · " + parts.join(SE.t("list.sep")) : ""}`;
}

function clipHref(s) {
  return `/search/clip?id=${encodeURIComponent(s.sighting_id)}&t=${s.first_time.toFixed(2)}`;
}

function exportHref(s) {
  return `/timeline?start=${Math.floor(s.first_time - 10)}&end=${Math.ceil(s.last_time + 10)}&camera=${encodeURIComponent(s.camera_id)}`;
}

// ------------------------------------------------------------------ the search page

function fillForm() {
  const box = document.getElementById("s-labels");
  for (const l of SS.LABELS) {
    box.append(SE.el("label", {}, SE.el("input", { type: "checkbox", value: l, class: "s-label" }), SE.el("span", { text: labelText(l) })));
  }
  const colour = document.getElementById("s-colour");
  for (const c of SS.COLOURS) colour.append(SE.el("option", { value: c, text: colourText(c) }));
  const cams = document.getElementById("s-camera"), cells = document.getElementById("s-cell");
  const seen = new Map();
  for (const c of SS.cameras) {
    cams.append(SE.el("option", { value: c.id, text: c.name }));
    if (c.grid_cell && !seen.has(c.grid_cell.id)) seen.set(c.grid_cell.id, c.grid_cell.name || c.grid_cell.id);
  }
  for (const [id, name] of seen) cells.append(SE.el("option", { value: id, text: name }));
}

function query() {
  const q = new URLSearchParams();
  const plate = document.getElementById("s-plate").value.trim();
  if (plate) { q.set("plate", plate); q.set("match", document.getElementById("s-match").value); }
  document.querySelectorAll(".s-label:checked").forEach(b => q.append("label", b.value));
  const colour = document.getElementById("s-colour").value;
  if (colour) { q.set("colour", colour); q.set("part", document.getElementById("s-part").value); }
  for (const id of ["s-camera", "s-cell"]) {
    for (const o of document.getElementById(id).selectedOptions) q.append(id === "s-camera" ? "camera" : "cell", o.value);
  }
  for (const [id, name] of [["s-from", "start"], ["s-to", "end"]]) {
    const t = parseLocal(document.getElementById(id).value);
    if (Number.isNaN(t)) throw Object.assign(new Error("bad_time"), { code: "bad_time", detail: {} });
    if (t !== null) q.set(name, String(t));
  }
  q.set("limit", "200");
  return q;
}

async function runSearch() {
  document.getElementById("s-error").hidden = true;
  let q;
  try { q = query(); } catch (e) { showError(e); return; }
  const body = document.getElementById("s-results");
  body.dataset.state = "searching";
  try {
    const res = await SE.api(`/api/sightings?${q}`);
    SS.rows = res.sightings;
    document.getElementById("s-summary").textContent = SE.t("search.summary", { n: res.sightings.length, ms: res.query_ms });
    drawTimeline(res.sightings);
    body.replaceChildren(...res.sightings.map(card));
    document.getElementById("s-none").hidden = res.sightings.length > 0;
  } catch (e) { showError(e); } finally { body.dataset.state = "done"; }
}

function drawTimeline(rows) {
  const axis = document.getElementById("s-axis"), box = document.getElementById("s-timeline");
  if (!rows.length) { axis.replaceChildren(); box.replaceChildren(); return; }
  let t0 = Math.min(...rows.map(r => r.first_time)), t1 = Math.max(...rows.map(r => r.last_time));
  if (t1 - t0 < 60) { const mid = (t0 + t1) / 2; t0 = mid - 30; t1 = mid + 30; }
  const pad = (t1 - t0) * 0.04;
  t0 -= pad; t1 += pad;
  const pct = t => `${((t - t0) / (t1 - t0)) * 100}%`;
  const n = 6, ticks = [];
  for (let i = 0; i <= n; i++) {
    const s = SE.el("span", { text: SE.fmt(t0 + (t1 - t0) * i / n, t1 - t0 > 86400) });
    s.style.left = `${i / n * 100}%`;
    ticks.push(s);
  }
  axis.replaceChildren(...ticks);
  const byCam = new Map();
  for (const r of rows) {
    if (!byCam.has(r.camera_id)) byCam.set(r.camera_id, []);
    byCam.get(r.camera_id).push(r);
  }
  box.replaceChildren(...[...byCam].map(([cam, list]) => {
    const track = SE.el("div", { class: "s-track", "data-camera": cam });
    for (const r of list) {
      const img = SE.el("img", { src: r.crop_url || "/favicon.svg", alt: describe(r), "data-sighting": r.sighting_id,
                                 title: `${r.camera_name} · ${SE.fmt(r.first_time)} · ${describe(r)}` });
      img.style.left = pct(r.first_time);
      img.addEventListener("click", () => {
        const el = document.querySelector(`.s-hit[data-sighting="${CSS.escape(r.sighting_id)}"]`);
        document.querySelectorAll(".s-hit.here").forEach(x => x.classList.remove("here"));
        if (el) { el.classList.add("here"); el.scrollIntoView({ block: "nearest" }); }
      });
      track.append(img);
    }
    return SE.el("div", { class: "s-row" }, SE.el("span", { class: "s-row-name", text: list[0].camera_name, title: cam }), track);
  }));
}

function card(s) {
  const actions = SE.el("div", { class: "s-actions" },
    SE.el("a", { class: "s-open", href: clipHref(s), text: SE.t("search.open_clip") }),
    SE.el("a", { class: "s-export", href: exportHref(s), text: SE.t("search.export") }));
  const add = SE.el("button", { type: "button", class: "s-add", text: SE.t("search.add_to_case") });
  add.addEventListener("click", () => addToCase(s).catch(showError));
  actions.append(add);
  if (s.plate) {
    const path = SE.el("button", { type: "button", class: "s-path-btn", text: SE.t("search.path") });
    path.addEventListener("click", () => showPath(s.plate).catch(showError));
    actions.append(path);
  }
  return SE.el("li", { class: "s-hit", "data-sighting": s.sighting_id, "data-camera": s.camera_id, "data-label": s.label,
                       "data-first": String(s.first_time) },
    SE.el("img", { src: s.crop_url || "/favicon.svg", alt: describe(s) }),
    SE.el("div", {}, SE.el("b", { class: "s-cam", text: s.camera_name }), " ", SE.el("span", { class: "s-time", text: SE.fmt(s.first_time) })),
    SE.el("div", { class: "s-what", text: describe(s) }),
    s.plate_text ? SE.el("div", { class: "s-plate", text: `${s.plate_text} (${Math.round((s.plate_confidence || 0) * 100)}%)` }) : null,
    SE.el("div", { class: "sub", text: `${SE.duration(s.last_time - s.first_time)} · ${SE.t(`search.dir.${s.direction}`)}` }),
    actions);
}

// the path in the form's time range (when it reads); its map link carries the plate and the range shown
async function showPath(plate) {
  const q = new URLSearchParams({ plate });
  for (const [id, name] of [["s-from", "start"], ["s-to", "end"]]) {
    const t = parseLocal(document.getElementById(id).value);
    if (t !== null && !Number.isNaN(t)) q.set(name, String(t));
  }
  const res = await SE.api(`/api/sightings/path?${q}`);
  const rows = res.sightings, map = new URLSearchParams(q);
  if (rows.length && !map.has("start")) map.set("start", String(Math.floor(Math.min(...rows.map(s => s.first_time)))));
  if (rows.length && !map.has("end")) map.set("end", String(Math.ceil(Math.max(...rows.map(s => s.last_time)))));
  document.getElementById("s-path-map").href = `/map?${map}`;
  const sec = document.getElementById("s-path");
  sec.hidden = false;
  document.getElementById("s-path-plate").textContent = res.sightings.length ? res.sightings[0].plate_text || plate : plate;
  document.getElementById("s-path-list").replaceChildren(...res.sightings.map(s => SE.el("li", { "data-camera": s.camera_id, "data-sighting": s.sighting_id },
    s.crop_url ? SE.el("img", { src: s.crop_url, alt: "" }) : null,
    SE.el("a", { href: clipHref(s), text: `${SE.fmt(s.first_time)} · ${s.camera_name}` }))));
  sec.scrollIntoView({ block: "nearest" });
}

async function addToCase(s) {
  const input = document.getElementById("s-case");
  const name = input.value.trim();
  const status = document.getElementById("s-case-status");
  if (!name) { status.textContent = SE.t("search.case_needed"); input.focus(); return; }
  await SE.api(`/api/sightings/${encodeURIComponent(s.sighting_id)}/case`, { method: "POST", body: { name } });
  status.textContent = SE.t("search.case_added", { name, camera: s.camera_name, time: SE.fmt(s.first_time) });
  await loadCases();
}

async function loadCases() {
  const list = await SE.api("/api/cases");
  const mine = list.filter(c => c.created_by === SE.me.user.username);
  document.getElementById("s-case-list").replaceChildren(...mine.map(c => SE.el("li", { "data-case": c.name },
    SE.el("b", { text: c.name }), " ",
    SE.el("span", { class: "sub", text: SE.t("search.case_counts", { s: (c.sightings || []).length, a: c.alerts.length, e: c.exports.length }) }),
    SE.el("ul", {}, ...(c.sightings || []).map(id => SE.el("li", { class: "s-case-sighting", "data-sighting": id, text: id }))))));
}

async function searchPage() {
  await SE.start();
  await catalogue();
  SS.cameras = (await SE.api("/api/live/cameras")).cameras;
  fillForm();
  const p = new URLSearchParams(location.search);
  if (p.get("plate")) {
    document.getElementById("s-plate").value = p.get("plate");
    if (p.get("match")) document.getElementById("s-match").value = p.get("match");
  }
  document.getElementById("s-form").addEventListener("submit", ev => { ev.preventDefault(); runSearch(); });
  await loadCases();
  if (p.get("plate")) await runSearch();
}

// ------------------------------------------------------------------ the clip of one sighting

async function clipPage() {
  await SE.start();
  await catalogue();
  const p = new URLSearchParams(location.search);
  const id = p.get("id") || "";
  let info;
  try {
    info = await SE.api(`/api/sightings/${encodeURIComponent(id)}/clip`);
  } catch (e) {
    showError(e);
    return;
  }
  SS.clip = info;
  const s = info.sighting;
  const at = p.get("t") !== null && Number.isFinite(parseFloat(p.get("t"))) ? parseFloat(p.get("t")) : s.first_time;
  SS.at = at;
  document.getElementById("c-title").textContent = `${s.camera_name} · ${SE.fmt(at)}`;
  document.getElementById("c-at").textContent = SE.t("search.clip_at", { time: SE.fmt(at), from: SE.fmt(info.clip_start, false), to: SE.fmt(info.clip_end, false) });
  if (info.gaps.length) {
    document.getElementById("c-gaps").textContent = SE.t("search.clip_gaps", {
      list: info.gaps.map(g => `${SE.fmt(g.start, false)}–${SE.fmt(g.end, false)}`).join("; ") });
  }
  document.getElementById("c-what").textContent = describe(s) + (s.plate_text ? ` · ${s.plate_text}` : "");
  if (s.crop_url) document.getElementById("c-crop").src = s.crop_url;
  document.getElementById("c-export").href = exportHref(s);
  const video = document.getElementById("c-video");
  const seek = () => { video.currentTime = Math.max(0, Math.min(at - info.clip_start, info.duration || 1e9)); };
  video.addEventListener("loadedmetadata", seek, { once: true });
  video.src = info.url;
}

if (document.body.dataset.page === "search-clip") clipPage().catch(showError);
else searchPage().catch(showError);
