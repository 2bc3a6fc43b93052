// Reports: per cell over a shift, day, week or quarter: alerts and incidents (the room's items), outcomes per
// label, times as median / 90th percentile (per incident), rules by the name operators read; CSV download.
// Strings of its own come from i18n/history-filters.<locale>.json (elements marked data-hi18n).
"use strict";
const dur = s => (s === null || s === undefined ? "–" : SE.duration(s));
const pct = x => (x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`);
const timing = m => (m.n ? `${dur(m.median_s)} / ${dur(m.p90_s)}` : "–");

async function catalogue() {
  const res = await fetch(`/static/i18n/history-filters.${SE.locale}.json`);
  if (res.ok) Object.assign(SE.messages, await res.json());
  document.querySelectorAll("[data-hi18n]").forEach(el => { el.textContent = SE.t(el.dataset.hi18n); });
  document.querySelectorAll("[data-hi18n-title]").forEach(el => { el.title = SE.t(el.dataset.hi18nTitle); });
}

function params() {
  const end = Date.now() / 1000;
  const p = new URLSearchParams({ start: String(end - Number(document.getElementById("r-period").value) * 3600),
                                  end: String(end) });
  const cell = document.getElementById("r-cell").value;
  if (cell) p.set("cell", cell);
  return p.toString();
}

// each outcome with its own label and colour, as in the room (style.css .outcome[data-class])
const outcomes = o => Object.entries(o || {}).map(([k, n]) =>
  SE.el("span", { class: "outcome", "data-class": k, text: `${SE.t(`class.${k}`)} ${n}` }));
const ruleText = r => SE.ruleName({ name: r.rule_name, kind: r.kind });

async function show() {
  const q = params();
  const rep = await SE.api(`/api/reports?${q}`);
  document.getElementById("r-csv").href = `/api/reports.csv?${q}`;
  document.getElementById("r-range").textContent = SE.t("hf.range", { from: SE.fmt(rep.start), to: SE.fmt(rep.end),
                                                                      n: rep.total, m: rep.incidents });
  document.querySelector("#r-cells tbody").replaceChildren(...rep.cells.map(c => SE.el("tr", { "data-cell": c.cell },
    SE.el("td", { text: c.name }), SE.el("td", { class: "total", text: String(c.total) }),
    SE.el("td", { class: "incidents", text: String(c.incidents) }),
    SE.el("td", { text: Object.entries(c.by_kind).map(([k, n]) => `${SE.t(`kind.${k}`)} ${n}`).join(SE.t("list.sep")) }),
    SE.el("td", { text: timing(c.acknowledge) }), SE.el("td", { text: timing(c.sign_for) }),
    SE.el("td", { text: timing(c.arrive) }), SE.el("td", { text: timing(c.resolve) }),
    SE.el("td", { text: pct(c.false_alarm_share) }), SE.el("td", { class: "outcomes" }, ...outcomes(c.incident_outcomes)))));
  const rank = (id, list) => document.getElementById(id).replaceChildren(...list.map(r =>
    SE.el("li", { "data-cell": r.cell, text: `${r.name}: ${dur(r.median_s)} / ${dur(r.p90_s)}` })));
  rank("r-rank-sign", rep.rank_sign_for);
  rank("r-rank-feedback", rep.rank_feedback);
  document.querySelector("#r-by-rule tbody").replaceChildren(...rep.by_rule.map(r =>
    SE.el("tr", { "data-camera": r.camera, "data-rule": r.rule },
      SE.el("td", { text: r.name }), SE.el("td", { class: "rule", text: ruleText(r) }),
      SE.el("td", { class: "alerts", text: String(r.alerts) }), SE.el("td", { class: "incidents", text: String(r.incidents) }),
      SE.el("td", { class: "outcomes" }, ...outcomes(r.incident_outcomes)))));
  document.querySelector("#r-fa-camera tbody").replaceChildren(...rep.false_alarms_by_camera.map(r => SE.el("tr", {},
    SE.el("td", { text: r.name }), SE.el("td", { text: String(r.closed) }), SE.el("td", { text: String(r.false_alarms) }),
    SE.el("td", { text: pct(r.share) }))));
  document.querySelector("#r-fa-rule tbody").replaceChildren(...rep.false_alarms_by_rule.map(r => SE.el("tr", { "data-rule": r.rule },
    SE.el("td", { text: r.name }), SE.el("td", { class: "rule", text: ruleText(r) }), SE.el("td", { text: String(r.closed) }),
    SE.el("td", { text: String(r.false_alarms) }), SE.el("td", { text: pct(r.share) }))));
}

SE.start().then(async () => {
  await catalogue();
  const sel = document.getElementById("r-cell");
  for (const [id, c] of Object.entries(SE.me.cells)) sel.append(SE.el("option", { value: id, text: c.name }));
  document.getElementById("range").addEventListener("submit", ev => { ev.preventDefault(); show().catch(console.error); });
  show().catch(console.error);
}).catch(console.error);
