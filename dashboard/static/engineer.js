// Engineer page: each camera of the user's cells with its configuration, live counters and owner worker.
"use strict";
async function refresh() {
  const cams = await SE.api("/api/health");
  const num = v => (v === null || v === undefined ? "–" : (typeof v === "number" ? v.toFixed(1) : v));
  document.querySelector("#health tbody").replaceChildren(...cams.map(c => {
    const st = c.status || {};
    const owner = c.owner ? SE.el("a", { href: `/workers#camera=${encodeURIComponent(c.id)}`,
                                         text: `${c.owner.worker} (${c.owner.token})` }) : null;
    return SE.el("tr", { "data-camera": c.id, "data-online": String(c.online),
                         "data-owner": c.owner ? c.owner.worker : "" },
      SE.el("td", { text: `${c.name} (${c.id})` }), SE.el("td", { text: c.grid_cell.name }),
      SE.el("td", { text: SE.t(`cstate.${c.state}`) }, st.detector === "unavailable"  // recorded, not analysed
        ? SE.el("span", { class: "detector-off", text: SE.t("camera.detector_unavailable") }) : null),
      SE.el("td", { class: "owner" }, owner),
      SE.el("td", { text: c.source }),
      SE.el("td", { text: num(st.detected_fps) }), SE.el("td", { text: num(st.inference_ms_p50) }),
      SE.el("td", { text: num(st.reconnects) }), SE.el("td", { text: c.rules.join(", ") }),
      SE.el("td", { text: st.last_error || (st.detector === "unavailable" ? st.detector_error || "" : "") }));
  }));
}
// the owner column's strings (and the link to the workers page) come from the workers catalogue
async function workersCatalogue() {
  const res = await fetch(`/static/i18n/workers.${SE.locale}.json`);
  Object.assign(SE.messages, await res.json());
  document.querySelectorAll("[data-wi18n]").forEach(el => { el.textContent = SE.t(el.dataset.wi18n); });
}
SE.start().then(async () => { await workersCatalogue(); refresh(); setInterval(refresh, 5000); }).catch(console.error);
