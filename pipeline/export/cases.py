"""Cases: the exports of one incident grouped in one folder with a signed case manifest, and a plain JSON index.

A case folder (``<exports>/cases/<name>/``) holds its exports, each in its own signed folder, and
``case.json`` / ``case.txt`` / ``case.sig``: name, description, linked alerts, and every export with
the sha256 of its manifest, so a case (or its ZIP) is verified as a whole and no export can be
swapped.  The index of cases is a plain JSON file, ``<data_dir>/exports/cases.json``; the
dashboard's history database keeps its own record of cases and who did what (that part belongs to
the dashboard, not here).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.export.holds import locked, read_json, write_json
from pipeline.export.manifest import CASE_SCHEMA, hash_path, signing_block, write_signed
from pipeline.export.paths import CASES_DIR, UnsafeName, check_case_name, exports_root, inside
from pipeline.export.times import both, zone_name

INDEX_NAME = "cases.json"
STORED_SUFFIXES = (".mp4", ".zip")  # already compressed: stored in a ZIP as they are
_OWNER_RE = re.compile(r"^@[0-9a-f]{20}$")


def index_path(data_dir: Path) -> Path:
    return exports_root(data_dir) / INDEX_NAME


def owned_dir(owner: str, name: str) -> str:
    """The folder of ``owner``'s case ``name``, relative to ``<root>/cases``: ``@<owner hash>/<name>``.

    A case is its owner and its name: two users who both name a case ``C-1`` get two folders, two
    signed manifests.  The owner's part is a hash (an account name never becomes a path) and starts
    with ``@``, which no case name does, so it is never read as a case of the command line (those,
    and cases made before cases had an owner, are ``<root>/cases/<name>``)."""
    return f"@{hashlib.sha256(owner.encode()).hexdigest()[:20]}/{check_case_name(name)}"


def check_case_dir(name: str, sub: str) -> list[str]:
    """The parts of ``sub`` (a case folder relative to ``<root>/cases``): ``<name>`` or ``@<hash>/<name>``."""
    parts = sub.split("/")
    if parts[-1] != check_case_name(name) or len(parts) > 2 or (len(parts) == 2 and not _OWNER_RE.match(parts[0])):
        raise UnsafeName(f"case folder {sub!r} is not the folder of case {name!r}")
    return parts


def case_folder(root: Path, name: str, sub: str | None = None) -> Path:
    """``<root>/cases/<sub or name>``, the name and folder checked and the path kept inside ``root``."""
    return inside(root, CASES_DIR, *check_case_dir(name, sub or name))


def read_index(data_dir: Path) -> dict[str, Any]:
    return read_json(index_path(data_dir), {"version": 1, "cases": {}})


def add_export(data_dir: Path, root: Path, name: str, export_doc: dict[str, Any], folder_name: str,
               key: Ed25519PrivateKey, tz: dt.tzinfo | None, user: str, description: str | None = None,
               sub: str | None = None) -> Path:
    """Record an export (already written inside the case folder) in the case manifest and the index.

    ``sub``: the case's folder under ``<root>/cases`` when not its name (``owned_dir``); the index
    keys the case by it.  Returns the case folder.  The case manifest is rewritten and re-signed each time.
    """
    folder = case_folder(root, name, sub)
    with locked(index_path(data_dir)):
        case_doc_path = folder / "case.json"
        old = read_json(case_doc_path, {})
        now = time.time()
        exports = [e for e in old.get("exports", []) if e.get("id") != export_doc["id"]]
        exports.append({
            "id": export_doc["id"], "folder": folder_name,
            "cameras": [c["id"] for c in export_doc["cameras"]],
            "requested": export_doc["requested"], "created": export_doc["created"],
            "exported_by": export_doc["exported_by"], "alert": (export_doc.get("alert") or {}).get("alert_id"),
            "manifest_sha256": hash_path(folder / folder_name / "manifest.json")["sha256"]})
        alerts = sorted({*old.get("alerts", []), *(e["alert"] for e in exports if e.get("alert"))})
        desc = description if description is not None else old.get("description", "")
        body: dict[str, Any] = {"schema": CASE_SCHEMA, "name": name, "description": desc,
                "created": old.get("created") or both(now, tz), "updated": both(now, tz),
                "updated_by": user, "time_zone": zone_name(tz), "alerts": alerts, "exports": exports,
                "signature": signing_block(key)}
        hashes = {}
        for e in exports:
            for f in ("manifest.json", "manifest.sig"):
                hashes[f"{e['folder']}/{f}"] = hash_path(folder / e["folder"] / f)
        write_signed(folder, "case", body, render_case_text(body), key, hashes)
        index = read_index(data_dir)
        index.setdefault("cases", {})[sub or name] = {
            "path": str(folder), "description": desc, "created": body["created"]["utc"],
            "updated": body["updated"]["utc"], "exports": [e["id"] for e in exports], "alerts": alerts}
        write_json(index_path(data_dir), index)
    return folder


def render_case_text(doc: dict[str, Any]) -> str:
    out = [f"Sharp Eyes case {doc['name']}", "=" * (17 + len(doc["name"]))]
    if doc.get("description"):
        out.append(doc["description"])
    out.append(f"Created    {doc['created']['local']}  ({doc['created']['utc']})")
    out.append(f"Updated    {doc['updated']['local']}  ({doc['updated']['utc']}) by {doc['updated_by']}")
    out.append(f"Time zone  {doc['time_zone']}")
    if doc["alerts"]:
        out.append(f"Alerts     {', '.join(doc['alerts'])}")
    out.append("")
    for e in doc["exports"]:
        r = e["requested"]
        out.append(f"Export {e['id']} (folder {e['folder']}): cameras {', '.join(e['cameras'])}")
        out.append(f"  {r['start']['local']}  to  {r['end']['local']}; by {e['exported_by']['user']}"
                   + (f"; alert {e['alert']}" if e.get("alert") else ""))
        out.append(f"  manifest sha256 {e['manifest_sha256']}")
    out.append("")
    out.append(f"Signed with {doc['signature']['algorithm']} key {doc['signature']['fingerprint']}; "
               "case.sig signs case.json, which lists each export's manifest hash.")
    return "\n".join(out) + "\n"


def zip_folder(folder: Path, dest: Path) -> Path:
    """``dest`` (a ZIP of ``folder``, entries under ``<folder name>/``), written under a temporary name.

    Videos are stored as they are (they do not compress), text is deflated.  A failure (disk full)
    deletes the partial ZIP and raises.
    """
    part = dest.with_name(dest.name + ".part")
    try:
        with zipfile.ZipFile(part, "w", allowZip64=True) as z:
            for p in sorted(folder.rglob("*")):
                if not p.is_file():
                    continue
                arc = f"{folder.name}/{p.relative_to(folder).as_posix()}"
                comp = zipfile.ZIP_STORED if p.suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                z.write(p, arc, compress_type=comp)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return dest
