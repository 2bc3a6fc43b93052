// Users page (admins): list, add, disable or enable.
"use strict";
async function refresh() {
  const users = await SE.api("/api/users");
  document.querySelector("#users tbody").replaceChildren(...users.map(u => {
    const btn = SE.el("button", { type: "button", "data-i18n": u.disabled ? "users.enable" : "users.disable" });
    btn.addEventListener("click", async () => {
      await SE.api(`/api/users/${encodeURIComponent(u.username)}`, { method: "PATCH", body: { disabled: !u.disabled } });
      refresh();
    });
    const row = SE.el("tr", { "data-user": u.username },
      SE.el("td", { text: u.username }), SE.el("td", { text: u.display_name }),
      SE.el("td", { text: SE.t(`role.${u.role}`) }), SE.el("td", { text: u.cells.join(", ") }),
      SE.el("td", { text: u.locale === "en" ? "English" : "中文" }),
      SE.el("td", { text: SE.t(u.disabled ? "users.disabled" : "users.active") }), SE.el("td", {}, btn));
    SE.applyI18n(row);
    return row;
  }));
}
SE.start().then(() => {
  refresh();
  document.getElementById("add-user").addEventListener("submit", async ev => {
    ev.preventDefault();
    const err = document.getElementById("u-error");
    err.hidden = true;
    try {
      await SE.api("/api/users", { method: "POST", body: {
        username: document.getElementById("u-name").value, display_name: document.getElementById("u-display").value || null,
        password: document.getElementById("u-password").value, role: document.getElementById("u-role").value,
        cells: document.getElementById("u-cells").value.split(","), locale: SE.locale } });
      ev.target.reset();
      refresh();
    } catch (e) { err.textContent = SE.errorText(e); err.hidden = false; }
  });
}).catch(console.error);
