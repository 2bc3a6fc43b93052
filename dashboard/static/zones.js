// Zone and line editor (engineers): a camera's zones, tripwires and masks drawn on its picture, in the
// config's relative coordinates (0-1, origin top-left). Corners are dragged, added (the small dots between
// corners) and removed (right click, or Delete); whole shapes are dragged by their inside. The page checks
// what the config schema checks (at least 3 points, edges that do not cross, an area, a line of some
// length, names) before it saves; the server then runs `sharpeye check` on the whole file and answers the
// FILE:LINE problems, which are listed here. The camera is in the URL hash (#camera=lobby).
"use strict";

const COLOURS = { zone: "#58a6ff", line: "#d29922", mask: "#f85149", motion: "#a371f7" };
const HIT_PX = 9;
const Z = {
  cams: [], camera: null, version: null, file: "", rules: [], loaded: null,
  shapes: [], sel: -1, vsel: -1, drawing: null, drag: null, img: null, dirty: false, errors: [],
  previewOn: false, preview: null, matches: null, previewTimer: null, previewCount: 0,
};
window.__zones = Z; // the browser test reads the state from here

// ------------------------------------------------------------------------------------------ geometry

const round = v => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;

function orient(a, b, c) { return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]); }
function segmentsCross(p1, p2, p3, p4) {
  return orient(p3, p4, p1) * orient(p3, p4, p2) < 0 && orient(p1, p2, p3) * orient(p1, p2, p4) < 0;
}
// the same test as pipeline/config/schema.py polygon_self_intersects: non-adjacent edges that cross
function selfIntersects(pts) {
  const n = pts.length;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (j === i + 1 || (i === 0 && j === n - 1)) continue;
      if (segmentsCross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n])) return true;
    }
  }
  return false;
}
function area(pts) {
  let s = 0;
  for (let i = 0; i < pts.length; i++) {
    const a = pts[i], b = pts[(i + 1) % pts.length];
    s += a[0] * b[1] - b[0] * a[1];
  }
  return Math.abs(s) / 2;
}
function inside(pts, p) {
  let c = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const a = pts[i], b = pts[j];
    if ((a[1] > p[1]) !== (b[1] > p[1]) && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0]) c = !c;
  }
  return c;
}
function distToSegment(p, a, b) {
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy || 1e-12;
  const t = Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2));
  return Math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy);
}

// ------------------------------------------------------------------------------------------ checks

function shapeErrors(s, i) {
  const errs = [];
  if (s.kind === "zone" || s.kind === "line") {
    if (!s.name.trim()) errs.push(SE.t("zones.err_name"));
    else if (Z.shapes.some((o, j) => j !== i && o.kind === s.kind && o.name.trim() === s.name.trim()))
      errs.push(SE.t("zones.err_dup"));
  }
  if (s.kind === "line") {
    const [a, b] = s.points;
    if (Math.abs(a[0] - b[0]) < 1e-6 && Math.abs(a[1] - b[1]) < 1e-6) errs.push(SE.t("zones.err_zero"));
  } else if (s.points.length < 3) errs.push(SE.t("zones.err_points"));
  else if (selfIntersects(s.points)) errs.push(SE.t("zones.err_cross"));
  else if (area(s.points) < 1e-6) errs.push(SE.t("zones.err_area"));
  return errs;
}

// rules that name a zone or line the page no longer has: the server refuses those, say so before saving
function ruleWarnings() {
  const have = { zone: new Set(), line: new Set() };
  for (const s of Z.shapes) if (have[s.kind]) have[s.kind].add(s.name.trim());
  const out = [];
  for (const r of Z.rules) {
    if (r.zone && !have.zone.has(r.zone)) out.push(SE.t("zones.warn_rule", { rule: r.id, name: r.zone }));
    if (r.line && !have.line.has(r.line)) out.push(SE.t("zones.warn_rule", { rule: r.id, name: r.line }));
  }
  return out;
}

function check() {
  Z.errors = Z.shapes.map(shapeErrors);
  const bad = Z.errors.some(e => e.length);
  document.getElementById("z-save").disabled = bad || !Z.dirty || Z.drawing !== null;
  document.getElementById("z-warnings").textContent = ruleWarnings().join("\n");
  return !bad;
}

// ------------------------------------------------------------------------------------------ drawing

const canvas = () => document.getElementById("z-canvas");

function fitCanvas() {
  const c = canvas();
  const w = c.clientWidth || 800;
  const ratio = Z.img ? Z.img.naturalHeight / Z.img.naturalWidth : 9 / 16;
  const dpr = window.devicePixelRatio || 1;
  c.style.height = `${Math.round(w * ratio)}px`;
  c.width = Math.round(w * dpr);
  c.height = Math.round(w * ratio * dpr);
  draw();
}

function drawArrow(g, a, b, direction) {
  if (direction === "both") return;
  const mx = (a[0] + b[0]) / 2, my = (a[1] + b[1]) / 2;
  // (-dy, dx) is the right of someone standing at A looking at B (image coordinates, y down), as in rules.py
  let nx = -(b[1] - a[1]), ny = b[0] - a[0];
  const len = Math.hypot(nx, ny) || 1;
  nx /= len; ny /= len;
  if (direction === "right_to_left") { nx = -nx; ny = -ny; }
  const k = 22 * (window.devicePixelRatio || 1), tx = mx + nx * k, ty = my + ny * k, h = k / 3;
  g.beginPath(); g.moveTo(mx, my); g.lineTo(tx, ty); g.stroke();
  g.beginPath(); g.moveTo(tx, ty); g.lineTo(tx - nx * h - ny * h * 0.7, ty - ny * h + nx * h * 0.7);
  g.lineTo(tx - nx * h + ny * h * 0.7, ty - ny * h - nx * h * 0.7); g.closePath(); g.fill();
}

function draw() {
  const c = canvas(), g = c.getContext("2d");
  const W = c.width, H = c.height, dpr = window.devicePixelRatio || 1;
  g.clearRect(0, 0, W, H);
  if (Z.img) g.drawImage(Z.img, 0, 0, W, H);
  else { g.fillStyle = "#2a3440"; g.fillRect(0, 0, W, H); }
  const px = p => [p[0] * W, p[1] * H];
  const shapes = Z.drawing ? [...Z.shapes, Z.drawing] : Z.shapes;
  shapes.forEach((s, i) => {
    const selected = i === Z.sel || s === Z.drawing;
    const bad = Z.errors[i] && Z.errors[i].length;
    const col = bad ? "#ff2d2d" : COLOURS[s.kind];
    const pts = s.points.map(px);
    g.lineWidth = (selected ? 3 : 2) * dpr;
    g.strokeStyle = col; g.fillStyle = col;
    g.setLineDash(s.kind === "motion" ? [6 * dpr, 4 * dpr] : []);
    if (pts.length) {
      g.beginPath(); g.moveTo(...pts[0]);
      for (const p of pts.slice(1)) g.lineTo(...p);
      if (s.kind !== "line" && s !== Z.drawing) g.closePath();
      g.stroke();
      if (s.kind !== "line" && pts.length > 2 && s !== Z.drawing) {
        g.globalAlpha = s.kind === "zone" ? 0.15 : 0.3; g.fill(); g.globalAlpha = 1;
      }
    }
    g.setLineDash([]);
    if (s.kind === "line" && pts.length === 2) {
      drawArrow(g, pts[0], pts[1], s.direction);
      g.font = `${12 * dpr}px system-ui`;
      g.fillText("A", pts[0][0] + 6 * dpr, pts[0][1] - 6 * dpr);
      g.fillText("B", pts[1][0] + 6 * dpr, pts[1][1] - 6 * dpr);
    }
    if (s.name && pts.length) {
      g.font = `${13 * dpr}px system-ui`;
      // a zone's name at its top-left corner; a line's a quarter of the way from A (A and B are marked)
      const x = s.kind === "line" && pts.length === 2 ? pts[0][0] + (pts[1][0] - pts[0][0]) / 4 : Math.min(...pts.map(p => p[0]));
      const y = s.kind === "line" && pts.length === 2 ? pts[0][1] + (pts[1][1] - pts[0][1]) / 4 : Math.min(...pts.map(p => p[1]));
      g.fillStyle = "rgba(15,20,25,.75)";
      const label = s.name, tw = g.measureText(label).width;
      g.fillRect(x, Math.max(0, y - 18 * dpr), tw + 8 * dpr, 16 * dpr);
      g.fillStyle = col; g.fillText(label, x + 4 * dpr, Math.max(12 * dpr, y - 6 * dpr));
    }
    if (selected) {
      pts.forEach((p, k) => {
        g.beginPath(); g.arc(p[0], p[1], (k === Z.vsel && i === Z.sel ? 7 : 5) * dpr, 0, 2 * Math.PI);
        g.fillStyle = k === Z.vsel && i === Z.sel ? "#fff" : col; g.fill();
        g.lineWidth = 1.5 * dpr; g.strokeStyle = "#0f1419"; g.stroke();
      });
      if (s.kind !== "line" && s !== Z.drawing) {
        midpoints(s).forEach(m => {
          const p = px(m);
          g.beginPath(); g.arc(p[0], p[1], 3.5 * dpr, 0, 2 * Math.PI);
          g.fillStyle = "rgba(255,255,255,.7)"; g.fill();
        });
      }
    }
  });
  drawPreview(g, W, H, dpr);
}

function midpoints(s) {
  return s.points.map((p, i) => {
    const q = s.points[(i + 1) % s.points.length];
    return [(p[0] + q[0]) / 2, (p[1] + q[1]) / 2];
  });
}

// ------------------------------------------------------------------------------------------ preview
// Which of the worker's current detections each rule would match, with the shapes as drawn now (saved or
// not). The per-object tests of pipeline/analyse/rules.py, redone here on relative coordinates: object
// masks drop a detection by its anchor (bottom-centre of the box, where a person stands); a rule keeps its
// labels at its min_score (the camera's by default) and min_box; zone rules keep anchors inside the zone
// (even-odd ray casting, as rules.Polygon); a line rule watches anchors beside its segment and says on
// which side they are (a crossing needs two frames). Timing (inertia, dwell, for_s) and schedules cannot be
// judged on one frame: the list says so.
const PREVIEW_MS = 1500;
const SEGMENT_TOLERANCE = 0.02; // rules.py: a crossing point this far past A or B still counts

function anchorOf(box) { return [(box[0] + box[2]) / 2, box[3]]; }

// > 0: right of someone at A looking at B (image coordinates), as rules.Tripwire.signed_distance
function signedDistance(a, b, p) {
  const abx = b[0] - a[0], aby = b[1] - a[1], len = Math.hypot(abx, aby) || 1e-12;
  return (abx * (p[1] - a[1]) - aby * (p[0] - a[0])) / len;
}
function along(a, b, p) {
  const abx = b[0] - a[0], aby = b[1] - a[1], len2 = abx * abx + aby * aby || 1e-12;
  return ((p[0] - a[0]) * abx + (p[1] - a[1]) * aby) / len2;
}

// {rules: [{id, kind, hits: [track ids], notes: [...]}], masked: Set of ids, matched: Set of ids}
function matchRules(preview) {
  const masks = Z.shapes.filter(s => s.kind === "mask" && s.points.length >= 3).map(s => s.points);
  const zones = new Map(Z.shapes.filter(s => s.kind === "zone").map(s => [s.name.trim(), s.points]));
  const lines = new Map(Z.shapes.filter(s => s.kind === "line").map(s => [s.name.trim(), s.points]));
  const masked = new Set(), matched = new Set();
  const objs = [];
  for (const o of preview.objects) {
    const a = anchorOf(o.box);
    if (masks.some(m => inside(m, a))) masked.add(o.id);
    else objs.push({ o, a, w: o.box[2] - o.box[0], h: o.box[3] - o.box[1] });
  }
  const rules = preview.rules.map(r => {
    const cands = objs.filter(c => r.labels.includes(c.o.label) && c.o.score >= r.min_score
      && c.w >= r.min_box[0] && c.h >= r.min_box[1]);
    let hits = cands;
    const notes = [];
    if (r.zone) {
      const poly = zones.get(r.zone);
      hits = poly && poly.length >= 3 ? cands.filter(c => inside(poly, c.a)) : [];
      if (!poly) notes.push(SE.t("zones.preview.no_shape", { name: r.zone }));
    }
    if (r.line) {
      const ln = lines.get(r.line);
      if (!ln) { hits = []; notes.push(SE.t("zones.preview.no_shape", { name: r.line })); }
      else {
        const [a, b] = ln, tol = SEGMENT_TOLERANCE / (Math.hypot(b[0] - a[0], b[1] - a[1]) || 1e-12);
        hits = cands.filter(c => { const u = along(a, b, c.a); return u >= -tol && u <= 1 + tol; });
        for (const c of hits) {
          const d = signedDistance(a, b, c.a);
          const side = Math.abs(d) < (r.debounce || 0) ? "on" : d > 0 ? "right" : "left";
          notes.push(SE.t(`zones.preview.side.${side}`, { id: c.o.id }));
        }
      }
    }
    if (r.kind === "crowding") notes.push(SE.t("zones.preview.count", { n: hits.length, max: r.max_count }));
    if (r.kind === "intrusion" || r.kind === "loitering" || r.kind === "crowding") notes.push(SE.t(`zones.preview.timing.${r.kind}`));
    if (r.scheduled) notes.push(SE.t("zones.preview.scheduled"));
    for (const c of hits) matched.add(c.o.id);
    return { id: r.id, kind: r.kind, hits: hits.map(c => c.o.id), notes };
  });
  return { rules, masked, matched };
}

function renderPreview() {
  const box = document.getElementById("z-preview-box");
  box.hidden = !Z.previewOn;
  if (!Z.previewOn) return;
  const p = Z.preview;
  const note = document.getElementById("z-preview-note");
  if (!p) { note.textContent = SE.t("zones.preview.loading"); return; }
  Z.matches = matchRules(p);
  note.textContent = p.source === "live"
    ? SE.t("zones.preview.seen", { n: p.objects.length, time: SE.fmt((p.received || p.time), false) })
    : SE.t("zones.preview.none");
  document.getElementById("z-matches").replaceChildren(...Z.matches.rules.map(r => {
    const li = SE.el("li", { "data-rule": r.id, "data-hits": String(r.hits.length) },
      SE.el("b", { text: `${r.id}` }), SE.el("span", { class: "dim", text: ` (${r.kind}) ` }),
      SE.el("span", { class: "hits", text: SE.t("zones.preview.hits", { n: r.hits.length,
        ids: r.hits.map(id => `#${id}`).join(" ") }) }));
    for (const n of r.notes) li.append(SE.el("div", { class: "meta", text: n }));
    return li;
  }));
}

function drawPreview(g, W, H, dpr) {
  if (!Z.previewOn || !Z.preview) return;
  const m = Z.matches || { matched: new Set(), masked: new Set() };
  g.font = `${12 * dpr}px system-ui`;
  for (const o of Z.preview.objects) {
    const [x1, y1, x2, y2] = o.box, hit = m.matched.has(o.id), hidden = m.masked.has(o.id);
    const col = hit ? "#3fb950" : hidden ? "#f85149" : "#8b949e";
    g.strokeStyle = col; g.fillStyle = col; g.lineWidth = (hit ? 2.5 : 1.5) * dpr;
    g.setLineDash(hit ? [] : [5 * dpr, 4 * dpr]);
    g.strokeRect(x1 * W, y1 * H, (x2 - x1) * W, (y2 - y1) * H);
    g.setLineDash([]);
    const a = anchorOf(o.box);
    g.beginPath(); g.arc(a[0] * W, a[1] * H, 4 * dpr, 0, 2 * Math.PI); g.fill();
    g.fillText(`#${o.id} ${o.label} ${Number(o.score).toFixed(2)}`, x1 * W + 3 * dpr, Math.max(12 * dpr, y1 * H - 4 * dpr));
  }
}

async function pollPreview() {
  Z.previewTimer = null;
  if (!Z.previewOn) return;
  const id = Z.camera;
  try {
    // the picture of the same moment comes along, so the boxes sit on the picture they were found on
    const p = await SE.api(`/api/zones/${encodeURIComponent(id)}/detections?picture=true`);
    if (p.image) {
      const img = new Image();
      await new Promise(resolve => { img.onload = img.onerror = resolve; img.src = p.image; });
      if (id === Z.camera && Z.previewOn && img.naturalWidth) {
        const resized = !Z.img || Z.img.naturalWidth !== img.naturalWidth || Z.img.naturalHeight !== img.naturalHeight;
        Z.img = img;
        canvas().dataset.picture = "live";
        document.getElementById("z-source").textContent = SE.t("zones.source.live", { time: SE.fmt(p.time) });
        if (resized) fitCanvas();
      }
    }
    if (id === Z.camera && Z.previewOn) { Z.preview = p; Z.previewCount = (Z.previewCount || 0) + 1; }
  } catch (err) {
    document.getElementById("z-preview-note").textContent = SE.errorText(err);
  }
  if (!Z.previewOn) return;
  renderPreview(); draw();
  Z.previewTimer = setTimeout(pollPreview, PREVIEW_MS);
}

function togglePreview() {
  Z.previewOn = !Z.previewOn;
  Z.preview = null; Z.matches = null;
  const b = document.getElementById("z-preview");
  b.setAttribute("aria-pressed", String(Z.previewOn));
  b.classList.toggle("here", Z.previewOn);
  if (Z.previewTimer) { clearTimeout(Z.previewTimer); Z.previewTimer = null; }
  renderPreview(); draw();
  if (Z.previewOn) pollPreview();
}

// ------------------------------------------------------------------------------------------ the list

function kindLabel(kind) { return SE.t(`zones.kind.${kind}`); }

function renderList() {
  const masks = { mask: 0, motion: 0 };
  const usedBy = name => Z.rules.filter(r => r.zone === name || r.line === name).map(r => r.id);
  document.getElementById("z-list").replaceChildren(...Z.shapes.map((s, i) => {
    const li = SE.el("li", { "data-kind": s.kind, "data-index": String(i), class: i === Z.sel ? "selected" : "" });
    li.append(SE.el("span", { class: "kind", text: kindLabel(s.kind) }));
    if (s.kind === "zone" || s.kind === "line") {
      const name = SE.el("input", { type: "text", class: "name", value: s.name, "aria-label": SE.t("zones.name"),
        maxlength: "100" });
      name.addEventListener("input", () => { s.name = name.value; changed(false); });
      li.append(name);
    } else {
      masks[s.kind] += 1;
      li.append(SE.el("span", { text: `#${masks[s.kind]}` }));
    }
    const del = SE.el("button", { type: "button", class: "icon delete", title: SE.t("zones.delete"), text: "✕" });
    del.addEventListener("click", ev => {
      ev.stopPropagation();
      Z.shapes.splice(i, 1); Z.sel = -1; Z.vsel = -1; changed(true);
    });
    li.append(del);
    if (s.kind === "line") {
      const dir = SE.el("select", { class: "direction", "aria-label": SE.t("zones.direction") },
        ...["both", "left_to_right", "right_to_left"].map(v =>
          SE.el("option", { value: v, text: SE.t(`zones.direction.${v}`) })));
      dir.value = s.direction;
      dir.addEventListener("change", () => { s.direction = dir.value; changed(false); });
      li.append(SE.el("span", { class: "meta" }, dir));
    }
    const used = s.kind === "zone" || s.kind === "line" ? usedBy(s.was || s.name) : [];
    li.append(SE.el("span", { class: "meta", text: SE.t("zones.points", { n: s.points.length }) +
      (used.length ? " · " + SE.t("zones.used_by", { rules: used.join(", ") }) : "") }));
    for (const e of Z.errors[i] || []) li.append(SE.el("span", { class: "err", text: e }));
    li.addEventListener("click", () => {  // no rebuild: a click into the name field keeps its focus
      if (Z.sel === i) return;
      Z.sel = i; Z.vsel = -1;
      document.querySelectorAll("#z-list li").forEach((el, k) => el.classList.toggle("selected", k === i));
      document.getElementById("z-delete-point").disabled = true;
      draw();
    });
    return li;
  }));
  document.getElementById("z-delete-point").disabled = !(Z.sel >= 0 && Z.vsel >= 0 && Z.shapes[Z.sel].kind !== "line");
}

function status(state, text) {
  const el = document.getElementById("z-status");
  el.dataset.state = state;
  el.textContent = text || "";
}

// something changed: check it, redraw; `list` rebuilds the list (not while typing a name)
function changed(list) {
  Z.dirty = true;
  check();
  status("dirty", SE.t("zones.status.dirty"));
  if (list) renderList();
  else {
    document.querySelectorAll("#z-list li").forEach((li, i) => {
      li.querySelectorAll(".err").forEach(e => e.remove());
      for (const e of Z.errors[i] || []) li.append(SE.el("span", { class: "err", text: e }));
    });
  }
  renderPreview(); // the preview follows the shapes as drawn
  draw();
}

// ------------------------------------------------------------------------------------------ pointer

function relPoint(ev) {
  const r = canvas().getBoundingClientRect();
  return [round((ev.clientX - r.left) / r.width), round((ev.clientY - r.top) / r.height)];
}

function near(p, q) {
  const r = canvas().getBoundingClientRect();
  return Math.hypot((p[0] - q[0]) * r.width, (p[1] - q[1]) * r.height) <= HIT_PX;
}

function hitVertex(p) {
  const order = Z.sel >= 0 ? [Z.sel, ...Z.shapes.keys()] : [...Z.shapes.keys()];
  for (const i of order) {
    const k = Z.shapes[i].points.findIndex(q => near(p, q));
    if (k >= 0) return [i, k];
  }
  return null;
}

function hitShape(p) {
  const r = canvas().getBoundingClientRect(), tol = HIT_PX / Math.min(r.width, r.height);
  for (let i = Z.shapes.length - 1; i >= 0; i--) {
    const s = Z.shapes[i];
    if (s.kind === "line" ? distToSegment(p, s.points[0], s.points[1]) <= tol : inside(s.points, p)) return i;
  }
  return -1;
}

function onDown(ev) {
  if (ev.button !== 0) return;
  const p = relPoint(ev);
  canvas().focus();
  if (Z.drawing) { addDrawingPoint(p); return; }
  const v = hitVertex(p);
  if (v) {
    [Z.sel, Z.vsel] = v;
    Z.drag = { kind: "vertex" };
  } else if (Z.sel >= 0 && Z.shapes[Z.sel].kind !== "line" &&
             midpoints(Z.shapes[Z.sel]).some(m => near(p, m))) {
    const k = midpoints(Z.shapes[Z.sel]).findIndex(m => near(p, m));
    Z.shapes[Z.sel].points.splice(k + 1, 0, p);
    Z.vsel = k + 1;
    Z.drag = { kind: "vertex" };
    changed(true);
  } else {
    const i = hitShape(p);
    Z.sel = i; Z.vsel = -1;
    Z.drag = i >= 0 ? { kind: "shape", from: p, start: Z.shapes[i].points.map(q => [...q]) } : null;
  }
  canvas().setPointerCapture(ev.pointerId);
  renderList(); draw();
}

function onMove(ev) {
  if (!Z.drag || Z.sel < 0) return;
  const p = relPoint(ev), s = Z.shapes[Z.sel];
  if (Z.drag.kind === "vertex") {
    s.points[Z.vsel] = p;
  } else {
    // the whole shape, kept inside the picture
    let dx = p[0] - Z.drag.from[0], dy = p[1] - Z.drag.from[1];
    const xs = Z.drag.start.map(q => q[0]), ys = Z.drag.start.map(q => q[1]);
    dx = Math.min(Math.max(dx, -Math.min(...xs)), 1 - Math.max(...xs));
    dy = Math.min(Math.max(dy, -Math.min(...ys)), 1 - Math.max(...ys));
    s.points = Z.drag.start.map(q => [round(q[0] + dx), round(q[1] + dy)]);
  }
  Z.drag.moved = true;
  changed(false);
}

function onUp(ev) {
  if (Z.drag && Z.drag.moved) renderList();
  Z.drag = null;
  if (canvas().hasPointerCapture(ev.pointerId)) canvas().releasePointerCapture(ev.pointerId);
}

function deleteVertex() {
  if (Z.sel < 0 || Z.vsel < 0) return;
  const s = Z.shapes[Z.sel];
  if (s.kind === "line") return;
  s.points.splice(Z.vsel, 1);
  Z.vsel = -1;
  changed(true);
}

function onContext(ev) {
  const v = hitVertex(relPoint(ev));
  if (!v || Z.drawing) return;
  ev.preventDefault();
  [Z.sel, Z.vsel] = v;
  deleteVertex();
}

// ------------------------------------------------------------------------------------------ new shapes

function uniqueName(kind) {
  const base = kind === "zone" ? "zone" : "line";
  for (let n = 1; ; n++) if (!Z.shapes.some(s => s.kind === kind && s.name === `${base}${n}`)) return `${base}${n}`;
}

function startDrawing(kind) {
  finishDrawing(false);
  Z.drawing = { kind, name: kind === "zone" || kind === "line" ? uniqueName(kind) : "", was: null, points: [],
                direction: "both" };
  Z.sel = -1; Z.vsel = -1;
  const hint = document.getElementById("z-hint");
  hint.hidden = false;
  hint.textContent = SE.t(kind === "line" ? "zones.drawing_line" : "zones.drawing");
  check(); renderList(); draw();
}

function addDrawingPoint(p) {
  const d = Z.drawing;
  if (d.kind !== "line" && d.points.length >= 3 && near(p, d.points[0])) { finishDrawing(true); return; }
  if (d.points.length && near(p, d.points[d.points.length - 1])) return; // the second click of a double click
  d.points.push(p);
  if (d.kind === "line" && d.points.length === 2) finishDrawing(true);
  else draw();
}

function finishDrawing(keep) {
  const d = Z.drawing;
  if (!d) return;
  Z.drawing = null;
  document.getElementById("z-hint").hidden = true;
  if (keep && d.points.length >= (d.kind === "line" ? 2 : 3)) {
    Z.shapes.push(d);
    Z.sel = Z.shapes.length - 1;
    changed(true);
  } else { check(); draw(); }
}

function onKey(ev) {
  if (ev.target.matches("input, select, textarea")) return;
  if (Z.drawing && ev.key === "Enter") { finishDrawing(true); ev.preventDefault(); }
  else if (Z.drawing && ev.key === "Escape") { finishDrawing(false); ev.preventDefault(); }
  else if (!Z.drawing && (ev.key === "Delete" || ev.key === "Backspace") && Z.vsel >= 0) {
    deleteVertex(); ev.preventDefault();
  }
}

// ------------------------------------------------------------------------------------------ load and save

function fromGeometry(g) {
  const shapes = [];
  for (const z of g.zones) shapes.push({ kind: "zone", name: z.name, was: z.name, points: z.polygon.map(p => [...p]) });
  for (const l of g.lines) shapes.push({ kind: "line", name: l.name, was: l.name, points: [[...l.a], [...l.b]],
                                         direction: l.direction || "both" });
  for (const m of g.masks) shapes.push({ kind: "mask", name: "", was: null, points: m.map(p => [...p]) });
  for (const m of g.motion_masks) shapes.push({ kind: "motion", name: "", was: null, points: m.map(p => [...p]) });
  return shapes;
}

function toBody() {
  const of = kind => Z.shapes.filter(s => s.kind === kind);
  return {
    version: Z.version,
    zones: of("zone").map(s => ({ name: s.name.trim(), was: s.was, polygon: s.points })),
    lines: of("line").map(s => ({ name: s.name.trim(), was: s.was, a: s.points[0], b: s.points[1],
                                  direction: s.direction })),
    masks: of("mask").map(s => s.points),
    motion_masks: of("motion").map(s => s.points),
  };
}

function setProblems(problems, excerpt) {
  document.getElementById("z-problems").replaceChildren(...(problems || []).map(p => {
    const m = /:(\d+):/.exec(p);
    const li = SE.el("li", { text: p });
    if (m && excerpt && excerpt[m[1]] !== undefined) li.append(SE.el("code", { text: `${m[1]} | ${excerpt[m[1]]}` }));
    return li;
  }));
}

function setDiff(diff) {
  document.getElementById("z-diff-box").hidden = !diff;
  document.getElementById("z-diff").textContent = diff || "";
}

async function loadCamera(id) {
  finishDrawing(false);
  canvas().dataset.ready = "false"; // true again once the shapes and the picture are in place
  const g = await SE.api(`/api/zones/${encodeURIComponent(id)}`);
  Z.camera = id; Z.version = g.version; Z.file = g.file; Z.rules = g.rules; Z.loaded = g;
  Z.shapes = fromGeometry(g); Z.sel = -1; Z.vsel = -1; Z.dirty = false;
  setProblems(g.unreadable.length ? [SE.t("zones.unreadable", { names: g.unreadable.join(", ") })] : []);
  setDiff("");
  status("idle", "");
  check(); renderList(); fitCanvas();
  canvas().dataset.camera = id;
  await loadPicture();
  if (id === Z.camera) canvas().dataset.ready = "true";
}

// the picture under the shapes; resolves once it is drawn (or known to be missing)
async function loadPicture() {
  const src = document.getElementById("z-source");
  src.textContent = SE.t("zones.source.loading");
  const id = Z.camera;
  let f;
  try { f = await SE.api(`/api/zones/${encodeURIComponent(id)}/frame`); }
  catch (err) { src.textContent = SE.errorText(err); return; }
  if (id !== Z.camera) return;
  canvas().dataset.picture = f.source;
  if (!f.image) { Z.img = null; src.textContent = SE.t("zones.source.none"); fitCanvas(); return; }
  const img = new Image();
  await new Promise(resolve => {
    img.onload = img.onerror = resolve;
    img.src = f.image;
  });
  if (id !== Z.camera) return;
  Z.img = img.naturalWidth ? img : null;
  src.textContent = SE.t(`zones.source.${f.source}`, { time: SE.fmt(f.time) });
  fitCanvas();
}

async function save() {
  if (!check() || !Z.dirty) return;
  status("saving", SE.t("zones.status.saving"));
  setProblems([]);
  try {
    const r = await SE.api(`/api/zones/${encodeURIComponent(Z.camera)}`, { method: "POST", body: toBody() });
    Z.version = r.version;
    Z.shapes = fromGeometry(r.geometry);
    Z.dirty = false; Z.sel = -1; Z.vsel = -1;
    check(); renderList(); draw();
    setDiff(r.diff);
    status("saved", SE.t(r.changed ? "zones.status.saved" : "zones.status.unchanged", { file: Z.file }));
  } catch (err) {
    if (err.code === "config_invalid") {
      status("invalid", SE.t("zones.status.invalid"));
      setProblems(err.detail.problems, err.detail.excerpt);
    } else if (err.code === "config_changed") {
      status("conflict", SE.t("zones.status.conflict"));
    } else {
      status("error", SE.errorText(err));
      if (err.detail && err.detail.problems) setProblems(err.detail.problems);
    }
    check();
  }
}

function revert() {
  if (!Z.loaded) return;
  loadCamera(Z.camera).catch(err => status("error", SE.errorText(err)));
}

function hashCamera() { return new URLSearchParams(location.hash.slice(1)).get("camera"); }

async function pick(id) {
  if (Z.dirty && !confirm(SE.t("zones.confirm_leave"))) {
    document.getElementById("z-camera").value = Z.camera;
    return;
  }
  history.replaceState(null, "", "#camera=" + encodeURIComponent(id));
  await loadCamera(id);
}

async function init() {
  await SE.start();
  try { // the preview's strings live with the live-view strings
    Object.assign(SE.messages, await (await fetch(`/static/i18n/live.${SE.locale}.json`)).json());
  } catch (err) { console.error(err); }
  document.getElementById("z-preview").textContent = SE.t("zones.preview.button");
  document.getElementById("z-preview-title").textContent = SE.t("zones.preview.title");
  const r = await SE.api("/api/zones");
  Z.cams = r.cameras;
  const sel = document.getElementById("z-camera");
  sel.replaceChildren(...Z.cams.map(c => SE.el("option", { value: c.id, text: `${c.name} (${c.id}) · ${c.grid_cell.name}` })));
  sel.addEventListener("change", () => pick(sel.value).catch(err => status("error", SE.errorText(err))));
  document.querySelectorAll("[data-add]").forEach(b => b.addEventListener("click", () => startDrawing(b.dataset.add)));
  document.getElementById("z-refresh").addEventListener("click", () => {
    canvas().dataset.ready = "false";
    loadPicture().then(() => { canvas().dataset.ready = "true"; });
  });
  document.getElementById("z-preview").addEventListener("click", togglePreview);
  document.getElementById("z-save").addEventListener("click", () => save());
  document.getElementById("z-revert").addEventListener("click", revert);
  document.getElementById("z-delete-point").addEventListener("click", deleteVertex);
  const c = canvas();
  c.addEventListener("pointerdown", onDown);
  c.addEventListener("pointermove", onMove);
  c.addEventListener("pointerup", onUp);
  c.addEventListener("pointercancel", onUp);
  c.addEventListener("dblclick", () => { if (Z.drawing && Z.drawing.kind !== "line") finishDrawing(true); });
  c.addEventListener("contextmenu", onContext);
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", fitCanvas);
  window.addEventListener("beforeunload", ev => { if (Z.dirty) { ev.preventDefault(); ev.returnValue = ""; } });
  if (!Z.cams.length) { status("idle", SE.t("zones.no_cameras")); return; }
  const want = hashCamera();
  const id = Z.cams.some(cam => cam.id === want) ? want : Z.cams[0].id;
  sel.value = id;
  history.replaceState(null, "", "#camera=" + encodeURIComponent(id));
  await loadCamera(id);
}

init().catch(err => { console.error(err); status("error", SE.errorText(err)); });
