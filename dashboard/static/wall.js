// Camera wall: 1/4/9/16 tiles of live video (player.js), cameras picked per tile, by grid cell or by a
// patrol plan's tour (tour.js: tiles advance every dwell, a touch pauses, marks per tile),
// health per tile from the camera statuses (polled, and pushed at once over the event stream when a
// camera goes offline), a tile enlarged to the main stream.
// The wall is the user's, kept by the dashboard (/api/wall): every window or PC logged in as the user shows
// the same tiles, it opens on the first cameras of the user's grid cells until they pick others, and a
// camera the command room pushes onto a tile ("push to wall") shows here within about a second (the page
// polls the wall's version), marked, with a restore button that brings back what the tile showed.
// The layout is also written to the URL's hash (#layout=4&cams=a,b or #layout=9&cell=G1): opening a
// bookmark with cameras or a cell sets the wall to it.
"use strict";

const W = { cams: {}, order: [], cells: [], layout: 4, picks: [], cell: "", tiles: [], enlarged: null,
            version: -1, pushed: [], polling: false, hashWall: false, ready: false };
const WALL_POLL_MS = 1000;
window.__wall = W; // the browser tests read players' figures from here

function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  const n = Number(h.get("layout"));
  W.layout = [1, 4, 9, 16].includes(n) ? n : 4;
  W.cell = h.get("cell") || "";
  W.picks = (h.get("cams") || "").split(",").map(c => c || null);
  W.enlarged = h.get("main") || null;
  W.hashWall = Boolean(W.cell || h.get("cams")); // a bookmark that names the cameras sets the wall
  W.hashLayout = h.has("layout");
}

function writeHash() {
  const h = new URLSearchParams();
  h.set("layout", String(W.layout));
  if (W.cell) h.set("cell", W.cell);
  else if (W.picks.some(Boolean)) h.set("cams", W.picks.slice(0, W.layout).map(p => p || "").join(","));
  if (W.enlarged) h.set("main", W.enlarged);
  history.replaceState(null, "", "#" + h.toString());
}

function tileCameras() {
  if (W.enlarged) return [W.enlarged];
  if (window.Tour && Tour.active()) return Tour.cameras(); // a patrol tour decides what each tile shows
  const ids = W.picks;
  const out = [];
  for (let i = 0; i < W.layout; i++) out.push(ids[i] && W.cams[ids[i]] ? ids[i] : null);
  return out;
}

function render() {
  for (const t of W.tiles) if (t.player) t.player.close();
  W.tiles = [];
  const wall = document.getElementById("wall");
  const ids = tileCameras();
  wall.dataset.layout = String(W.enlarged ? 1 : W.layout);
  document.querySelectorAll(".layouts button").forEach(b =>
    b.classList.toggle("here", !W.enlarged && Number(b.dataset.layout) === W.layout));
  document.getElementById("w-back").hidden = !W.enlarged;
  document.getElementById("w-cell").value = W.cell;
  wall.replaceChildren();
  ids.forEach((id, i) => {
    const tile = makeTile(id, i);
    wall.append(tile.el);
    W.tiles.push(tile);
    paintHealth(tile);
  });
  if (!W.order.length) wall.append(SE.el("p", { class: "empty", text: SE.t("wall.no_cameras") }));
}

// One tile showing camera ``id`` (or none) at position ``i``, its player started.
function makeTile(id, i) {
  const tpl = document.getElementById("tile-tpl");
  const el = tpl.content.firstElementChild.cloneNode(true);
  applyLiveI18n(el);
  const tile = {
    el, index: i, camera: id, player: null,
    video: el.querySelector("video"), img: el.querySelector("img"), canvas: el.querySelector("canvas"),
    onState: (state, detail) => setTileState(tile, state, detail),
  };
  const touring = window.Tour && Tour.active();
  const pick = el.querySelector(".cam-pick");
  pick.append(SE.el("option", { value: "", text: SE.t("wall.choose") }));
  for (const cid of W.order) pick.append(SE.el("option", { value: cid, text: `${W.cams[cid].name} · ${W.cams[cid].grid_cell.name}` }));
  pick.value = id || "";
  pick.disabled = Boolean(W.enlarged) || touring;
  pick.addEventListener("change", () => {
    W.cell = "";
    W.picks = tileCameras().slice();
    W.picks[i] = pick.value || null;
    writeHash();
    render();
    save();
  });
  el.querySelector(".enlarge").addEventListener("click", () => {
    if (!tile.camera || (window.Tour && Tour.active())) return;
    W.enlarged = W.enlarged ? null : tile.camera;
    writeHash();
    render();
  });
  el.addEventListener("dblclick", () => el.querySelector(".enlarge").click());
  if (id) {
    el.dataset.camera = id;
    const cam = W.cams[id];
    const stream = W.enlarged && cam.main_stream ? "main" : "sub";
    tile.player = new LivePlayer(tile, cam, { stream });
    if (tile.player.format === "jpeg") document.getElementById("w-note").textContent = SE.t("wall.fallback");
  }
  const restore = el.querySelector(".restore");
  restore.textContent = SE.t("wallpush.restore");
  restore.addEventListener("click", () => restoreTile(i));
  paintPushed(tile);
  if (window.Tour) Tour.decorate(tile);
  return tile;
}

// ------------------------------------------------------------------ the user's wall, kept by the dashboard

// a pushed tile: outlined, marked, and its restore button says what comes back
function paintPushed(tile) {
  const p = !W.enlarged && !(window.Tour && Tour.active()) ? W.pushed[tile.index] : null;
  const on = Boolean(p && tile.camera);
  tile.el.dataset.pushed = String(on);
  const mark = tile.el.querySelector(".pushed-mark");
  const btn = tile.el.querySelector(".restore");
  mark.hidden = btn.hidden = !on;
  mark.textContent = on ? SE.t("wallpush.pushed") : "";
  btn.title = on ? SE.t("wallpush.restore_to", { camera: p.previous ? p.previous.name : SE.t("wallpush.empty") }) : "";
}

function noteError(e) { document.getElementById("w-note").textContent = SE.t("wallpush.saved_failed", { why: SE.errorText(e) }); }

// the server's wall into the page: tiles whose camera changed get a new player, the others keep playing
function applyWall(st) {
  if (st.version < W.version) return; // an older answer overtaken by a newer one
  const before = tileCameras();
  const layoutBefore = W.layout;
  const pushedBefore = W.pushed.map(p => (p ? p.at : null));
  W.version = st.version;
  W.picks = st.tiles.map(t => (t.camera ? t.camera.id : null));
  W.pushed = st.tiles.map(t => t.pushed);
  if (window.Tour && Tour.active()) return; // the tour decides the tiles; the wall comes back after it
  W.layout = st.layout;
  if (!W.ready) return; // the first answer: the page renders once it has it
  const newPush = W.pushed.some((p, i) => p && p.at !== pushedBefore[i]);
  if (W.enlarged && newPush) W.enlarged = null; // a pushed alarm camera must be seen
  const after = tileCameras();
  if (W.layout !== layoutBefore || W.tiles.length !== after.length || W.enlarged) render();
  else {
    after.forEach((id, i) => { if (id !== before[i]) replaceTile(i, id); else paintPushed(W.tiles[i]); });
  }
  if (W.cell && after.some(id => id && W.cams[id] && W.cams[id].grid_cell.id !== W.cell)) W.cell = "";
  document.getElementById("w-cell").value = W.cell;
  writeHash();
}

// the operator's layout and cameras, kept for every window of this user
async function save() {
  const cameras = [];
  for (let i = 0; i < W.layout; i++) cameras.push(W.picks[i] || null);
  try {
    applyWall(await SE.api("/api/wall", { method: "PUT", body: { layout: W.layout, cameras } }));
    document.getElementById("w-note").textContent = "";
  } catch (e) { noteError(e); }
}

async function pollWall() {
  if (W.polling) return; // a slow server must not pile polls up
  W.polling = true;
  try {
    const st = await SE.api("/api/wall");
    if (st.version !== W.version) applyWall(st);
  } catch (e) { /* the stale banner speaks for a server that does not answer */ } finally { W.polling = false; }
}

async function restoreTile(i) {
  try { applyWall(await SE.api("/api/wall/restore", { method: "POST", body: { tile: i + 1 } })); } catch (e) { noteError(e); }
}

// the wall the page opens on: a bookmark naming cameras or a cell sets it, otherwise the user's own
async function loadWall() {
  if (W.hashWall) {
    if (W.cell) W.picks = W.order.filter(id => W.cams[id].grid_cell.id === W.cell).slice(0, W.layout);
    W.picks = W.picks.map(id => (id && W.cams[id] ? id : null));
    await save();
    return;
  }
  const layout = W.layout;
  try { applyWall(await SE.api("/api/wall")); } catch (e) { noteError(e); }
  if (W.hashLayout && layout !== W.layout) { W.layout = layout; render(); } // a patrol link names its layout
}

// The tour moves one tile on: only that tile's player changes, the others keep playing.
function replaceTile(i, id) {
  const old = W.tiles[i];
  if (!old) return null;
  if (old.player) old.player.close();
  const tile = makeTile(id, i);
  old.el.replaceWith(tile.el);
  W.tiles[i] = tile;
  paintHealth(tile);
  return tile;
}
W.render = () => render();
W.replaceTile = replaceTile;

function setTileState(tile, state, detail) {
  tile.el.dataset.state = state;
  const msg = tile.el.querySelector(".tile-msg");
  const key = { connecting: "wall.connecting", reconnecting: "wall.reconnecting", stale: "wall.stale",
                forbidden: "wall.forbidden" }[state];
  msg.textContent = key ? SE.t(key) + (detail ? ` (${detail})` : "") : "";
}

function paintHealth(tile) {
  const cam = tile.camera && W.cams[tile.camera];
  const el = tile.el;
  if (!cam) { el.dataset.online = ""; return; }
  if (feed.stale) { // the page hears nothing: what it last knew is no claim about now
    el.dataset.online = "unknown";
    el.querySelector(".badge").textContent = SE.t("wall.unknown");
    el.querySelector(".fps").textContent = "";
    el.querySelector(".skipped").textContent = "";
    return;
  }
  el.dataset.online = String(Boolean(cam.online));
  el.querySelector(".badge").textContent = cam.online ? SE.t("wall.online") : `${SE.t("wall.offline")} · ${cam.state}`;
  el.querySelector(".fps").textContent = cam.fps !== null && cam.fps !== undefined ? SE.t("wall.fps", { fps: cam.fps.toFixed(1) }) : "";
  el.querySelector(".skipped").textContent = cam.skipped_fps ? SE.t("wall.skipped", { n: cam.skipped_fps.toFixed(1) }) : "";
  el.querySelector(".seen").textContent = cam.last_seen ? SE.t("wall.last_seen", { t: SE.fmt(cam.last_seen, false) }) : "";
}

function paintAll() {
  W.tiles.forEach(paintHealth);
  W.tiles.forEach(paintPushed);
  if (window.Tour) Tour.health(); // a toured camera that went offline is skipped at once
}

let refreshing = false; // a frozen server must not pile up polls

async function refresh(first) {
  if (refreshing && !first) return;
  refreshing = true;
  let data;
  try { data = await SE.api("/api/live/cameras"); } finally { refreshing = false; }
  const known = new Set(W.order);
  W.cams = {};
  W.order = [];
  for (const c of data.cameras) { W.cams[c.id] = c; W.order.push(c.id); }
  W.cells = data.cells;
  if (first) {
    const sel = document.getElementById("w-cell");
    for (const c of W.cells) sel.append(SE.el("option", { value: c.id, text: `${c.name} (${c.id})` }));
  }
  const changed = W.order.length !== known.size || W.order.some(id => !known.has(id));
  if (first) return; // the wall's own state comes next (loadWall)
  if (changed && !(window.Tour && Tour.active())) render(); else paintAll();
}

// The page's event stream, honest about itself (the room page's pattern): the server beats every few
// seconds while it hears from the bus.  No beat for STALE_MS and the page says so (banner, tiles dimmed,
// health badges "status unknown" instead of a green "online" nobody can vouch for) and the stream is made
// again with backoff (1 s doubling to 8 s); once beats come again the health is reloaded.  Camera events
// arrive at once over it: a camera that goes offline turns red now.
const STALE_MS = 10000;
const feed = {
  es: null, lastBeat: Date.now(), lastTry: Date.now(), backoff: 1000, timer: null, stale: false, connects: 0,

  connect() {
    feed.lastTry = Date.now();
    feed.connects += 1;
    const es = new EventSource("/api/stream");
    feed.es = es;
    const on = (name, fn) => es.addEventListener(name, ev => { if (feed.es === es) fn(ev); });
    on("heartbeat", () => feed.beat());
    on("message", ev => {
      const m = JSON.parse(ev.data);
      if (m.type !== "camera" || !W.cams[m.camera.id]) return;
      Object.assign(W.cams[m.camera.id], { online: m.phase === "online", state: m.state });
      paintAll();
    });
    on("cameras", ev => {
      for (const c of JSON.parse(ev.data)) {
        if (W.cams[c.id]) Object.assign(W.cams[c.id], { online: c.online, state: c.state });
      }
      paintAll();
    });
    on("unavailable", () => feed.retry());
    es.addEventListener("error", () => { if (feed.es === es) feed.retry(); });
  },

  retry() {
    SE.reconnectLater(feed);
  },

  beat() {
    feed.lastBeat = Date.now();
    feed.backoff = 1000;
    if (feed.stale) {
      setStale(false);
      refresh(false).catch(console.error); // what changed while the page could not hear
    }
  },

  // once a second: stale after STALE_MS without a beat; a stream silent that long (a frozen server, a cut
  // network that never errors) is dropped and made again
  watch() {
    const now = Date.now();
    if (now - feed.lastBeat > STALE_MS && !feed.stale) setStale(true);
    if (now - Math.max(feed.lastBeat, feed.lastTry) > STALE_MS && !feed.timer) feed.retry();
  },
};
W.feed = feed;

function setStale(on) {
  feed.stale = on;
  const b = document.getElementById("stale-banner");
  if (on) b.textContent = SE.t("conn.stale", { since: SE.fmt(feed.lastBeat / 1000, false) });
  b.hidden = !on;
  document.body.dataset.stale = String(on);
  paintAll();
}

async function loadWallI18n() {
  const res = await fetch(`/static/i18n/wall.${SE.locale}.json`);
  Object.assign(SE.messages, await res.json());
  document.querySelectorAll("[data-wi18n]").forEach(el => { el.textContent = SE.t(el.dataset.wi18n); });
}

SE.start().then(async () => {
  await loadLiveI18n();
  await loadWallI18n();
  if (window.Tour) await Tour.loadI18n();
  readHash();
  document.querySelectorAll(".layouts button").forEach(b => b.addEventListener("click", () => {
    W.layout = Number(b.dataset.layout);
    W.enlarged = null;
    writeHash();
    render();
    save();
  }));
  document.getElementById("w-cell").addEventListener("change", ev => {
    W.cell = ev.target.value;
    W.enlarged = null;
    if (W.cell) W.picks = W.order.filter(id => W.cams[id].grid_cell.id === W.cell).slice(0, W.layout);
    writeHash();
    render();
    save();
  });
  document.getElementById("w-back").addEventListener("click", () => { W.enlarged = null; writeHash(); render(); });
  await refresh(true);
  await loadWall();
  W.ready = true;
  render();
  if (window.Tour) await Tour.init();
  feed.connect();
  setInterval(feed.watch, 1000);
  setInterval(() => refresh(false).catch(console.error), 2000);
  setInterval(pollWall, WALL_POLL_MS);
  window.addEventListener("pagehide", () => W.tiles.forEach(t => t.player && t.player.close()));
}).catch(console.error);
