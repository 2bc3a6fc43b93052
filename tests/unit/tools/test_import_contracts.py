"""The walls are contracts, not prose: ``lint-imports`` (run by scripts/test) keeps the tree's layers and fails
the build on a deliberate violation, run on a copy of the packages with one offending module added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("pipeline", "dashboard", "history", "cli")


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def copy_packages(dst: Path) -> None:
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "static"))


def test_the_tree_keeps_its_walls() -> None:
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(("module", "source", "wall"), [
    ("pipeline/analyse/wall_probe.py", "import dashboard.app\n", "pipeline.analyse is not allowed to import dashboard"),
    ("pipeline/publish/wall_probe.py", "from pipeline.runtime import worker\n",
     "pipeline.publish is not allowed to import pipeline.runtime"),
    ("dashboard/wall_probe.py", "import cli.main\n", "dashboard is not allowed to import cli"),
    ("history/wall_probe.py", "from dashboard import app\n", "history is not allowed to import dashboard"),
    ("pipeline/analyse/wall_probe.py", "import redis\n", "pipeline.analyse is not allowed to import redis"),
])
def test_a_deliberate_violation_fails_the_build(tmp_path: Path, module: str, source: str, wall: str) -> None:
    copy_packages(tmp_path)
    (tmp_path / module).write_text(source)
    r = lint(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "BROKEN" in r.stdout and wall in " ".join(r.stdout.split()), r.stdout
