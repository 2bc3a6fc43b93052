"""Recording does not depend on the detector: a real worker whose model cannot be had (an empty model
store, downloading off) or cannot be loaded (a broken .onnx file) still starts, records segments that
decode, says ``detector unavailable`` and why in its cameras' statuses on the bus and in
``sharpeye status``, analyses nothing, and heals without a restart once a good model file is in place."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import av
import pytest

from pipeline.analyse.models import MANIFESTS_DIR
from pipeline.config import load_config
from pipeline.publish import bus
from pipeline.publish.status import CameraStatus
from pipeline.record.catalog import Recordings
from pipeline.runtime.worker import Worker
from tests.support.config import write_config
from tests.support.waits import wait_for

ROOT = Path(__file__).resolve().parents[2]
PW = "correct horse battery"


def status(redis_url: str, prefix: str, cid: str) -> CameraStatus | None:
    return bus.camera_statuses(bus.connect(redis_url), bus.BusKeys(prefix)).get(cid)


def decodes(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_empty_model_store_still_records_and_says_detector_unavailable(
        tmp_path: Path, person_clip: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "empty-store"
    store.mkdir()
    monkeypatch.setenv("SHARPEYE_MODELS_DIR", str(store))
    monkeypatch.setenv("SHARPEYE_OFFLINE", "1")
    monkeypatch.delenv("SHARPEYE_ASSET_MIRROR", raising=False)  # no mirror to copy the model from
    caplog.set_level(logging.INFO)
    prefix = f"nodet-{uuid.uuid4().hex[:8]}"
    path = write_config(tmp_path, {"lobby": {"source": person_clip, "detect_fps": 5}}, data_dir="data",
                        bus={"prefix": prefix}, recordings={"segment_s": 2, "pre_event_s": 0})
    cfg = load_config(path)
    worker = Worker(cfg, redis_url)
    assert worker.detector is None and worker.detector_error
    assert "yolox_nano" in worker.detector_error
    assert "person" in worker.class_names  # from the manifest: the rules are still checked
    names = [loop.name for loop in worker.loops(watch_config=True)]
    assert names == ["detect", "status", "config", "model", "sightings"]
    t0 = time.time()
    worker.start()
    try:
        rt = worker.cameras["lobby"]
        wait_for(lambda: rt.writer is not None and rt.writer.stats.segments >= 2, 60,
                 lambda: f"segments written: {rt.writer.stats.segments if rt.writer else None}")

        def published() -> CameraStatus | None:
            st = status(redis_url, prefix, "lobby")
            return st if st is not None and st.state == "streaming" and (st.recorded_segments or 0) >= 2 else None
        wait_for(published, 20, "a streaming status with segments on the bus")
        st = published()
        assert st is not None
        assert st.detector == "unavailable" and "yolox_nano" in st.detector_error
        assert st.detected == 0 and rt.detected == 0  # nothing analysed, nothing queued for it
        assert rt.source.stats.sampled > 0
        assert all(loop.alive() for loop in worker.running), [loop.name for loop in worker.running]

        cli = subprocess.run([sys.executable, "-m", "cli.main", "status", "--config", str(path),
                              "--redis", redis_url], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert cli.returncode == 0, cli.stderr
        line = next(ln for ln in cli.stdout.splitlines() if ln.startswith("lobby"))
        assert "unavailable" in line and "detector unavailable: model 'yolox_nano'" in line, cli.stdout
        js = subprocess.run([sys.executable, "-m", "cli.main", "status", "--config", str(path), "--redis",
                             redis_url, "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert json.loads(js.stdout)["lobby"]["detector"] == "unavailable"
    finally:
        worker.stop()
    t1 = time.time()

    segs = Recordings(tmp_path / "data" / "recordings").segments("lobby", t0, t1)
    assert len(segs) >= 2
    assert all(decodes(s.path) > 0 for s in segs)
    unavailable = [r for r in caplog.records if "detector unavailable" in r.getMessage()]
    assert len(unavailable) == 1, [r.getMessage() for r in unavailable]  # one line, not one per retry
    assert unavailable[0].exc_info is None  # and no traceback
    assert not list(store.iterdir())  # nothing was fetched into the store

    # the dashboard: the duty page's camera list and the engineer's health page carry it (the pages show
    # camera.detector_unavailable: "检测器不可用" / "detector unavailable")
    from fastapi.testclient import TestClient

    from dashboard.app import create_app
    from dashboard.users import add_user
    from history import open_database

    engine = open_database(cfg)
    add_user(engine, "wang", PW, "operator", ["G1"], "Wang Wei")
    add_user(engine, "chen", PW, "engineer", ["G1"], "Chen Jie")
    try:
        app = create_app(cfg, redis_url, engine)
        for name, url in (("wang", "/api/cameras"), ("chen", "/api/health")):
            c = TestClient(app)  # type: ignore[arg-type]
            assert c.post("/api/login", json={"username": name, "password": PW}).status_code == 200
            cam = next(x for x in c.get(url).json() if x["id"] == "lobby")
            assert cam["detector"] == "unavailable" and "yolox_nano" in cam["detector_error"], cam
        for locale, text in (("zh-CN", "检测器不可用"), ("en", "detector unavailable")):
            catalogue = json.loads((ROOT / f"dashboard/static/i18n/{locale}.json").read_text())
            assert catalogue["camera.detector_unavailable"] == text
    finally:
        engine.dispose()


def test_a_broken_model_file_heals_once_a_good_one_is_in_place(
        tmp_path: Path, person_clip: Path, yolox_onnx: Path, redis_url: str) -> None:
    model = tmp_path / "detector.onnx"
    model.write_bytes(b"this is not an onnx file")  # a truncated copy, say
    shutil.copy(MANIFESTS_DIR / "yolox_nano.json", model.with_suffix(".json"))
    prefix = f"heal-{uuid.uuid4().hex[:8]}"
    path = write_config(tmp_path, {"lobby": {"source": person_clip, "detect_fps": 5}}, data_dir="data",
                        bus={"prefix": prefix}, model={"name": "detector.onnx"},
                        recordings={"segment_s": 2, "pre_event_s": 0})
    worker = Worker(load_config(path), redis_url, model_retry_s=0.5)
    assert worker.detector is None and worker.detector_error
    assert worker.detector_error.startswith("model ")
    worker.start()
    try:
        rt = worker.cameras["lobby"]
        wait_for(lambda: (st := status(redis_url, prefix, "lobby")) is not None and st.detector == "unavailable",
                 20, "detector unavailable on the bus")
        wait_for(lambda: rt.writer is not None and rt.writer.stats.segments >= 1, 60, "a segment while broken")
        assert rt.detected == 0
        tmp = model.with_suffix(".part")
        shutil.copy(yolox_onnx, tmp)
        tmp.replace(model)  # the good file installed: the model loop picks it up, no restart
        wait_for(lambda: rt.detected >= 5, 60, lambda: f"detected {rt.detected} (error: {worker.detector_error})")
        assert worker.detector is not None and worker.detector_error is None
        assert not any(loop.name == "model" and loop.alive() for loop in worker.running)  # its work is done
        wait_for(lambda: (st := status(redis_url, prefix, "lobby")) is not None and st.detector == "ok"
                 and st.detector_error == "", 20, "detector ok on the bus")
        segments_before = rt.writer.stats.segments if rt.writer else 0
        wait_for(lambda: rt.writer is not None and rt.writer.stats.segments > segments_before, 30,
                 "recording goes on after the model loaded")
    finally:
        worker.stop()


def test_sharpeye_run_with_an_empty_model_store_says_so_in_one_line_and_records(
        tmp_path: Path, person_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.tools.simulator import free_port
    from tests.support.dashboard import spawn, stop

    monkeypatch.setenv("SHARPEYE_MODELS_DIR", str(tmp_path / "empty-store"))
    monkeypatch.setenv("SHARPEYE_OFFLINE", "1")
    monkeypatch.delenv("SHARPEYE_ASSET_MIRROR", raising=False)
    path = write_config(tmp_path, {"lobby": {"source": person_clip, "detect_fps": 5}}, data_dir="data",
                        recordings={"segment_s": 2, "pre_event_s": 0})
    log = tmp_path / "run.log"
    run = spawn("cli.main", "run", "--config", str(path), "--port", str(free_port()), log=log)
    try:
        def recorded() -> dict[str, object] | None:
            if run.poll() is not None:
                pytest.fail(f"sharpeye run ended ({run.returncode}):\n{log.read_text()}")
            out = subprocess.run([sys.executable, "-m", "cli.main", "status", "--config", str(path), "--json"],
                                 capture_output=True, text=True, timeout=60, cwd=ROOT)
            lobby = json.loads(out.stdout)["lobby"] if out.returncode == 0 else {}
            return lobby if (lobby.get("recorded_segments") or 0) >= 2 else None
        wait_for(recorded, 90, lambda: f"two segments recorded by sharpeye run:\n{log.read_text()[-2000:]}")
        lobby = recorded()
        assert lobby is not None and lobby["detector"] == "unavailable" and lobby["detected"] == 0
    finally:
        assert stop(run, timeout=30) == 0
    said = [ln for ln in log.read_text().splitlines() if ln.startswith("sharpeye run: model 'yolox_nano'")]
    assert len(said) == 1 and "fetch-model" in said[0], log.read_text()
    assert "Traceback" not in log.read_text()
