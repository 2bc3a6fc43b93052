// Log-in page: the only page served without a session. The language is the browser's until someone logs in.
"use strict";
(async () => {
  const saved = localStorage.getItem("sharpeye.locale");
  await SE.loadCatalogue(saved || (navigator.language.startsWith("zh") ? "zh-CN" : "en"));
  SE.applyI18n();
  document.querySelectorAll("[data-lang]").forEach(a => a.addEventListener("click", async ev => {
    ev.preventDefault();
    localStorage.setItem("sharpeye.locale", a.dataset.lang);
    await SE.loadCatalogue(a.dataset.lang);
    SE.applyI18n();
  }));
  const err = document.getElementById("error");
  document.getElementById("login").addEventListener("submit", async ev => {
    ev.preventDefault();
    err.hidden = true;
    try {
      const res = await fetch("/api/login", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: document.getElementById("username").value,
                               password: document.getElementById("password").value }),
      });
      const data = await res.json();
      if (!res.ok) {
        const d = data.detail || {};
        const key = `error.${d.code || "error"}`;
        err.textContent = SE.messages[key] ? SE.t(key, d) : SE.t("error.error", { code: d.code || res.status });
        err.hidden = false;
        return;
      }
      localStorage.setItem("sharpeye.locale", data.user.locale);
      location.href = "/";
    } catch (e) {
      err.textContent = SE.t("error.network");
      err.hidden = false;
    }
  });
})();
