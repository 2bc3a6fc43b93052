// Camera timeline: what each camera recorded in a window (ranges, gaps with their reasons, what exports hold,
// alerts), a range selected by dragging across a bar, the cameras ticked, exported with progress.
"use strict";
const TL = { data: null, sel: null, drag: null };

function frac(t) { return (t - TL.data.start) / (TL.data.end - TL.data.start); }
function pct(t) { return `${Math.max(0, Math.min(100, frac(t) * 100))}%`; }

function place(el, start, end) {
  el.style.left = pct(start);
  el.style.width = `${Math.max(0.15, (Math.min(end, TL.data.end) - Math.max(start, TL.data.start)) / (TL.data.end - TL.data.start) * 100)}%`;
  return el;
}

function params() {
  const q = new URLSearchParams(location.search);
  return { start: q.get("start"), end: q.get("end"), cameras: q.getAll("camera") };
}

function showError(e) {
  const el = document.getElementById("tl-error");
  el.textContent = e && e.code ? SE.errorText(e) : String(e);
  el.hidden = false;
}

async function load() {
  document.getElementById("tl-error").hidden = true;
  const q = new URLSearchParams({ start: document.getElementById("tl-from").value.trim(),
                                  end: document.getElementById("tl-to").value.trim() });
  for (const c of params().cameras) q.append("camera", c);
  const ticked = new Set([...document.querySelectorAll(".tl-pick:checked")].map(b => b.value));
  try {
    TL.data = await SE.api(`/api/timeline?${q}`);
  } catch (e) { showError(e); return; }
  drawAxis();
  document.getElementById("tl-rows").replaceChildren(...TL.data.cameras.map(c => row(c, ticked.has(c.id))));
  drawSelection();
}

function drawAxis() {
  const axis = document.getElementById("tl-axis");
  const n = 6, span = TL.data.end - TL.data.start;
  const ticks = [];
  for (let i = 0; i <= n; i++) {
    const t = TL.data.start + span * i / n;
    const s = SE.el("span", { text: SE.fmt(t, span > 86400 ? true : false) });
    s.style.left = `${i / n * 100}%`;
    ticks.push(s);
  }
  axis.replaceChildren(...ticks);
}

function row(cam, ticked) {
  const pick = SE.el("input", { type: "checkbox", class: "tl-pick", value: cam.id, "aria-label": cam.name });
  pick.checked = ticked;
  const track = SE.el("div", { class: "tl-track", "data-camera": cam.id });
  for (const [s, e] of cam.ranges) track.append(place(SE.el("div", { class: "tl-rec", "data-start": s, "data-end": e }), s, e));
  for (const g of cam.gaps) {
    track.append(place(SE.el("div", { class: "tl-gap", title: SE.t("export.gap", { reason: SEX.note(g.reason) }) + ` (${SEX.range(g.start, g.end)})`,
                                      "data-reason": g.reason }), g.start, g.end));
  }
  for (const [s, e] of cam.held) track.append(place(SE.el("div", { class: "tl-held" }), s, e));
  for (const a of TL.data.alerts.filter(x => x.camera === cam.id)) {
    const m = SE.el("div", { class: "tl-alert", "data-alert-id": a.alert_id, "data-severity": a.severity,
                             title: `${SE.messages[`kind.${a.kind}`] ? SE.t(`kind.${a.kind}`) : a.kind} · ${SE.fmt(a.start_time)}` });
    m.style.left = pct(a.start_time);
    m.addEventListener("pointerdown", ev => ev.stopPropagation());
    m.addEventListener("click", () => {
      TL.sel = { start: Math.max(TL.data.start, a.start_time - 5), end: Math.min(TL.data.end, (a.end_time || a.start_time + 10) + 5) };
      pick.checked = true;
      drawSelection();
    });
    track.append(m);
  }
  track.append(SE.el("div", { class: "tl-sel", hidden: "" }));
  track.addEventListener("pointerdown", ev => {
    const t = timeAt(track, ev.clientX);
    TL.drag = { track, from: t };
    TL.sel = { start: t, end: t };
    pick.checked = true;
    track.setPointerCapture(ev.pointerId);
    drawSelection();
  });
  track.addEventListener("pointermove", ev => {
    if (!TL.drag || TL.drag.track !== track) return;
    const t = timeAt(track, ev.clientX);
    TL.sel = { start: Math.min(TL.drag.from, t), end: Math.max(TL.drag.from, t) };
    drawSelection();
  });
  track.addEventListener("pointerup", () => { TL.drag = null; drawSelection(); });
  return SE.el("div", { class: "tl-row", "data-camera": cam.id },
    SE.el("label", { class: "tl-label", title: cam.id }, pick, SE.el("span", { text: cam.name })), track);
}

function timeAt(track, clientX) {
  const r = track.getBoundingClientRect();
  const f = Math.max(0, Math.min(1, (clientX - r.left) / r.width));
  return TL.data.start + f * (TL.data.end - TL.data.start);
}

function drawSelection() {
  const has = TL.sel && TL.sel.end - TL.sel.start >= 1;
  document.querySelectorAll(".tl-sel").forEach(el => {
    el.hidden = !has;
    if (has) place(el, TL.sel.start, TL.sel.end);
  });
  const txt = document.getElementById("tl-selected");
  txt.textContent = has ? SE.t("export.selected", { from: SE.fmt(TL.sel.start), to: SE.fmt(TL.sel.end, false),
                                                    dur: SE.duration(TL.sel.end - TL.sel.start) })
    : SE.t("export.selection_none");
  txt.dataset.start = has ? TL.sel.start : "";
  txt.dataset.end = has ? TL.sel.end : "";
}

async function exportSelection() {
  const box = document.getElementById("tl-status");
  const cameras = [...document.querySelectorAll(".tl-pick:checked")].map(b => b.value);
  if (!TL.sel || TL.sel.end - TL.sel.start < 1 || !cameras.length) {
    SEX.failed(box, { code: "need_selection" });
    box.replaceChildren(SE.el("span", { class: "error", text: SE.t("export.need_selection") }));
    return;
  }
  const btn = document.getElementById("tl-export");
  btn.disabled = true;
  try {
    const job = await SEX.start({ cameras, start: TL.sel.start, end: TL.sel.end,
                                  case: document.getElementById("tl-case").value.trim() || null,
                                  precise: document.getElementById("tl-precise").checked });
    await SEX.follow(job, j => SEX.render(box, j));
    load();  // the new export's hold shows on the bars
  } catch (e) { SEX.failed(box, e); } finally { btn.disabled = false; }
}

async function main() {
  await SE.start();
  await SEX.catalogue();
  const p = params();
  const now = Date.now() / 1000;
  const asTime = (v, dflt) => (v === null ? SE.fmt(dflt) : /^\d+(\.\d+)?$/.test(v) ? SE.fmt(parseFloat(v)) : v);
  document.getElementById("tl-from").value = asTime(p.start, now - 3600);
  document.getElementById("tl-to").value = asTime(p.end, now);
  document.getElementById("tl-form").addEventListener("submit", ev => { ev.preventDefault(); load(); });
  document.getElementById("tl-export").addEventListener("click", exportSelection);
  await load();
}
main().catch(showError);
