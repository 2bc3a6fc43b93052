"""The floor of ``sharpeye bench``: what decoding alone and the detector alone cost per frame.

A pipeline cannot cost less than decoding the frames it decodes plus running the detector on
the frames it detects; the bench divides the pipeline's measured CPU by that floor, so the ratio
shows what everything else (RTSP, colour conversion, motion gate, tracker, rules, Redis, Python)
adds.  Measured with process CPU time (all threads, so PyAV's decoder threads and onnxruntime's
pool count), in the bench process, after each run so it never competes with the run itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from pipeline.tools.bench.content import Clip


@dataclass
class Floor:
    """CPU ms per frame of decoding alone (per clip) and of the detector alone (per clip and threads)."""

    decode_ms: dict[str, float] = field(default_factory=dict)
    keyframe_ms: dict[str, float] = field(default_factory=dict)
    infer_ms: dict[tuple[str, int], float] = field(default_factory=dict)
    detectors: dict[int, Any] = field(default_factory=dict)

    def ensure(self, clip: Clip, threads: int) -> None:
        """Measure what is not measured yet for this clip (once per bench invocation)."""
        name = clip.path.name
        if name not in self.decode_ms:
            self.decode_ms[name] = decode_cpu_ms(clip.path)
            self.keyframe_ms[name] = decode_cpu_ms(clip.path, keyframes_only=True, packets=15)
        if (name, threads) not in self.infer_ms:
            if threads not in self.detectors:
                self.detectors[threads] = floor_detector(threads)
            self.infer_ms[(name, threads)] = infer_cpu_ms(clip.path, self.detectors[threads])

    def decode_cores(self, clip: Clip, input_fps: float, decoded_fps: float) -> float:
        """Cores to decode ``decoded_fps`` of this clip.

        Keyframes cost several times an average frame, and a camera in idle mode decodes nothing
        else: every keyframe (one per GOP of the input) is priced as a keyframe, the rest of the
        decoded frames at the cost of the other frames.
        """
        name, gop = clip.path.name, clip.spec.gop
        avg, key = self.decode_ms[name], self.keyframe_ms[name]
        other = max(0.0, (avg * gop - key) / (gop - 1))
        kf = min(decoded_fps, input_fps / gop)
        return (key * kf + other * (decoded_fps - kf)) / 1000

    def inference_cores(self, clip: Clip, threads: int, detected_fps: float) -> float:
        return self.infer_ms[(clip.path.name, threads)] * detected_fps / 1000


def _packets(path: Path, keyframes_only: bool, limit: int) -> Iterator[tuple[Any, Any]]:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"  # as the worker's source decodes
        n = 0
        for pkt in c.demux(vs):
            if pkt.size == 0 or (keyframes_only and not pkt.is_keyframe):
                continue
            yield vs, pkt
            n += 1
            if n >= limit:
                return


def decode_cpu_ms(path: Path, keyframes_only: bool = False, packets: int = 150) -> float:
    """Process CPU ms per decoded frame over the first ``packets`` packets (or keyframes), flushed.

    Frame threading holds frames back, so the decoder is flushed at the end: every packet fed is
    counted once, and no later packet's work leaks in.
    """
    frames = 0
    vs = None
    t0 = time.process_time()
    for stream, pkt in _packets(path, keyframes_only, packets):
        vs = stream
        frames += len(pkt.decode())
    if vs is not None:
        frames += len(vs.decode(None))
    return (time.process_time() - t0) * 1000 / max(frames, 1)


def infer_cpu_ms(path: Path, detector: Any, frames: int = 20) -> float:
    """Process CPU ms per frame of the detector alone on frames spread over the clip."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        step = max(1, (vs.frames or 250) // frames)
        imgs = [f.to_ndarray(format="bgr24") for i, f in enumerate(c.decode(vs)) if i % step == 0][:frames]
    detector.detect(imgs[0])
    t0 = time.process_time()
    for img in imgs:
        detector.detect(img)
    return (time.process_time() - t0) * 1000 / len(imgs)


def floor_detector(threads: int) -> Any:
    """A detector built as the worker builds it (its config defaults), with the bench's threads."""
    from pipeline.analyse.detect import Detector
    from pipeline.analyse.models import default_models_dir, resolve_model
    from pipeline.config import ModelConfig

    mc = ModelConfig(threads=threads)
    path, manifest = resolve_model(mc.name, default_models_dir())
    return Detector(path, manifest, providers=tuple(mc.providers), threads=mc.threads,
                    score_threshold=mc.score_threshold, nms_iou=mc.nms_iou)
