// Shared by every page: message catalogues, the CSRF-carrying fetch, times in the config's zone, the header.
"use strict";
const SE = {
  locale: "zh-CN", messages: {}, me: null, tz: undefined,

  async loadCatalogue(locale) {
    SE.locale = locale === "en" ? "en" : "zh-CN";
    document.documentElement.lang = SE.locale;
    const res = await fetch(`/static/i18n/${SE.locale}.json`);
    SE.messages = await res.json();
  },

  // t("key", {n: 3}) -> the string in the user's language with {n} filled in; a missing key shows as [key]
  t(key, vars) {
    let s = SE.messages[key];
    if (s === undefined) { console.warn("missing message", key); return `[${key}]`; }
    for (const [k, v] of Object.entries(vars || {})) s = s.split(`{${k}}`).join(String(v));
    return s;
  },

  // a rule as operators read it: its configured name (rules.<id>.name), else the name of its kind
  ruleName(rule) {
    if (rule && rule.name) return rule.name;
    const kind = (rule || {}).kind;
    return SE.messages[`kind.${kind}`] ? SE.t(`kind.${kind}`) : (kind || "");
  },

  // every element with data-i18n gets its text from the catalogue (also placeholders, titles, aria labels)
  applyI18n(root) {
    const r = root || document;
    r.querySelectorAll("[data-i18n]").forEach(el => { el.textContent = SE.t(el.dataset.i18n); });
    r.querySelectorAll("[data-i18n-placeholder]").forEach(el => { el.placeholder = SE.t(el.dataset.i18nPlaceholder); });
    r.querySelectorAll("[data-i18n-title]").forEach(el => { el.title = SE.t(el.dataset.i18nTitle); });
    const tk = document.body.dataset.titleKey; // a feature page's own catalogue may not have loaded yet
    if (tk && SE.messages[tk] !== undefined) document.title = SE.t(tk);
  },

  async api(path, opts) {
    const o = Object.assign({ headers: {} }, opts || {});
    if (o.body !== undefined && typeof o.body !== "string") {
      o.body = JSON.stringify(o.body);
      o.headers["Content-Type"] = "application/json";
    }
    if (o.method && o.method !== "GET" && SE.me) o.headers["X-CSRF-Token"] = SE.me.csrf;
    const res = await fetch(path, o);
    if (res.status === 401) { location.href = "/login"; throw new Error("no session"); }
    const data = res.headers.get("content-type", "").includes("json") ? await res.json() : await res.text();
    if (!res.ok) {
      const d = (data && data.detail) || {};
      const err = new Error(d.code || String(res.status));
      err.code = d.code || "error"; err.detail = d; err.status = res.status;
      throw err;
    }
    return data;
  },

  errorText(err) {
    const key = `error.${err.code || "error"}`;
    return SE.messages[key] ? SE.t(key, err.detail || {}) : SE.t("error.error", { code: err.code || err.message });
  },

  // 24-hour "YYYY-MM-DD HH:MM:SS" in the config's time zone, whatever the browser's locale says
  fmt(t, withDate) {
    if (t === null || t === undefined) return "";
    const parts = {};
    new Intl.DateTimeFormat("en-GB", {
      timeZone: SE.tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(new Date(t * 1000)).forEach(p => { parts[p.type] = p.value; });
    const time = `${parts.hour}:${parts.minute}:${parts.second}`;
    return withDate === false ? time : `${parts.year}-${parts.month}-${parts.day} ${time}`;
  },

  duration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return SE.t("time.seconds", { n: s });
    if (s < 3600) return SE.t("time.minutes", { m: Math.floor(s / 60), s: s % 60 });
    return SE.t("time.hours", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
  },

  // A live event stream that failed or fell silent: closed, and opened again (feed.connect()) after a back-off
  // that doubles from 1 s to 8 s, with jitter so a room of pages does not come back at once.  ``feed`` holds
  // es, timer and backoff; its beat sets backoff back to 1 s.
  // Lift a shelf early (supervisors), after a confirmation; the outcome in ``out``.  The room's banner and
  // the supervisor page both use it.  Resolves when done or refused, so the caller can reload its list.
  async liftShelf(s, out) {
    if (!confirm(SE.t("shelf.lift_confirm", { camera: s.camera_name }))) return false;
    try {
      await SE.api(`/api/shelves/${s.id}/lift`, { method: "POST", body: {} });
      out.textContent = SE.t("shelf.lifted", { camera: s.camera_name });
    } catch (e) { out.textContent = SE.errorText(e); }
    return true;
  },

  reconnectLater(feed) {
    if (feed.es) { feed.es.close(); feed.es = null; }
    if (feed.timer) return;
    const wait = feed.backoff * (0.8 + 0.4 * Math.random());
    feed.backoff = Math.min(feed.backoff * 2, 8000);
    feed.timer = setTimeout(() => { feed.timer = null; feed.connect(); }, wait);
  },

  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("data-")) e.dataset[k.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
      else e.setAttribute(k, v);
    }
    e.append(...children.filter(c => c !== null && c !== undefined));
    return e;
  },

  // who is logged in, then the catalogue of their language, then the header; every page but log-in starts here
  async start() {
    SE.me = await SE.api("/api/me");
    SE.tz = SE.me.timezone;
    await SE.loadCatalogue(SE.me.user.locale);
    localStorage.setItem("sharpeye.locale", SE.locale); // the log-in page speaks the last user's language
    SE.header();
    SE.applyI18n();
    return SE.me;
  },

  header() {
    const nav = document.getElementById("nav");
    if (!nav) return;
    const links = [["/", "nav.room"], ["/wall", "nav.wall"], ["/map", "nav.map"], ["/history", "nav.history"],
                   ["/search", "nav.search"], ["/reports", "nav.reports"], ["/supervisor", "nav.supervisor"],
                   ["/timeline", "nav.timeline"], ["/exports", "nav.exports"]];
    if (SE.me.can.engineer) links.push(["/engineer", "nav.engineer"], ["/workers", "nav.workers"], ["/zones", "nav.zones"],
                                       ["/watchlists", "nav.watchlists"], ["/audit", "nav.audit"]);
    if (SE.me.can.admin) links.push(["/users", "nav.users"]);
    const lang = SE.el("select", { id: "lang", "aria-label": "language" },
      SE.el("option", { value: "zh-CN", text: "中文" }), SE.el("option", { value: "en", text: "English" }));
    lang.value = SE.locale;
    lang.addEventListener("change", async () => {
      await SE.api("/api/me/locale", { method: "POST", body: { locale: lang.value } });
      location.reload();
    });
    const out = SE.el("button", { id: "logout", type: "button", "data-i18n": "nav.logout" });
    out.addEventListener("click", async () => {
      await SE.api("/api/logout", { method: "POST" });
      location.href = "/login";
    });
    nav.replaceChildren(
      ...links.map(([href, key]) =>
        SE.el("a", { href, "data-i18n": key, class: location.pathname === href ? "here" : "" })),
      SE.el("span", { id: "whoami", class: "who", text: `${SE.me.user.display_name} · ` },
        SE.el("span", { "data-i18n": `role.${SE.me.user.role}` })),
      lang, out);
  },
};
