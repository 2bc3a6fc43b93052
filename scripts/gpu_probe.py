"""GPU capacity probe: run on a machine with an NVIDIA GPU, print and write JSON.

What a GPU box can carry is the smaller of two figures: the detector's frames per second on the GPU
(batched across cameras) divided by each camera's detect rate, and what its CPU cores can decode and
prepare.  This probe measures both on the project's own model and clips:

1. the detector: onnxruntime with the CUDA (and TensorRT) provider where the installed onnxruntime
   has them; otherwise the same ONNX graph run by PyTorch on the GPU (converted with onnx2torch),
   fp32 and fp16, at several batch sizes, with the batch axis made dynamic (the shipped YOLOX-Nano is
   exported with batch 1; its three Reshapes take the batch from their input once the leading 1 is 0,
   which gives outputs identical to frame-by-frame runs: checked below);
2. the CPU side per detected frame: letterbox + blob, and YOLOX decoding + NMS (the project's code);
3. decoding: every core decoding the 640x360 sub-stream (what a worker decodes for every frame) and
   the 1080p main stream, single-threaded per process, with OpenCV's FFmpeg.

Usage: ``python scripts/gpu_probe.py MODEL.onnx SUB.mp4 MAIN.mp4 OUT.json``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DETECT_FPS = 5.0  # the default per-camera detect rate
SOURCE_FPS = 25.0
BATCHES = (1, 8, 32, 64, 128, 256)


def dynamic_batch(src: str, dst: str) -> None:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(src)
    g = m.graph
    for i, init in enumerate(g.initializer):
        a = numpy_helper.to_array(init)
        if a.ndim == 1 and a.shape[0] == 3 and list(a) == [1, a[1], -1]:  # Reshape [1, C, -1] -> [0, C, -1]
            g.initializer[i].CopyFrom(numpy_helper.from_array(np.array([0, a[1], -1], dtype=a.dtype), init.name))
    g.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    g.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    del g.value_info[:]  # shapes inferred for batch 1
    onnx.save(m, dst)


def frames(path: str, n: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(path)
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    return out


def blobs(imgs: list[np.ndarray]) -> tuple[np.ndarray, float, list[Any]]:
    from pipeline.analyse.detect import letterbox

    t0 = time.perf_counter()
    boxed = [letterbox(img, (416, 416), 114, "top-left") for img in imgs]
    arr = np.concatenate([np.ascontiguousarray(b.image.transpose(2, 0, 1)[None], dtype=np.float32) for b in boxed])
    return arr, (time.perf_counter() - t0) * 1000 / len(imgs), boxed


def time_it(run: Any, batch: np.ndarray, reps: int) -> float:
    run(batch)
    run(batch)
    t0 = time.perf_counter()
    for _ in range(reps):
        run(batch)
    return (time.perf_counter() - t0) / reps


def decode_worker(args: tuple[str, float]) -> tuple[int, float]:
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "threads;1"
    import cv2

    cv2.setNumThreads(1)
    path, seconds = args
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        cap = cv2.VideoCapture(path)
        while time.perf_counter() - t0 < seconds:
            if not cap.grab():
                break
            cap.retrieve()
            n += 1
    return n, time.perf_counter() - t0


def main() -> int:
    model, sub, main_clip, out_path = sys.argv[1:5]
    res: dict[str, Any] = {}
    try:
        res["gpu"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
    except OSError:
        res["gpu"] = "none (nvidia-smi not found)"
    res["cpu_cores"] = os.cpu_count()
    import onnxruntime as ort

    res["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    dyn = "/tmp/model_dynamic_batch.onnx"
    dynamic_batch(model, dyn)
    imgs = frames(sub, 256)
    batch_all, pre_ms, boxed = blobs(imgs)
    res["cpu_preprocess_ms_per_frame"] = round(pre_ms, 3)
    cpu = ort.InferenceSession(dyn, providers=["CPUExecutionProvider"])
    ref = cpu.run(None, {"images": batch_all[:4]})[0]
    one = np.concatenate([ort.InferenceSession(model, providers=["CPUExecutionProvider"])
                          .run(None, {"images": batch_all[i:i + 1]})[0] for i in range(4)])
    res["dynamic_batch_max_abs_diff"] = float(np.abs(ref - one).max())
    from pipeline.analyse.detect import decode_yolox, nms

    t0 = time.perf_counter()
    for i in range(64):
        cand = decode_yolox(ref[i % 4], (416, 416), (8, 16, 32), 0.3, 1000)
        nms(cand.xyxy, cand.score, cand.class_id, 0.45)
    res["cpu_postprocess_ms_per_frame"] = round((time.perf_counter() - t0) * 1000 / 64, 3)

    detector: dict[str, Any] = {}
    for prov in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        if prov not in ort.get_available_providers():
            continue
        try:
            sess = ort.InferenceSession(dyn, providers=[prov, "CPUExecutionProvider"])
            got = sess.get_providers()
            rows = {}
            for b in BATCHES:
                x = np.ascontiguousarray(np.resize(batch_all, (b, 3, 416, 416)))
                s = time_it(lambda a, sess=sess: sess.run(None, {"images": a}), x, 20)
                rows[b] = round(b / s, 1)
            detector[f"onnxruntime:{prov}"] = {"providers": got, "frames_per_s": rows}
        except Exception as e:  # a provider that is listed but cannot load its libraries
            detector[f"onnxruntime:{prov}"] = {"error": f"{type(e).__name__}: {e}"[:400]}
    try:
        import onnx
        import torch
        from onnx2torch import convert

        net = convert(onnx.load(dyn)).cuda().eval()
        res["torch"] = {"version": torch.__version__, "device": torch.cuda.get_device_name(0)}
        with torch.no_grad():
            check = net(torch.from_numpy(batch_all[:4]).cuda()).float().cpu().numpy()
            res["torch_vs_onnxruntime_max_abs_diff"] = float(np.abs(check - ref).max())
            for dtype in ("fp32", "fp16"):
                m = net.half() if dtype == "fp16" else net
                rows = {}
                for b in BATCHES:
                    x = torch.from_numpy(np.ascontiguousarray(np.resize(batch_all, (b, 3, 416, 416)))).cuda()
                    x = x.half() if dtype == "fp16" else x

                    def run(a: Any, m: Any = m) -> None:
                        m(a)
                        torch.cuda.synchronize()
                    rows[b] = round(b / time_it(run, x, 30), 1)
                detector[f"torch-cuda:{dtype}"] = {"frames_per_s": rows}
    except Exception as e:
        detector["torch-cuda"] = {"error": f"{type(e).__name__}: {e}"[:400]}
    res["detector"] = detector

    procs = os.cpu_count() or 1
    with mp.get_context("spawn").Pool(procs) as pool:
        for name, clip in (("sub_640x360", sub), ("main_1920x1080", main_clip)):
            got = pool.map(decode_worker, [(clip, float(os.environ.get("PROBE_DECODE_S", "15")))] * procs)
            fps = sum(n / s for n, s in got)
            res[f"decode_{name}"] = {"processes": procs, "frames_per_s_total": round(fps, 1),
                                     "frames_per_s_per_core": round(fps / procs, 1)}

    best = max((v for d in detector.values() for v in d.get("frames_per_s", {}).values()), default=0.0)
    per_cam_core_s = (SOURCE_FPS / res["decode_sub_640x360"]["frames_per_s_per_core"]
                      + DETECT_FPS * (pre_ms + res["cpu_postprocess_ms_per_frame"]) / 1000)
    res["estimate"] = {
        "detect_fps_per_camera": DETECT_FPS,
        "gpu_bound_cameras": round(best / DETECT_FPS),
        "cpu_core_s_per_camera": round(per_cam_core_s, 4),
        "cpu_bound_cameras": round(procs / per_cam_core_s),
        "note": "CPU side: sub-stream decode at 25 fps + pre/post-processing of detected frames, per core-second; "
                "the main stream is remuxed for recording, not decoded; python overhead of the worker not included",
    }
    Path(out_path).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
