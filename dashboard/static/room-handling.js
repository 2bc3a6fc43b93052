// Handling view of the command room: the alarm camera live beside its snapshot, the related cameras (same grid
// cell, the neighbours the config names) as small live tiles, forward to an on-duty colleague picked from a
// list and confirmed, a takeover confirmed, and the notices a forward or a takeover sends to the operator it concerns.
//
// app.js calls the hooks: Handling.start() once the page's catalogue is in, Handling.show(alert) whenever the
// detail shows an alert, Handling.detail(data) with the detail API's answer, Handling.close() when the panel
// closes, Handling.notice(notice, eventId) for a "notice" event of the room's stream.
//
// CPU: every live tile is one WebSocket and one decoded sub-stream in the browser (and a remux in the worker
// while watched), so the first AUTO_LIVE related cameras play at once and the others wait for a click; every
// player stops when the detail changes or closes.
"use strict";

const Handling = (() => {
  const AUTO_LIVE = 4;
  const H = { alertId: null, main: null, related: [], cursorKey: null, seen: new Set(), recipients: [] };
  window.__handling = H; // the browser tests read the players' figures from here

  // ------------------------------------------------------------------ tiles

  // a tile the LivePlayer draws into: {el, video, img, canvas, onState}
  function makeTile(cam, cls) {
    const video = SE.el("video", { muted: "", playsinline: "" });
    const canvas = SE.el("canvas", {});
    const img = SE.el("img", { alt: "", hidden: "" });
    const msg = SE.el("span", { class: "hv-msg" });
    const label = SE.el("span", { class: "hv-label", text: cam.name || cam.id });
    const el = SE.el("div", { class: `hv-tile ${cls || ""}`, "data-camera": cam.id, "data-state": "idle",
                              title: cam.grid_cell ? `${cam.name} · ${cam.grid_cell.name}` : (cam.name || cam.id) },
                     video, img, canvas, label, msg);
    const tile = { el, video, img, canvas, camera: cam, player: null,
                   onState: (state, detail) => setState(tile, state, detail) };
    return tile;
  }

  function setState(tile, state, detail) {
    tile.el.dataset.state = state;
    const key = { connecting: "handling.live_connecting", reconnecting: "handling.live_reconnecting",
                  stale: "handling.live_stale", forbidden: "handling.live_forbidden",
                  idle: "handling.live_click" }[state];
    const msg = tile.el.querySelector(".hv-msg");
    msg.textContent = key ? SE.t(key) : "";
    msg.title = detail || ""; // the player's reason as the server gave it (not translated): a tooltip for engineers
  }

  function play(tile) {
    if (tile.player || !window.LivePlayer) return;
    tile.player = new LivePlayer(tile, tile.camera, { stream: "sub" });
  }

  function stop(tile) {
    if (tile && tile.player) { tile.player.close(); tile.player = null; }
  }

  function stopAll() {
    stop(H.main);
    H.related.forEach(stop);
    H.related = [];
    H.main = null;
    const box = document.getElementById("d-related-tiles");
    if (box) box.replaceChildren();
  }

  // ------------------------------------------------------------------ the detail

  function build() {
    const snap = document.getElementById("d-snap");
    const media = SE.el("div", { id: "d-media", class: "hv-media", "data-testid": "handling-media" });
    snap.before(media);
    media.append(snap, SE.el("div", { id: "d-live", class: "hv-live" }));
    const related = SE.el("section", { id: "d-related", class: "hv-related", "data-testid": "related-cameras" },
      SE.el("h3", { text: SE.t("handling.related") }),
      SE.el("div", { id: "d-related-tiles", class: "hv-tiles" }),
      SE.el("p", { id: "d-related-none", class: "empty", text: SE.t("handling.related_none"), hidden: "" }));
    document.querySelector("#detail .facts").after(related);
    document.body.append(SE.el("div", { id: "hv-notices", class: "hv-notices", role: "status",
                                        "data-testid": "notices" }));
    // the forward target: a colleague picked from the list, not a typed name
    const typed = document.getElementById("d-forward-to");
    const pick = SE.el("select", { id: "d-forward-to", "aria-label": SE.t("handling.forward_pick") });
    typed.replaceWith(pick);
    fillRecipients([]);
  }

  // a new alert in the detail: its camera live at once (the geometry follows with the detail's answer)
  function show(a) {
    if (H.alertId === a.alert_id) return;
    stopAll();
    H.alertId = a.alert_id;
    H.recipients = [];
    fillRecipients([]);
    const tile = makeTile({ id: a.camera.id, name: a.camera.name }, "hv-main");
    document.getElementById("d-live").replaceChildren(tile.el);
    H.main = tile;
    play(tile);
    loadRecipients(a.alert_id);
  }

  function detail(data) {
    if (!data || !data.alert || data.alert.alert_id !== H.alertId) return;
    if (data.live_camera && H.main && H.main.player) {
      H.main.camera = data.live_camera; // zones and lines for the overlay
      H.main.player.camera = data.live_camera;
      H.main.el.title = `${data.live_camera.name} · ${data.live_camera.grid_cell.name}`;
    }
    const cams = data.related_cameras || [];
    const box = document.getElementById("d-related-tiles");
    H.related.forEach(stop);
    H.related = cams.map((c, i) => {
      const t = makeTile(c, "hv-small");
      t.el.dataset.relation = c.relation;
      t.el.dataset.online = String(!!c.online);
      t.el.querySelector(".hv-label").textContent = `${c.name} · ${SE.t(`handling.relation_${c.relation}`)}`;
      if (i < AUTO_LIVE) play(t);
      else { setState(t, "idle"); t.el.addEventListener("click", () => play(t), { once: true }); }
      return t;
    });
    box.replaceChildren(...H.related.map(t => t.el));
    document.getElementById("d-related-none").hidden = cams.length > 0;
  }

  function close() {
    stopAll();
    H.alertId = null;
  }

  // ------------------------------------------------------------------ forward

  async function loadRecipients(id) {
    try {
      const res = await SE.api(`/api/alerts/${encodeURIComponent(id)}/recipients`);
      if (H.alertId !== id) return;
      H.recipients = res.users;
      fillRecipients(res.users);
    } catch (e) { /* the alert may be another cell's occurrence: the typed list stays empty */ }
  }

  function fillRecipients(list) {
    const pick = document.getElementById("d-forward-to");
    if (!pick || pick.tagName !== "SELECT") return;
    const keep = pick.value;
    const opts = [SE.el("option", { value: "", text: SE.t("handling.forward_pick") })];
    for (const u of list) {
      const o = SE.el("option", { value: u.username,
        text: u.on_duty ? u.display_name : SE.t("handling.off_duty", { name: u.display_name }) });
      if (!u.on_duty) o.disabled = true;
      opts.push(o);
    }
    pick.replaceChildren(...opts);
    pick.value = list.some(u => u.username === keep && u.on_duty) ? keep : "";
  }

  // before app.js sends the forward: a colleague must be picked, and the operator confirms
  document.addEventListener("submit", ev => {
    if (!ev.target || ev.target.id !== "d-forward-form") return;
    const pick = document.getElementById("d-forward-to");
    const who = H.recipients.find(u => u.username === pick.value);
    const err = document.getElementById("d-error");
    const refuse = text => { ev.preventDefault(); ev.stopImmediatePropagation(); err.textContent = text; err.hidden = !text; };
    if (!who) { refuse(SE.t("handling.forward_pick_first")); return; }
    const cam = (H.main && H.main.camera.name) || "";
    if (!confirm(SE.t("handling.forward_confirm", { name: who.display_name, camera: cam }))) refuse("");
  }, true);

  // before app.js sends a takeover (its button or the "t" key): the operator confirms taking the alert from its owner
  function confirmTakeOver(alert) {
    const owner = (alert && alert.owner && alert.owner.name) || "";
    const cam = (H.main && H.main.camera.name) || (alert && alert.camera && alert.camera.name) || "";
    return confirm(SE.t("handling.takeover_confirm", { name: owner, camera: cam }));
  }

  // ------------------------------------------------------------------ notices

  function noticeText(n) {
    const rule = n.rule ? (n.rule.name || (SE.messages[`kind.${n.rule.kind}`] ? SE.t(`kind.${n.rule.kind}`) : n.rule.kind)) : "";
    return SE.t(`handling.notice_${n.kind}`, { by: n.by || "", camera: (n.camera || {}).name || "", rule });
  }

  function notice(n, eventId) {
    const key = `${n.kind}|${n.alert_id}|${n.time}`;
    if (eventId && H.cursorKey) {
      const act = String(eventId).split("|")[1];
      if (act) localStorage.setItem(H.cursorKey, act);
    }
    if (H.seen.has(key)) return;
    H.seen.add(key);
    const text = noticeText(n);
    const open = SE.el("button", { type: "button", class: "hv-open", text: SE.t("handling.notice_open") });
    const shut = SE.el("button", { type: "button", class: "icon", text: "×", title: SE.t("handling.notice_dismiss") });
    const box = SE.el("div", { class: "hv-notice", "data-kind": n.kind, "data-alert-id": n.alert_id },
      SE.el("b", { text }), n.note ? SE.el("q", { text: n.note }) : null, SE.el("span", {}, open, shut));
    open.addEventListener("click", () => { box.remove(); if (typeof select === "function") select(n.alert_id); });
    shut.addEventListener("click", () => box.remove());
    document.getElementById("hv-notices").append(box);
    if (document.hidden && "Notification" in window && Notification.permission === "granted") {
      const note = new Notification(text, { body: n.note || "", tag: key });
      note.onclick = () => { window.focus(); if (typeof select === "function") select(n.alert_id); };
    }
  }

  // what was forwarded to this user or taken from them while no page of theirs listened (this browser's cursor)
  async function missed() {
    H.cursorKey = `sharpeye.notices.${SE.me.user.username}`;
    const after = localStorage.getItem(H.cursorKey);
    try {
      const res = await SE.api(`/api/notices${after ? `?after=${encodeURIComponent(after)}` : ""}`);
      if (after) res.notices.forEach(n => notice(n));
      localStorage.setItem(H.cursorKey, res.cursor);
    } catch (e) { localStorage.removeItem(H.cursorKey); } // a cursor the stream no longer has: start afresh
  }

  async function start() {
    const res = await fetch(`/static/i18n/handling.${SE.locale}.json`);
    if (res.ok) Object.assign(SE.messages, await res.json());
    build();
    missed();
    window.addEventListener("pagehide", () => stopAll());
  }

  return { start, show, detail, close, notice, confirmTakeOver };
})();
window.Handling = Handling;
