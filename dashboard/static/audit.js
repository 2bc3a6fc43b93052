// Audit page (审计日志): who did what, when, from where; filters by user, action, camera, cell and time,
// pages of rows newest first, the same rows as CSV; admins also see and clear log-in throttles.
// Strings come from i18n/audit.<locale>.json, merged into the page's catalogue (elements marked data-ai18n).
"use strict";
const A = {
  before: null,

  async catalogue() {
    const res = await fetch(`/static/i18n/audit.${SE.locale}.json`);
    Object.assign(SE.messages, await res.json());
    document.querySelectorAll("[data-ai18n]").forEach(el => { el.textContent = SE.t(el.dataset.ai18n); });
    document.title = SE.t("audit.title");
  },

  query() {
    const f = new FormData(document.getElementById("a-filter"));
    const q = new URLSearchParams();
    for (const k of ["user", "action", "camera", "cell"]) if (f.get(k)) q.set(k, f.get(k));
    for (const k of ["since", "until"]) {
      const v = f.get(k);
      if (v) q.set(k, String(new Date(v).getTime() / 1000));  // the browser's local time
    }
    return q;
  },

  details(r) {
    const d = r.data || {};
    const parts = Object.entries(d).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
    if (r.note) parts.unshift(r.note);
    return parts.join(" · ");
  },

  row(r) {
    const label = SE.messages[`audit.a.${r.action}`] ? SE.t(`audit.a.${r.action}`) : r.action;
    return SE.el("tr", { "data-action": r.action, "data-user": r.username || "", "data-camera": r.camera || "" },
      SE.el("td", { text: SE.fmt(r.time) }), SE.el("td", { text: r.username || SE.t("audit.system") }),
      SE.el("td", { class: "action", text: label }), SE.el("td", { text: r.camera || "" }),
      SE.el("td", { text: r.grid_cell_id || "" }), SE.el("td", { text: r.alert_id || "" }),
      SE.el("td", { text: r.remote || "" }), SE.el("td", { class: "details", text: A.details(r) }));
  },

  async load(more) {
    const q = A.query();
    document.getElementById("a-csv").href = `/api/audit.csv?${q}`;
    if (more && A.before) q.set("before", String(A.before));
    const err = document.getElementById("a-error");
    let data;
    try {
      data = await SE.api(`/api/audit?${q}`);
      err.hidden = true;
    } catch (e) {
      err.textContent = SE.errorText(e);
      err.hidden = false;
      return;
    }
    const body = document.querySelector("#audit tbody");
    const rows = data.rows.map(A.row);
    if (more) body.append(...rows); else body.replaceChildren(...rows);
    A.before = data.next_before;
    document.getElementById("a-more").hidden = !A.before;
    const sel = document.querySelector("#a-filter select[name=action]");
    if (sel.options.length <= 1) {
      sel.append(...data.actions.map(a => SE.el("option", {
        value: a, text: SE.messages[`audit.a.${a}`] ? SE.t(`audit.a.${a}`) : a })));
    }
    document.body.dataset.loaded = "true";
  },

  async throttles() {
    if (!SE.me.can.admin) return;
    document.getElementById("throttles").hidden = false;
    const data = await SE.api("/api/admin/throttles");
    document.querySelector("#t-list tbody").replaceChildren(...data.throttles.map(t => {
      const btn = SE.el("button", { type: "button", text: SE.t("audit.clear") });
      btn.addEventListener("click", async () => {
        await SE.api("/api/admin/throttles/clear", { method: "POST", body: { username: t.username, remote: t.remote } });
        A.throttles();
      });
      return SE.el("tr", { "data-user": t.username },
        SE.el("td", { text: t.username }), SE.el("td", { text: t.remote }), SE.el("td", { text: String(t.fails) }),
        SE.el("td", { text: t.retry_after > 0 ? SE.duration(t.retry_after) : "" }), SE.el("td", {}, btn));
    }));
  },
};

SE.start().then(async () => {
  await A.catalogue();
  document.getElementById("a-filter").addEventListener("submit", ev => { ev.preventDefault(); A.load(false); });
  document.getElementById("a-more").addEventListener("click", () => A.load(true));
  await A.load(false);
  await A.throttles();
}).catch(console.error);
