"""Tests for the detector stage (pipeline.analyse.detect) and model manifests (pipeline.analyse.models).

Real computations only: synthetic network outputs with known answers, tiny ONNX models built with
the ``onnx`` package, and the real YOLOX-Nano on a real clip (shared assets from scripts/setup: a
missing one fails the test unless SHARPEYE_ALLOW_MISSING_ASSETS=1).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.analyse.detect import (
    Detections,
    Detector,
    boxes_to_source,
    decode_yolov8,
    decode_yolox,
    iter_media,
    letterbox,
    nms,
    select_providers,
)
from pipeline.analyse.models import (
    COCO80_CLASSES,
    DEFAULT_PREPROCESSING,
    ChecksumError,
    ModelManifest,
    fetch_model,
    load_manifest,
    resolve_model,
)
from tests.support.assets import model_file

PERSON_FRAME = 100  # 10.0 s: one person standing in the room, YOLOX-Nano scores about 0.88


# --------------------------------------------------------------------------------------------
# Letterbox geometry


@pytest.mark.parametrize(
    ("position", "expected_pad"),
    [("top-left", (0, 0)), ("center", (0, 104))],
)
def test_letterbox_keeps_aspect_and_pads_where_told(position: str, expected_pad: tuple[int, int]) -> None:
    img = np.full((200, 400, 3), 7, np.uint8)
    boxed = letterbox(img, (416, 416), pad_value=114, position=position)  # type: ignore[arg-type]
    assert boxed.image.shape == (416, 416, 3)
    assert boxed.scale == pytest.approx(1.04)
    assert boxed.pad == expected_pad
    pad_x, pad_y = boxed.pad
    content = np.zeros((416, 416), bool)
    content[pad_y : pad_y + 208, pad_x : pad_x + 416] = True
    assert (boxed.image[content] == 7).all()
    assert (boxed.image[~content] == 114).all()


def test_letterbox_centres_a_portrait_image_horizontally() -> None:
    boxed = letterbox(np.zeros((400, 100, 3), np.uint8), (200, 200), position="center")
    assert boxed.scale == 0.5
    assert boxed.pad == (75, 0)


@pytest.mark.parametrize("position", ["top-left", "center"])
def test_box_through_letterbox_and_back_is_unchanged(position: str) -> None:
    source_hw = (432, 768)
    boxed = letterbox(np.zeros((*source_hw, 3), np.uint8), (416, 416), position=position)  # type: ignore[arg-type]
    boxes = np.array([[10.0, 20.0, 300.5, 400.0], [0.0, 0.0, 768.0, 432.0]], np.float32)
    pad = np.array([*boxed.pad, *boxed.pad], np.float32)
    in_input = boxes * boxed.scale + pad
    np.testing.assert_allclose(boxes_to_source(in_input, boxed.scale, boxed.pad, source_hw), boxes, atol=1e-3)


@pytest.mark.parametrize("position", ["top-left", "center"])
def test_painted_rectangle_is_found_where_it_was_painted(position: str) -> None:
    """The pixels themselves must land where the box mapping says, not just the arithmetic."""
    img = np.zeros((300, 500, 3), np.uint8)
    img[50:150, 100:200] = 255
    boxed = letterbox(img, (416, 416), position=position)  # type: ignore[arg-type]
    ys, xs = np.nonzero(boxed.image[..., 0] > 200)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    back = boxes_to_source(found, boxed.scale, boxed.pad, (300, 500))
    np.testing.assert_allclose(back[0], [100, 50, 200, 150], atol=2.0)


def test_boxes_to_source_clips_to_the_frame() -> None:
    out = boxes_to_source(np.array([[-10, -5, 500, 300]], np.float32), 0.5, (0, 10), (200, 400))
    np.testing.assert_allclose(out, [[0, 0, 400, 200]])


def test_letterbox_rejects_a_grey_image() -> None:
    with pytest.raises(ValueError, match="expects an"):
        letterbox(np.zeros((10, 10), np.uint8), (32, 32))


# --------------------------------------------------------------------------------------------
# Decoding


def _yolox_rows(input_hw: tuple[int, int], num_classes: int) -> np.ndarray:
    rows = sum((input_hw[0] // s) * (input_hw[1] // s) for s in (8, 16, 32))
    return np.zeros((rows, 5 + num_classes), np.float32)


def test_decode_yolox_places_boxes_on_their_grid_cells() -> None:
    out = _yolox_rows((64, 64), 3)  # 8x8 + 4x4 + 2x2 = 84 rows
    # stride 8, cell x=3 y=2 -> row 2*8+3
    out[19, :5] = [0.5, 0.25, np.log(2.0), 0.0, 0.8]
    out[19, 5:] = [0.1, 0.9, 0.2]
    # stride 16, cell x=1 y=3 -> row 64 + 3*4+1
    out[77, :5] = [0.0, 0.0, 0.0, 0.0, 0.5]
    out[77, 5:] = [0.9, 0.0, 0.0]
    # stride 32, cell x=1 y=1 -> row 64+16+3, score 0.25: under the threshold
    out[83, 4:] = [0.5, 0.5, 0.0, 0.0]

    cand = decode_yolox(out[None], (64, 64), score_threshold=0.3)

    order = np.argsort(-cand.score)
    np.testing.assert_allclose(cand.xyxy[order], [[20, 14, 36, 22], [8, 40, 24, 56]], rtol=1e-6)
    np.testing.assert_allclose(cand.score[order], [0.72, 0.45], rtol=1e-6)
    assert cand.class_id[order].tolist() == [1, 0]
    assert cand.xyxy.dtype == np.float32 and cand.class_id.dtype == np.int32


def test_decode_yolox_caps_candidates_to_the_best_scores() -> None:
    out = _yolox_rows((64, 64), 1)
    out[:, 4] = np.linspace(0.4, 0.99, len(out))
    out[:, 5] = 1.0
    cand = decode_yolox(out, (64, 64), score_threshold=0.3, max_candidates=5)
    np.testing.assert_allclose(np.sort(cand.score), np.sort(out[-5:, 4]))


def test_decode_yolox_rejects_an_output_that_does_not_fit_the_input_size() -> None:
    with pytest.raises(ValueError, match="does not fit input"):
        decode_yolox(_yolox_rows((64, 64), 3), (416, 416))


def test_decode_yolov8_reads_centre_boxes_in_input_pixels() -> None:
    out = np.zeros((4 + 3, 6), np.float32)
    out[:, 2] = [100, 50, 20, 10, 0.1, 0.2, 0.7]
    out[:, 4] = [10, 10, 4, 4, 0.95, 0.0, 0.0]
    out[:, 5] = [30, 30, 4, 4, 0.0, 0.25, 0.0]  # under the threshold
    cand = decode_yolov8(out[None], score_threshold=0.3)
    order = np.argsort(-cand.score)
    np.testing.assert_allclose(cand.xyxy[order], [[8, 8, 12, 12], [90, 45, 110, 55]])
    np.testing.assert_allclose(cand.score[order], [0.95, 0.7], rtol=1e-6)
    assert cand.class_id[order].tolist() == [0, 2]


# --------------------------------------------------------------------------------------------
# NMS


def _reference_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> list[int]:
    """Plain greedy class-aware NMS, written for clarity, to check the fast one against."""
    keep: list[int] = []
    for i in sorted(range(len(scores)), key=lambda k: (-scores[k], k)):
        suppressed = False
        for j in keep:
            if classes[i] != classes[j]:
                continue
            iw = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            ih = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = iw * ih
            area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            area_j = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            if inter / (area_i + area_j - inter) > iou:
                suppressed = True
                break
        if not suppressed:
            keep.append(i)
    return keep


BOXES = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)  # IoU(0, 1) = 0.82
SCORES = np.array([0.9, 0.8, 0.7], np.float32)


def test_nms_suppresses_an_overlapping_box_of_the_same_class() -> None:
    assert nms(BOXES, SCORES, np.array([0, 0, 0]), iou=0.45).tolist() == [0, 2]


def test_nms_keeps_overlapping_boxes_of_different_classes_when_class_aware() -> None:
    classes = np.array([0, 1, 0])
    assert nms(BOXES, SCORES, classes, iou=0.45, class_aware=True).tolist() == [0, 1, 2]
    assert nms(BOXES, SCORES, classes, iou=0.45, class_aware=False).tolist() == [0, 2]


def test_nms_returns_best_score_first_and_keeps_iou_equal_to_the_threshold() -> None:
    boxes = np.array([[0, 0, 1.5, 1], [0.5, 0, 2, 1]], np.float32)  # IoU exactly 0.5
    scores = np.array([0.6, 0.9], np.float32)
    assert nms(boxes, scores, np.array([0, 0]), iou=0.5).tolist() == [1, 0]
    assert nms(boxes, scores, np.array([0, 0]), iou=0.49).tolist() == [1]


def test_nms_keeps_classes_apart_even_with_negative_coordinates() -> None:
    """A box reaching past the top-left edge must not be offset onto another class's box."""
    boxes = np.array([[300, 300, 400, 400], [-100, -100, 0, 0]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8], np.float32), np.array([0, 1]), iou=0.45).tolist() == [0, 1]


def test_nms_of_nothing_is_nothing() -> None:
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)).size == 0


def test_nms_agrees_with_a_plain_reference_on_clustered_boxes() -> None:
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 400, (30, 2))
    xy = centres[rng.integers(0, 30, 300)] + rng.normal(0, 6, (300, 2))
    wh = rng.uniform(20, 60, (300, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(0.3, 1.0, 300).astype(np.float32)
    classes = rng.integers(0, 4, 300).astype(np.int32)
    for iou in (0.3, 0.45, 0.7):
        assert nms(boxes, scores, classes, iou=iou).tolist() == _reference_nms(boxes, scores, classes, iou)


# --------------------------------------------------------------------------------------------
# Detections


def test_detections_select_and_serialise() -> None:
    names = ["person", "car"]
    dets = Detections(
        np.array([[1.234, 2.25, 3.0, 4.0], [5, 6, 7, 8]]), np.array([0.123456, 0.9]), np.array([1, 0]), names
    )
    assert len(dets) == 2 and dets.labels == ["car", "person"]
    assert dets.select(dets.score > 0.5).labels == ["person"]
    assert len(dets.select(1)) == 1 and dets.select(1).labels == ["person"]
    assert dets.to_list()[0] == {"label": "car", "score": 0.1235, "box": [1.2, 2.2, 3.0, 4.0]}
    assert dets.xyxy.dtype == np.float32 and dets.class_id.dtype == np.int32
    empty = Detections.empty(names)
    assert len(empty) == 0 and empty.to_list() == [] and empty.xyxy.shape == (0, 4)
    with pytest.raises(ValueError):
        Detections(np.zeros((2, 4)), np.zeros(1), np.zeros(2), names)


# --------------------------------------------------------------------------------------------
# Manifests and fetching


def test_bundled_yolox_manifest_describes_the_shared_model() -> None:
    manifest = load_manifest("yolox_nano")
    assert manifest.format == "yolox" and manifest.input_size == (416, 416)
    assert manifest.preprocessing.channel_order == "bgr" and manifest.preprocessing.scale == 1.0
    assert manifest.preprocessing.pad_position == "top-left" and manifest.preprocessing.pad_value == 114
    assert manifest.classes == list(COCO80_CLASSES) and manifest.classes[0] == "person"
    assert manifest.classes == model_file("coco_classes.txt").read_text().split("\n")


def test_manifest_rejects_unknown_keys_and_fills_format_defaults(tmp_path: Path) -> None:
    base = {"name": "m", "input_size": [640, 640], "format": "yolov8", "classes": ["a"]}
    (tmp_path / "m.json").write_text(json.dumps(base))
    manifest = load_manifest(tmp_path / "m.json")
    assert manifest.preprocessing.channel_order == "rgb" and manifest.preprocessing.pad_position == "center"
    (tmp_path / "bad.json").write_text(json.dumps({**base, "treshold": 0.5}))
    with pytest.raises(ValueError, match="treshold"):
        load_manifest(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="yolox_nano"):
        load_manifest("no_such_model")


def _fake_manifest(payload: bytes, url: str | None = None) -> ModelManifest:
    return ModelManifest(
        name="fake",
        url=url,
        sha256=hashlib.sha256(payload).hexdigest(),
        size_bytes=len(payload),
        input_size=(32, 32),
        format="yolox",
        preprocessing=DEFAULT_PREPROCESSING["yolox"],
        classes=["thing"],
    )


def test_fetch_copies_from_the_mirror_and_then_keeps_the_verified_file(tmp_path: Path) -> None:
    payload = b"not really onnx, but hashed all the same" * 100
    mirror, dest = tmp_path / "mirror", tmp_path / "dest"
    (mirror / "models").mkdir(parents=True)
    (mirror / "models" / "fake.onnx").write_bytes(payload)
    manifest = _fake_manifest(payload)

    path = fetch_model(manifest, dest_dir=dest, mirror=mirror)
    assert path == dest / "fake.onnx" and path.read_bytes() == payload

    (mirror / "models" / "fake.onnx").unlink()  # a verified file in place needs no source at all
    assert fetch_model(manifest, dest_dir=dest, mirror=mirror) == path

    path.write_bytes(b"corrupted")  # a damaged file is replaced, here by a download
    source = tmp_path / "origin.onnx"
    source.write_bytes(payload)
    manifest = _fake_manifest(payload, url=source.as_uri())
    assert fetch_model(manifest, dest_dir=dest, mirror=mirror).read_bytes() == payload


def test_fetch_refuses_a_file_with_the_wrong_hash(tmp_path: Path) -> None:
    mirror, dest = tmp_path / "mirror", tmp_path / "dest"
    (mirror / "models").mkdir(parents=True)
    (mirror / "models" / "fake.onnx").write_bytes(b"tampered")
    manifest = _fake_manifest(b"original")
    with pytest.raises(ChecksumError) as err:
        fetch_model(manifest, dest_dir=dest, mirror=mirror)
    assert manifest.sha256 is not None and manifest.sha256 in str(err.value)
    assert hashlib.sha256(b"tampered").hexdigest() in str(err.value)
    assert list(dest.iterdir()) == []  # nothing installed, no temporary left behind


def test_fetch_verifies_the_real_model_from_the_shared_mirror(tmp_path: Path, yolox_onnx: Path) -> None:
    path = fetch_model(load_manifest("yolox_nano"), dest_dir=tmp_path, mirror=yolox_onnx.parents[1])
    assert path.stat().st_size == 3_659_407


# --------------------------------------------------------------------------------------------
# Tiny ONNX models with a constant output


def _constant_model(path: Path, output: np.ndarray, input_hw: tuple[int, int]) -> Path:
    """An ONNX model whose output is the 2-D ``output`` with a dynamic batch axis in front.

    The input is reduced to zero and added, so the output depends on it (as a real detector's
    does) and the batch axis follows the input's.
    """
    import onnx  # in the test extra: a missing one fails, it never skips
    from onnx import TensorProto, helper, numpy_helper

    rows, cols = output.shape
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Reshape", ["mean", "shape"], ["mean3"]),
        helper.make_node("Mul", ["mean3", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "constant"], ["output0"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        numpy_helper.from_array(output[None].astype(np.float32), "constant"),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, *input_hw])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", rows, cols])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def yolov8_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLOv8-shaped model: 128x128 input, output [1, 84, 336] with three boxes."""
    out = np.zeros((84, 336), np.float32)
    out[:4, 1] = [32, 48, 16, 8]
    out[4 + 0, 1] = 0.9  # person
    out[:4, 3] = [40, 60, 10, 10]
    out[4 + 2, 3] = 0.6  # car
    out[:4, 4] = [33, 48, 16, 8]
    out[4 + 0, 4] = 0.8  # a near-duplicate person: NMS removes it
    out[:4, 5] = [90, 90, 10, 10]
    out[4 + 5, 5] = 0.2  # a bus under the threshold
    return _constant_model(tmp_path_factory.mktemp("v8") / "tiny_v8.onnx", out, (128, 128))


def test_resolve_model_infers_yolov8_from_the_output_shape(yolov8_model: Path) -> None:
    path, manifest = resolve_model(str(yolov8_model))
    assert path == yolov8_model
    assert manifest.format == "yolov8" and manifest.input_size == (128, 128)
    assert manifest.classes == list(COCO80_CLASSES)
    assert manifest.preprocessing.channel_order == "rgb" and manifest.preprocessing.pad_position == "center"


def test_detector_decodes_a_yolov8_model_into_source_pixels(yolov8_model: Path) -> None:
    detector = Detector(*resolve_model(str(yolov8_model)), threads=1)
    assert detector.dynamic_batch
    wide = np.zeros((128, 256, 3), np.uint8)  # scale 0.5, centred: 32 px of padding on top
    dets = detector.detect(wide)
    assert dets.labels == ["person", "car"]
    np.testing.assert_allclose(dets.score, [0.9, 0.6], rtol=1e-6)
    np.testing.assert_allclose(dets.xyxy, [[48, 24, 80, 40], [70, 46, 90, 66]], atol=1e-4)

    square = np.zeros((128, 128, 3), np.uint8)  # same size as the input: boxes as the model gives them
    batch = detector.detect_batch([wide, square])
    np.testing.assert_allclose(batch[0].xyxy, dets.xyxy)
    np.testing.assert_allclose(batch[1].xyxy, [[24, 44, 40, 52], [35, 55, 45, 65]], atol=1e-4)


def test_a_sibling_manifest_overrides_inference(yolov8_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "custom.onnx"
    model.write_bytes(yolov8_model.read_bytes())
    names = [f"thing{i}" for i in range(80)]
    sibling = {"name": "custom", "input_size": [128, 128], "format": "yolov8", "classes": names}
    model.with_suffix(".json").write_text(json.dumps(sibling))
    path, manifest = resolve_model(str(model))
    assert manifest.classes == names
    assert Detector(path, manifest).detect(np.zeros((64, 64, 3), np.uint8)).labels == ["thing0", "thing2"]


def test_detector_refuses_a_manifest_with_the_wrong_class_count(yolov8_model: Path) -> None:
    _, manifest = resolve_model(str(yolov8_model))
    with pytest.raises(ValueError, match="3 classes"):
        Detector(yolov8_model, manifest.model_copy(update={"classes": ["a", "b", "c"]}))


def test_detector_decodes_a_yolox_shaped_model(tmp_path: Path) -> None:
    out = _yolox_rows((64, 64), 80)
    out[19, :5] = [0.5, 0.25, np.log(2.0), 0.0, 0.8]
    out[19, 5 + 2] = 1.0  # a car at (20, 14, 36, 22) in input pixels
    path, manifest = resolve_model(str(_constant_model(tmp_path / "tiny_x.onnx", out, (64, 64))))
    assert manifest.format == "yolox" and manifest.preprocessing.pad_position == "top-left"
    dets = Detector(path, manifest).detect(np.zeros((32, 128, 3), np.uint8))  # scale 0.5, no padding
    assert dets.labels == ["car"]
    np.testing.assert_allclose(dets.xyxy, [[40, 28, 72, 32]], atol=1e-4)  # clipped at the bottom edge
    with pytest.raises(ValueError, match="does not fit input"):
        Detector(path, manifest.model_copy(update={"strides": (8, 16)}))


def test_unavailable_providers_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    import onnxruntime as ort

    with caplog.at_level(logging.WARNING, logger="pipeline.analyse.detect"):
        chosen = select_providers(["tensorrt", "cuda", "cpu"])
    assert chosen[-1] == "CPUExecutionProvider"
    assert set(chosen) <= set(ort.get_available_providers())
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "not in this onnxruntime build" in caplog.text
    with pytest.raises(ValueError, match="unknown execution provider"):
        select_providers(["tpu"])


# --------------------------------------------------------------------------------------------
# Media and the real model


def test_iter_media_reads_an_image_as_one_frame(tmp_path: Path) -> None:
    img = np.zeros((20, 30, 3), np.uint8)
    img[:, :, 2] = 255  # red in BGR
    cv2.imwrite(str(tmp_path / "red.png"), img)
    frames = list(iter_media(tmp_path / "red.png"))
    assert len(frames) == 1
    index, pts, got = frames[0]
    assert (index, pts) == (0, 0.0) and got.shape == (20, 30, 3) and got[0, 0].tolist() == [0, 0, 255]


def test_iter_media_samples_every_nth_frame_with_its_time(person_clip: Path) -> None:
    frames = itertools.islice(iter_media(person_clip, every=50), 3)
    got = [(index, round(pts, 3), img.shape) for index, pts, img in frames]
    assert got == [(0, 0.0, (432, 768, 3)), (50, 5.0, (432, 768, 3)), (100, 10.0, (432, 768, 3))]


def test_yolox_nano_finds_the_person_in_the_room(yolox_onnx: Path, person_clip: Path) -> None:
    detector = Detector(yolox_onnx, load_manifest("yolox_nano"), threads=2)
    frame = next(
        img for index, _, img in iter_media(person_clip, every=PERSON_FRAME) if index == PERSON_FRAME
    )
    dets = detector.detect(frame)
    people = dets.select(np.array(dets.labels) == "person")
    assert len(people) >= 1 and people.score.max() > 0.5
    x1, y1, x2, y2 = people.xyxy[people.score.argmax()]
    assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 432
    assert (y2 - y1) > 100 and (y2 - y1) > (x2 - x1)  # a standing person: tall, not a speck
    assert detector.last_inference_ms > 0
    again = detector.detect_batch([frame, frame])  # batch axis fixed at 1: run frame by frame
    np.testing.assert_allclose(again[1].xyxy, dets.xyxy, atol=1e-3)


def test_a_bare_yolox_file_is_recognised_without_its_manifest(yolox_onnx: Path) -> None:
    _, manifest = resolve_model(str(yolox_onnx))  # no yolox_nano.json next to the shared file
    assert manifest.format == "yolox" and manifest.input_size == (416, 416)
    assert manifest.classes == list(COCO80_CLASSES)


def test_yolox_exported_with_batch_1_runs_frames_of_several_cameras_in_one_call(yolox_onnx: Path,
                                                                                person_clip: Path) -> None:
    """``batch_across_cameras``: the batch-1 YOLOX graph is rewritten with a dynamic batch axis; one call on
    three frames gives exactly the detections of three calls (what makes a GPU pay: docs/benchmarks.md)."""
    frames = [img for _, _, img in itertools.islice(iter_media(person_clip, every=40), 3)]
    one_by_one = Detector(yolox_onnx, load_manifest("yolox_nano"), threads=1, batch_across_cameras="off")
    assert not one_by_one.dynamic_batch  # as exported
    auto_cpu = Detector(yolox_onnx, load_manifest("yolox_nano"), threads=1)
    assert not auto_cpu.dynamic_batch  # auto: only on a GPU provider
    batched = Detector(yolox_onnx, load_manifest("yolox_nano"), threads=1, batch_across_cameras="on")
    assert batched.dynamic_batch
    together = batched.detect_batch(frames)
    apart = [one_by_one.detect(f) for f in frames]
    assert sum(len(d.score) for d in apart) > 0
    for a, b in zip(together, apart, strict=True):
        assert a.labels == b.labels
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.score, b.score, atol=1e-4)
