// Workers page (工作节点): the cluster's live workers with capacity, load and last heartbeat, each camera's
// owner worker and fencing token, and the latest camera moves (all cameras, or one: "#camera=<id>").
// Strings come from i18n/workers.<locale>.json, merged into the page's catalogue (elements marked data-wi18n).
"use strict";
const W = {
  camera: null,
  limit: 50,

  async catalogue() {
    const res = await fetch(`/static/i18n/workers.${SE.locale}.json`);
    Object.assign(SE.messages, await res.json());
    document.querySelectorAll("[data-wi18n]").forEach(el => { el.textContent = SE.t(el.dataset.wi18n); });
    document.title = SE.t("workers.title");
  },

  age(now, t) {
    return t === null || t === undefined ? SE.t("workers.none") : SE.t("workers.ago", { age: SE.duration(now - t) });
  },

  async refresh() {
    const err = document.getElementById("w-error");
    let data, moves;
    try {
      const q = W.camera ? `?camera=${encodeURIComponent(W.camera)}&limit=${W.limit}` : `?limit=${W.limit}`;
      [data, moves] = await Promise.all([SE.api("/api/workers"), SE.api(`/api/workers/moves${q}`)]);
      err.hidden = true;
    } catch (e) {
      err.textContent = SE.errorText(e);
      err.hidden = false;
      return;
    }
    const live = data.workers.filter(w => w.live);
    const held = data.cameras.filter(c => c.owner).length;
    document.getElementById("w-summary").textContent = data.enabled || data.workers.length
      ? SE.t("workers.summary", { n: live.length, held, cams: data.cameras.length, ttl: data.ttl_s })
      : SE.t("workers.disabled");
    document.querySelector("#workers tbody").replaceChildren(...data.workers.map(w => {
      let bar = null;
      if (w.fill !== null && w.fill !== undefined) {  // share of its cap in use (CSP: width set through CSSOM)
        const fillEl = SE.el("i");
        fillEl.style.width = `${Math.min(100, Math.round(w.fill * 100))}%`;
        bar = SE.el("span", { class: "w-bar", "data-full": String(w.fill >= 1) }, fillEl);
      }
      return SE.el("tr", { "data-worker": w.id, "data-live": String(w.live), "data-held": String(w.cameras_held) },
        SE.el("td", { text: w.id }), SE.el("td", { text: w.host || SE.t("workers.none") }),
        SE.el("td", { text: String(w.capacity) + (w.max_cameras ? ` (≤ ${w.max_cameras})` : "") }),
        SE.el("td", { class: "held", text: String(w.cameras_held) }),
        SE.el("td", { class: "load", text: w.load.toFixed(2) }, bar),
        SE.el("td", { text: W.age(data.now, w.last_heartbeat) }),
        SE.el("td", { text: SE.t(w.live ? "workers.live" : "workers.dead") }));
    }));
    document.querySelector("#owners tbody").replaceChildren(...data.cameras.map(c => {
      const btn = SE.el("button", { type: "button", "data-camera": c.id, text: SE.t("workers.history") });
      btn.addEventListener("click", () => { location.hash = `camera=${encodeURIComponent(c.id)}`; });
      return SE.el("tr", { "data-camera": c.id, "data-owner": c.owner ? c.owner.worker : "",
                           "data-owned": String(!!c.owner) },
        SE.el("td", { text: c.name === c.id ? c.id : `${c.name} (${c.id})` }),
        SE.el("td", { class: "owner", text: c.owner ? c.owner.worker : SE.t("workers.nobody") }),
        SE.el("td", { class: "token", text: c.owner ? String(c.owner.token) : SE.t("workers.none") }),
        SE.el("td", {}, btn));
    }));
    document.getElementById("m-title").textContent = W.camera
      ? SE.t("workers.moves_of", { camera: W.camera }) : SE.t("workers.moves");
    document.getElementById("m-all").hidden = !W.camera;
    document.querySelector("#moves tbody").replaceChildren(...moves.moves.map(m =>
      SE.el("tr", { "data-camera": m.camera, "data-from": m.from || "", "data-to": m.to || "",
                    "data-token": String(m.token), "data-reason": m.reason || "" },
        SE.el("td", { text: SE.fmt(m.time) }), SE.el("td", { text: m.camera }),
        SE.el("td", { text: m.from || SE.t("workers.none") }), SE.el("td", { text: m.to || SE.t("workers.none") }),
        SE.el("td", { text: String(m.token) }),
        SE.el("td", { text: SE.messages[`workers.reason.${m.reason}`] ? SE.t(`workers.reason.${m.reason}`)
                                                                       : (m.reason || "") }))));
    document.body.dataset.loaded = "true";
  },

  fromHash() {
    const m = /camera=([^&]+)/.exec(location.hash);
    W.camera = m ? decodeURIComponent(m[1]) : null;
  },
};

SE.start().then(async () => {
  await W.catalogue();
  W.fromHash();
  window.addEventListener("hashchange", () => { W.fromHash(); W.refresh(); });
  document.getElementById("m-all").addEventListener("click", () => { location.hash = ""; });
  await W.refresh();
  setInterval(W.refresh, 2000);
}).catch(console.error);
