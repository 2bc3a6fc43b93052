// The patrol page: plans (list; editor for engineers and above), the supervisor view (due, overdue,
// running), the phone report (报警) and cameras attached to it later, the shift report per operator and
// the fault list with its repair. Strings: i18n/patrol.<locale>.json. A plan runs on the wall (/wall).
"use strict";

const P = { cams: [], cells: [], plans: [], editing: null };

function pt(root) {
  (root || document).querySelectorAll("[data-pi18n]").forEach(el => { el.textContent = SE.t(el.dataset.pi18n); });
}

function msg(id, text, bad) {
  const el = document.getElementById(id);
  el.textContent = text;
  el.classList.toggle("bad", Boolean(bad));
}

function camName(id) { const c = P.cams.find(x => x.id === id); return c ? c.name : id; }

function scheduleText(s) {
  return s ? SE.t("patrol.schedule_line", { start: s.start, end: s.end, every: s.every_min, grace: s.grace_min })
           : SE.t("patrol.no_schedule");
}

async function loadPlans() {
  P.plans = (await SE.api("/api/patrol/plans")).plans;
  const rows = P.plans.map(p => {
    const run = SE.el("a", { href: "#", "data-pi18n": "patrol.run", class: "run" });
    run.addEventListener("click", ev => {
      ev.preventDefault();
      location.href = `/wall#layout=${document.getElementById("p-layout").value}&plan=${p.id}&run=1`;
    });
    const tds = [SE.el("td", { text: p.name }), SE.el("td", { text: SE.t("patrol.cameras_n", { n: p.cameras.length }) }),
                 SE.el("td", { text: scheduleText(p.schedule) }), SE.el("td", {}, run)];
    if (SE.me.can.engineer) {
      const edit = SE.el("button", { type: "button", "data-pi18n": "patrol.edit" });
      edit.addEventListener("click", () => openEditor(p));
      const del = SE.el("button", { type: "button", "data-pi18n": "patrol.delete" });
      del.addEventListener("click", async () => {
        if (!confirm(SE.t("patrol.delete_confirm", { name: p.name }))) return;
        await SE.api(`/api/patrol/plans/${p.id}`, { method: "DELETE" });
        await loadPlans();
      });
      tds.push(SE.el("td", {}, edit, " ", del));
    }
    return SE.el("tr", { "data-plan": String(p.id) }, ...tds);
  });
  document.getElementById("p-plans").replaceChildren(...rows);
  pt(document.getElementById("p-plans"));
}

function camRow(camera, dwell) {
  const sel = SE.el("select", { class: "e-cam" });
  for (const c of P.cams) sel.append(SE.el("option", { value: c.id, text: `${c.name} · ${c.grid_cell.name}` }));
  sel.value = camera || (P.cams[0] && P.cams[0].id) || "";
  const up = SE.el("button", { type: "button", "data-pi18n": "patrol.up" });
  const rm = SE.el("button", { type: "button", "data-pi18n": "patrol.remove" });
  const tr = SE.el("tr", {}, SE.el("td", {}, sel),
    SE.el("td", {}, SE.el("input", { class: "e-dwell", type: "number", min: "1", max: "3600", step: "0.5", value: String(dwell || 10) })),
    SE.el("td", {}, up, " ", rm));
  up.addEventListener("click", () => { if (tr.previousElementSibling) tr.parentNode.insertBefore(tr, tr.previousElementSibling); });
  rm.addEventListener("click", () => tr.remove());
  pt(tr);
  return tr;
}

function openEditor(plan) {
  P.editing = plan;
  const f = document.getElementById("p-editor");
  f.hidden = false;
  document.getElementById("e-name").value = plan ? plan.name : "";
  document.getElementById("e-desc").value = plan ? plan.description : "";
  document.getElementById("e-cams").replaceChildren(...(plan ? plan.cameras.map(c => camRow(c.camera, c.dwell_s)) : [camRow()]));
  const s = plan && plan.schedule;
  document.getElementById("e-sched").checked = Boolean(s);
  if (s) {
    document.getElementById("e-every").value = s.every_min;
    document.getElementById("e-from").value = s.start;
    document.getElementById("e-to").value = s.end;
    document.getElementById("e-grace").value = s.grace_min;
  }
  msg("e-msg", "");
}

async function savePlan(ev) {
  ev.preventDefault();
  const cameras = [...document.querySelectorAll("#e-cams tr")].map(tr => ({
    camera: tr.querySelector(".e-cam").value, dwell_s: Number(tr.querySelector(".e-dwell").value) }));
  const body = { name: document.getElementById("e-name").value, description: document.getElementById("e-desc").value,
                 cameras, schedule: null };
  if (document.getElementById("e-sched").checked) {
    body.schedule = { every_min: Number(document.getElementById("e-every").value),
                      start: document.getElementById("e-from").value, end: document.getElementById("e-to").value,
                      grace_min: Number(document.getElementById("e-grace").value) };
  }
  try {
    if (P.editing) {
      body.version = P.editing.version;
      await SE.api(`/api/patrol/plans/${P.editing.id}`, { method: "PUT", body });
    } else {
      await SE.api("/api/patrol/plans", { method: "POST", body });
    }
    msg("e-msg", SE.t("patrol.saved"));
    document.getElementById("p-editor").hidden = true;
    await loadPlans();
  } catch (err) { msg("e-msg", SE.errorText(err), true); }
}

async function loadSupervisor() {
  const s = await SE.api("/api/patrol/supervisor");
  const late = x => SE.el("li", { "data-plan": String(x.plan), text: `${x.name} — ${SE.t("patrol.late", { t: SE.fmt(x.slot), d: SE.duration(x.late_s) })}` });
  const none = () => SE.el("li", { class: "dim", text: SE.t("patrol.none") });
  document.getElementById("s-overdue").replaceChildren(...(s.overdue.length ? s.overdue.map(late) : [none()]));
  document.getElementById("s-due").replaceChildren(...(s.due.length ? s.due.map(late) : [none()]));
  document.getElementById("s-running").replaceChildren(...(s.running.length ? s.running.map(p => SE.el("li", {
    text: `${p.plan_name} — ${SE.t("patrol.by", { name: p.user.name, t: SE.fmt(p.started_at) })} · ` +
          SE.t("patrol.coverage_line", { n: p.patrolled_count, of: p.planned_count, pct: p.coverage })})) : [none()]));
}

async function loadReport() {
  const hours = Math.max(1, Math.min(744, Number(document.getElementById("r-hours").value) || 12));
  const end = Date.now() / 1000, start = end - hours * 3600;
  const r = await SE.api(`/api/patrol/report?start=${start}&end=${end}`);
  const outcome = o => Object.entries(o).map(([k, n]) =>
    `${SE.messages[`patrol.outcome.${k}`] ? SE.t(`patrol.outcome.${k}`) : k} ${n}`).join(", ");
  const rows = r.operators.map(o => SE.el("tr", { "data-operator": o.username },
    SE.el("td", { text: o.name }), SE.el("td", { text: o.plans.join(", ") || "—" }),
    SE.el("td", { class: "num", text: String(o.planned) }), SE.el("td", { class: "num", text: String(o.patrolled) }),
    SE.el("td", { class: "num coverage", text: o.coverage === null ? "—" : `${o.coverage} %` }),
    SE.el("td", { class: "num", text: String(o.findings) }), SE.el("td", { class: "num", text: String(o.alarms.length) }),
    SE.el("td", { text: outcome(o.outcomes) }), SE.el("td", { class: "num", text: String(o.faults) })));
  document.getElementById("r-rows").replaceChildren(...rows);
  showAvailability(r.availability_by_day);
  const ps = (await SE.api(`/api/patrols?start=${start}&end=${end}`)).patrols;
  document.getElementById("r-patrols").replaceChildren(...ps.map(p => SE.el("tr", { "data-patrol": p.id },
    SE.el("td", { text: SE.fmt(p.started_at) }), SE.el("td", { text: p.plan_name }), SE.el("td", { text: p.user.name }),
    SE.el("td", { text: SE.t(`patrol.state.${p.state}`) }),
    SE.el("td", { text: SE.t("patrol.coverage_line", { n: p.patrolled_count, of: p.planned_count, pct: p.coverage }) }),
    SE.el("td", { text: p.not_patrolled.length ? `${SE.t("patrol.not_patrolled")}: ${p.not_patrolled.map(camName).join(", ")}` : "" }))));
}

// Which check listed a fault, and for the tamper check which kinds held (dark, covered, blur, moved).
function checkText(x) {
  const kinds = x.check === "tamper_check" && x.note
    ? x.note.split(", ").map(k => SE.messages[`patrol.tamper.${k}`] ? SE.t(`patrol.tamper.${k}`) : k).join(", ") : "";
  return SE.t(`patrol.check.${x.check}`) + (kinds ? ` (${kinds})` : "");
}

// Availability per camera per day: the share of the day (up to now) a camera was neither faulty nor offline.
function showAvailability(av) {
  let table = document.getElementById("r-avail");
  if (!table) {
    const report = document.querySelector("[data-testid=report]");
    report.append(SE.el("h3", { text: SE.t("patrol.availability_by_day") }),
      SE.el("p", { class: "dim", text: SE.t("patrol.availability_hint") }));
    table = SE.el("table", { class: "grid", id: "r-avail" });
    report.append(table);
  }
  const head = SE.el("tr", {}, SE.el("th", { text: SE.t("patrol.camera") }),
    ...av.days.map(d => SE.el("th", { class: "num", text: d })));
  const pct = x => (100 * x.available).toFixed(1) + " %";
  const rows = av.cameras.map(c => SE.el("tr", { "data-camera": c.camera }, SE.el("td", { text: c.name }),
    ...c.days.map(x => SE.el("td", { class: x.available < 1 ? "num down" : "num", "data-day": x.day, text: pct(x),
      title: SE.t("patrol.down_for", { d: SE.duration(x.down_s) }) }))));
  table.replaceChildren(SE.el("thead", {}, head), SE.el("tbody", {}, ...rows));
}

async function loadFaults() {
  const f = (await SE.api("/api/patrol/faults")).faults;
  document.getElementById("f-rows").replaceChildren(...f.map(x => {
    const act = SE.el("td", {});
    const step = async s => { await SE.api(`/api/patrol/faults/${x.id}/repair`, { method: "POST", body: { step: s } }); await loadFaults(); };
    if (x.state === "open") {
      const b = SE.el("button", { type: "button", text: SE.t("patrol.request_repair") });
      b.addEventListener("click", () => step("requested"));
      act.append(b);
    }
    if (SE.me.can.engineer) {
      const b = SE.el("button", { type: "button", text: SE.t("patrol.repaired") });
      b.addEventListener("click", () => step("done"));
      act.append(" ", b);
    }
    return SE.el("tr", { "data-fault": String(x.id), "data-camera": x.camera },
      SE.el("td", { text: x.camera_name }), SE.el("td", { text: SE.t(`patrol.fault.${x.kind}`) }),
      SE.el("td", { text: SE.fmt(x.since) }),
      SE.el("td", { "data-check": x.check || "", text: x.check ? checkText(x) : `${x.reported_by} · ${SE.t(`patrol.source.${x.source}`)}` }),
      SE.el("td", { text: SE.t(`patrol.fault_state.${x.state}`) }), act);
  }));
}

function epoch(id) { const v = document.getElementById(id).value; return v ? new Date(v).getTime() / 1000 : NaN; }

SE.start().then(async () => {
  const res = await fetch(`/static/i18n/patrol.${SE.locale}.json`);
  Object.assign(SE.messages, await res.json());
  pt();
  document.title = SE.t("patrol.title");
  const live = await SE.api("/api/live/cameras");
  P.cams = live.cameras;
  P.cells = live.cells;
  const cellSel = document.getElementById("ph-cell");
  for (const c of P.cells) cellSel.append(SE.el("option", { value: c.id, text: `${c.name} (${c.id})` }));
  const atCams = document.getElementById("at-cams");
  for (const c of P.cams) atCams.append(SE.el("option", { value: c.id, text: c.name }));
  document.getElementById("p-new").hidden = !SE.me.can.engineer;
  document.getElementById("p-new").addEventListener("click", () => openEditor(null));
  document.getElementById("e-add").addEventListener("click", () => document.getElementById("e-cams").append(camRow()));
  document.getElementById("e-cancel").addEventListener("click", () => { document.getElementById("p-editor").hidden = true; });
  document.getElementById("p-editor").addEventListener("submit", savePlan);
  document.getElementById("ph-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const out = await SE.api("/api/alarms/phone", { method: "POST", body: {
        grid_cell: cellSel.value, caller: document.getElementById("ph-caller").value,
        phone: document.getElementById("ph-phone").value, report: document.getElementById("ph-report").value } });
      msg("ph-msg", SE.t("patrol.phone_raised", { id: out.alert_id }));
      document.getElementById("at-id").value = out.alert_id;
      document.getElementById("ph-form").reset();
    } catch (err) { msg("ph-msg", SE.errorText(err), true); }
  });
  document.getElementById("at-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const cameras = [...atCams.selectedOptions].map(o => o.value);
    try {
      const out = await SE.api(`/api/alarms/${encodeURIComponent(document.getElementById("at-id").value)}/attach`,
        { method: "POST", body: { cameras, start: epoch("at-start"), end: epoch("at-end") } });
      msg("at-msg", SE.t("patrol.attached", { n: out.cameras.length }));
      P.attached = out;
      document.getElementById("at-export").hidden = false;
    } catch (err) { msg("at-msg", SE.errorText(err), true); }
  });
  document.getElementById("at-export").addEventListener("click", async () => {
    const a = P.attached;
    try {
      await SE.api("/api/exports", { method: "POST", body: { alert_id: a.alert_id } });  // the alarm's evidence: its attached cameras and range, held with the alarm
      msg("at-msg", SE.t("patrol.exported"));
    } catch (err) { msg("at-msg", SE.errorText(err), true); }
  });
  document.getElementById("r-refresh").addEventListener("click", () => loadReport().catch(console.error));
  await Promise.all([loadPlans(), loadSupervisor(), loadReport(), loadFaults()]);
  setInterval(() => { loadSupervisor().catch(console.error); loadFaults().catch(console.error); }, 15000);
}).catch(console.error);
