"""``sharpeye export verify DIR|ZIP``: re-check the hashes and signatures of an export or case, name what differs.

Works on a folder or on its ZIP without unpacking it (a ZIP's names are only compared, never used as
paths, so a crafted ZIP cannot write anywhere).  An export is checked as: ``manifest.sig`` is the
signature of the exact bytes of ``manifest.json`` by the public key written in it; every file listed
has that size and sha256; no file is missing and none was added.  A case adds the same checks on
``case.json`` and on each export inside it.  The signing key is reported by fingerprint, and compared
with this installation's key when one is given or found.

The manifest also gives the sha256 and size of every source segment the export read (manifests
made before that was added say nothing: reported as "not recorded", not as a failure).  With
``sources`` (the recordings folder, and the fetch cache) each source segment still on disk is
hashed again and compared, so the chain recording → export can be checked while the recordings
exist; a segment no longer on disk (retention deleted it after the export was released) is
reported, not failed.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from pipeline.export import signing
from pipeline.export.manifest import SIG_RE, sha256_file


@dataclass
class Report:
    ok: bool = True
    problems: list[str] = field(default_factory=list)  # one line per file that differs, or per failed check
    checked_files: int = 0
    exports: list[str] = field(default_factory=list)
    fingerprints: set[str] = field(default_factory=set)
    sources: list[str] = field(default_factory=list)  # per export: what is known of its source segments' hashes
    manifests: list[dict[str, Any]] = field(default_factory=list)  # every export manifest read (valid JSON)

    def fail(self, msg: str) -> None:
        self.ok = False
        self.problems.append(msg)


class _Tree:
    """The files of a folder or a ZIP, by relative POSIX name."""

    def __init__(self, where: Path):
        self.where = where
        self.zip: zipfile.ZipFile | None = None
        if where.is_dir():
            self.names = sorted(p.relative_to(where).as_posix() for p in where.rglob("*") if p.is_file())
        else:
            self.zip = zipfile.ZipFile(where)
            self.names = sorted(i.filename for i in self.zip.infolist() if not i.is_dir())

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        if self.zip is not None:
            with self.zip.open(name) as f:
                yield f  # type: ignore[misc]
        else:
            with open(self.where / name, "rb") as f:
                yield f

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def verify(where: Path, expected_key: str | None = None, sources: Sequence[Path] | None = None) -> Report:
    """Check an export or case, as a folder or a ZIP; ``expected_key`` (base64) must then have signed it.

    ``sources``: folders the manifests' segment paths are relative to (recordings, fetch cache); the
    segments found there are hashed again and compared with the manifest.
    """
    report = Report()
    try:
        tree = _Tree(where)
    except (OSError, zipfile.BadZipFile) as e:
        report.fail(f"{where}: cannot be read as a folder or a ZIP ({e})")
        return report
    try:
        names = tree.names
        tops = {PurePosixPath(n).parts[0] for n in names if "/" in n}
        root = ""
        if "case.json" not in names and "manifest.json" not in names and len(tops) == 1:
            root = f"{tops.pop()}/"  # a ZIP holds one folder
        if f"{root}case.json" in names:
            _verify_case(tree, root, report, expected_key)
        elif f"{root}manifest.json" in names:
            _verify_folder(tree, root, "manifest", set(names), report, expected_key)
        else:
            report.fail(f"{where}: no manifest.json or case.json: not an export or a case")
    finally:
        tree.close()
    for doc in report.manifests:
        _sources(doc, report, sources)
    return report


def _sources(doc: dict[str, Any], report: Report, roots: Sequence[Path] | None) -> None:
    """What the manifest says of its source segments and, with ``roots``, whether those on disk still match."""
    eid = str(doc.get("id"))
    segs = [(str(c.get("id")), s) for c in doc.get("cameras", []) if isinstance(c, dict)
            for s in c.get("segments", []) if isinstance(s, dict)]
    hashed = [x for x in segs if isinstance(x[1].get("sha256"), str)]
    if not segs:
        report.sources.append(f"export {eid}: no source segments listed")
        return
    if not hashed:
        report.sources.append(f"export {eid}: {len(segs)} source segment(s); their sha256: not recorded "
                              "(a manifest made before source hashes were added)")
        return
    line = f"export {eid}: {len(hashed)} of {len(segs)} source segment(s) with sha256 recorded"
    if len(hashed) < len(segs):
        line += f"; {len(segs) - len(hashed)}: not recorded"
    if roots is None:
        report.sources.append(line)
        return
    matched, absent = 0, 0
    for cam, seg in hashed:
        rel = PurePosixPath(str(seg.get("path", "")))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            report.fail(f"export {eid}: source segment path {str(rel)!r} is not a relative recording path")
            continue
        found = next((Path(r) / rel for r in roots if (Path(r) / rel).is_file()), None)
        if found is None:
            absent += 1
            continue
        if not any(found.resolve().is_relative_to(Path(r).resolve()) for r in roots):
            report.fail(f"export {eid}: source segment {str(rel)!r} leads out of the recordings (a link): not read")
            continue
        with open(found, "rb") as f:
            digest, size = sha256_file(f)
        if digest != seg["sha256"] or size != seg.get("bytes"):
            report.fail(f"{found}: source segment of export {eid} ({cam}) differs from what was exported "
                        f"(sha256 {digest[:16]}..., {size} bytes; manifest {seg['sha256'][:16]}..., "
                        f"{seg.get('bytes')} bytes)")
        else:
            matched += 1
    line += f"; on disk: {matched} match"
    if absent:
        line += f", {absent} no longer on disk (deleted by retention after release, or held on another machine)"
    report.sources.append(line)


def _verify_case(tree: _Tree, root: str, report: Report, expected_key: str | None) -> None:
    names = set(tree.names)
    doc = _verify_folder(tree, root, "case", {n for n in names if _owner(n, root, names) == root}, report,
                         expected_key)
    exports = (doc or {}).get("exports", [])
    listed = {f"{root}{e['folder']}/" for e in exports if isinstance(e, dict) and "folder" in e}
    folders = {f"{root}{PurePosixPath(n[len(root):]).parts[0]}/" for n in names
               if n.startswith(root) and "/" in n[len(root):]}
    for extra in sorted(folders - listed):
        report.fail(f"{extra}: a folder the case does not list")
    for e in exports:
        sub = f"{root}{e['folder']}/"
        if sub not in folders:
            report.fail(f"{sub}manifest.json: missing (the case lists export {e.get('id')})")
            continue
        _verify_folder(tree, sub, "manifest", {n for n in names if n.startswith(sub)}, report, expected_key)


def _owner(name: str, root: str, names: set[str]) -> str:
    """The folder (with trailing slash) a file of a case belongs to: the case's own, or an export's."""
    rest = name[len(root):]
    return root if "/" not in rest else f"{root}{rest.split('/', 1)[0]}/"


def _verify_folder(tree: _Tree, root: str, stem: str, names: set[str], report: Report,
                   expected_key: str | None) -> dict[str, Any] | None:
    """One signed folder: the signature of ``<stem>.json``, then every file it lists, then what it does not list.

    ``names`` are the files that belong to this folder (a case's own files, not its exports'): any of
    them the JSON does not list was added.
    """
    jname, sname = f"{root}{stem}.json", f"{root}{stem}.sig"
    every = set(tree.names)
    raw = tree.read(jname)
    try:
        doc = json.loads(raw)
        sig_block = doc["signature"]
        pub = str(sig_block["public_key"])
        files = doc["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not an object")
    except (ValueError, KeyError, TypeError) as e:
        report.fail(f"{jname}: not a valid manifest ({e}): it was changed or damaged")
        return None
    report.exports.append(str(doc.get("id") or doc.get("name") or root))
    if stem == "manifest":
        report.manifests.append(doc)
    if sname not in names:
        report.fail(f"{sname}: missing: the manifest cannot be authenticated")
    else:
        m = SIG_RE.match(tree.read(sname).decode("ascii", "replace"))
        if m is None:
            report.fail(f"{sname}: not a signature file: it was changed or damaged")
        elif not signing.check(pub, raw, m.group(1)):
            report.fail(f"{jname}: the signature does not match: the manifest (or its .sig) was changed")
    fp = signing.fingerprint(pub) if _is_b64(pub) else "(unreadable key)"
    report.fingerprints.add(fp)
    if expected_key is not None and pub != expected_key:
        report.fail(f"{jname}: signed by key {fp}, not by the expected key {signing.fingerprint(expected_key)}")
    for name, meta in sorted(files.items()):
        full = f"{root}{name}"
        if full not in every:
            report.fail(f"{full}: missing")
            continue
        with tree.open(full) as f:
            digest, size = sha256_file(f)
        report.checked_files += 1
        if size != meta.get("bytes") or digest != meta.get("sha256"):
            report.fail(f"{full}: differs from the manifest (sha256 {digest[:16]}..., {size} bytes; manifest "
                        f"{str(meta.get('sha256'))[:16]}..., {meta.get('bytes')} bytes)")
    known = {f"{root}{n}" for n in files} | {jname, sname}
    for extra in sorted(names - known):
        report.fail(f"{extra}: not in the manifest (added after the export)")
    return doc


def _is_b64(s: str) -> bool:
    import base64
    import binascii

    try:
        return len(base64.b64decode(s, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False
