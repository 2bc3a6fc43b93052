// Live player for one wall tile: fragmented MP4 over a WebSocket into Media Source Extensions, with
// live-edge control, detection overlays drawn on a canvas by media time, and a JPEG fallback.
//
// Why each part (measured, see docs/live.md):
// - one fragment per frame and a new viewer starting at the cached keyframe give a first picture in ~0.3 s;
// - Chromium keeps a small buffer of its own; without control the player drifts behind or stalls:
//   target TARGET_FRAMES frames ahead, one more frame after each stall, play at 1.1x to catch up,
//   jump when more than a second late;
// - boxes are keyed by the fragment's media time and drawn from requestVideoFrameCallback with the
//   presented frame's mediaTime: picking boxes by currentTime chooses the wrong frame most of the time;
// - browsers without MSE get JPEG pictures over the same WebSocket (an <img> per MJPEG stream would
//   count against the browser's 6 connections per host and starve the page's own requests).
"use strict";

const LIVE = {
  TARGET_FRAMES: 6,
  MAX_TARGET_FRAMES: 12, // stalls add a frame each, up to this: a stall that goes on is a stuck decoder, not a slow network
  MAX_LATE_S: 1.0,
  CATCH_UP_RATE: 1.1,
  HOLD_S: 0.6,          // a frame without its own detection shows the last boxes this long (dashed)
  KEEP_BUFFER_S: 8,     // buffered video kept behind the play position
  STALE_S: 3,           // no fragment for this long: the tile says the picture is stale
  OVERLAYS_KEPT: 400,
};

class LivePlayer {
  // tile: {video, img, canvas, onState(state, detail)}; camera: {id, zones, lines}
  constructor(tile, camera, opts) {
    this.tile = tile;
    this.camera = camera;
    this.stream = (opts && opts.stream) || "sub";
    this.format = (opts && opts.format) || (LivePlayer.mseSupported() ? "fmp4" : "jpeg");
    this.closed = false;
    this.retry = 0;
    this.overlays = [];           // [{t, objects, exact}] ascending t, current timeline only
    this.stats = { opened: 0, firstFrameMs: null, fragments: 0, bytes: 0, framesPresented: 0, overlayMsgs: 0,
                   drawnExact: 0, drawnHeld: 0, drawnNone: 0, stalls: 0, jumps: 0, jpegs: 0, lastMediaTime: null,
                   lastFragmentAt: 0, hello: null, error: null, timeline: null, latencyS: null, presentLagS: [] };
    this.exactTimes = new Set();   // media times of frames drawn with their own detection (for tests)
    this.open();
  }

  static mseSupported() {
    return typeof window.MediaSource !== "undefined" && new URLSearchParams(location.search).get("fallback") !== "jpeg";
  }

  url() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return `${proto}//${location.host}/api/live/${encodeURIComponent(this.camera.id)}` +
      `?stream=${this.stream}&format=${this.format}`;
  }

  open() {
    if (this.closed) return;
    this.t0 = performance.now();
    this.stats.opened += 1;
    this.tile.onState("connecting");
    const ws = new WebSocket(this.url());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onmessage = ev => {
      if (typeof ev.data === "string") this.onJson(JSON.parse(ev.data));
      else this.onBinary(new Uint8Array(ev.data));
    };
    ws.onclose = ev => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closed) return;
      if (ev.code === 4401) { location.href = "/login"; return; }
      if (ev.code === 4403 || ev.code === 4404) { this.tile.onState("forbidden", this.stats.error); return; }
      // the worker restarted, the camera was reconfigured, or we fell behind: start again at a keyframe
      const delay = Math.min(5000, 300 * 2 ** this.retry++);
      this.tile.onState("reconnecting", this.stats.error);
      this.reconnectTimer = setTimeout(() => { this.teardown(); this.open(); }, delay);
    };
  }

  onJson(m) {
    if (m.type === "hello") {
      this.stats.hello = m;
      if (m.format === "fmp4") {
        if (!m.mime || !MediaSource.isTypeSupported(m.mime)) {  // a codec this browser cannot play: pictures
          this.format = "jpeg";
          this.ws.close();
          return;
        }
        this.startMse(m);
      } else {
        this.showImg(true);
      }
    } else if (m.type === "overlay") {
      if (m.timeline !== this.stats.timeline) return;
      this.stats.overlayMsgs += 1;
      this.overlays.push(m);
      if (this.overlays.length > LIVE.OVERLAYS_KEPT) this.overlays.splice(0, this.overlays.length - LIVE.OVERLAYS_KEPT);
    } else if (m.type === "error") {
      this.stats.error = m.code;
    }
  }

  onBinary(buf) {
    const kind = String.fromCharCode(buf[0]);
    const payload = buf.subarray(1);
    if (kind === "I" || kind === "F") {
      if (kind === "F") {
        this.stats.fragments += 1;
        this.stats.bytes += payload.length;
        this.stats.lastFragmentAt = performance.now();
      }
      this.queue.push(payload);
      this.pump();
    } else if (kind === "J") {
      this.stats.jpegs += 1;
      this.stats.lastFragmentAt = performance.now();
      const url = URL.createObjectURL(new Blob([payload], { type: "image/jpeg" }));
      const img = this.tile.img;
      img.onload = () => {
        URL.revokeObjectURL(url);
        if (this.stats.firstFrameMs === null) this.stats.firstFrameMs = performance.now() - this.t0;
        this.tile.onState("playing");
      };
      img.src = url;
    }
  }

  // ---------------------------------------------------------------- MSE
  startMse(hello) {
    this.teardownMse();
    this.showImg(false);
    this.stats.timeline = hello.timeline;
    this.overlays = [];
    this.queue = [];
    this.target = LIVE.TARGET_FRAMES;
    this.frameS = 0.04;
    const ms = new MediaSource();
    this.ms = ms;
    const video = this.tile.video;
    video.muted = true;
    video.playsInline = true;
    video.src = URL.createObjectURL(ms);
    ms.addEventListener("sourceopen", () => {
      if (this.ms !== ms) return;
      URL.revokeObjectURL(video.src);
      this.sb = ms.addSourceBuffer(hello.mime);
      this.sb.mode = "segments";
      this.sb.addEventListener("updateend", () => { this.edge(); this.pump(); });
      this.pump();
    }, { once: true });
    video.onwaiting = () => {
      if (this.stats.firstFrameMs !== null) {
        this.stats.stalls += 1;
        this.target = Math.min(this.target + 1, LIVE.MAX_TARGET_FRAMES);
      }
    };
    this.frameCallback();
    clearInterval(this.edgeTimer);
    this.edgeTimer = setInterval(() => this.edge(), 250);
  }

  pump() {
    const sb = this.sb;
    if (!sb || sb.updating || !this.queue.length || !this.ms || this.ms.readyState !== "open") return;
    try {
      sb.appendBuffer(this.queue.shift());
    } catch (e) {
      if (e.name === "QuotaExceededError") { this.trim(true); return; }
      this.stats.error = "append_failed";
      if (this.ws) this.ws.close();
    }
  }

  edge() {
    const video = this.tile.video, sb = this.sb;
    if (!sb || sb.updating || !sb.buffered.length) return;
    const end = sb.buffered.end(sb.buffered.length - 1);
    const start = sb.buffered.start(sb.buffered.length - 1);
    const ahead = this.target * this.frameS;
    const lag = end - video.currentTime;
    const now = performance.now();
    if (video.currentTime !== this.lastCt) { this.lastCt = video.currentTime; this.lastMove = now; }
    // Chromium sometimes sits on a frame with data buffered after it (a stall at the very start): seek past it.
    // Measured against the base target, not `ahead`: each "waiting" event of such a stall adds a frame to the
    // target, which would otherwise grow as fast as the lag and never let the stall count as stuck.
    const base = LIVE.TARGET_FRAMES * this.frameS;
    const stuck = lag > base && now - (this.lastMove || now) > 1000;
    if (video.currentTime < start || lag > ahead + LIVE.MAX_LATE_S || stuck) {
      video.currentTime = Math.max(start, end - (stuck ? base : ahead));
      if (stuck) this.target = LIVE.TARGET_FRAMES; // the data was there: not a network the buffer must cover
      this.lastMove = now;
      if (this.stats.firstFrameMs !== null) this.stats.jumps += 1;
    }
    video.playbackRate = lag > ahead * 1.5 ? LIVE.CATCH_UP_RATE : 1.0;
    if (video.paused) video.play().catch(() => {});
    this.stats.latencyS = lag;
    this.trim(false);
    const stale = this.stats.lastFragmentAt && performance.now() - this.stats.lastFragmentAt > LIVE.STALE_S * 1000;
    if (stale) this.tile.onState("stale");
  }

  trim(force) {
    const video = this.tile.video, sb = this.sb;
    if (!sb || sb.updating || !sb.buffered.length) return;
    const start = sb.buffered.start(0);
    const cut = video.currentTime - LIVE.KEEP_BUFFER_S;
    if (cut - start > (force ? 0.5 : 4)) {
      try { sb.remove(start, cut); } catch (e) { /* retried at the next update */ }
    }
  }

  // ---------------------------------------------------------------- overlays by media time
  frameCallback() {
    const video = this.tile.video;
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
    const cb = (_now, meta) => {
      if (this.closed || this.tile.video !== video) return;
      this.onFrame(meta);
      video.requestVideoFrameCallback(cb);
    };
    video.requestVideoFrameCallback(cb);
  }

  onFrame(meta) {
    const t = meta.mediaTime;
    this.stats.framesPresented += 1;
    this.stats.lastMediaTime = t;
    if (this.stats.firstFrameMs === null) {
      this.stats.firstFrameMs = performance.now() - this.t0;
    }
    this.retry = 0;
    this.tile.onState("playing");
    // frame spacing from the presented media times (the live-edge target is in frames)
    if (this.prevT !== undefined && t > this.prevT && t - this.prevT < 0.5) {
      this.frameS = 0.9 * this.frameS + 0.1 * (t - this.prevT);
    }
    this.prevT = t;
    this.draw(t, meta.width, meta.height);
  }

  pick(t) {
    let held = null;
    for (let i = this.overlays.length - 1; i >= 0; i--) {
      const o = this.overlays[i];
      if (Math.abs(o.t - t) < 0.0015) return { o, exact: true };
      if (o.t < t) { held = t - o.t <= LIVE.HOLD_S ? o : null; break; }
    }
    return held ? { o: held, exact: false } : null;
  }

  draw(t, w, h) {
    const canvas = this.tile.canvas, video = this.tile.video;
    const box = fitBox(video.clientWidth, video.clientHeight, w || video.videoWidth, h || video.videoHeight);
    if (canvas.width !== video.clientWidth || canvas.height !== video.clientHeight) {
      canvas.width = video.clientWidth;
      canvas.height = video.clientHeight;
    }
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, canvas.width, canvas.height);
    const X = x => box.x + x * box.w, Y = y => box.y + y * box.h;
    // zones and lines from the config (relative 0-1)
    g.lineWidth = 1.5;
    g.strokeStyle = "rgba(255, 200, 0, 0.9)";
    g.fillStyle = "rgba(255, 200, 0, 0.12)";
    for (const poly of Object.values(this.camera.zones || {})) {
      g.beginPath();
      poly.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
      g.closePath(); g.fill(); g.stroke();
    }
    g.strokeStyle = "rgba(0, 200, 255, 0.95)";
    for (const ln of Object.values(this.camera.lines || {})) {
      g.beginPath(); g.moveTo(X(ln.a[0]), Y(ln.a[1])); g.lineTo(X(ln.b[0]), Y(ln.b[1])); g.stroke();
      drawDirection(g, X(ln.a[0]), Y(ln.a[1]), X(ln.b[0]), Y(ln.b[1]), ln.direction);
    }
    const found = this.pick(t);
    if (!found) { this.stats.drawnNone += 1; return; }
    if (found.exact) {
      this.stats.drawnExact += 1;
      this.exactTimes.add(Math.round(t * 1000));
      // packet received by the worker -> this frame presented (same machine clock in tests)
      if (found.o.received) this.stats.presentLagS.push(Date.now() / 1000 - found.o.received);
      if (this.stats.presentLagS.length > 500) this.stats.presentLagS.shift();
    }
    else this.stats.drawnHeld += 1;
    g.setLineDash(found.exact ? [] : [6, 4]);
    g.lineWidth = 2;
    g.font = "12px sans-serif";
    for (const ob of found.o.objects) {
      const [x1, y1, x2, y2] = ob.box;
      g.strokeStyle = ob.label === "person" ? "#ff3b30" : "#34c759";
      g.strokeRect(X(x1), Y(y1), (x2 - x1) * box.w, (y2 - y1) * box.h);
      const label = `#${ob.id} ${ob.label} ${Math.round(ob.score * 100)}%`;
      g.fillStyle = g.strokeStyle;
      g.fillRect(X(x1), Y(y1) - 15, g.measureText(label).width + 6, 15);
      g.fillStyle = "#fff";
      g.fillText(label, X(x1) + 3, Y(y1) - 3);
    }
    g.setLineDash([]);
  }

  // ---------------------------------------------------------------- lifecycle
  showImg(on) {
    this.tile.img.hidden = !on;
    this.tile.video.hidden = on;
    this.tile.canvas.hidden = on;
  }

  teardownMse() {
    clearInterval(this.edgeTimer);
    if (this.ms) {
      try { if (this.ms.readyState === "open") this.ms.endOfStream(); } catch (e) { /* already ended */ }
    }
    this.ms = null;
    this.sb = null;
    const video = this.tile.video;
    video.removeAttribute("src");
    video.load();
  }

  teardown() {
    this.teardownMse();
    this.prevT = undefined;
  }

  close() {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this.teardown();
    const g = this.tile.canvas.getContext("2d");
    g.clearRect(0, 0, this.tile.canvas.width, this.tile.canvas.height);
  }
}

// where a w x h picture sits inside a cw x ch element with object-fit: contain
function fitBox(cw, ch, w, h) {
  if (!w || !h) return { x: 0, y: 0, w: cw, h: ch };
  const s = Math.min(cw / w, ch / h);
  return { x: (cw - w * s) / 2, y: (ch - h * s) / 2, w: w * s, h: h * s };
}

// an arrow across the middle of a tripwire, pointing to the side whose crossing counts
function drawDirection(g, ax, ay, bx, by, direction) {
  if (direction === "both") return;
  const mx = (ax + bx) / 2, my = (ay + by) / 2;
  // (-dy, dx) is the right of someone standing at A looking at B, in image coordinates (y down), as in rules.py
  let nx = -(by - ay), ny = bx - ax;
  const len = Math.hypot(nx, ny) || 1;
  nx /= len; ny /= len;
  if (direction === "right_to_left") { nx = -nx; ny = -ny; }
  const tx = mx + nx * 18, ty = my + ny * 18;
  g.beginPath(); g.moveTo(mx, my); g.lineTo(tx, ty); g.stroke();
  g.beginPath(); g.moveTo(tx, ty); g.lineTo(tx - nx * 6 - ny * 4, ty - ny * 6 + nx * 4);
  g.lineTo(tx - nx * 6 + ny * 4, ty - ny * 6 - nx * 4); g.closePath(); g.fill();
}

// the live pages' own catalogue (i18n/live.<locale>.json) merged into the page's, and their data-li18n texts
async function loadLiveI18n() {
  const res = await fetch(`/static/i18n/live.${SE.locale}.json`);
  Object.assign(SE.messages, await res.json());
  applyLiveI18n(document);
  if (document.body.dataset.liveTitle) document.title = SE.t(document.body.dataset.liveTitle);
}

function applyLiveI18n(root) {
  root.querySelectorAll("[data-li18n]").forEach(el => { el.textContent = SE.t(el.dataset.li18n); });
  root.querySelectorAll("[data-li18n-title]").forEach(el => { el.title = SE.t(el.dataset.li18nTitle); });
}

window.LivePlayer = LivePlayer;
