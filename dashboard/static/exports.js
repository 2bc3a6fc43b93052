// Exports: the helpers every page uses to start one and follow its progress (SEX), the room's "Export clip"
// button in the alert detail, and the exports/cases page.  Strings come from i18n/export.<locale>.json,
// merged into the page's catalogue (elements marked data-xi18n).
"use strict";
const SEX = {
  loaded: false,
  POLL_MS: 400,

  // the export catalogue, once, merged into SE.messages; then every data-xi18n text of the page
  async catalogue() {
    if (!SEX.loaded) {
      const res = await fetch(`/static/i18n/export.${SE.locale}.json`);
      Object.assign(SE.messages, await res.json());
      SEX.loaded = true;
    }
    SEX.apply(document);
    if (document.body.dataset.xtitle) document.title = SE.t(document.body.dataset.xtitle);
  },

  apply(root) {
    root.querySelectorAll("[data-xi18n]").forEach(el => { el.textContent = SE.t(el.dataset.xi18n); });
    root.querySelectorAll("[data-xi18n-placeholder]").forEach(el => { el.placeholder = SE.t(el.dataset.xi18nPlaceholder); });
  },

  bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  },

  range(start, end) { return `${SE.fmt(start)} – ${SE.fmt(end, false)}`; },

  // the recorder's and the cutter's sentences (English, also in the signed manifest) in the page's language:
  // known shapes become catalogue sentences with their figures; anything else is shown as it came
  NOTES: [
    [/^not recorded$/, "export.r.not_recorded"],
    [/^no packets for ([\d.]+) s$/, "export.r.no_packets", ["s"]],
    [/^stream restarted after ([\d.]+) s$/, "export.r.restarted", ["s"]],
    [/^input lost: (.*)$/, "export.r.input_lost", ["why"]],
    [/^disk full \((.*)\)$/, "export.r.disk_full", ["why"]],
    [/^recording failed \((.*)\)$/, "export.r.failed", ["why"]],
    [/^(.+?): nothing recorded in the range: no file$/, "export.n.no_file", ["camera"]],
    [/^(.+?): gap (.+?) to (.+?) \(([\d.]+) s\): (.*)$/, "export.n.gap", ["camera", "from", "to", "s", "reason"]],
    [/^(.+?): corrupt segment skipped: (.*?): (.*)$/, "export.n.corrupt", ["camera", "path", "why"]],
    [/^(.+?): (\d+) frame\(s\) shown at or after the requested end are in the file.*$/, "export.n.extra_frames", ["camera", "n"]],
    [/^(.+?): the stream changed at ([\d.]+) .*a new file starts there$/, "export.n.stream_changed", ["camera", "at"]],
  ],
  note(text) {
    for (const [re, key, names] of SEX.NOTES) {
      const m = re.exec(text);
      if (!m || !SE.messages[key]) continue;
      const vars = {};
      (names || []).forEach((n, i) => { vars[n] = n === "reason" ? SEX.note(m[i + 1]) : m[i + 1]; });
      return SE.t(key, vars);
    }
    return text;
  },

  start(body) { return SE.api("/api/exports", { method: "POST", body }); },

  // poll the job until it is done or failed; onUpdate(job) after every answer
  async follow(job, onUpdate) {
    onUpdate(job);
    while (job.state === "queued" || job.state === "running") {
      await new Promise(r => setTimeout(r, SEX.POLL_MS));
      job = await SE.api(`/api/exports/${encodeURIComponent(job.id)}`);
      onUpdate(job);
    }
    return job;
  },

  // the progress line of one job: a <progress>, a sentence, and when done the ZIP link
  render(box, job) {
    box.hidden = false;
    box.dataset.state = job.state;
    box.dataset.job = job.id;
    const bar = SE.el("progress", { class: "export-bar", max: "1", value: String(job.state === "done" ? 1 : job.progress || 0) });
    let text;
    if (job.state === "queued") text = SE.t("export.queued");
    else if (job.state === "running") {
      text = job.stage && SE.messages[`export.stage.${job.stage}`] ? SE.t(`export.stage.${job.stage}`)
        : SE.t("export.running", { pct: Math.round((job.progress || 0) * 100) });
    } else if (job.state === "done") text = SE.t("export.done", { size: SEX.bytes(job.size_bytes) });
    else if (job.state === "released") text = SE.t("export.released");
    else text = SE.t("export.failed", { error: job.error || "" });
    const parts = [bar, SE.el("span", { class: "export-text", text })];
    if (job.download) {
      parts.push(SE.el("a", { class: "export-zip", href: job.download, download: "", text: SE.t("export.download_zip") }));
    }
    parts.push(SE.el("a", { class: "export-all", href: `/exports#${job.id}`, text: SE.t("export.all_exports") }));
    if ((job.warnings || []).length) parts.push(SE.el("div", { class: "export-warn dim", text: SE.t("export.warnings", { text: job.warnings.map(SEX.note).join(" ") }) }));
    box.replaceChildren(...parts);
  },

  failed(box, err) {
    box.hidden = false;
    box.dataset.state = "refused";
    box.replaceChildren(SE.el("span", { class: "error", text: SE.errorText(err) }));
  },
};

// ------------------------------------------------------------------ the room: "Export clip" in the alert detail

function wireRoomExport() {
  const btn = document.getElementById("d-export");
  const detail = document.getElementById("detail");
  const box = document.getElementById("d-export-status");
  if (!btn || !detail || !box) return;
  const jobs = new Map(); // alert id -> its latest export in this page
  const show = () => {
    const job = jobs.get(detail.dataset.alertId);
    if (job) SEX.render(box, job);
    else if (!box.hidden || box.childNodes.length) { box.hidden = true; box.replaceChildren(); } // only when shown
  };
  new MutationObserver(show).observe(detail, { attributes: true, attributeFilter: ["data-alert-id"] });
  btn.addEventListener("click", async () => {
    const id = detail.dataset.alertId;
    if (!id) return;
    btn.disabled = true;
    try {
      await SEX.catalogue();
      const job = await SEX.start({ alert_id: id });
      await SEX.follow(job, j => { jobs.set(id, j); if (detail.dataset.alertId === id) SEX.render(box, j); });
    } catch (e) {
      if (detail.dataset.alertId === id) SEX.failed(box, e);
    } finally { btn.disabled = false; }
  });
}

// ------------------------------------------------------------------ the exports and cases page

const XP = { timer: null };

async function loadExportsPage() {
  const [list, storage] = await Promise.all([SE.api("/api/exports"), SE.api("/api/exports-storage")]);
  document.getElementById("x-protected").textContent = SE.t("export.protected_text", {
    total: SEX.bytes(storage.total_bytes), segments: storage.segments, exports: SEX.bytes(storage.exports_bytes),
    alerts: SEX.bytes(storage.alerts_bytes), files: SEX.bytes(storage.export_files_bytes) });
  document.getElementById("x-protected").dataset.totalBytes = storage.total_bytes;
  document.getElementById("x-protected").dataset.exportsBytes = storage.exports_bytes;
  const body = document.querySelector("#x-exports tbody");
  body.replaceChildren(...list.exports.map(exportRow));
  document.getElementById("x-none").hidden = list.exports.length > 0;
  const cases = document.querySelector("#x-cases tbody");
  cases.replaceChildren(...list.cases.map(caseRow));
  document.getElementById("x-no-cases").hidden = list.cases.length > 0;
  const wanted = location.hash.slice(1);
  if (wanted) body.querySelector(`tr[data-job="${CSS.escape(wanted)}"]`)?.classList.add("here");
  clearTimeout(XP.timer);
  if (list.exports.some(j => j.state === "queued" || j.state === "running")) {
    XP.timer = setTimeout(() => loadExportsPage().catch(showPageError), 1000);
  }
}

function exportRow(job) {
  const tr = SE.el("tr", { "data-job": job.id, "data-state": job.state });
  const state = SE.el("td", { class: "x-state" });
  SEX.render(state, job);
  const files = SE.el("td", { class: "x-files" }, ...Object.entries(job.file_urls || {}).map(([name, url]) =>
    SE.el("a", { href: url, download: "", text: name })));
  const sha = job.manifest_sha256 || "";
  const actions = SE.el("td");
  if (job.can_release) {
    const b = SE.el("button", { type: "button", class: "x-release", text: SE.t("export.release") });
    b.addEventListener("click", async () => {
      if (!confirm(SE.t("export.release_confirm"))) return;
      try {
        await SE.api(`/api/exports/${encodeURIComponent(job.id)}/release`, { method: "POST" });
        await loadExportsPage();
      } catch (e) { showPageError(e); }
    });
    actions.append(b);
  }
  tr.append(
    SE.el("td", { text: SE.fmt(job.created_at) }),
    SE.el("td", { text: job.user }),
    SE.el("td", { text: job.cameras.join(", ") }),
    SE.el("td", { text: SEX.range(job.start, job.end) }),
    SE.el("td", { text: job.case || "" }),
    SE.el("td", { text: job.alert_id || "" }),
    state,
    SE.el("td", { class: "x-sha", title: sha, text: sha.slice(0, 12) }),
    files, actions);
  return tr;
}

function caseRow(c) {
  const dl = c.download ? SE.el("a", { href: c.download, download: "", class: "x-case-zip", text: SE.t("export.case_download") }) : "";
  return SE.el("tr", { "data-case": c.name },
    SE.el("td", { text: c.name }), SE.el("td", { text: c.description }), SE.el("td", { text: c.alerts.join(", ") }),
    SE.el("td", { text: String(c.exports.length) }), SE.el("td", { text: SE.fmt(c.updated_at) }), SE.el("td", {}, dl));
}

function showPageError(e) {
  const el = document.getElementById("x-error");
  el.textContent = e && e.code ? SE.errorText(e) : String(e);
  el.hidden = false;
}

async function exportsPage() {
  await SE.start();
  await SEX.catalogue();
  document.getElementById("x-case-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const name = document.getElementById("x-case-name").value.trim();
    const alerts = document.getElementById("x-case-alerts").value.split(/[\s,，]+/).filter(Boolean);
    try {
      await SE.api("/api/cases", { method: "POST", body: { name, alerts,
        description: document.getElementById("x-case-desc").value } });
      document.getElementById("x-error").hidden = true;
      document.getElementById("x-case-status").textContent = SE.t("export.case_saved", { name });
      await loadExportsPage();
    } catch (e) { showPageError(e); }
  });
  await loadExportsPage();
}

if (document.body.dataset.page === "exports") exportsPage().catch(showPageError);
else wireRoomExport();
