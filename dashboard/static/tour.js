// Patrol tour (轮巡) on the camera wall: runs a plan's cameras through the tiles of the chosen layout.
//
// Each tile is a slot: it shows a camera for that camera's dwell, then takes the next camera of the plan,
// so cameras with different dwells flow through the wall without waiting for each other. Touching a tile
// pauses the whole tour (the dwell clocks stop; the time on screen still counts, it is what the log
// records); touching again, or "Resume", goes on. A camera without a picture (offline when its turn
// comes, or going offline while shown) is shown offline at once, reported (it goes on the fault list)
// and skipped after OFFLINE_SHOW_MS. Every camera leaving a tile is reported with its time on screen;
// one shown its whole dwell with nothing marked is recorded 正常 (the operator watched it and raised
// nothing). Marks per tile: 正常, 发现情况 (a note and the live frame: a manual alarm in every room),
// 故障 with its kind. The patrol log beside the wall is the server's answer to each report.
"use strict";

const TOUR = { TICK_MS: 100, OFFLINE_SHOW_MS: 1500 };

const Tour = {
  st: null, // {patrol, plan, queue, next, slots: [{camera, dwellMs, leftMs, shownMs, offline, marked, reported}], paused}
  plans: [],

  active() { return Boolean(Tour.st && !Tour.st.done); },
  cameras() { return Tour.st.slots.map(s => s.camera); },

  async loadI18n() {
    const res = await fetch(`/static/i18n/patrol.${SE.locale}.json`);
    Object.assign(SE.messages, await res.json());
    Tour.applyI18n(document);
  },

  applyI18n(root) {
    root.querySelectorAll("[data-pi18n]").forEach(el => { el.textContent = SE.t(el.dataset.pi18n); });
    root.querySelectorAll("[data-pi18n-placeholder]").forEach(el => { el.placeholder = SE.t(el.dataset.pi18nPlaceholder); });
  },

  async init() {
    const sel = document.getElementById("t-plan");
    try {
      Tour.plans = (await SE.api("/api/patrol/plans")).plans;
    } catch (err) { Tour.say(SE.errorText(err)); return; }
    for (const p of Tour.plans) sel.append(SE.el("option", { value: String(p.id), text: p.name }));
    const wanted = new URLSearchParams(location.hash.slice(1)).get("plan");
    if (wanted) sel.value = wanted;
    document.getElementById("t-start").addEventListener("click", () => Tour.start(Number(sel.value)));
    document.getElementById("t-pause").addEventListener("click", () => Tour.setPaused(!Tour.st.paused));
    document.getElementById("t-stop").addEventListener("click", () => Tour.stop());
    if (wanted && new URLSearchParams(location.hash.slice(1)).get("run") === "1") await Tour.start(Number(wanted));
  },

  say(text) { document.getElementById("t-state").textContent = text; },

  async start(planId) {
    if (!planId || Tour.active()) return;
    let p;
    try {
      p = await SE.api(`/api/patrol/plans/${planId}/start`, { method: "POST", body: { layout: W.layout } });
    } catch (err) { Tour.say(SE.errorText(err)); return; }
    const queue = p.cameras.filter(c => W.cams[c.camera]).map(c => ({ camera: c.camera, dwell_s: c.dwell_s }));
    Tour.st = { patrol: p.id, plan: p.plan_name, queue, next: 0, slots: [], paused: false, done: false, last: performance.now() };
    W.enlarged = null;
    for (let i = 0; i < Math.min(W.layout, queue.length); i++) Tour.st.slots.push(Tour.slotFor(Tour.take()));
    document.body.dataset.touring = "true";
    document.querySelectorAll(".layouts button, #w-cell, #t-plan, #t-start").forEach(b => { b.disabled = true; });
    document.getElementById("t-pause").hidden = false;
    document.getElementById("t-stop").hidden = false;
    Tour.showLog(p);
    W.render();
    Tour.setPaused(false);
    Tour.timer = setInterval(Tour.tick, TOUR.TICK_MS);
    Tour.health();
  },

  take() { const s = Tour.st; return s.next < s.queue.length ? s.queue[s.next++] : null; },

  slotFor(item) {
    return item ? { camera: item.camera, dwellMs: item.dwell_s * 1000, leftMs: item.dwell_s * 1000, shownMs: 0,
                    offline: false, offlineAt: null, marked: null, reported: false }
                : { camera: null };
  },

  tick() {
    const st = Tour.st;
    if (!st || st.done) return;
    const now = performance.now();
    const dt = now - st.last;
    st.last = now;
    st.slots.forEach((slot, i) => {
      if (!slot.camera) return;
      slot.shownMs += dt;
      if (slot.offline) {
        if (now - slot.offlineAt >= TOUR.OFFLINE_SHOW_MS) Tour.advance(i);
        return;
      }
      if (!st.paused && !slot.form) slot.leftMs -= dt;
      Tour.paintDwell(i);
      if (slot.leftMs <= 0) Tour.advance(i);
    });
  },

  // the camera of slot i leaves its tile: report its time on screen (and 正常 if it was watched and not marked)
  async advance(i) {
    const st = Tour.st;
    const slot = st.slots[i];
    const next = Tour.slotFor(Tour.take());
    st.slots[i] = next;
    W.replaceTile(i, next.camera);
    if (next.camera) Tour.health();
    Tour.report(slot, slot.leftMs <= 0 && !slot.offline && !slot.marked);
    if (st.slots.every(s => !s.camera)) await Tour.finish();
  },

  async report(slot, normal) {
    if (slot.reported || !slot.camera) return;
    slot.reported = true;
    const st = Tour.st;
    st.pending = (st.pending || 0) + 1;
    try {
      let log = await SE.api(`/api/patrols/${st.patrol}/views`, { method: "POST",
        body: { camera: slot.camera, on_screen_s: Math.round(slot.shownMs) / 1000, offline: slot.offline } });
      if (normal) log = (await SE.api(`/api/patrols/${st.patrol}/marks`, { method: "POST",
        body: { camera: slot.camera, mark: "normal" } })).patrol;
      Tour.showLog(log);
    } catch (err) { Tour.say(SE.errorText(err)); }
    finally { st.pending -= 1; }
  },

  async stop() {
    const st = Tour.st;
    if (!Tour.active()) return;
    st.slots.forEach((slot, i) => { if (slot.camera) { Tour.report(slot, false); st.slots[i] = { camera: null }; } });
    await Tour.finish();
  },

  async finish() {
    const st = Tour.st;
    if (st.done) return;
    st.done = true;
    clearInterval(Tour.timer);
    for (let n = 0; st.pending > 0 && n < 100; n++) await new Promise(r => setTimeout(r, 50)); // reports first
    try {
      Tour.showLog(await SE.api(`/api/patrols/${st.patrol}/finish`, { method: "POST" }));
    } catch (err) { Tour.say(SE.errorText(err)); }
    document.body.dataset.touring = "false";
    document.querySelectorAll(".layouts button, #w-cell, #t-plan, #t-start").forEach(b => { b.disabled = false; });
    document.getElementById("t-pause").hidden = true;
    document.getElementById("t-stop").hidden = true;
    Tour.say(SE.t("patrol.tour_done"));
    document.getElementById("wall").dataset.tour = "done";
    W.render();
  },

  setPaused(on) {
    const st = Tour.st;
    st.paused = on;
    document.getElementById("wall").dataset.tour = on ? "paused" : "running";
    document.getElementById("t-pause").textContent = SE.t(on ? "patrol.resume" : "patrol.pause");
    Tour.say(SE.t(on ? "patrol.paused" : "patrol.running", { plan: st.plan }));
  },

  // a toured camera with no picture: shown offline now, reported as a fault, skipped shortly after
  health() {
    const st = Tour.st;
    if (!Tour.active()) return;
    st.slots.forEach((slot, i) => {
      if (!slot.camera || slot.offline) return;
      const cam = W.cams[slot.camera];
      if (cam && !cam.online && !(W.feed && W.feed.stale)) {
        slot.offline = true;
        slot.offlineAt = performance.now();
        const tile = W.tiles[i];
        if (tile) {
          tile.el.dataset.skipped = "true";
          tile.el.querySelector(".tile-msg").textContent = SE.t("patrol.offline_skip");
        }
      }
    });
  },

  paintDwell(i) {
    const slot = Tour.st.slots[i], tile = W.tiles[i];
    if (!tile || !slot.camera) return;
    tile.el.querySelector(".dwell").textContent = SE.t("patrol.left", { s: Math.max(0, Math.ceil(slot.leftMs / 1000)) });
  },

  // the mark buttons and the finding form of a tile the tour shows
  decorate(tile) {
    Tour.applyI18n(tile.el);
    if (!Tour.active() || !tile.camera) return;
    const slot = Tour.st.slots[tile.index];
    const marks = tile.el.querySelector(".tile-marks");
    const form = tile.el.querySelector(".finding-form");
    marks.hidden = false;
    tile.el.dataset.tour = "true";
    const body = tile.el.querySelector(".tile-body");
    body.addEventListener("click", () => { if (Tour.active()) Tour.setPaused(!Tour.st.paused); });
    const shown = text => { tile.el.querySelector(".marked").textContent = text; };
    const send = async (mark, extra) => {
      try {
        const out = await SE.api(`/api/patrols/${Tour.st.patrol}/marks`, { method: "POST",
          body: Object.assign({ camera: tile.camera, mark }, extra || {}) });
        slot.marked = mark;
        tile.el.dataset.mark = mark;
        Tour.showLog(out.patrol);
        return out;
      } catch (err) { shown(SE.errorText(err)); return null; }
    };
    marks.querySelector(".m-normal").addEventListener("click", async () => {
      if (await send("normal")) shown(SE.t("patrol.mark.normal"));
    });
    const kind = marks.querySelector(".m-fault-kind");
    kind.addEventListener("change", async () => {
      if (!kind.value) return;
      if (await send("fault", { fault_kind: kind.value })) shown(SE.t(`patrol.fault.${kind.value}`));
    });
    let wasPaused = false;
    marks.querySelector(".m-finding").addEventListener("click", () => {
      slot.form = true; // the dwell waits while the operator writes
      wasPaused = Tour.st.paused;
      form.hidden = false;
      form.querySelector(".f-note").focus();
    });
    form.querySelector(".f-cancel").addEventListener("click", () => { form.hidden = true; slot.form = false; });
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      const note = form.querySelector(".f-note").value.trim();
      if (!note) { shown(SE.t("patrol.note_required")); return; }
      const out = await send("finding", { note, snapshot: Tour.grab(tile) });
      if (!out) return;
      tile.el.dataset.alertId = out.alert_id;
      shown(SE.t("patrol.alarm_raised"));
      form.hidden = true;
      slot.form = false;
      if (!wasPaused && Tour.st.paused) Tour.setPaused(false);
    });
  },

  // the live frame as a JPEG data URL (null when the tile has no picture yet)
  grab(tile) {
    const v = tile.video;
    try {
      if (v && v.readyState >= 2 && v.videoWidth) {
        const c = document.createElement("canvas");
        c.width = v.videoWidth; c.height = v.videoHeight;
        c.getContext("2d").drawImage(v, 0, 0);
        return c.toDataURL("image/jpeg", 0.85);
      }
      if (tile.img && !tile.img.hidden && tile.img.naturalWidth) {
        const c = document.createElement("canvas");
        c.width = tile.img.naturalWidth; c.height = tile.img.naturalHeight;
        c.getContext("2d").drawImage(tile.img, 0, 0);
        return c.toDataURL("image/jpeg", 0.85);
      }
    } catch (err) { console.warn("no snapshot", err); }
    return null;
  },

  showLog(log) {
    if (!log || !log.cameras) return;
    Tour.log = log;
    document.getElementById("tour-log").hidden = false;
    document.getElementById("t-log-plan").textContent = `${log.plan_name} · ${SE.fmt(log.started_at)}`;
    const rows = log.cameras.map(c => {
      const mark = c.mark ? SE.t(`patrol.mark.${c.mark}`) + (c.fault_kind ? ` · ${SE.t(`patrol.fault.${c.fault_kind}`)}` : "")
        : (c.offline ? SE.t("patrol.offline") : "—");
      return SE.el("tr", { "data-camera": c.camera, "data-mark": c.mark || "", "data-patrolled": String(c.patrolled) },
        SE.el("td", { text: c.name }), SE.el("td", { text: mark }),
        SE.el("td", { class: "num", text: `${c.on_screen_s.toFixed(1)} / ${c.dwell_s} s` }),
        SE.el("td", { text: c.patrolled ? "✓" : SE.t("patrol.not_patrolled") }));
    });
    document.getElementById("t-log-rows").replaceChildren(...rows);
    document.getElementById("t-log-sum").textContent = SE.t("patrol.coverage_line",
      { n: log.patrolled_count, of: log.planned_count, pct: log.coverage === null ? "—" : log.coverage });
    document.getElementById("tour-log").dataset.state = log.state;
  },
};
window.Tour = Tour;
