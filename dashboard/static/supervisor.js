// Supervisor view: open alerts by state and age, overdue ones, each operator's load; refreshed every 5 s.
"use strict";
async function refresh() {
  const s = await SE.api("/api/supervisor");
  document.getElementById("s-open").textContent = String(s.open);
  document.querySelector("#s-states tbody").replaceChildren(...Object.entries(s.by_state).map(([state, b]) =>
    SE.el("tr", { "data-state": state }, SE.el("td", { text: SE.t(`state.${state}`) }),
      ...["lt5m", "5to15m", "15to60m", "gt60m"].map(k => SE.el("td", { text: String(b[k]) })))));
  document.querySelector("#s-overdue tbody").replaceChildren(...s.overdue.map(a =>
    SE.el("tr", { "data-alert-id": a.alert_id }, SE.el("td", { text: SE.fmt(a.start_time) }),
      SE.el("td", { text: a.camera.name }), SE.el("td", { text: a.grid_cell.name }),
      SE.el("td", { text: SE.ruleName(a.rule) }), SE.el("td", { text: SE.t(`state.${a.state}`) }),
      SE.el("td", { text: a.owner ? a.owner.name : SE.t("alert.nobody") }), SE.el("td", { text: String(a.escalation_level) }))));
  document.querySelector("#s-load tbody").replaceChildren(...s.load.map(l =>
    SE.el("tr", { "data-operator": l.operator }, SE.el("td", { text: l.operator }), SE.el("td", { text: String(l.open) }),
      SE.el("td", { text: String(l.closed_this_shift) }))));
}
SE.start().then(() => { refresh(); setInterval(() => refresh().catch(console.error), 5000); }).catch(console.error);
