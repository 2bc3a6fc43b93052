// Grid map: cell outlines and cameras from streams.yaml drawn as SVG (no map tiles), open alerts per cell
// live; a click on a cell opens the command room filtered to it.
"use strict";
const NS = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };

function draw(m) {
  const svg = document.getElementById("plan");
  const pts = m.cells.flatMap(c => c.outline || []).concat(m.cameras.filter(c => c.position).map(c => c.position));
  const undrawn = m.cells.filter(c => !c.outline).map(c => c.name);
  document.getElementById("m-undrawn").textContent = undrawn.length ? SE.t("map.undrawn", { cells: undrawn.join(SE.t("list.sep")) }) : "";
  if (!pts.length) { svg.replaceChildren(); return; }
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
  svg.replaceChildren(...nodes);
  document.getElementById("m-cells").replaceChildren(...m.cells.map(c => SE.el("li", { "data-cell": c.id },
    SE.el("a", { href: `/?cell=${encodeURIComponent(c.id)}`, text: c.name }),
    SE.el("span", { class: "count", text: String(c.open) }),
    SE.el("span", { class: "sub", text: ` ${SE.t("alert.officer_named", { name: c.officer.name, phone: c.officer.phone })}` }))));
}

async function refresh() { draw(await SE.api("/api/map")); }
SE.start().then(() => { refresh(); setInterval(() => refresh().catch(console.error), 2000); }).catch(console.error);
