"""Every page in zh-CN and in English, in headless Chromium: no raw ``[key]``, no missing catalogue key, no
English sentence on a Chinese page or Chinese punctuation on an English one, no failed request (the
favicon included).  A real dashboard process, the archiver, a real Redis bus and SQLite, with an alert that
has been acknowledged, escalated and had its clip viewed, so its timeline holds more than the workflow."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, PW, _user, artefacts
from tests.support.dashboard import (
    alert_msg,
    camera_msg,
    served_dashboard,
    write_dashboard_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]
PAGES = ["/", "/history", "/search", "/reports", "/supervisor", "/map", "/wall", "/timeline", "/exports", "/users",
         "/workers", "/engineer", "/zones", "/watchlists", "/audit", "/patrol", "/clip/lang1", "/alerts/lang1/print"]
RAW_KEY = re.compile(r"\[[a-z][a-z0-9_]*(\.[A-Za-z0-9_:-]+)+\]")
# words of the config (cameras, cells, people) and of the product, which stay as they are in any language
NAMES = ["Lobby camera", "Gate camera", "Square camera", "School gate", "Station square", "Xinhua Street",
         "Station Square", "Wang Wei", "Li Na", "Chief Chen", "Sharp Eyes", "English", "sharpeye check",
         "lobby", "gate", "square", "boss", "G1", "G2"]
NO_RECORDING = "/api/clips/"  # the test cameras record nothing: the clip page is told so (404) and says it


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"lang{time.monotonic_ns()}"
    cfg = write_dashboard_config(tmp_path, f"bus: {{prefix: {prefix}}}\ndashboard: {{escalation: {{acknowledge_s: "
                                 "{low: 600, medium: 600, high: 1, critical: 1}}}")
    _user(cfg, "boss", "admin", "*", "Chief Chen", locale="en")
    _user(cfg, "laoban", "admin", "*", "Chief Chen", locale="zh-CN")
    with served_dashboard(cfg, redis_url, prefix, tmp_path) as served:
        t = time.time() - 120
        for m in (alert_msg("lang1", camera="lobby", severity="high", t=t),
                  alert_msg("lang1", phase="end", camera="lobby", severity="high", t=t + 20, start=t),
                  alert_msg("lang2", camera="square", severity="critical", t=time.time() - 30),
                  camera_msg("gate", "offline")):
            served.publish(m)
        yield {"base": served.base}


def visible_text(page: Any) -> str:
    return str(page.evaluate("""() => {
        const out = [];
        const walk = n => {
          if (n.nodeType === 3) { out.push(n.textContent); return; }
          if (n.nodeType !== 1 || n.hidden || getComputedStyle(n).display === 'none') return;
          if (['SCRIPT', 'STYLE', 'TEMPLATE', 'NOSCRIPT'].includes(n.tagName)) return;
          if (n.placeholder) out.push(n.placeholder);
          if (n.title) out.push(n.title);
          if (n.tagName === 'OPTION' || n.tagName === 'SELECT') { out.push(n.textContent); return; }
          n.childNodes.forEach(walk);
        };
        walk(document.body);
        return out.join(' ') + ' ' + document.title;
    }"""))


def check_page(page: Any, base: str, path: str, locale: str, problems: list[str]) -> None:
    missing: list[str] = []
    failed: list[str] = []
    page.on("console", lambda m: missing.append(m.text) if "missing message" in m.text else None)
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}")
            if r.status >= 400 and NO_RECORDING not in r.url else None)
    page.goto(base + path)
    page.wait_for_load_state("networkidle", timeout=15_000)
    page.wait_for_function(f"() => document.documentElement.lang === '{locale}'", timeout=10_000)
    page.wait_for_timeout(700)  # lists filled by the page's own fetches after the catalogue
    text = visible_text(page)
    raw = sorted({m.group(0) for m in RAW_KEY.finditer(text)})
    if raw:
        problems.append(f"{locale} {path}: raw keys {raw}")
    if missing:
        problems.append(f"{locale} {path}: missing messages {sorted(set(missing))}")
    if failed:
        problems.append(f"{locale} {path}: failed requests {sorted(set(failed))}")
    plain = text
    for n in NAMES:
        plain = plain.replace(n, " ")
    if locale == "zh-CN":
        words = sorted({w for w in re.findall(r"[A-Za-z]{3,}(?:\s+[A-Za-z]{2,})+", plain)})
        if words:
            problems.append(f"zh-CN {path}: English phrases {words[:8]}")
    else:
        punct = sorted(set(re.findall(r"[，。：；！？、（）]", plain)))
        if punct:
            problems.append(f"en {path}: Chinese punctuation {punct} in {plain[:300]!r}")
    page.screenshot(path=str(artefacts() / f"lang-{locale}-{path.strip('/').replace('/', '_') or 'room'}.png"),
                    full_page=True)


def test_every_page_in_both_languages_shows_only_catalogue_words(site: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base = site["base"]
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for user, locale in (("laoban", "zh-CN"), ("boss", "en")):
            ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
            page = ctx.new_page()
            page.goto(base + "/login")
            page.fill("#username", user)
            page.fill("#password", PW)
            page.click("#submit")
            page.wait_for_url(base + "/", timeout=60_000)
            assert page.request.get(base + "/favicon.ico").status == 200  # browsers ask every page for it
            # the alert's timeline holds more than the workflow: an escalation and a clip viewed
            page.wait_for_function("""async () => {
                const r = await fetch('/api/alerts/lang2'); if (!r.ok) return false;
                return (await r.json()).timeline.some(t => t.action === 'escalate'); }""", timeout=15_000)
            for path in PAGES:  # the clip page records a clip view on lang1: the print page after it shows it
                check_page(page, base, path, locale, problems)
            # the handling view of an alert with its timeline (escalation, clip view, actions)
            page.goto(base + "/")
            page.locator('#alerts li[data-alert-id="lang2"]').click()
            page.locator("#d-timeline li").first.wait_for(timeout=5000)
            page.wait_for_timeout(500)
            text = visible_text(page)
            raw = sorted({m.group(0) for m in RAW_KEY.finditer(text)})
            if raw:
                problems.append(f"{locale} / (detail): raw keys {raw}")
            ctx.close()
        browser.close()
    assert not problems, json.dumps(problems, ensure_ascii=False, indent=1)
