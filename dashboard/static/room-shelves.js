// Command room: shelves (屏蔽). A camera, or one rule of it, put aside for a while with a reason: its alerts are
// still stored and listed (marked 屏蔽中) but make no sound, no browser notification and do not escalate.
// A banner lists the shelves holding now for everyone; supervisors (engineer, admin) can lift one early.
// app.js asks SE.shelved(alert) before it rings or notifies, SE.markShelved(li, alert) when it draws an item, and
// awaits SE.roomStart() as it starts.
"use strict";
(() => {
  const DURATIONS = [5, 15, 30, 60, 120, 240, 480, 1440, 4320, 10080]; // minutes offered (5 min .. 7 days)
  const POLL_MS = 10000;
  const state = { shelves: [], skew: 0, canLift: false, loaded: false };
  const now = () => Date.now() / 1000 + state.skew; // the server's clock, as its last answer told it

  // the shelf covering an alert: one of its camera (and its rule, or every rule) holding now, or that held when
  // the alert started (an alert raised during a shelf stays quiet after it ends)
  function shelfOf(a) {
    if (!a || !a.camera || !a.rule) return null;
    const t = now();
    for (const s of state.shelves) {
      if (s.camera_id !== a.camera.id || (s.rule_id && s.rule_id !== a.rule.id)) continue;
      const active = s.created_at <= t && t < s.ends_at;
      if (active || (s.created_at <= a.start_time && a.start_time < s.ends_at)) return s;
    }
    return null;
  }
  SE.shelved = a => !!shelfOf(a);

  SE.markShelved = (li, a) => {
    const s = shelfOf(a);
    li.dataset.shelved = String(!!s);
    let mark = li.querySelector(".shelf-mark");
    if (!s) { if (mark) mark.remove(); return; }
    if (!mark) {
      mark = SE.el("span", { class: "shelf-mark" });
      li.querySelector(".line1").append(" ", mark);
    }
    mark.textContent = SE.t("shelf.mark");
    mark.title = SE.t("shelf.mark_title", { reason: s.reason, until: SE.fmt(s.ends_at, false) });
  };

  function ruleName(s) {
    if (!s.rule_id) return SE.t("shelf.all_rules");
    return s.rule_name || (typeof ruleText === "function" ? ruleText({ id: s.rule_id, kind: s.rule_kind || "" }) : s.rule_id);
  }

  function renderBanner() {
    const box = document.getElementById("shelf-banner");
    const t = now();
    const active = state.shelves.filter(s => s.created_at <= t && t < s.ends_at);
    box.hidden = !active.length;
    box.dataset.count = String(active.length);
    box.replaceChildren(SE.el("b", { text: SE.t("shelf.active") }), ...active.map(s => {
      const li = SE.el("span", { class: "shelf", "data-shelf-id": String(s.id), "data-camera": s.camera_id },
        SE.el("span", { text: SE.t("shelf.item", { camera: s.camera_name, rule: ruleName(s), until: SE.fmt(s.ends_at),
                                                    reason: s.reason, by: s.created_by_name }) }));
      if (state.canLift) {
        const b = SE.el("button", { type: "button", class: "lift", text: SE.t("shelf.lift") });
        b.addEventListener("click", () => lift(s));
        li.append(" ", b);
      }
      return li;
    }));
  }

  // every item and the sound again: a shelf began or ended
  function redraw() {
    renderBanner();
    if (typeof items !== "undefined" && typeof alerts !== "undefined") {
      for (const [id, li] of items) { const a = alerts.get(id); if (a) SE.markShelved(li, a); }
    }
    if (typeof updateCount === "function") updateCount();
  }

  async function refresh() {
    try {
      const data = await SE.api("/api/shelves");
      state.skew = data.now - Date.now() / 1000;
      state.shelves = data.shelves;
      state.canLift = data.can_lift;
      state.loaded = true;
      redraw();
    } catch (e) { console.error(e); }
  }

  async function lift(s) {
    if (await SE.liftShelf(s, document.getElementById("shelf-result"))) await refresh();
  }

  function fillRules(camera, pick) {
    const sel = document.getElementById("shelf-rule");
    const ids = new Set();
    if (typeof alerts !== "undefined") for (const a of alerts.values()) if (a.camera.id === camera) ids.add(a.rule.id);
    if (pick) ids.add(pick);
    sel.replaceChildren(SE.el("option", { value: "", text: SE.t("shelf.all_rules") }),
      ...[...ids].sort().map(id => SE.el("option", { value: id, text: id })));
    sel.value = pick || "";
  }

  function durationText(m) {
    if (m % 1440 === 0) return SE.t("shelf.days", { n: m / 1440 });
    if (m % 60 === 0) return SE.t("shelf.hours", { n: m / 60 });
    return SE.t("shelf.minutes_n", { n: m });
  }

  function build() {
    const banner = SE.el("div", { id: "shelf-banner", class: "shelf-banner", role: "status", "data-testid": "shelf-banner" });
    banner.hidden = true;
    const form = SE.el("form", { id: "shelf-form", class: "shelf-form", "data-testid": "shelf-form", autocomplete: "off" },
      SE.el("select", { id: "shelf-camera", name: "camera", required: "" }),
      SE.el("select", { id: "shelf-rule", name: "rule" }),
      SE.el("select", { id: "shelf-minutes", name: "minutes" },
        ...DURATIONS.map(m => SE.el("option", { value: String(m), text: durationText(m) }))),
      SE.el("input", { id: "shelf-reason", name: "reason", required: "", maxlength: "500", placeholder: SE.t("shelf.reason") }),
      SE.el("button", { type: "submit", id: "shelf-submit", text: SE.t("shelf.submit") }),
      SE.el("span", { id: "shelf-result", role: "status" }));
    const box = SE.el("details", { id: "shelf-new", class: "shelf-new" }, SE.el("summary", { text: SE.t("shelf.new") }), form);
    const anchor = document.getElementById("stale-banner");
    anchor.after(banner, box);
    form.querySelector("#shelf-minutes").value = "30";
    form.querySelector("#shelf-camera").addEventListener("change", ev => fillRules(ev.target.value));
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      const f = new FormData(form);
      const out = document.getElementById("shelf-result");
      try {
        const res = await SE.api("/api/shelves", { method: "POST", body: {
          camera: f.get("camera"), rule: f.get("rule") || null, reason: f.get("reason"), minutes: Number(f.get("minutes")) } });
        out.textContent = SE.t("shelf.done", { camera: res.shelf.camera_name, until: SE.fmt(res.shelf.ends_at) });
        form.querySelector("#shelf-reason").value = "";
      } catch (e) { out.textContent = SE.errorText(e); }
      await refresh();
    });
    // from the handling view: shelve the selected alert's camera (its rule preselected)
    const bulk = document.getElementById("d-bulk");
    if (bulk) {
      const b = SE.el("button", { type: "button", id: "d-shelve", text: SE.t("shelf.from_alert") });
      b.addEventListener("click", () => {
        const a = typeof alerts !== "undefined" && typeof selected !== "undefined" ? alerts.get(selected) : null;
        if (!a) return;
        document.getElementById("shelf-camera").value = a.camera.id;
        fillRules(a.camera.id, a.rule.id);
        box.open = true;
        document.getElementById("shelf-reason").focus();
      });
      bulk.after(" ", b);
    }
  }

  // app.js awaits this once the page's catalogue is loaded and before it lists the alerts, so nothing rings for
  // a shelved camera while the page starts
  async function start() {
    const res = await fetch(`/static/i18n/shelves.${SE.locale}.json`);
    if (res.ok) Object.assign(SE.messages, await res.json());
    build();
    try {
      const cams = await SE.api("/api/cameras");
      const sel = document.getElementById("shelf-camera");
      sel.replaceChildren(...cams.map(c => SE.el("option", { value: c.id, text: c.name })));
      if (cams.length) fillRules(cams[0].id);
    } catch (e) { console.error(e); }
    await refresh();
    setInterval(refresh, POLL_MS);
    setInterval(renderBanner, 1000); // a shelf ends by itself: the banner follows the clock
    let wasActive = "";
    setInterval(() => { // and when the set of holding shelves changes, the marks and the sound follow too
      const t = now();
      const key = state.shelves.filter(s => s.created_at <= t && t < s.ends_at).map(s => s.id).join(",");
      if (key !== wasActive) { wasActive = key; redraw(); }
    }, 1000);
  }
  SE.roomStart = () => start().catch(e => console.error(e));
})();
