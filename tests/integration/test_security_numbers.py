"""NaN, Infinity, -Infinity and 1e999 in every numeric field of every JSON body and every numeric query
parameter of the API, generated from the app's own OpenAPI schema and sent with a logged-in session
(an admin, who reaches every handler, and an operator): never a 500, never the value echoed back.

JSON cannot write these numbers; Python's parser (and so the app's) reads ``NaN``/``Infinity`` and turns
``1e999`` into infinity, so they arrive as floats a handler may not expect (the escalation loop was
stopped by one).  Each field is fuzzed alone, the rest of the body a plain valid-looking value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.security_room import Room

BAD_NUMBERS = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "-1e300")
SKIP = {("POST", "/api/logout")}  # would end the session the rest of the test uses


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Room]:
    r = Room(tmp_path_factory.mktemp("numbers"), redis_url)
    r.publish_alert("al-A", "lobby")
    assert r.as_("opA").call("GET", "/api/alerts/al-A").status_code == 200
    yield r
    r.close()


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _example(schema: dict[str, Any], node: dict[str, Any]) -> Any:
    node = _resolve(schema, node)
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [o for o in node[key] if o.get("type") != "null"]
            return _example(schema, options[0]) if options else None
    t = node.get("type")
    if "default" in node and node["default"] is not None:
        return node["default"]
    if t == "object":
        return {k: _example(schema, v) for k, v in node.get("properties", {}).items() if k in node.get("required", [])}
    if t == "array":
        return [_example(schema, node.get("items", {}))] * max(1, node.get("minItems", 1))
    if t in ("number", "integer"):
        return node.get("minimum", 1)
    if t == "boolean":
        return False
    if "enum" in node:
        return node["enum"][0]
    return "lobby" if node.get("maxLength", 64) >= 5 else "x"


def _numeric_paths(schema: dict[str, Any], node: dict[str, Any], at: tuple[Any, ...] = (),
                   depth: int = 0) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every place in a body a number goes, with the skeleton that reaches it."""
    if depth > 6:
        return
    node = _resolve(schema, node)
    for key in ("anyOf", "oneOf"):
        for o in node.get(key, []):
            yield from _numeric_paths(schema, o, at, depth + 1)
    t = node.get("type")
    if t in ("number", "integer"):
        yield at, node
    elif t == "object":
        for k, v in node.get("properties", {}).items():
            yield from _numeric_paths(schema, v, (*at, k), depth + 1)
    elif t == "array":
        yield from _numeric_paths(schema, node.get("items", {}), (*at, 0), depth + 1)


def _with(body: Any, at: tuple[Any, ...], marker: str) -> Any:
    if not at:
        return marker
    head, rest = at[0], at[1:]
    if isinstance(head, int):
        items = list(body) if isinstance(body, list) and body else [{}]
        items[0] = _with(items[0], rest, marker)
        return items
    out = dict(body) if isinstance(body, dict) else {}
    out[head] = _with(out.get(head, {}), rest, marker)
    return out


def _fill(path: str) -> str:
    values = {"alert_id": "al-A", "camera_id": "lobby", "job_id": "job1", "name": "C-1", "username": "opA",
              "token": "x" * 43, "plan_id": "1", "patrol_id": "p1", "fault_id": "1", "rel": "lobby/x.jpg"}
    return re.sub(r"\{(\w+)(?::path)?\}", lambda m: values.get(m.group(1), "x"), path)


def test_bad_numbers_in_every_numeric_field_are_never_a_500(room: Room) -> None:
    app = room.app.app  # type: ignore[attr-defined]
    schema = app.openapi()
    sent = 0
    problems = []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            method = method.upper()
            if (method, path) in SKIP:
                continue
            url = _fill(path)
            body_schema = (op.get("requestBody", {}).get("content", {}).get("application/json", {}) or {}).get("schema")
            cases: list[tuple[str, str, bytes | None]] = []
            if body_schema:
                skeleton = _example(schema, body_schema)
                for at, _ in _numeric_paths(schema, body_schema):
                    for bad in BAD_NUMBERS:
                        marker = "__BAD__"
                        raw = json.dumps(_with(skeleton, at, marker)).replace(f'"{marker}"', bad)
                        cases.append((f"{'.'.join(map(str, at)) or '(body)'}={bad}", url, raw.encode()))
            for p in op.get("parameters", []):
                s = _resolve(schema, p.get("schema", {}))
                kinds = {s.get("type")} | {o.get("type") for o in s.get("anyOf", [])}
                if p.get("in") == "query" and kinds & {"number", "integer"}:
                    for bad in ("NaN", "inf", "-inf", "1e999"):
                        cases.append((f"?{p['name']}={bad}", f"{url}?{p['name']}={bad}", None))
            for who in ("boss", "opA"):
                c = room.as_(who)
                for label, u, raw in cases:
                    if u.endswith("/events") or u.startswith("/api/stream"):
                        continue
                    r = c.c.request(method, u, content=raw, headers={**c.h, "Content-Type": "application/json"})
                    sent += 1
                    if r.status_code >= 500 or "Traceback" in r.text:
                        problems.append(f"{method} {path} {label} as {who}: {r.status_code} {r.text[:200]}")
                    elif r.status_code == 422 and ("inf" in r.text.lower().split('"msg"')[0]):
                        problems.append(f"{method} {path} {label}: the 422 echoes the value: {r.text[:200]}")
    print(f"bad numbers: {sent} requests, {len(problems)} problems")
    assert sent > 100
    assert not problems, "\n".join(problems)


def test_nothing_was_left_in_the_log(room: Room, tmp_path: Path) -> None:
    """The requests above stored nothing odd: every stored time is a finite number."""
    import math

    from sqlalchemy import select

    from history.schema import actions, alerts
    with room.engine.connect() as conn:
        times = [*conn.execute(select(actions.c.time)).scalars(), *conn.execute(select(alerts.c.start_time)).scalars()]
    assert times and all(math.isfinite(t) for t in times)


def test_huge_and_negative_ids_in_integer_path_parameters_are_never_a_500(room: Room) -> None:
    app = room.app.app  # type: ignore[attr-defined]
    schema = app.openapi()
    c = room.as_("boss")
    sent, problems = 0, []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            ints = [p["name"] for p in op.get("parameters", [])
                    if p.get("in") == "path" and _resolve(schema, p.get("schema", {})).get("type") == "integer"]
            for name in ints:
                for bad in ("7518789227064261357879689216", "-1", "0", "1e999"):
                    url = _fill(path.replace("{" + name + "}", bad))
                    r = c.c.request(method.upper(), url, json={} if method != "get" else None, headers=c.h)
                    sent += 1
                    if r.status_code >= 500:
                        problems.append(f"{method.upper()} {url}: {r.status_code}")
    assert sent > 0 and not problems, problems
