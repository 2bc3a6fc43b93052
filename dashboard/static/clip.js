// The clip inside an alert: the recording from the pre-roll to the alert's end (stream copy, served with
// byte ranges so it seeks), the best snapshot with the track's path, the camera's other alerts of the
// same minutes and the cameras around it.
"use strict";

const CLIP = { info: null, openedAt: performance.now(), readyMs: null };
window.__clip = CLIP; // the browser tests read the figures from here

function drawPath(info) {
  const img = document.getElementById("c-snap"), canvas = document.getElementById("c-path");
  const snap = info.snapshot;
  if (!snap) return;
  img.onload = () => {
    canvas.width = img.clientWidth;
    canvas.height = img.clientHeight;
    const sx = img.clientWidth / (snap.width || img.naturalWidth), sy = img.clientHeight / (snap.height || img.naturalHeight);
    const g = canvas.getContext("2d");
    const byTrack = {};
    for (const p of info.track) if (p.box) (byTrack[p.track_id] = byTrack[p.track_id] || []).push(p.box);
    g.lineWidth = 2;
    for (const boxes of Object.values(byTrack)) {
      g.strokeStyle = "#ff3b30";
      g.beginPath();
      boxes.forEach((b, i) => { const x = (b[0] + b[2]) / 2 * sx, y = b[3] * sy; i ? g.lineTo(x, y) : g.moveTo(x, y); });
      g.stroke();
      const last = boxes[boxes.length - 1];
      g.strokeRect(last[0] * sx, last[1] * sy, (last[2] - last[0]) * sx, (last[3] - last[1]) * sy);
    }
  };
  img.src = "/" + snap.path.split("/").map(encodeURIComponent).join("/");
}

async function others(info) {
  const from = info.alert_start - 600, to = info.alert_start + 600;
  const mine = await SE.api(`/api/history?camera=${encodeURIComponent(info.camera.id)}&start=${from}&end=${to}&limit=20`);
  document.getElementById("c-others").replaceChildren(...mine.alerts.filter(a => a.alert_id !== info.alert_id).map(a =>
    SE.el("li", {}, SE.el("a", { href: `/clip/${encodeURIComponent(a.alert_id)}`, text: `${SE.fmt(a.start_time)} · ${a.labels.map(l => SE.messages[`label.${l}`] ? SE.t(`label.${l}`) : l).join(SE.t("list.sep"))} · ${SE.ruleName(a.rule)}` }))));
  const cams = await SE.api("/api/live/cameras");
  const me = cams.cameras.find(c => c.id === info.camera.id);
  const near = cams.cameras.filter(c => me && c.id !== me.id && c.grid_cell.id === me.grid_cell.id);
  const items = [];
  for (const c of near) {
    const res = await SE.api(`/api/history?camera=${encodeURIComponent(c.id)}&start=${from}&end=${to}&limit=5`);
    items.push(SE.el("li", {}, SE.el("a", { href: `/wall#layout=1&cams=${encodeURIComponent(c.id)}`, text: `${c.name} (${SE.t("clip.open_wall")})` }),
      ...res.alerts.map(a => SE.el("a", { href: `/clip/${encodeURIComponent(a.alert_id)}`, text: ` · ${SE.fmt(a.start_time, false)}` }))));
  }
  document.getElementById("c-neighbours").replaceChildren(...items);
}

SE.start().then(async () => {
  await loadLiveI18n();
  const id = decodeURIComponent(location.pathname.split("/").pop());
  let info;
  try {
    info = await SE.api(`/api/clips/${encodeURIComponent(id)}`);
  } catch (e) {
    document.getElementById("c-none").hidden = false;
    return;
  }
  CLIP.info = info;
  document.getElementById("c-title").textContent = `${info.camera.name} · ${SE.fmt(info.alert_start)}`;
  document.getElementById("c-preroll").textContent = SE.t("clip.preroll", { s: info.alert_offset.toFixed(1) });
  if (info.gaps.length) {
    document.getElementById("c-gaps").textContent = SE.t("clip.gaps", {
      list: info.gaps.map(g => `${SE.fmt(g.start, false)}–${SE.fmt(g.end, false)} (${g.reason})`).join("; ") });
  }
  const video = document.getElementById("c-video");
  video.addEventListener("canplay", () => { if (CLIP.readyMs === null) CLIP.readyMs = performance.now() - CLIP.openedAt; }, { once: true });
  video.src = info.url;
  video.play().catch(() => {});
  drawPath(info);
  others(info).catch(console.error);
}).catch(console.error);
