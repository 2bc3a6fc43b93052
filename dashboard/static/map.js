// Grid map: cell outlines and cameras from streams.yaml drawn as SVG (no map tiles), open alerts per cell
// live; a click on a cell opens the command room filtered to it.  With ?plate=…[&start=…&end=…&fuzzy=1] it also
// draws that vehicle's path: the stops of /api/sightings/path (the user's cells only) numbered in time order,
// arrows between consecutive stops, each stop's time; stops at cameras without a position are listed beside
// the map.  Strings of the path come from i18n/map-path.<locale>.json (elements marked data-mi18n).
"use strict";
const NS = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };

function draw(m) {
  const svg = document.getElementById("plan");
  const pts = m.cells.flatMap(c => c.outline || []).concat(m.cameras.filter(c => c.position).map(c => c.position));
  const undrawn = m.cells.filter(c => !c.outline).map(c => c.name);
  document.getElementById("m-undrawn").textContent = undrawn.length ? SE.t("map.undrawn", { cells: undrawn.join(SE.t("list.sep")) }) : "";
  if (!pts.length) { pathNodes(m, 1); svg.replaceChildren(); return; } // the path's lists all the same
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const pad = Math.max(x1 - x0, y1 - y0) * 0.05 || 1;
  // plan y grows north, SVG y grows down: flip
  svg.setAttribute("viewBox", `${x0 - pad} ${-(y1 + pad)} ${x1 - x0 + 2 * pad} ${y1 - y0 + 2 * pad}`);
  const unit = (x1 - x0 + 2 * pad) / 100;
  const nodes = [];
  for (const c of m.cells.filter(c => c.outline)) {
    const g = svgEl("g", { class: "cell", "data-cell": c.id, "data-open": String(c.open), "data-new": String(c.new), tabindex: "0" });
    g.append(svgEl("polygon", { points: c.outline.map(p => `${p[0]},${-p[1]}`).join(" "), "stroke-width": String(unit * 0.3) }));
    const cx = c.outline.reduce((s, p) => s + p[0], 0) / c.outline.length;
    const cy = c.outline.reduce((s, p) => s + p[1], 0) / c.outline.length;
    const label = svgEl("text", { x: String(cx), y: String(-cy), "font-size": String(unit * 3), "text-anchor": "middle" });
    label.textContent = `${c.name} (${c.open})`;
    g.append(label);
    const title = svgEl("title", {});
    title.textContent = SE.t("map.cell_tip", { name: c.name, open: c.open, officer: c.officer.name, phone: c.officer.phone });
    g.append(title);
    g.addEventListener("click", () => { location.href = `/?cell=${encodeURIComponent(c.id)}`; });
    nodes.push(g);
  }
  for (const cam of m.cameras.filter(c => c.position)) {
    const dot = svgEl("circle", { class: "camera", "data-camera": cam.id, "data-online": String(cam.online),
      cx: String(cam.position[0]), cy: String(-cam.position[1]), r: String(unit * 1.2) });
    const t = svgEl("title", {});
    t.textContent = `${cam.name} · ${cam.online ? SE.t("camera.online") : SE.t(`cstate.${cam.state}`)}`;
    dot.append(t);
    nodes.push(dot);
  }
  nodes.push(...pathNodes(m, unit));
  svg.replaceChildren(...nodes);
  document.getElementById("m-cells").replaceChildren(...m.cells.map(c => SE.el("li", { "data-cell": c.id },
    SE.el("a", { href: `/?cell=${encodeURIComponent(c.id)}`, text: c.name }),
    SE.el("span", { class: "count", text: String(c.open) }),
    SE.el("span", { class: "sub", text: ` ${SE.t("alert.officer_named", { name: c.officer.name, phone: c.officer.phone })}` }))));
}

// ------------------------------------------------------------------ a vehicle's path

const MP = { stops: null, plate: "" }; // the path, fetched once (each fetch is a search in the audit log)
window.__mapPath = MP; // the browser test reads the path from here

function pathQuery() {
  const p = new URLSearchParams(location.search);
  const plate = (p.get("plate") || "").trim();
  if (!plate) return null;
  const q = new URLSearchParams({ plate });
  for (const k of ["start", "end"]) {
    const v = parseFloat(p.get(k));
    if (Number.isFinite(v)) q.set(k, String(v));
  }
  if (["1", "true"].includes(p.get("fuzzy"))) q.set("fuzzy", "true");
  return q;
}

async function loadPath() {
  const q = pathQuery();
  if (!q) return;
  const res = await fetch(`/static/i18n/map-path.${SE.locale}.json`);
  Object.assign(SE.messages, await res.json());
  document.querySelectorAll("[data-mi18n]").forEach(el => { el.textContent = SE.t(el.dataset.mi18n); });
  MP.plate = q.get("plate");
  const rows = (await SE.api(`/api/sightings/path?${q}`)).sightings;
  if (rows.length && rows[0].plate_text) MP.plate = rows[0].plate_text;
  MP.stops = rows.map((s, i) => ({ n: i + 1, s }));
  document.getElementById("m-path").hidden = false;
  document.getElementById("m-path-title").textContent = SE.t("mappath.title", { plate: MP.plate });
  const from = q.get("start"), to = q.get("end");
  document.getElementById("m-path-span").textContent = rows.length
    ? SE.t("mappath.span", { n: rows.length, from: SE.fmt(rows[0].first_time), to: SE.fmt(rows[rows.length - 1].last_time) })
    : (from || to ? SE.t("mappath.range", { from: from ? SE.fmt(+from) : "…", to: to ? SE.fmt(+to) : "…" }) : "");
  document.getElementById("m-path-none").hidden = rows.length > 0;
  const back = new URLSearchParams({ plate: q.get("plate"), match: q.has("fuzzy") ? "fuzzy" : "exact" });
  document.getElementById("m-path-back").href = `/search?${back}`;
}

const clipHref = s => `/search/clip?id=${encodeURIComponent(s.sighting_id)}&t=${s.first_time.toFixed(2)}`;

// the path's SVG nodes on this map (camera positions as the map has them) and the stops' lists beside it
function pathNodes(m, unit) {
  if (!MP.stops) return [];
  document.getElementById("plan").classList.add("has-path"); // the cells' names step back behind the path
  const pos = new Map(m.cameras.filter(c => c.position).map(c => [c.id, c.position]));
  const onMap = MP.stops.filter(st => pos.has(st.s.camera_id));
  const item = st => SE.el("li", { "data-stop": String(st.n), "data-camera": st.s.camera_id, "data-on-map": String(pos.has(st.s.camera_id)) },
    SE.el("span", { class: "n", text: `${st.n}` }), " ",
    SE.el("a", { href: clipHref(st.s), text: `${SE.fmt(st.s.first_time)} · ${st.s.camera_name}` }),
    pos.has(st.s.camera_id) ? null : SE.el("span", { class: "where sub", text: ` (${SE.t("mappath.not_on_map")})` }));
  document.getElementById("m-path-list").replaceChildren(...MP.stops.map(item));
  const off = MP.stops.filter(st => !pos.has(st.s.camera_id));
  document.getElementById("m-path-off").hidden = off.length === 0;
  document.getElementById("m-path-off-list").replaceChildren(...off.map(st => SE.el("li", { "data-stop": String(st.n), "data-camera": st.s.camera_id,
    text: `${st.n}. ${st.s.camera_name} · ${SE.fmt(st.s.first_time)}` })));

  const r = unit * 2.2, nodes = [];
  const defs = svgEl("defs", {});
  const marker = svgEl("marker", { id: "path-arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "4", markerHeight: "4",
    orient: "auto-start-reverse", markerUnits: "strokeWidth" });
  marker.append(svgEl("path", { d: "M0,0 L10,5 L0,10 z", class: "path-arrow" }));
  defs.append(marker);
  nodes.push(defs);
  // where each stop is drawn: a camera seen more than once gets its later stops set a little apart
  const seen = new Map(), at = new Map();
  for (const st of onMap) {
    const p = pos.get(st.s.camera_id), k = seen.get(st.s.camera_id) || 0;
    seen.set(st.s.camera_id, k + 1);
    at.set(st.n, [p[0] + k * r * 1.6, p[1] - k * r * 1.6]);
  }
  for (let i = 1; i < onMap.length; i++) {
    const a = at.get(onMap[i - 1].n), b = at.get(onMap[i].n);
    const dx = b[0] - a[0], dy = b[1] - a[1], len = Math.hypot(dx, dy);
    if (len <= 2 * r) continue;
    const ux = dx / len, uy = dy / len;
    const gap = onMap[i].n - onMap[i - 1].n > 1; // a stop between them is not on the map
    nodes.push(svgEl("line", { class: gap ? "path-line gap" : "path-line", "data-from": String(onMap[i - 1].n), "data-to": String(onMap[i].n),
      x1: String(a[0] + ux * r), y1: String(-(a[1] + uy * r)), x2: String(b[0] - ux * r * 1.1), y2: String(-(b[1] - uy * r * 1.1)),
      "stroke-width": String(unit * 0.5), "marker-end": "url(#path-arrow)" }));
  }
  for (const st of onMap) {
    const [x, y] = at.get(st.n);
    const g = svgEl("g", { class: "path-stop", "data-stop": String(st.n), "data-camera": st.s.camera_id, "data-time": String(st.s.first_time) });
    g.append(svgEl("circle", { cx: String(x), cy: String(-y), r: String(r), "stroke-width": String(unit * 0.3) }));
    const n = svgEl("text", { class: "n", x: String(x), y: String(-y + unit), "font-size": String(unit * 2.8), "text-anchor": "middle" });
    n.textContent = String(st.n);
    const t = svgEl("text", { class: "t", x: String(x + r * 1.3), y: String(-y - r * 0.2), "font-size": String(unit * 2.4), "stroke-width": String(unit * 0.4) });
    t.textContent = SE.fmt(st.s.first_time, false);
    const tip = svgEl("title", {});
    tip.textContent = `${st.n}. ${st.s.camera_name} · ${SE.fmt(st.s.first_time)}`;
    g.append(n, t, tip);
    g.addEventListener("click", () => { location.href = clipHref(st.s); });
    nodes.push(g);
  }
  return nodes;
}

async function refresh() { draw(await SE.api("/api/map")); }
SE.start().then(async () => {
  try { await loadPath(); } catch (e) {
    const none = document.getElementById("m-path-none");
    document.getElementById("m-path").hidden = false;
    none.textContent = e && e.code ? SE.errorText(e) : String(e);
    none.hidden = false;
  }
  await refresh();
  setInterval(() => refresh().catch(console.error), 2000);
}).catch(console.error);
