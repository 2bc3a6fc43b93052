"""The dashboard API fuzzed with Schemathesis from its own OpenAPI schema: whatever a client
sends, valid or not, with a session or without, the answer is never a 5xx and never shows a traceback.

The dashboard runs as it does in production (uvicorn in its own process, SQLite history, a real
Redis bus with alerts on it).  Each operation gets a bounded number of generated requests in three
passes: without a session (the auth wall), logged in as an admin with the CSRF token (so the fuzz
reaches the handlers, every cell and role), and schema-violating (negative) data logged in.  Alert
and camera ids are also pinned to ones that exist, so actions reach the workflow instead of a 404.
The server's own log is checked for tracebacks at the end.  Figures are printed.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from dashboard.app import create_app
from history.archiver import store
from pipeline.config import load_config
from pipeline.publish import bus
from tests.support.dashboard import alert_msg, dashboard_process, open_with_users, write_dashboard_config

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e .[test] installs schemathesis")
from schemathesis import GenerationMode  # noqa: E402

# a served dashboard and a client, no camera, worker or timing bound: on two workers with the browser tests
pytestmark = pytest.mark.concurrent

PW = "correct horse battery"
# per operation and pass; the whole test stays around a minute on a shared 2-core machine
MAX_EXAMPLES = int(os.environ.get("SHARPEYE_FUZZ_EXAMPLES", "50"))
# never fuzzed: the live event stream never ends by design (its own tests read it), and a log-out or
# log-in in the logged-in passes would end or replace the session the fuzz needs (the anonymous pass has them)
ENDLESS = {("GET", "/api/stream")}
ENDS_SESSION = {("POST", "/api/logout"), ("POST", "/api/login")}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    prefix = f"fuzz{time.monotonic_ns()}"
    path = write_dashboard_config(tmp, f"bus: {{prefix: {prefix}}}")
    cfg = load_config(path)
    engine = open_with_users(cfg, "fuzzadmin admin * Fuzz Admin", "op operator G1 Wang Wei")
    r = bus.connect(redis_url)
    keys = bus.BusKeys(prefix)
    for i, cam in enumerate(("lobby", "gate", "square")):  # alerts on the bus and in the history
        msg = alert_msg(f"fz{i}", camera=cam, snapshot=f"{cam}/2026/fz{i}.jpg")
        bus.publish_event(r, keys, msg, 10_000)
        with engine.begin() as conn:
            store(conn, None, msg)
    schema_doc = create_app(cfg, redis_url, engine).app.openapi()  # type: ignore[attr-defined]
    engine.dispose()
    with dashboard_process(path, redis_url, tmp) as dash:
        yield {"base": dash.base, "schema": schema_doc, "log": dash.log}


def _login(base: str, name: str = "fuzzadmin") -> tuple[requests.Session, str]:
    s = requests.Session()
    res = s.post(base + "/api/login", json={"username": name, "password": PW}, headers={"Origin": base})
    assert res.status_code == 200, res.text
    return s, res.json()["csrf"]


def _fuzz(schema: Any, base: str, mode: Any, session_factory: Callable[[], tuple[requests.Session, dict[str, str]]],
          skip: set[tuple[str, str]], pinned: dict[str, Any] | None = None) -> tuple[collections.Counter[int],
                                                                                       list[str]]:
    """Every operation not in ``skip``, ``MAX_EXAMPLES`` generated cases each; status counts and problems."""
    statuses: collections.Counter[int] = collections.Counter()
    problems: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in skip:
            continue
        params = {k: v for k, v in (pinned or {}).items() if "{" + k + "}" in op.path}
        strategy = op.as_strategy(generation_mode=mode, path_parameters=params or None)
        session, headers = session_factory()

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case: Any) -> None:
            res = case.call(base_url=base, session=session, headers=headers, timeout=30)
            statuses[res.status_code] += 1
            body = res.text[:5000]
            if res.status_code >= 500 or "Traceback" in body:
                problems.append(f"{case.method} {case.formatted_path} -> {res.status_code}: {body[:300]!r}\n"
                                f"  reproduce: {case.as_curl_command()}")

        try:
            check()
        except Unsatisfiable:  # negative data for an operation that takes no input: nothing to violate
            assert mode == GenerationMode.NEGATIVE, op.label
    return statuses, problems


def test_api_fuzzed_from_its_openapi_schema_answers_no_500_and_no_traceback(served: dict[str, Any]) -> None:
    base = served["base"]
    schema = schemathesis.openapi.from_dict(served["schema"])
    t0 = time.monotonic()

    def anonymous() -> tuple[requests.Session, dict[str, str]]:
        return requests.Session(), {}

    state: dict[str, Any] = {}

    def admin() -> tuple[requests.Session, dict[str, str]]:
        """The admin's session, logged in again if a fuzzed change to the accounts ended it."""
        if not state or state["session"].get(base + "/api/me").status_code == 401:
            state["session"], state["csrf"] = _login(base)
        return state["session"], {"X-CSRF-Token": state["csrf"]}

    pinned = {"alert_id": "fz0", "camera_id": "lobby", "username": "op"}
    passes = {
        "admin": _fuzz(schema, base, GenerationMode.POSITIVE, admin, ENDLESS | ENDS_SESSION),
        "admin, existing ids": _fuzz(schema, base, GenerationMode.POSITIVE, admin, ENDLESS | ENDS_SESSION, pinned),
        "admin, invalid data": _fuzz(schema, base, GenerationMode.NEGATIVE, admin, ENDLESS | ENDS_SESSION),
        # last: its fuzzed log-ins trip the per-address log-in limit, after which the admin could not log in again
        "anonymous": _fuzz(schema, base, GenerationMode.POSITIVE, anonymous, ENDLESS),
    }
    took = time.monotonic() - t0
    problems = [p for _, probs in passes.values() for p in probs]
    for name, (statuses, _) in passes.items():
        print(f"fuzz pass {name}: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")
    print(f"fuzz: {sum(sum(s.values()) for s, _ in passes.values())} requests in {took:.1f} s, "
          f"{len(problems)} problems")
    assert not problems, "\n".join(problems[:20])
    # the handlers were reached, not only the auth wall: successes and refusals by the handlers themselves
    admin_statuses = passes["admin"][0] + passes["admin, existing ids"][0]
    assert admin_statuses[200] > 50, admin_statuses
    assert passes["anonymous"][0][401] > 20, passes["anonymous"][0]
    server_log = Path(served["log"]).read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[-5000:]
