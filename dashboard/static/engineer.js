// Engineer page: each camera of the user's cells with its configuration and live counters.
"use strict";
async function refresh() {
  const cams = await SE.api("/api/health");
  const num = v => (v === null || v === undefined ? "–" : (typeof v === "number" ? v.toFixed(1) : v));
  document.querySelector("#health tbody").replaceChildren(...cams.map(c => {
    const st = c.status || {};
    return SE.el("tr", { "data-camera": c.id, "data-online": String(c.online) },
      SE.el("td", { text: `${c.name} (${c.id})` }), SE.el("td", { text: c.grid_cell.name }),
      SE.el("td", { text: SE.t(`cstate.${c.state}`) }), SE.el("td", { text: c.source }),
      SE.el("td", { text: num(st.detected_fps) }), SE.el("td", { text: num(st.inference_ms_p50) }),
      SE.el("td", { text: num(st.reconnects) }), SE.el("td", { text: c.rules.join(", ") }),
      SE.el("td", { text: st.last_error || "" }));
  }));
}
SE.start().then(() => { refresh(); setInterval(refresh, 5000); }).catch(console.error);
