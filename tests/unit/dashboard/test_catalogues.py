"""The pages' message catalogues: every pair has the same keys, nothing is left untranslated, and every action
that can be on an alert's timeline has its sentence (a missing one shows as a raw ``[timeline.x]``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dashboard.workflow import ACTIONS

ROOT = Path(__file__).resolve().parents[3]
I18N = ROOT / "dashboard" / "static" / "i18n"
FORMAT_ONLY = re.compile(r"^[\s{}a-z_,.:;()\-/YMDHS·]*$")  # placeholders and date patterns: the same in any language


def pairs() -> list[str]:
    return sorted({p.name.rsplit(".", 2)[0] if p.name.count(".") == 2 else "" for p in I18N.glob("*.json")})


def load(base: str, locale: str) -> dict[str, str]:
    name = f"{base}.{locale}.json" if base else f"{locale}.json"
    data: dict[str, str] = json.loads((I18N / name).read_text(encoding="utf-8"))
    return data

PLATE = re.compile(r"[\u4e00-\u9fff][A-Z]·?[A-Z0-9]{5,6}")


@pytest.mark.parametrize("base", pairs())
def test_each_catalogue_pair_has_the_same_keys_and_every_entry_translated(base: str) -> None:
    zh, en = load(base, "zh-CN"), load(base, "en")
    assert sorted(set(en) - set(zh)) == [] and sorted(set(zh) - set(en)) == []
    same = [k for k in en if zh[k] == en[k] and re.search(r"[A-Za-z]{3,}", en[k]) and not FORMAT_ONLY.match(en[k])]
    assert same == [], f"untranslated in {base or 'main'}.zh-CN.json: {same}"
    latin_only = [k for k, v in zh.items()
                  if re.search(r"[A-Za-z]{4,}\s+[A-Za-z]{4,}", v) and not re.search(r"[\u4e00-\u9fff]", v)]
    assert latin_only == [], f"English sentences in {base or 'main'}.zh-CN.json: {latin_only}"
    # a mainland plate (藏D·T5022) is an example, not a translation left out
    cjk = [k for k, v in en.items()
           if re.search(r"[\u3000-\u303f\uff00-\uffef\u4e00-\u9fff]", PLATE.sub("", v))]
    assert cjk == [], f"Chinese in {base or 'main'}.en.json: {cjk}"


def test_every_action_recorded_on_an_alert_has_a_timeline_sentence() -> None:
    recorded = set()
    for py in [*(ROOT / "dashboard").rglob("*.py"), *(ROOT / "history").rglob("*.py")]:
        text = py.read_text(encoding="utf-8")
        for m in re.finditer(r'record\(conn, "([a-z_]+)"(.{0,400}?)\)\n', text, re.S):
            if "alert_id=" in m.group(2):
                recorded.add(m.group(1))
    assert {"escalate", "view_clip", "export_start"} <= recorded, recorded  # the scan finds them
    recorded |= set(ACTIONS)  # the workflow records each of its actions by name
    for locale in ("zh-CN", "en"):
        cat = load("", locale)
        assert sorted(a for a in recorded if f"timeline.{a}" not in cat) == [], locale
