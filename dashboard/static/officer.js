// The dispatched officer's phone page (one-time link, no log-in): report signed for, on scene, feedback.
"use strict";
const token = decodeURIComponent(location.pathname.split("/")[2]);
const NEXT = { sent: "signed_for", signed_for: "on_scene", on_scene: "feedback" };
const AT = { sent: "sent_at", signed_for: "signed_for_at", on_scene: "on_scene_at", feedback: "feedback_at" };
let alert = null;

function show() {
  const a = alert;
  document.getElementById("o-what").textContent = `${SE.t(`kind.${a.rule.kind}`)} · ${a.camera.name}`;
  document.getElementById("o-where").textContent = SE.t("alert.cell_named", { name: a.grid_cell.name });
  document.getElementById("o-when").textContent = SE.fmt(a.start_time);
  document.querySelectorAll("#o-lights .light").forEach(l => {
    const at = a.dispatch[AT[l.dataset.step]];
    l.dataset.on = String(!!at);
    l.querySelector("time").textContent = at ? SE.fmt(at, false) : "";
  });
  const next = a.state === "dispatched" ? NEXT[a.dispatch.step] : undefined;
  const btn = document.getElementById("o-next");
  btn.hidden = !next;
  if (next) { btn.dataset.step = next; btn.textContent = SE.t(`officer.report_${next}`); }
  document.getElementById("o-done").hidden = !!next;
}

async function load(locale) {
  await SE.loadCatalogue(locale);
  SE.applyI18n();
  if (alert) show();
}

(async () => {
  const res = await fetch(`/api/o/${encodeURIComponent(token)}`);
  if (!res.ok) { await load("zh-CN"); document.getElementById("o-error").textContent = SE.t("error.link_invalid"); document.getElementById("o-error").hidden = false; return; }
  alert = await res.json();
  SE.tz = alert.timezone || undefined;
  await load(localStorage.getItem("sharpeye.locale") || "zh-CN");
  if (alert.has_snapshot) { const img = document.getElementById("o-snap"); img.src = `/api/o/${encodeURIComponent(token)}/snapshot`; img.hidden = false; }
  document.querySelectorAll("[data-lang]").forEach(a => a.addEventListener("click", ev => {
    ev.preventDefault(); localStorage.setItem("sharpeye.locale", a.dataset.lang); load(a.dataset.lang);
  }));
  document.getElementById("o-next").addEventListener("click", async ev => {
    const err = document.getElementById("o-error");
    err.hidden = true;
    const r = await fetch(`/api/o/${encodeURIComponent(token)}/steps`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ step: ev.target.dataset.step, note: document.getElementById("o-note").value || null }),
    });
    const data = await r.json();
    if (!r.ok) { const d = data.detail || {}; err.textContent = SE.messages[`error.${d.code}`] ? SE.t(`error.${d.code}`, d) : SE.t("error.error", { code: d.code }); err.hidden = false; return; }
    alert.dispatch = data.dispatch; alert.state = data.state;
    document.getElementById("o-note").value = "";
    show();
  });
})().catch(console.error);
