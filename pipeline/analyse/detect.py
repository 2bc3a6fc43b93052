"""The detector stage: a BGR frame in, boxes in source pixels out.

Kept free of Redis, web and process code so the worker, the CLI and the tests all run the very
same path. Two output layouts are supported because they cover what users bring:

* ``yolox`` — ``[1, N, 5+C]`` in grid form with an objectness column (the default YOLOX-Nano);
* ``yolov8`` — ``[1, 4+C, N]`` with boxes already in input pixels and no objectness
  (YOLOv8 / YOLO11 ONNX exports without built-in NMS).

Post-processing filters by score and caps the candidates *before* NMS: on a busy frame thousands
of boxes can pass a low threshold, and NMS over them cost about 95 ms here against 0.3-0.5 ms
normally.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np

from pipeline.analyse.models import ModelManifest, resolve_model
from pipeline.config import Config

log = logging.getLogger(__name__)

PadPosition = Literal["top-left", "center"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
DEFAULT_MAX_CANDIDATES = 1000

_ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


@dataclass(frozen=True)
class Detections:
    """The boxes found in one frame, as parallel arrays (cheap to filter with numpy masks).

    ``xyxy`` is in the source frame's pixels, so zones, lines and overlays drawn over the
    camera picture need no knowledge of the network's input size.
    """

    xyxy: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 in source pixels
    score: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int32, index into names
    names: Sequence[str]  # the model's class names, shared by every frame

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        class_id = np.asarray(self.class_id, dtype=np.int32).reshape(-1)
        if not len(xyxy) == len(score) == len(class_id):
            raise ValueError(f"Detections: {len(xyxy)} boxes, {len(score)} scores, {len(class_id)} class ids")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "class_id", class_id)

    @classmethod
    def empty(cls, names: Sequence[str]) -> Detections:
        """No detections: what a frame without objects, or a skipped frame, reports."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), names)

    def __len__(self) -> int:
        return len(self.score)

    @property
    def labels(self) -> list[str]:
        """Class names per box, for rules written with names ('person') rather than ids."""
        return [self.names[i] for i in self.class_id]

    def select(self, mask_or_index: np.ndarray | Sequence[int] | Sequence[bool] | int | slice) -> Detections:
        """A subset by boolean mask, index array, single index or slice (always a Detections)."""
        index: Any = [mask_or_index] if isinstance(mask_or_index, (int, np.integer)) else mask_or_index
        if not isinstance(index, slice):
            index = np.asarray(index)
        return Detections(self.xyxy[index], self.score[index], self.class_id[index], self.names)

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready records; rounded because events and logs need no more precision than this."""
        return [
            {
                "label": self.names[int(c)],
                "score": round(float(s), 4),
                "box": [round(float(v), 1) for v in box],
            }
            for box, s, c in zip(self.xyxy, self.score, self.class_id, strict=True)
        ]


# --------------------------------------------------------------------------------------------
# Geometry


class Letterbox(NamedTuple):
    """A letterboxed image plus what is needed to map boxes back to the source frame."""

    image: np.ndarray  # (H, W, 3) uint8, the network's input size
    scale: float  # source pixels x scale = input pixels
    pad: tuple[int, int]  # (pad_x, pad_y) offset of the resized image inside the input


def letterbox(
    img: np.ndarray, size_hw: tuple[int, int], pad_value: int = 114, position: PadPosition = "top-left"
) -> Letterbox:
    """Resize keeping the aspect ratio and pad to ``size_hw``, as the network was trained.

    Stretching instead would squash people on a 16:9 camera and cost recall; where the padding
    goes must match training (YOLOX: top-left, Ultralytics: centred) or boxes shift.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"letterbox expects an (H, W, 3) image, got shape {img.shape}")
    src_h, src_w = img.shape[:2]
    dst_h, dst_w = size_hw
    scale = min(dst_h / src_h, dst_w / src_w)
    new_w = min(dst_w, max(1, round(src_w * scale)))
    new_h = min(dst_h, max(1, round(src_h * scale)))
    if position == "top-left":
        pad_x = pad_y = 0
    elif position == "center":
        pad_x, pad_y = (dst_w - new_w) // 2, (dst_h - new_h) // 2
    else:
        raise ValueError(f"pad position must be 'top-left' or 'center', got {position!r}")
    if (new_w, new_h) == (src_w, src_h):
        resized = img
    else:
        resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((dst_h, dst_w, 3), pad_value, dtype=np.uint8)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return Letterbox(canvas, scale, (pad_x, pad_y))


def boxes_to_source(
    boxes: np.ndarray, scale: float, pad: tuple[int, int], source_hw: tuple[int, int]
) -> np.ndarray:
    """Undo :func:`letterbox` for xyxy boxes, clipped to the source frame."""
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    pad_x, pad_y = pad
    out -= np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)
    out /= np.float32(scale)
    src_h, src_w = source_hw
    np.clip(out[:, 0::2], 0, src_w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, src_h, out=out[:, 1::2])
    return out


# --------------------------------------------------------------------------------------------
# Batching a model exported with batch 1


def batch_dynamic_graph(model: bytes) -> bytes | None:
    """The ONNX graph with its batch axis dynamic, or None when it cannot be rewritten here.

    YOLOX exports carry batch 1 in their input, their output and three ``Reshape`` shapes
    ``[1, C, -1]``; with the leading 1 turned into 0 (ONNX: "copy this dimension from the input") the
    Reshapes take the batch from their input.  Needs the ``onnx`` package (the ``gpu`` extra); the
    caller checks the rewritten graph against frame-by-frame runs before using it.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        log.warning("batching across cameras needs the onnx package (pip install 'sharpeye[gpu]'); "
                    "frames stay one per detector call")
        return None
    m = onnx.load_from_string(model)
    g = m.graph
    if len(g.input) != 1 or not g.output:
        return None
    for i, init in enumerate(g.initializer):
        a = numpy_helper.to_array(init)
        if a.ndim == 1 and a.shape[0] >= 2 and a[0] == 1 and a.dtype.kind == "i" and a[-1] == -1:
            fixed = a.copy()
            fixed[0] = 0
            g.initializer[i].CopyFrom(numpy_helper.from_array(fixed, init.name))
    for v in (g.input[0], *g.output):
        dims = v.type.tensor_type.shape.dim
        if not dims:
            return None
        dims[0].dim_param = "batch"
    del g.value_info[:]  # shapes inferred for batch 1
    return bytes(m.SerializeToString())


# --------------------------------------------------------------------------------------------
# Decoding and NMS


class Candidates(NamedTuple):
    """Boxes that passed the score threshold, in network input pixels, before NMS."""

    xyxy: np.ndarray  # (K, 4) float32
    score: np.ndarray  # (K,) float32
    class_id: np.ndarray  # (K,) int32


@functools.lru_cache(maxsize=8)
def _yolox_grid(input_hw: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets and strides per output row, in the exporter's order (stride by stride, row-major)."""
    cells, steps = [], []
    for stride in strides:
        rows, cols = input_hw[0] // stride, input_hw[1] // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        steps.append(np.full((rows * cols, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(steps).astype(np.float32)


def _top_candidates(score: np.ndarray, score_threshold: float, max_candidates: int) -> np.ndarray:
    """Indices of the scores over the threshold, at most ``max_candidates`` of the best."""
    keep = np.flatnonzero(score > score_threshold)
    if len(keep) > max_candidates:
        best = np.argpartition(-score[keep], max_candidates - 1)[:max_candidates]
        keep = keep[best]
    return keep


def _cxcywh_to_xyxy(cxcy: np.ndarray, wh: np.ndarray) -> np.ndarray:
    half = wh / 2
    return np.concatenate([cxcy - half, cxcy + half], axis=1).astype(np.float32)


def decode_yolox(
    output: np.ndarray,
    input_hw: tuple[int, int],
    strides: Sequence[int] = (8, 16, 32),
    score_threshold: float = 0.3,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> Candidates:
    """Decode a YOLOX grid output ``[N, 5+C]`` (a leading batch axis of 1 is accepted).

    Rows are ``[x, y, w, h, obj, cls...]`` relative to their grid cell: ``xy = (raw + cell) * stride``,
    ``wh = exp(raw) * stride``, score = obj x best class score. Only rows over the threshold are
    decoded, which keeps a quiet frame nearly free.
    """
    out = output[0] if output.ndim == 3 else output
    grid, stride = _yolox_grid((int(input_hw[0]), int(input_hw[1])), tuple(strides))
    if out.ndim != 2 or out.shape[0] != len(grid) or out.shape[1] < 6:
        raise ValueError(
            f"YOLOX output shape {output.shape} does not fit input {tuple(input_hw)} with strides "
            f"{tuple(strides)} (expected [{len(grid)}, 5+classes])"
        )
    cls = out[:, 5:]
    class_id = cls.argmax(axis=1)
    score = out[:, 4] * cls[np.arange(len(out)), class_id]
    keep = _top_candidates(score, score_threshold, max_candidates)
    rows, grid, stride = out[keep], grid[keep], stride[keep]
    cxcy = (rows[:, 0:2] + grid) * stride
    wh = np.exp(rows[:, 2:4]) * stride
    return Candidates(
        _cxcywh_to_xyxy(cxcy, wh), score[keep].astype(np.float32), class_id[keep].astype(np.int32)
    )


def decode_yolov8(
    output: np.ndarray, score_threshold: float = 0.3, max_candidates: int = DEFAULT_MAX_CANDIDATES
) -> Candidates:
    """Decode a YOLOv8/YOLO11 output ``[4+C, N]`` (a leading batch axis of 1 is accepted).

    Columns are ``[cx, cy, w, h, cls...]`` already in input pixels; there is no objectness, the
    score is the best class score.
    """
    out = output[0] if output.ndim == 3 else output
    if out.ndim != 2 or out.shape[0] < 5:
        raise ValueError(f"YOLOv8 output shape {output.shape} is not [4+classes, N]")
    cls = out[4:]
    class_id = cls.argmax(axis=0)
    score = cls[class_id, np.arange(out.shape[1])]
    keep = _top_candidates(score, score_threshold, max_candidates)
    boxes = out[:4, keep].T
    return Candidates(
        _cxcywh_to_xyxy(boxes[:, 0:2], boxes[:, 2:4]),
        score[keep].astype(np.float32),
        class_id[keep].astype(np.int32),
    )


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None = None,
    iou: float = 0.45,
    class_aware: bool = True,
) -> np.ndarray:
    """Greedy non-maximum suppression on xyxy boxes; returns kept indices, best score first.

    A box is dropped when its IoU with a better-scored kept box is *greater* than ``iou``; equal
    scores keep input order; boxes scoring 0 are dropped. With ``class_aware`` a person never
    suppresses the bicycle they ride.
    OpenCV's implementation is used because it was 5-20x faster than a numpy loop here on 20-1000
    boxes, with identical results (the tests compare it against a plain reference).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    # OpenCV wants (x, y, w, h), and separates classes by offsets that assume non-negative
    # coordinates; boxes may reach past the input's top-left edge, so translate them first.
    xywh = boxes.copy()
    xywh[:, 2:] -= xywh[:, :2]
    xywh[:, :2] -= boxes[:, :2].min()
    if class_aware and class_ids is not None:
        ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
        keep = cv2.dnn.NMSBoxesBatched(xywh, scores, ids, 0.0, float(iou))  # type: ignore[arg-type]
    else:
        keep = cv2.dnn.NMSBoxes(xywh, scores, 0.0, float(iou))  # type: ignore[arg-type]
    return np.asarray(keep, dtype=np.int64).reshape(-1)


# --------------------------------------------------------------------------------------------
# The detector


def select_providers(names: Sequence[str]) -> list[str]:
    """Map 'cpu' / 'cuda' / 'tensorrt' to onnxruntime providers, skipping those not installed.

    A worker configured for a GPU must still start on a machine without one (and say so in the
    log) rather than fail, so missing providers are warnings; CPU is always the last fallback.
    """
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen: list[str] = []
    for name in names:
        provider = _ORT_PROVIDERS.get(name.lower())
        if provider is None:
            raise ValueError(f"unknown execution provider {name!r}; choose from {', '.join(_ORT_PROVIDERS)}")
        if provider == "CPUExecutionProvider" or provider in chosen:
            continue
        if provider not in available:
            log.warning(
                "execution provider %r (%s) is not in this onnxruntime build; skipped", name, provider
            )
            continue
        chosen.append(provider)
    chosen.append("CPUExecutionProvider")
    return chosen


class Detector:
    """One ONNX model with its pre- and post-processing; ``detect(frame) -> Detections``.

    The session is warmed up at load so the first camera frame does not pay for lazy
    initialisation (which would show up as a latency spike and a false 'slow detector' alarm).
    """

    def __init__(
        self,
        model_path: str | Path,
        manifest: ModelManifest,
        providers: Sequence[str] = ("cpu",),
        threads: int | None = None,
        score_threshold: float = 0.3,
        nms_iou: float = 0.45,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        cache_dir: Path | None = None,
        batch_across_cameras: Literal["auto", "on", "off"] = "auto",
    ) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path)
        self.manifest = manifest
        self.names: list[str] = list(manifest.classes)
        self.input_size: tuple[int, int] = manifest.input_size
        if not 0.0 <= score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {score_threshold}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_candidates = max_candidates
        self.last_preprocess_ms = 0.0
        self.last_inference_ms = 0.0
        self.last_postprocess_ms = 0.0

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            options.intra_op_num_threads = threads
        requested = select_providers(providers)
        provider_args: list[Any] = [
            (
                p,
                {
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache_dir or Path(".cache")),
                },
            )
            if p == "TensorrtExecutionProvider"
            else p
            for p in requested
        ]
        self._session = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=provider_args
        )
        self.providers: list[str] = self._session.get_providers()
        dropped = [p for p in requested if p not in self.providers]
        if dropped:  # e.g. onnxruntime-gpu installed but the CUDA libraries are missing
            log.warning(
                "%s: providers %s failed to load; running on %s", self.model_path, dropped, self.providers
            )

        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self._input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        shape = list(model_input.shape)
        fixed_hw = [d for d in shape[2:4] if isinstance(d, int)]
        if len(shape) != 4 or (len(fixed_hw) == 2 and tuple(fixed_hw) != self.input_size):
            raise ValueError(
                f"{self.model_path}: input {self._input_name!r} has shape {shape}, but the manifest "
                f"{manifest.name!r} says input_size {list(self.input_size)} (height, width)"
            )
        self.dynamic_batch = not isinstance(shape[0], int)
        gpu = any(p != "CPUExecutionProvider" for p in self.providers)
        if not self.dynamic_batch and (batch_across_cameras == "on" or (batch_across_cameras == "auto" and gpu)):
            self._make_batch_dynamic(options, provider_args)
        self._warm_up()

    def _make_batch_dynamic(self, options: Any, provider_args: list[Any]) -> None:
        """Run a model exported with batch 1 on batches (one frame per camera in one call: what makes a GPU
        pay, docs/benchmarks.md "GPU"), if :func:`batch_dynamic_graph` can rewrite it and the rewritten
        graph gives exactly the frame-by-frame outputs on two test frames; else stay frame by frame."""
        import onnxruntime as ort

        graph = batch_dynamic_graph(self.model_path.read_bytes())
        if graph is None:
            return
        session = ort.InferenceSession(graph, sess_options=options, providers=provider_args)
        h, w = self.input_size
        rng = np.random.default_rng(0)
        two = (rng.random((2, 3, h, w)) * 255).astype(self._input_dtype)
        together = session.run(None, {self._input_name: two})[0]
        apart = np.concatenate([self._session.run(None, {self._input_name: two[i:i + 1]})[0] for i in range(2)])
        if together.shape != apart.shape or not np.allclose(together, apart, rtol=1e-3, atol=1e-3):
            log.warning("%s: the batch-dynamic rewrite changes the outputs; frames stay one per call",
                        self.model_path)
            return
        self._session = session
        self.dynamic_batch = True
        log.info("%s: batch axis made dynamic (one call for the frames of all cameras)", self.model_path)

    @classmethod
    def from_model(cls, model: str | Path, **kwargs: Any) -> Detector:
        """Build from a manifest name or an .onnx path (see :func:`pipeline.analyse.models.resolve_model`)."""
        path, manifest = resolve_model(model)
        return cls(path, manifest, **kwargs)

    @classmethod
    def from_config(cls, cfg: Config) -> Detector:
        """The detector a config asks for: its model (weights under ``data_dir``/models, a relative .onnx
        path read against the config's folder), providers, threads and thresholds; the TensorRT engine
        cache under ``data_dir``/cache/tensorrt.  The live worker, replay, preview and bench all use it."""
        path, manifest = resolve_model(cfg.model.name, cfg.models_path(), base_dir=cfg.base_dir())
        return cls(path, manifest, providers=tuple(cfg.model.providers), threads=cfg.model.threads,
                   score_threshold=cfg.model.score_threshold, nms_iou=cfg.model.nms_iou,
                   cache_dir=cfg.data_path() / "cache" / "tensorrt",
                   batch_across_cameras=cfg.model.batch_across_cameras)

    def _warm_up(self) -> None:
        """Run once on a blank frame, and check the output fits the manifest before any camera does."""
        h, w = self.input_size
        blank = np.zeros((1, 3, h, w), dtype=self._input_dtype)
        output = self._session.run(None, {self._input_name: blank})[0]
        if self.manifest.format == "yolox":
            num_classes = output.shape[-1] - 5
        else:
            num_classes = output.shape[1] - 4
        if output.ndim != 3 or num_classes != len(self.names):
            raise ValueError(
                f"{self.model_path}: output shape {list(output.shape)} does not match format "
                f"{self.manifest.format!r} with {len(self.names)} classes from manifest {self.manifest.name!r}"
            )
        self._decode(output[0])  # raises if, say, the YOLOX grid does not fit the strides
        log.info(
            "loaded %s (%s, %dx%d, %d classes) on %s",
            self.model_path, self.manifest.format, w, h, num_classes, ", ".join(self.providers),
        )  # fmt: skip

    def _decode(self, output: np.ndarray) -> Candidates:
        if self.manifest.format == "yolox":
            return decode_yolox(
                output, self.input_size, self.manifest.strides, self.score_threshold, self.max_candidates
            )
        return decode_yolov8(output, self.score_threshold, self.max_candidates)

    def _preprocess(self, img: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """Letterbox, reorder channels and scale as the manifest says; returns a (1, 3, H, W) blob."""
        pp = self.manifest.preprocessing
        boxed = letterbox(img, self.input_size, pp.pad_value, pp.pad_position)
        planes = boxed.image.transpose(2, 0, 1)  # HWC -> CHW view, no copy yet
        if pp.channel_order == "rgb":
            planes = planes[::-1]
        # One contiguous copy does layout and dtype together; cv2.dnn.blobFromImage was 9x slower.
        blob: np.ndarray = np.ascontiguousarray(planes[None], dtype=self._input_dtype)
        if pp.scale != 1.0:
            blob *= pp.scale
        return blob, boxed

    def _postprocess(self, output: np.ndarray, boxed: Letterbox, source_hw: tuple[int, int]) -> Detections:
        cand = self._decode(output)
        keep = nms(cand.xyxy, cand.score, cand.class_id, self.nms_iou)
        xyxy = boxes_to_source(cand.xyxy[keep], boxed.scale, boxed.pad, source_hw)
        return Detections(xyxy, cand.score[keep], cand.class_id[keep], self.names)

    def detect(self, img_bgr: np.ndarray) -> Detections:
        """Detect objects in one BGR frame (any size); boxes come back in its pixels."""
        return self.detect_batch([img_bgr])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect in several frames: one session call when the model's batch axis is dynamic.

        Batching pays off on a GPU; on CPU it barely helps, and a model exported with batch 1
        is simply run frame by frame. ``last_*_ms`` then cover the whole batch.
        """
        if not images:
            return []
        t0 = time.perf_counter()
        prepared = [self._preprocess(img) for img in images]
        t1 = time.perf_counter()
        if len(prepared) == 1 or self.dynamic_batch:
            batch = prepared[0][0] if len(prepared) == 1 else np.concatenate([blob for blob, _ in prepared])
            outputs = self._session.run(None, {self._input_name: batch})[0]
        else:
            outputs = np.concatenate(
                [self._session.run(None, {self._input_name: blob})[0] for blob, _ in prepared]
            )
        t2 = time.perf_counter()
        results = [
            self._postprocess(outputs[i], boxed, img.shape[:2])
            for i, ((_, boxed), img) in enumerate(zip(prepared, images, strict=True))
        ]
        t3 = time.perf_counter()
        self.last_preprocess_ms = (t1 - t0) * 1000
        self.last_inference_ms = (t2 - t1) * 1000
        self.last_postprocess_ms = (t3 - t2) * 1000
        return results


# --------------------------------------------------------------------------------------------
# Media input for the CLI


def iter_media(source: str | Path, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(frame_index, pts_seconds, bgr_image)`` from an image or a video file.

    An image gives one frame (index 0, pts 0.0). A video gives every ``every``-th decoded frame;
    the index counts decoded frames, so it stays comparable between runs with different ``every``.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    path = Path(source)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read image {path}")
        yield 0, 0.0, img
        return
    if "://" not in str(source) and not path.is_file():
        raise FileNotFoundError(f"media file not found: {path}")
    yield from _iter_video(str(source), every)


def _iter_video(source: str, every: int) -> Iterator[tuple[int, float, np.ndarray]]:
    import av

    with av.open(source) as container:
        if not container.streams.video:
            raise ValueError(f"{source}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        for index, frame in enumerate(container.decode(stream)):
            if index % every:
                continue
            pts = frame.time if frame.time is not None else (index / rate if rate else 0.0)
            yield index, float(pts), frame.to_ndarray(format="bgr24")
