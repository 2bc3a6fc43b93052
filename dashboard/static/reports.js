// Reports: per cell over a shift, day, week or quarter; times as median / 90th percentile; CSV download.
"use strict";
const dur = s => (s === null || s === undefined ? "–" : SE.duration(s));
const pct = x => (x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`);
const timing = m => (m.n ? `${dur(m.median_s)} / ${dur(m.p90_s)}` : "–");

function params() {
  const end = Date.now() / 1000;
  const p = new URLSearchParams({ start: String(end - Number(document.getElementById("r-period").value) * 3600),
                                  end: String(end) });
  const cell = document.getElementById("r-cell").value;
  if (cell) p.set("cell", cell);
  return p.toString();
}

async function show() {
  const q = params();
  const rep = await SE.api(`/api/reports?${q}`);
  document.getElementById("r-csv").href = `/api/reports.csv?${q}`;
  document.getElementById("r-range").textContent = SE.t("reports.range", { from: SE.fmt(rep.start), to: SE.fmt(rep.end), n: rep.total });
  document.querySelector("#r-cells tbody").replaceChildren(...rep.cells.map(c => SE.el("tr", { "data-cell": c.cell },
    SE.el("td", { text: c.name }), SE.el("td", { class: "total", text: String(c.total) }),
    SE.el("td", { text: Object.entries(c.by_kind).map(([k, n]) => `${SE.t(`kind.${k}`)} ${n}`).join(SE.t("list.sep")) }),
    SE.el("td", { text: timing(c.acknowledge) }), SE.el("td", { text: timing(c.sign_for) }),
    SE.el("td", { text: timing(c.arrive) }), SE.el("td", { text: timing(c.resolve) }),
    SE.el("td", {}, pct(c.false_alarm_share), ...Object.entries(c.by_outcome || {}).map(([k, n]) =>
      SE.el("span", { class: "outcome", "data-class": k, text: `${SE.t(`class.${k}`)} ${n}` }))))));
  const rank = (id, list) => document.getElementById(id).replaceChildren(...list.map(r =>
    SE.el("li", { "data-cell": r.cell, text: `${r.name}: ${dur(r.median_s)} / ${dur(r.p90_s)}` })));
  rank("r-rank-sign", rep.rank_sign_for);
  rank("r-rank-feedback", rep.rank_feedback);
  document.querySelector("#r-fa-camera tbody").replaceChildren(...rep.false_alarms_by_camera.map(r => SE.el("tr", {},
    SE.el("td", { text: r.name }), SE.el("td", { text: String(r.closed) }), SE.el("td", { text: String(r.false_alarms) }),
    SE.el("td", { text: pct(r.share) }))));
  document.querySelector("#r-fa-rule tbody").replaceChildren(...rep.false_alarms_by_rule.map(r => SE.el("tr", {},
    SE.el("td", { text: r.name }), SE.el("td", { text: r.rule }), SE.el("td", { text: String(r.closed) }),
    SE.el("td", { text: String(r.false_alarms) }), SE.el("td", { text: pct(r.share) }))));
}

SE.start().then(() => {
  const sel = document.getElementById("r-cell");
  for (const [id, c] of Object.entries(SE.me.cells)) sel.append(SE.el("option", { value: id, text: c.name }));
  document.getElementById("range").addEventListener("submit", ev => { ev.preventDefault(); show().catch(console.error); });
  show().catch(console.error);
}).catch(console.error);
