"""File modes: the start function leaves nothing under the data directory for other users, and
``sharpeye check`` names every file that is looser (run in a child process: the umask is per process)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from pipeline.runtime.filemodes import loose_modes
from tests.support.dashboard import write_dashboard_config

ROOT = Path(__file__).resolve().parents[3]

# a child that starts as `sharpeye run` does, then writes what the processes it starts write
CHILD = """
import os, sqlite3, sys
from pathlib import Path
from pipeline.runtime.filemodes import secure_start
data = Path(sys.argv[1])
secure_start(data)
con = sqlite3.connect(data / "history.sqlite"); con.execute("pragma journal_mode=wal")
con.execute("create table t(x)"); con.execute("insert into t values (1)"); con.commit()
(data / "keys").mkdir(); (data / "keys" / "site.key").write_bytes(os.urandom(32))
(data / "snapshots" / "lobby" / "2026-12-07").mkdir(parents=True)
(data / "snapshots" / "lobby" / "2026-12-07" / "a.jpg").write_bytes(b"jpeg")
(data / "exports").mkdir(); (data / "exports" / "e1.zip").write_bytes(b"zip")
con.close()
"""


CONFIG = """\
data_dir: data
grid_cells:
  G1: {name: Xinhua Street, officer: {name: Wang Wei, phone: "13800000001"}}
cameras:
  lobby: {name: Lobby camera, source: "rtsp://127.0.0.1:9/lobby", grid_cell: G1}
"""


def _modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        out[str(p.relative_to(root))] = stat.S_IMODE(p.stat().st_mode)
    return out


def test_a_fresh_start_leaves_nothing_readable_by_other_users(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = os.umask(0o022)  # the usual loose default, inherited by the child
    try:
        subprocess.run([sys.executable, "-c", CHILD, str(data)], check=True, cwd=ROOT, timeout=60)
    finally:
        os.umask(old)
    modes = _modes(data)
    assert modes["."] == 0o700
    assert modes["history.sqlite"] == 0o600 and modes["keys/site.key"] == 0o600
    assert all(m & 0o077 == 0 for m in modes.values()), {k: oct(v) for k, v in modes.items() if v & 0o077}
    assert loose_modes(data) == []


def test_check_warns_about_each_looser_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "snapshots" / "lobby").mkdir(parents=True)
    (data / "history.sqlite").write_bytes(b"")
    (data / "snapshots" / "lobby" / "a.jpg").write_bytes(b"jpeg")
    (data / "snapshots" / "lobby" / "b.jpg").write_bytes(b"jpeg")
    os.chmod(data, 0o755)
    os.chmod(data / "history.sqlite", 0o640)  # a database: even the group is too much
    os.chmod(data / "snapshots" / "lobby" / "a.jpg", 0o644)
    os.chmod(data / "snapshots" / "lobby" / "b.jpg", 0o640)  # media may be group-readable
    warned = loose_modes(data)
    assert any(w.startswith(f"{data}: mode 0755") for w in warned)
    assert any(w.startswith(f"{data / 'history.sqlite'}: mode 0640") and "0600" in w for w in warned)
    assert any(w.startswith(f"{data / 'snapshots' / 'lobby' / 'a.jpg'}: mode 0644") for w in warned)
    assert not any("b.jpg" in w for w in warned)
    cfg = write_dashboard_config(tmp_path)  # data_dir: data, beside the config
    r = subprocess.run([sys.executable, "-m", "cli", "check", str(cfg)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"warning: {data / 'history.sqlite'}: mode 0640" in r.stderr
    assert "a.jpg: mode 0644" in r.stderr and "b.jpg" not in r.stderr
