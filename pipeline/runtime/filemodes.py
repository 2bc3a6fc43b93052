"""File modes under the data directory: nothing there is for other local users.

The data directory holds police evidence (snapshots, recordings, export ZIPs, cases), the history
database (argon2 hashes, session and CSRF digests) and keys (the site key, the export signing key).
``sharpeye run`` sets the process umask to ``UMASK`` before it starts anything, so every file any of
its processes (Redis, workers, the dashboard) creates is 0600 and every folder 0700, and creates the
data directory itself 0700.  :func:`loose_modes` lists what is looser than that; ``sharpeye check``
and ``sharpeye run`` print each as a warning (files written by an older version, or copied in).

What counts as too loose:
- the data directory, databases (``*.sqlite``, their ``-wal``/``-shm``/``-journal``) and keys
  (``*.key``, ``*key*.bin``, ``*.pem``): any group or other bit;
- every other file (media, manifests, caches) and folder: any bit for other users (0640 and 0750
  are fine, for a media group such as a backup job's).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

UMASK = 0o077
DIR_MODE = 0o700
MAX_LISTED = 20  # warnings beyond this are counted, not listed
_SECRET_SUFFIXES = (".sqlite", ".sqlite-wal", ".sqlite-shm", ".sqlite-journal", ".db", ".db-wal", ".db-shm",
                    ".key", ".pem")


def is_secret(path: Path) -> bool:
    """A database or a key: owner-only, 0600."""
    name = path.name.lower()
    return name.endswith(_SECRET_SUFFIXES) or ("key" in name and name.endswith(".bin"))


def secure_start(data_dir: Path) -> None:
    """Set the umask for this process and its children, and create the data directory 0700."""
    os.umask(UMASK)
    existed = data_dir.is_dir()
    data_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if not existed:
        os.chmod(data_dir, DIR_MODE)  # mkdir's mode is masked, and parents=True ignores it for the last part


def loose_modes(data_dir: Path, max_files: int = 200_000) -> list[str]:
    """One line per file or folder under ``data_dir`` that other users (or, for secrets, the group) can
    read, write or enter, naming the path, its mode and what it should be; empty when all is tight."""
    out: list[str] = []
    extra = 0

    def note(path: Path, mode: int, want: str) -> None:
        nonlocal extra
        if len(out) < MAX_LISTED:
            out.append(f"{path}: mode {stat.S_IMODE(mode):04o} lets other users in; should be {want}")
        else:
            extra += 1

    try:
        top = data_dir.stat()
    except OSError:
        return []  # not there yet: `run` creates it 0700
    if stat.S_IMODE(top.st_mode) & 0o077:
        note(data_dir, top.st_mode, "0700")
    seen = 0
    for root, dirs, files in os.walk(data_dir):
        base = Path(root)
        for name in dirs + files:
            seen += 1
            if seen > max_files:
                break
            p = base / name
            try:
                st = p.lstat()
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                continue  # a link's own mode means nothing; sockets are checked by who made them
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                if mode & 0o007:
                    note(p, st.st_mode, "0700 (0750 at most)")
            elif is_secret(p):
                if mode & 0o077:
                    note(p, st.st_mode, "0600")
            elif mode & 0o007:
                note(p, st.st_mode, "0600 (0640 at most)")
    if extra:
        out.append(f"{data_dir}: {extra} more files or folders too open")
    return out
