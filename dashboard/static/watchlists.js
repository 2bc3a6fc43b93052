// Watchlists page (布控): the entries of the user's cells, active and recently expired, with pattern, reason, owner,
// cells and expiry; add one (the API's field errors are shown beside the field) and remove one after a confirmation.
// Engineers and admins only (the route answers operators with the forbidden page). Strings come from
// i18n/watchlists.<locale>.json, merged into the page's catalogue (elements marked data-wli18n).
"use strict";
const WL = {
  FIELDS: ["plate", "reason", "owner", "expires_at", "cells"],
  RECENT_S: 30 * 86400,  // expired entries listed for this long ("recently expired")
  entries: [],
  confirming: null,  // the id whose removal waits for a confirmation

  async catalogue() {
    const res = await fetch(`/static/i18n/watchlists.${SE.locale}.json`);
    Object.assign(SE.messages, await res.json());
    document.querySelectorAll("[data-wli18n]").forEach(el => { el.textContent = SE.t(el.dataset.wli18n); });
    document.querySelectorAll("[data-wli18n-placeholder]").forEach(el => {
      el.placeholder = SE.t(el.dataset.wli18nPlaceholder);
    });
    document.title = SE.t("watchlists.title");
  },

  allCells() { return SE.me.user.cells.includes("*"); },

  cellName(c) {
    if (c === "*") return SE.t("watchlists.every_cell");
    const cell = SE.me.cells[c];
    return cell && cell.name ? `${cell.name} (${c})` : c;
  },

  // the cells this user may give an entry: their own (every cell's users may also give "*")
  cellChoices() {
    const box = document.getElementById("wl-cells");
    const ids = Object.keys(SE.me.cells).sort();
    const choices = (WL.allCells() ? ["*"] : []).concat(ids);
    box.replaceChildren(...choices.map(c => {
      const input = SE.el("input", { type: "checkbox", value: c, "data-cell": c });
      if (choices.length === 1) input.checked = true;
      return SE.el("label", { class: "wl-cell" }, input, ` ${WL.cellName(c)}`);
    }));
    document.getElementById("wl-owner").placeholder = SE.me.user.username;  // the API's default owner
  },

  clearErrors() {
    for (const f of WL.FIELDS) {
      const p = document.getElementById(`wl-${f}-error`);
      p.hidden = true; p.textContent = "";
      p.closest(".wl-field").dataset.invalid = "false";
    }
    const g = document.getElementById("wl-error");
    g.hidden = true; g.textContent = "";
  },

  showFieldError(field, text) {
    const p = document.getElementById(`wl-${field}-error`);
    p.textContent = text; p.hidden = false;
    p.closest(".wl-field").dataset.invalid = "true";
    const input = p.closest(".wl-field").querySelector("input, textarea, select");
    if (input) input.setAttribute("aria-invalid", "true");
  },

  // what the grammar check said about a plate, in the user's words
  plateProblem(msg) {
    const m = String(msg || "");
    if (m.includes("too short")) return SE.t("watchlists.err.plate_short");
    if (m.includes("unknown character")) return SE.t("watchlists.err.plate_unknowns");
    if (m.includes("whatever the ?")) return SE.t("watchlists.err.plate_no_fit");
    return SE.t("watchlists.err.bad_plate");
  },

  // the API's refusal, beside the field it names (the body's checks list fields; the scope checks name one)
  showError(err) {
    const d = err.detail || {};
    if (err.code === "invalid_request" && Array.isArray(d.errors) && d.errors.length) {
      let shown = false;
      for (const e of d.errors) {
        const field = (e.loc || []).find(x => WL.FIELDS.includes(x));
        if (!field) continue;
        WL.showFieldError(field, field === "plate" ? WL.plateProblem(e.msg) : SE.t(`watchlists.err.${field}`));
        shown = true;
      }
      if (shown) return;
    }
    const key = `watchlists.err.${err.code}`;
    const text = err.code === "bad_plate" ? WL.plateProblem(d.message)
      : SE.messages[key] ? SE.t(key, d) : SE.errorText(err);
    if (d.field && WL.FIELDS.includes(d.field)) WL.showFieldError(d.field, text);
    else { const g = document.getElementById("wl-error"); g.textContent = text; g.hidden = false; }
  },

  async add(ev) {
    ev.preventDefault();
    WL.clearErrors();
    const status = document.getElementById("wl-status");
    status.textContent = "";
    const days = Number(document.getElementById("wl-expiry").value);
    const owner = document.getElementById("wl-owner").value.trim();
    const body = {
      plate: document.getElementById("wl-plate").value.trim(),
      reason: document.getElementById("wl-reason").value.trim(),
      cells: [...document.querySelectorAll("#wl-cells input:checked")].map(i => i.value),
      expires_at: days > 0 ? Math.round(Date.now() / 1000 + days * 86400) : null,
    };
    if (owner) body.owner = owner;
    const btn = document.getElementById("wl-submit");
    btn.disabled = true;
    try {
      const entry = await SE.api("/api/watchlists", { method: "POST", body });
      document.getElementById("wl-plate").value = "";
      document.getElementById("wl-reason").value = "";
      status.textContent = SE.t(entry.mirrored === false ? "watchlists.added_later" : "watchlists.added_ok",
                                { plate: entry.plate });
      await WL.refresh();
    } catch (e) {
      WL.showError(e);
    } finally {
      btn.disabled = false;
    }
  },

  mayRemove(e) {
    if (WL.allCells() || e.created_by === SE.me.user.username) return true;
    return !e.cells.includes("*") && e.cells.every(c => SE.me.user.cells.includes(c));
  },

  async remove(e) {
    const err = document.getElementById("wl-list-error");
    err.hidden = true;
    try {
      await SE.api(`/api/watchlists/${e.id}`, { method: "DELETE" });
      document.getElementById("wl-status").textContent = SE.t("watchlists.removed_ok", { plate: e.plate });
    } catch (x) {
      const key = `watchlists.err.${x.code}`;
      err.textContent = SE.messages[key] ? SE.t(key, x.detail || {}) : SE.errorText(x);
      err.hidden = false;
    }
    WL.confirming = null;
    await WL.refresh();
  },

  removeCell(e) {
    if (!WL.mayRemove(e)) return SE.el("td");
    if (WL.confirming !== e.id) {
      const btn = SE.el("button", { type: "button", class: "wl-remove", text: SE.t("watchlists.remove") });
      btn.addEventListener("click", () => { WL.confirming = e.id; WL.render(); });
      return SE.el("td", {}, btn);
    }
    const yes = SE.el("button", { type: "button", class: "wl-yes", text: SE.t("watchlists.remove_yes") });
    const no = SE.el("button", { type: "button", class: "wl-no", text: SE.t("watchlists.remove_no") });
    yes.addEventListener("click", () => WL.remove(e));
    no.addEventListener("click", () => { WL.confirming = null; WL.render(); });
    return SE.el("td", { class: "wl-confirm" },
      SE.el("span", { text: SE.t("watchlists.remove_confirm", { plate: e.plate }) }), yes, no);
  },

  render() {
    const now = Date.now() / 1000;
    const showExpired = document.getElementById("wl-expired").checked;
    const rows = WL.entries.filter(e => e.active || (showExpired && now - e.expires_at < WL.RECENT_S));
    document.querySelector("#wl-table tbody").replaceChildren(...rows.map(e => SE.el("tr",
      { "data-id": String(e.id), "data-plate": e.plate, "data-active": String(e.active) },
      SE.el("td", { class: "wl-plate", text: e.plate }),
      SE.el("td", { class: "wl-reason", text: e.reason }),
      SE.el("td", { text: e.owner }),
      SE.el("td", { text: e.cells.map(WL.cellName).join(SE.locale === "en" ? ", " : "、") }),
      SE.el("td", { text: e.expires_at === null ? SE.t("watchlists.never") : SE.fmt(e.expires_at) }),
      SE.el("td", { text: SE.t("watchlists.added_by", { time: SE.fmt(e.created_at), user: e.created_by }) }),
      SE.el("td", { class: "wl-state", text: SE.t(e.active ? "watchlists.active" : "watchlists.expired") }),
      WL.removeCell(e))));
    document.getElementById("wl-empty").hidden = rows.length > 0;
  },

  async refresh() {
    const err = document.getElementById("wl-list-error");
    try {
      WL.entries = (await SE.api("/api/watchlists?expired=true")).entries;
    } catch (e) {
      err.textContent = SE.errorText(e);
      err.hidden = false;
      return;
    }
    WL.render();
  },

  async start() {
    await SE.start();
    await WL.catalogue();
    WL.cellChoices();
    document.getElementById("wl-expired").checked = true;
    document.getElementById("wl-expired").addEventListener("change", WL.render);
    document.getElementById("wl-form").addEventListener("submit", WL.add);
    await WL.refresh();
    document.body.dataset.ready = "true";
  },
};
WL.start();
