"""Routes stay thin: no route module over 400 lines, none importing another route module.

What a route needs from another (a camera list, a worker look-up, the catch-up from the bus) lives in
``dashboard/services/``; a route that grows past 400 lines is doing a service's work.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROUTES = Path(__file__).resolve().parents[3] / "dashboard" / "routes"
MAX_LINES = 400


def route_imports(tree: ast.Module) -> list[str]:
    """The route modules a module imports (``dashboard.routes.x``, ``from dashboard.routes import x``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("dashboard.routes")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("dashboard.routes."):
                found.append(node.module)
            elif node.module == "dashboard.routes":
                found += [f"dashboard.routes.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level and node.module is None:  # from . import x
            found += [f"dashboard.routes.{a.name}" for a in node.names]
    return found


MODULES = sorted(p for p in ROUTES.glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_route_module_is_at_most_400_lines(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path}: {n} lines (at most {MAX_LINES}): move the work into dashboard/services/"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_route_module_imports_no_other_route(path: Path) -> None:
    bad = route_imports(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    assert not bad, f"{path} imports route modules {bad}: share through dashboard/services/ instead"


@pytest.mark.parametrize("source, expected", [
    ("from dashboard.routes.cameras import camera_list", ["dashboard.routes.cameras"]),
    ("from dashboard.routes import workers", ["dashboard.routes.workers"]),
    ("import dashboard.routes.live", ["dashboard.routes.live"]),
    ("from . import alerts", ["dashboard.routes.alerts"]),
    ("from dashboard.services.cameras import camera_list", []),
])
def test_the_check_sees_every_form_of_route_import(source: str, expected: list[str]) -> None:
    assert route_imports(ast.parse(source)) == expected
