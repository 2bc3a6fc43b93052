// One alert on paper: facts, the whole timeline, every snapshot; who printed it and when.
"use strict";
SE.start().then(async () => {
  const id = decodeURIComponent(location.pathname.split("/")[2]);
  const data = await SE.api(`/api/alerts/${encodeURIComponent(id)}`);
  const a = data.alert;
  document.getElementById("p-title").textContent = `${SE.ruleName(a.rule)} · ${a.camera.name} · ${SE.fmt(a.start_time)}`;
  const facts = [
    ["alert.state", SE.t(`state.${a.state}`)], ["alert.owner", a.owner ? a.owner.name : SE.t("alert.nobody")],
    ["alert.camera", a.camera.name], ["alert.cell", a.grid_cell.name],
    ["alert.officer", a.grid_cell.officer ? `${a.grid_cell.officer.name} ${a.grid_cell.officer.phone}` : ""],
    ["alert.time", `${SE.fmt(a.start_time)}${a.end_time ? " – " + SE.fmt(a.end_time, false) : ""}`],
    ["history.classification", a.classification ? SE.t(`class.${a.classification}`) : ""],
    ["print.comment", a.close_comment || ""], ["print.id", a.alert_id],
  ];
  document.getElementById("p-facts").replaceChildren(...facts.flatMap(([k, v]) =>
    [SE.el("dt", { "data-i18n": k, text: SE.t(k) }), SE.el("dd", { text: v })]));
  document.getElementById("p-timeline").replaceChildren(...data.timeline.map(timelineItem));
  document.getElementById("p-snaps").replaceChildren(...data.snapshots.map(p =>
    SE.el("img", { src: "/" + p.split("/").map(encodeURIComponent).join("/"), alt: "" })));
  document.getElementById("p-printed").textContent = SE.t("print.printed", { who: SE.me.user.display_name, at: SE.fmt(Date.now() / 1000) });
  document.getElementById("p-print").addEventListener("click", () => window.print());
}).catch(console.error);
