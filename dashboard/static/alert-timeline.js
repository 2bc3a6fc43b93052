"use strict";
// One action of an alert's timeline as a list item (time, who, what, the note), as the history page's
// timeline rows and the printable record show it.
function timelineItem(act) {
  const vars = Object.assign({}, act.data || {});
  if (vars.reason) vars.reason = SE.t(`reason.${vars.reason}`);
  const who = vars.by || act.username || SE.t("timeline.system");
  const li = SE.el("li", { "data-action": act.action, text: `${SE.fmt(act.time)} · ${who} · ${SE.t(`timeline.${act.action}`, vars)}` });
  if (act.note) li.append(SE.el("q", { text: act.note }));
  return li;
}
