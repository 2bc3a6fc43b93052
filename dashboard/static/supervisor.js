// Supervisor view: open incidents (the room's items; the alerts behind them beside) by state and age and per grid
// cell, the overdue ones, each operator's load, and the shelves (屏蔽) of the supervisor's cells: those holding now,
// with a button to lift one early, and those ended in the past week (lifted by whom, or expired). Refreshed every 5 s.
"use strict";

async function loadCatalogues() {
  for (const name of ["supervisor", "shelves"]) {
    const res = await fetch(`/static/i18n/${name}.${SE.locale}.json`);
    if (res.ok) Object.assign(SE.messages, await res.json());
  }
  // the page's own strings are marked data-si18n: common.js's first pass runs before this catalogue is in
  document.querySelectorAll("[data-si18n]").forEach(el => { el.textContent = SE.t(el.dataset.si18n); });
  document.querySelectorAll("[data-si18n-title]").forEach(el => { el.title = SE.t(el.dataset.si18nTitle); });
}

async function refresh() {
  const s = await SE.api("/api/supervisor");
  document.getElementById("s-open").textContent = String(s.open);
  document.getElementById("s-open-alerts").textContent = SE.t("supervisor.open_alerts", { n: s.open_alerts });
  document.querySelector("#s-states tbody").replaceChildren(...Object.entries(s.by_state).map(([state, b]) =>
    SE.el("tr", { "data-state": state }, SE.el("td", { text: SE.t(`state.${state}`) }),
      ...["lt5m", "5to15m", "15to60m", "gt60m"].map(k => SE.el("td", { text: String(b[k]) })))));
  document.querySelector("#s-cells tbody").replaceChildren(...s.by_cell.map(c =>
    SE.el("tr", { "data-cell": c.cell }, SE.el("td", { text: c.name }),
      ...["incidents", "alerts", "unacknowledged", "overdue"].map(k =>
        SE.el("td", { "data-count": k, text: String(c[k]) })))));
  document.querySelector("#s-overdue tbody").replaceChildren(...s.overdue.map(a =>
    SE.el("tr", { "data-alert-id": a.alert_id }, SE.el("td", { text: SE.fmt(a.start_time) }),
      SE.el("td", { text: a.camera.name }), SE.el("td", { text: a.grid_cell.name }),
      SE.el("td", { text: SE.ruleName(a.rule) }), SE.el("td", { text: SE.t(`state.${a.state}`) }),
      SE.el("td", { text: a.owner ? a.owner.name : SE.t("alert.nobody") }), SE.el("td", { text: String(a.alerts) }),
      SE.el("td", { text: String(a.escalation_level) }))));
  document.querySelector("#s-load tbody").replaceChildren(...s.load.map(l =>
    SE.el("tr", { "data-operator": l.operator }, SE.el("td", { text: l.operator }), SE.el("td", { text: String(l.open) }),
      SE.el("td", { text: String(l.closed_this_shift) }))));
}

// ------------------------------------------------------------------ shelves

function shelfRule(s) {
  if (!s.rule_id) return SE.t("shelf.all_rules");
  if (s.rule_name || s.rule_kind) return SE.ruleName({ name: s.rule_name, kind: s.rule_kind });
  return s.rule_id; // a tamper check (tamper:<check>) or a rule removed from the config since
}

function shelfCells(s) {
  return [SE.el("td", { text: s.camera_name }), SE.el("td", { text: shelfRule(s) }), SE.el("td", { text: s.reason }),
          SE.el("td", { text: s.created_by_name }), SE.el("td", { text: SE.fmt(s.created_at) })];
}

async function lift(s) {
  if (await SE.liftShelf(s, document.getElementById("s-shelf-result"))) await refreshShelves();
}

async function refreshShelves() {
  const data = await SE.api(`/api/shelves?history=${SE.me.can.engineer ? 1 : 0}`);
  const active = data.shelves.filter(s => s.active);
  const past = data.shelves.filter(s => !s.active && s.created_at <= data.now); // ended (lifted or expired)
  document.getElementById("s-shelves-count").textContent = String(active.length);
  document.getElementById("s-shelves-none").hidden = active.length > 0;
  document.getElementById("s-shelves-active").hidden = !active.length;
  document.querySelector("#s-shelves-active tbody").replaceChildren(...active.map(s => {
    const act = SE.el("td", {});
    if (data.can_lift) {
      const b = SE.el("button", { type: "button", class: "lift", text: SE.t("shelf.lift") });
      b.addEventListener("click", () => lift(s));
      act.append(b);
    }
    return SE.el("tr", { "data-shelf-id": String(s.id), "data-camera": s.camera_id },
      ...shelfCells(s), SE.el("td", { text: SE.fmt(s.ends_at) }), act);
  }));
  document.getElementById("s-shelves-past-title").textContent =
    SE.t(data.can_lift ? "supervisor.shelves_past_week" : "supervisor.shelves_past_shift");
  document.getElementById("s-shelves-past-none").hidden = past.length > 0;
  document.getElementById("s-shelves-past").hidden = !past.length;
  document.querySelector("#s-shelves-past tbody").replaceChildren(...past.map(s =>
    SE.el("tr", { "data-shelf-id": String(s.id), "data-camera": s.camera_id, "data-ended": s.lifted_at ? "lifted" : "expired" },
      ...shelfCells(s), SE.el("td", { text: SE.fmt(s.ends_at) }),
      SE.el("td", { text: s.lifted_at ? SE.t("supervisor.lifted_by", { name: s.lifted_by_name || s.lifted_by || "" }) : SE.t("supervisor.expired") }))));
}

async function tick() {
  await Promise.all([refresh().catch(console.error), refreshShelves().catch(console.error)]);
}

SE.start().then(async () => {
  await loadCatalogues();
  await tick();
  document.body.dataset.loaded = "true";
  setInterval(tick, 5000);
}).catch(console.error);
