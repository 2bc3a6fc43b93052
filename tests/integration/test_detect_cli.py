"""`sharpeye detect` on the shared person clip: a person is found where one walks in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_detect_json_finds_the_person_walking_in(person_clip: Path) -> None:
    # frames 0..199 at every 10th frame (the clip is 10 fps): one JSON object per processed frame
    out = subprocess.run([sys.executable, "-m", "cli.main", "detect", str(person_clip), "--every", "10",
                          "--max-frames", "20", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["frame"] for r in recs] == list(range(0, 200, 10))
    assert all(abs(r["pts"] - r["frame"] / 10) < 0.11 for r in recs)
    with_person = [r for r in recs if any(d["label"] == "person" and d["score"] > 0.5 for d in r["detections"])]
    assert with_person, "no person found in the first 20 s"
    first = with_person[0]
    box = next(d["box"] for d in first["detections"] if d["label"] == "person")
    x1, y1, x2, y2 = box
    assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 432  # source pixels, not model input pixels
    assert (y2 - y1) > 50  # a person-sized box
    print(f"first person at frame {first['frame']} ({first['pts']} s): {box}")


def test_detect_on_an_image_from_a_folder_with_no_config_reads_the_model_store(
        tmp_path: Path, person_clip: Path, yolox_onnx: Path) -> None:
    """The model comes from $SHARPEYE_MODELS_DIR alone: no config, no data/, no mirror, no network."""
    import av
    import cv2

    work, store, mirror = tmp_path / "work", tmp_path / "store", tmp_path / "empty-mirror"
    for d in (work, store, mirror):
        d.mkdir()
    shutil.copyfile(yolox_onnx, store / "yolox_nano.onnx")
    with av.open(str(person_clip)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i == 100:
                cv2.imwrite(str(tmp_path / "f.jpg"), frame.to_ndarray(format="bgr24"))
                break
    env = {**os.environ, "SHARPEYE_MODELS_DIR": str(store), "SHARPEYE_ASSET_MIRROR": str(mirror),
           "SHARPEYE_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "cli.main", "detect", str(tmp_path / "f.jpg"), "--json"],
                         capture_output=True, text=True, timeout=60, cwd=work, env=env)
    assert out.returncode == 0, out.stderr
    (rec,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert rec["frame"] == 0 and any(d["label"] == "person" for d in rec["detections"])
    assert list(work.iterdir()) == []  # nothing written where it ran: no data/, no models/
    assert sorted(p.name for p in store.iterdir()) == ["yolox_nano.onnx"]
