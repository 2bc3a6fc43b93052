// The command room's "push to wall" (推送上墙): in the alert's handling view, a wall tile to choose, a button that
// puts the alarm camera on that tile of the operator's own wall (kept by the dashboard, so the wall in another
// window or on another PC logged in as the same user shows it within a second) and "restore" (恢复) that puts
// back what the tile showed before.  The box is placed after the detail's action buttons (#d-actions), found
// at run time, and put back if the detail is rebuilt.  Strings from i18n/wall.<locale>.json.
"use strict";
const RW = {
  wall: null, // the user's wall as last read: {layout, version, tiles: [{tile, camera, pushed}]}
  box: null,
  ready: null,

  // the page's catalogue first (app.js loads it), then the wall pair merged into it
  async catalogue() {
    while (!(SE.me && SE.messages && SE.messages["app.name"])) await new Promise(r => setTimeout(r, 100));
    const res = await fetch(`/static/i18n/wall.${SE.locale}.json`);
    Object.assign(SE.messages, await res.json());
  },

  build() {
    const pick = SE.el("select", { id: "d-wall-tile", "aria-label": SE.t("wallpush.label") });
    const push = SE.el("button", { type: "button", id: "d-wall-push", text: SE.t("wallpush.push") });
    const restore = SE.el("button", { type: "button", id: "d-wall-restore", text: SE.t("wallpush.restore") });
    const status = SE.el("span", { id: "d-wall-status", class: "dim", role: "status" });
    const box = SE.el("div", { id: "d-wall", class: "inline-form wall-push", "data-testid": "wall-push" },
      SE.el("span", { text: SE.t("wallpush.label") }), pick, push, restore, status);
    restore.hidden = true;
    pick.addEventListener("change", () => RW.paint());
    pick.addEventListener("focus", () => RW.load());
    push.addEventListener("click", () => RW.send("/api/wall/push", { tile: Number(pick.value), alert_id: RW.alertId() },
                                                 "wallpush.done"));
    restore.addEventListener("click", () => RW.send("/api/wall/restore", { tile: Number(pick.value) },
                                                    "wallpush.restored"));
    return box;
  },

  // the box in the handling view, after its action buttons (put back if the detail was rebuilt)
  place() {
    const detail = document.getElementById("detail");
    if (!detail) return;
    if (!RW.box) RW.box = RW.build();
    if (detail.contains(RW.box)) return;
    const actions = document.getElementById("d-actions");
    if (actions && detail.contains(actions)) actions.after(RW.box); else detail.append(RW.box);
  },

  alertId() { return (document.getElementById("detail") || {}).dataset.alertId; },

  async load() {
    try { RW.wall = await SE.api("/api/wall"); RW.paint(); } catch (e) { RW.say(SE.t("wallpush.failed", { why: SE.errorText(e) })); }
  },

  // the tile list: each tile with the camera it shows; restore only for a pushed tile
  paint() {
    if (!RW.wall || !RW.box) return;
    const pick = RW.box.querySelector("#d-wall-tile");
    const chosen = pick.value || "1";
    pick.replaceChildren(...RW.wall.tiles.map(t => SE.el("option", {
      value: String(t.tile),
      text: SE.t("wallpush.tile_cam", { n: t.tile, camera: t.camera ? t.camera.name : SE.t("wallpush.empty") })
        + (t.pushed ? ` · ${SE.t("wallpush.pushed")}` : ""),
    })));
    pick.value = RW.wall.tiles.some(t => String(t.tile) === chosen) ? chosen : "1";
    const tile = RW.wall.tiles.find(t => String(t.tile) === pick.value);
    const restore = RW.box.querySelector("#d-wall-restore");
    restore.hidden = !(tile && tile.pushed);
    restore.title = tile && tile.pushed
      ? SE.t("wallpush.restore_to", { camera: tile.pushed.previous ? tile.pushed.previous.name : SE.t("wallpush.empty") }) : "";
  },

  say(text) { if (RW.box) RW.box.querySelector("#d-wall-status").textContent = text; },

  async send(path, body, doneKey) {
    const buttons = RW.box.querySelectorAll("button");
    buttons.forEach(b => { b.disabled = true; });
    try {
      RW.wall = await SE.api(path, { method: "POST", body });
      RW.paint();
      RW.say(SE.t(doneKey, { n: body.tile }));
    } catch (e) {
      RW.say(SE.t("wallpush.failed", { why: SE.errorText(e) }));
    } finally { buttons.forEach(b => { b.disabled = false; }); }
  },

  async init() {
    const detail = document.getElementById("detail");
    if (!detail) return;
    await RW.catalogue();
    RW.place();
    const onAlert = () => { RW.place(); RW.say(""); if (!detail.hidden) RW.load(); };
    new MutationObserver(onAlert).observe(detail, { attributes: true, attributeFilter: ["data-alert-id", "hidden"] });
    new MutationObserver(() => RW.place()).observe(detail, { childList: true, subtree: true });
    if (!detail.hidden) RW.load();
  },
};
window.RoomWall = RW;
RW.init().catch(console.error);
