"""Fetch the demo and test clips (Intel sample videos, CC-BY-4.0) into .cache/clips, verified by sha256.

Uses ``$SHARPEYE_ASSET_MIRROR/clips`` (default ``../shared``) when present, else the public origin.
Prints the folder. Run with the venv's Python: ``.venv/bin/python scripts/fetch_clips.py``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / ".cache" / "clips"
ORIGIN = "https://github.com/intel-iot-devkit/sample-videos/raw/master/"
CLIPS = {
    "one-by-one-person-detection.mp4": "a5964aa259099a482a8b360ffc2c57b5a30f84d5919236a4dad01f8e929ac07c",
    "car-detection.mp4": "d31e0ebf194cc16e50eea784e7c3b0b1bb7976a4fb9b3fec26cb92a6704cca34",
}


sys.path.insert(0, str(ROOT))
from pipeline.analyse.models import sha256_file as sha256  # noqa: E402  (one chunked hasher for models and clips)


def fetch(name: str, digest: str) -> Path:
    dest = DEST / name
    if dest.exists() and sha256(dest) == digest:
        return dest
    DEST.mkdir(parents=True, exist_ok=True)
    mirror = Path(os.environ.get("SHARPEYE_ASSET_MIRROR", ROOT.parent / "shared")) / "clips" / name
    with tempfile.NamedTemporaryFile(dir=DEST, delete=False) as tmp:
        if mirror.exists():
            with mirror.open("rb") as src:
                shutil.copyfileobj(src, tmp)
        else:
            with urllib.request.urlopen(ORIGIN + name, timeout=60) as resp:
                shutil.copyfileobj(resp, tmp)
    got = sha256(Path(tmp.name))
    if got != digest:
        os.unlink(tmp.name)
        raise SystemExit(f"{name}: sha256 mismatch: expected {digest}, got {got}")
    os.replace(tmp.name, dest)
    return dest


if __name__ == "__main__":
    for n, d in CLIPS.items():
        fetch(n, d)
    print(f"== clips: {DEST}")
    sys.exit(0)
