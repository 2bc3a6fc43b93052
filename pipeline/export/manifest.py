"""An export folder's evidence manifest: ``manifest.txt`` for people, ``manifest.json`` for machines, ``manifest.sig``.

Written in this order, so each covers the ones before it: ``manifest.txt`` (the readable account),
``manifest.json`` (the same facts plus the sha256 and size of every other file in the folder,
``manifest.txt`` included) and ``manifest.sig``, the Ed25519 signature of the exact bytes of
``manifest.json``.  Signing the bytes rather than a re-serialised form means one changed byte
anywhere in ``manifest.json``, white space included, fails verification.  The same scheme serves
a case folder (``case.json`` / ``case.txt`` / ``case.sig``), whose JSON lists the hash of every
export manifest in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.export import signing

SCHEMA = "sharpeye.export/1"
CASE_SCHEMA = "sharpeye.case/1"
HASH_CHUNK = 1 << 20
SIG_RE = re.compile(r"^ed25519 ([A-Za-z0-9+/]{86}==)\n$")  # the whole .sig file: nothing else may be in it


def sha256_file(f: BinaryIO) -> tuple[str, int]:
    """(hex sha256, bytes) of an open binary file, read in 1 MB chunks (hashlib releases the GIL on them)."""
    h = hashlib.sha256()
    n = 0
    while chunk := f.read(HASH_CHUNK):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def hash_path(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        digest, size = sha256_file(f)
    return {"sha256": digest, "bytes": size}


def write_signed(folder: Path, stem: str, body: dict[str, Any], text: str, key: Ed25519PrivateKey,
                 hashes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write ``<stem>.txt``, ``<stem>.json`` (``body`` + ``files``: ``hashes`` and the text's) and ``<stem>.sig``.

    ``hashes`` maps every other file of the folder (relative, forward slashes) to its sha256 and
    size.  Returns the JSON document as written.
    """
    _write(folder / f"{stem}.txt", text.encode())
    files = dict(hashes)
    files[f"{stem}.txt"] = hash_path(folder / f"{stem}.txt")
    doc = dict(body, files=dict(sorted(files.items())))
    raw = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    _write(folder / f"{stem}.json", raw)
    _write(folder / f"{stem}.sig", f"{signing.ALGORITHM} {signing.sign(key, raw)}\n".encode())
    return doc


def signing_block(key: Ed25519PrivateKey) -> dict[str, Any]:
    """What the manifest says about its own signature (the signature itself is in the .sig file)."""
    pub = signing.public_key_b64(key)
    return {"algorithm": signing.ALGORITHM, "public_key": pub, "fingerprint": signing.fingerprint(pub),
            "signed_file": "the exact bytes of this JSON file; the signature is in the .sig file beside it"}


def _write(path: Path, data: bytes) -> None:
    """Write and fsync under a temporary name, then rename: a crash never leaves half a manifest."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # (a full disk): no stray file beside the manifest
        raise


# ------------------------------------------------------------------------------------------ readable text


def render_text(doc: dict[str, Any]) -> str:
    """The export manifest as a person reads it (every fact of the JSON but the file list, which the JSON adds)."""
    out: list[str] = []
    req = doc["requested"]
    who = doc["exported_by"]
    out.append(f"Sharp Eyes evidence export {doc['id']}")
    out.append("=" * len(out[-1]))
    out.append(f"Exported   {doc['created']['local']}  ({doc['created']['utc']})")
    out.append(f"By         {who['user']} ({who['via']}) on {who['host']}")
    out.append(f"Software   {doc['software']['name']} {doc['software']['version']}; detection model "
               f"{doc['model']['name']}")
    out.append(f"Time zone  {doc['time_zone']}")
    out.append(f"Requested  {req['start']['local']}  to  {req['end']['local']}")
    out.append(f"           {req['start']['utc']}  to  {req['end']['utc']}  ({req['seconds']:.3f} s)")
    if doc.get("precise"):
        out.append("Mode       --precise (first GOP re-encoded so each file starts at the requested time)")
    if doc.get("alert"):
        a = doc["alert"]
        out.append(f"Alert      {a['alert_id']} ({a.get('rule', '')}, {a.get('phase', '')})")
    if doc.get("case"):
        out.append(f"Case       {doc['case']}")
    for cam in doc["cameras"]:
        out.append("")
        out.append(f"Camera {cam['id']}: {cam['name']}" + (f" (grid cell {cam['grid_cell']})" if cam.get('grid_cell')
                                                           else ""))
        out.append(f"  source        {cam['source']}")
        if cam.get("record_source"):
            out.append(f"  record source {cam['record_source']}")
        act = cam.get("actual")
        if act:
            out.append(f"  exported      {act['start']['local']}  to  {act['end']['local']}")
            out.append(f"                {act['start']['utc']}  to  {act['end']['utc']}")
        else:
            out.append("  exported      nothing: no recording in the range")
        for f in cam["files"]:
            out.append(f"  file          {f['name']}: {f['frames']} frames, {f['duration_s']:.3f} s, {f['codec']} "
                       f"{f['width']}x{f['height']}" + (f", first {f['reencoded_frames']} frames re-encoded"
                                                         if f.get("reencoded_frames") else ""))
        for g in cam["gaps"]:
            out.append(f"  gap           {g['start']['local']}  to  {g['end']['local']}  ({g['seconds']:.1f} s): "
                       f"{g['reason']}")
        for s in cam["skipped_segments"]:
            out.append(f"  skipped       {s['path']}: {s['reason']}"
                       + (f" (sha256 {s['sha256']}, {s['bytes']} bytes)" if s.get("sha256") else ""))
        for n in cam.get("notes", []):
            out.append(f"  note          {n}")
        segs = cam["segments"]
        out.append(f"  segments      {len(segs)} used (sha256 and size of each recorded file as read for this "
                   "export):" if segs else "  segments      none used")
        for s in segs:
            out.append(f"    {s['path']}  {s.get('bytes', '?')} bytes  sha256 {s.get('sha256', 'not recorded')}"
                       + (f"  (held by {s['held_by']})" if s.get("held_by") else ""))
    out.append("")
    sig = doc["signature"]
    out.append(f"Signed with {sig['algorithm']} key {sig['fingerprint']}")
    out.append(f"  public key {sig['public_key']}")
    out.append("The sha256 and size of every file are in manifest.json; manifest.sig signs manifest.json.")
    out.append("Check with: sharpeye export verify <this folder or its zip>")
    return "\n".join(out) + "\n"
