"""Detector model manifests, and fetching their weights with a verified checksum.

Weights are never committed: a small JSON manifest shipped inside the package
(``pipeline/analyse/manifests/``) names the public origin and the sha256 of each ONNX file, and
:func:`fetch_model` puts the file at ``<store>/<name>.onnx``.  There is one store for every command
(``detect``, ``bench``, ``run``, ``fetch-model``): ``$SHARPEYE_MODELS_DIR``, else
``~/.cache/sharpeye/models``; a config uses another folder only when its ``model.path`` says so.  The
file is copied from a file given by hand (``sharpeye fetch-model --from FILE``) or from a local mirror
when there is one, downloaded otherwise (10 s timeout; never with ``$SHARPEYE_OFFLINE=1``).  A file whose
hash does not match is never used, so a truncated download or a swapped file cannot silently change
what the command room's detector sees.  When there is no verified file and no way to get one,
:class:`ModelUnavailable` says in one line where it looked and how to install the file.

Run ``python -m pipeline.analyse.models fetch [NAME]`` to fetch a model; it prints the file's path.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.config import Config, load_config

log = logging.getLogger(__name__)

MANIFESTS_DIR = Path(__file__).resolve().parent / "manifests"  # package data: works when installed
MODELS_DIR_ENV = "SHARPEYE_MODELS_DIR"
DEFAULT_MODEL = "yolox_nano"
MIRROR_ENV = "SHARPEYE_ASSET_MIRROR"
OFFLINE_ENV = "SHARPEYE_OFFLINE"
DOWNLOAD_TIMEOUT_S = 10.0  # per connect and read: no network fails in seconds, not minutes

ModelFormat = Literal["yolox", "yolov8"]

# Kept in code rather than read from a file, so that a bare YOLOv8/YOLO11 export with 80 classes
# gets readable labels even where the package is installed without the repository's models/.
COCO80_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


class ModelUnavailable(RuntimeError):
    """The detector's weights cannot be found, fetched or verified.

    The message is one line for people: the model, where it was looked for and how to install the
    file (``sharpeye fetch-model --from FILE``).  Callers that can work without a detector (a worker
    still records) catch this; the command line prints it and exits 1.
    """


class ChecksumError(ModelUnavailable):
    """A model file's sha256 (or size) differs from its manifest: it is never installed or used."""


class Preprocessing(BaseModel):
    """How a frame becomes the model's input tensor; exports differ, so the manifest says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel_order: Literal["bgr", "rgb"] = Field(
        description="Channel order the network was trained on: YOLOX 'bgr', Ultralytics 'rgb'."
    )
    scale: float = Field(
        gt=0,
        description="Factor applied to 0-255 pixel values: 1.0 for YOLOX (raw), 1/255 for Ultralytics.",
    )
    pad_value: int = Field(ge=0, le=255, description="Grey level of the letterbox padding.")
    pad_position: Literal["top-left", "center"] = Field(
        description="Where the resized image sits in the padded square: YOLOX 'top-left', Ultralytics 'center'."
    )


DEFAULT_PREPROCESSING: dict[str, Preprocessing] = {
    "yolox": Preprocessing(channel_order="bgr", scale=1.0, pad_value=114, pad_position="top-left"),
    "yolov8": Preprocessing(channel_order="rgb", scale=1 / 255, pad_value=114, pad_position="center"),
}


class ModelManifest(BaseModel):
    """Everything needed to fetch, verify, feed and decode one ONNX detector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Short identifier; the weights live at models/<name>.onnx.",
    )
    description: str = Field(default="", description="What the model is, for people choosing one.")
    url: str | None = Field(default=None, description="Public origin of the ONNX file.")
    sha256: str | None = Field(
        default=None, description="Lowercase hex sha256 of the ONNX file; a fetched file must match it."
    )
    size_bytes: int | None = Field(default=None, gt=0, description="Exact size of the ONNX file.")
    licence: str = Field(default="unknown", description="SPDX licence of the weights.")
    input_size: tuple[int, int] = Field(description="Network input as (height, width) in pixels.")
    format: ModelFormat = Field(
        description="Output layout: 'yolox' is [1, N, 5+C] in grid form with objectness; "
        "'yolov8' is [1, 4+C, N] with boxes in input pixels and no objectness (YOLOv8/YOLO11)."
    )
    strides: tuple[int, ...] = Field(
        default=(8, 16, 32), description="Feature-map strides used to decode 'yolox' grid outputs."
    )
    preprocessing: Preprocessing = Field(
        description="Input conversion; defaults to the format's usual one when omitted."
    )
    classes: list[str] = Field(min_length=1, description="Class names in the model's output order.")

    @model_validator(mode="before")
    @classmethod
    def _default_preprocessing(cls, data: Any) -> Any:
        """Let a manifest for a standard export omit the preprocessing block."""
        if (
            isinstance(data, dict)
            and "preprocessing" not in data
            and data.get("format") in DEFAULT_PREPROCESSING
        ):
            data = {**data, "preprocessing": DEFAULT_PREPROCESSING[data["format"]]}
        return data

    @field_validator("sha256")
    @classmethod
    def _check_sha256(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("sha256 must be 64 hexadecimal characters")
        return value

    @field_validator("input_size")
    @classmethod
    def _check_input_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) <= 0:
            raise ValueError(f"input_size must be positive (height, width), got {list(value)}")
        return value


def load_manifest(name_or_path: str | Path) -> ModelManifest:
    """Load a manifest by bare name (one shipped in the package) or by file path."""
    text = str(name_or_path)
    looks_like_path = text.endswith(".json") or os.sep in text or "/" in text
    path = Path(text) if looks_like_path else MANIFESTS_DIR / f"{text}.json"
    if not path.is_file():
        known = sorted(p.stem for p in MANIFESTS_DIR.glob("*.json"))
        raise FileNotFoundError(
            f"model manifest not found: {path} (known models: {', '.join(known) or 'none'})"
        )
    try:
        return ModelManifest.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"invalid model manifest {path}: {exc}") from exc


def default_mirror() -> Path | None:
    """The local asset mirror, ``$SHARPEYE_ASSET_MIRROR`` (the set-up and test scripts set it)."""
    env = os.environ.get(MIRROR_ENV)
    return Path(env) if env else None


def default_models_dir() -> Path:
    """Where weights go when no config says: ``$SHARPEYE_MODELS_DIR``, else the user's cache."""
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sharpeye" / "models"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large models do not sit in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def offline() -> bool:
    """True when ``$SHARPEYE_OFFLINE`` forbids downloading (set it where there is no network, and in tests)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def install_hint(manifest: ModelManifest) -> str:
    """How to install the weights by hand: the command, and where the file comes from."""
    origin = f", FILE being {manifest.name}.onnx from {manifest.url}" if manifest.url else ""
    return f"install it with `sharpeye fetch-model {manifest.name} --from FILE`{origin}"


def fetch_model(
    manifest: ModelManifest,
    dest_dir: Path | None = None,
    mirror: Path | None = None,
    source_file: Path | None = None,
) -> Path:
    """Make sure ``<dest_dir>/<name>.onnx`` exists with the manifest's sha256, and return its path.

    ``dest_dir`` defaults to the shared store (:func:`default_models_dir`).  A file already in place
    with the right hash is kept as is (no network).  Otherwise it is copied from ``source_file`` when
    given (``sharpeye fetch-model --from FILE``), else from ``<mirror>/models/<name>.onnx`` when the
    mirror has it, else downloaded from the manifest's url (with a short timeout, and never when
    ``$SHARPEYE_OFFLINE`` is set).  Either way it is written to a temporary file in ``dest_dir`` and only
    renamed into place once its hash is verified, so a crash or a bad file never leaves a half-written
    model behind.  Raises :class:`ModelUnavailable` (one line: where it looked, how to install the
    file) when there is no verified file and no source; :class:`ChecksumError` when a source's file
    does not match.
    """
    if manifest.sha256 is None:
        raise ModelUnavailable(
            f"model {manifest.name!r}: the manifest has no sha256, so it cannot be fetched safely"
        )
    dest_dir = Path(dest_dir) if dest_dir is not None else default_models_dir()
    mirror = Path(mirror) if mirror is not None else default_mirror()
    target = dest_dir / f"{manifest.name}.onnx"

    if source_file is None and target.is_file():
        actual = sha256_file(target)
        if actual == manifest.sha256:
            return target
        log.warning("%s has sha256 %s, expected %s: fetching it again", target, actual, manifest.sha256)

    mirrored = mirror / "models" / f"{manifest.name}.onnx" if mirror is not None else None
    if source_file is not None:
        source = Path(source_file)
        if not source.is_file():
            raise ModelUnavailable(f"model {manifest.name!r}: {source}: no such file")
        _install(manifest, target, str(source), lambda out: _copy_from_file(source, out))
        return target
    if mirrored is not None and mirrored.is_file():
        log.info("copying model %s from mirror %s", manifest.name, mirrored)
        _install(manifest, target, str(mirrored), lambda out: _copy_from_file(mirrored, out))
        return target

    looked = f"not found at {target}" + (f" nor in the mirror {mirrored}" if mirrored is not None else "")
    url = manifest.url
    if not url:
        raise ModelUnavailable(f"model {manifest.name!r} {looked}, and its manifest has no url: "
                               f"{install_hint(manifest)}")
    if offline() and not url.startswith("file:"):
        raise ModelUnavailable(f"model {manifest.name!r} {looked}, and downloading is off "
                               f"({OFFLINE_ENV}={os.environ.get(OFFLINE_ENV)}): {install_hint(manifest)}")
    log.debug("downloading model %s from %s", manifest.name, url)
    _install(manifest, target, url, lambda out: _copy_from_url(url, out),
             failed=f"{looked}, and downloading it failed")
    return target


def _install(manifest: ModelManifest, target: Path, origin: str, write: Callable[[IO[bytes]], None],
             failed: str | None = None) -> None:
    """:func:`_install_verified` into a folder made first; an I/O error becomes one ModelUnavailable line."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _install_verified(manifest, target, origin, write)
    except ChecksumError:
        raise
    except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
        reason = getattr(exc, "reason", None) or exc
        reason = getattr(reason, "strerror", None) or reason
        where = failed or f"could not be copied from {origin} to {target}"
        raise ModelUnavailable(f"model {manifest.name!r} {where} ({_one_line(reason)}): "
                               f"{install_hint(manifest)}") from None


def _one_line(reason: object) -> str:
    return " ".join(str(reason).split()) or type(reason).__name__


def _copy_from_file(source: Path, out: IO[bytes]) -> None:
    with source.open("rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)


def _copy_from_url(url: str, out: IO[bytes]) -> None:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        shutil.copyfileobj(response, out, 1 << 20)


def _install_verified(
    manifest: ModelManifest, target: Path, origin: str, write: Callable[[IO[bytes]], None]
) -> None:
    """Write through ``write(fileobj)`` into a temp file, check size and hash, then rename atomically."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{manifest.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        size = tmp.stat().st_size
        actual = sha256_file(tmp)
        if actual != manifest.sha256:
            expected_size = f", expected {manifest.size_bytes}" if manifest.size_bytes else ""
            raise ChecksumError(
                f"model {manifest.name!r} from {origin}: sha256 mismatch: expected {manifest.sha256}, "
                f"got {actual} ({size} bytes{expected_size}); the file was not installed"
            )
        tmp.chmod(0o644)  # mkstemp makes it private; a model is not a secret and other users run workers
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_model(
    model: str | Path, dest_dir: Path | None = None, mirror: Path | None = None, base_dir: Path | None = None
) -> tuple[Path, ModelManifest]:
    """Turn what a user wrote in the config (a model name or an .onnx path) into a file and its manifest.

    A name (or a .json path) is fetched into ``dest_dir`` if needed. A relative .onnx path is read
    against ``base_dir`` (the config file's folder). An .onnx path uses a sibling ``<stem>.json``
    when there is one; otherwise the format is inferred from the output shape, so that a
    YOLOv8/YOLO11 export can be dropped in without writing a manifest first.
    """
    text = str(model)
    if not text.endswith(".onnx"):
        try:
            manifest = load_manifest(text)
        except FileNotFoundError as exc:
            raise ModelUnavailable(str(exc)) from None
        return fetch_model(manifest, dest_dir=dest_dir, mirror=mirror), manifest
    path = Path(text)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise ModelUnavailable(f"model file not found: {path}")
    sibling = path.with_suffix(".json")
    if sibling.is_file():
        return path, load_manifest(sibling)
    return path, infer_manifest(path)


def infer_manifest(path: Path) -> ModelManifest:
    """Build a manifest for an ONNX file from its input and output shapes alone.

    ``[1, N, 5+C]`` is YOLOX and ``[1, 4+C, N]`` is YOLOv8/YOLO11 (see :func:`_guess_format`);
    80 classes are taken to be COCO's. When the shape cannot tell, the error asks for a manifest.
    """
    import onnxruntime as ort  # imported here: fetching a model must not need the runtime

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise ValueError(f"{path}: expected one image input and a detection output, got {len(inputs)} inputs")
    in_shape, out_shape = list(inputs[0].shape), list(outputs[0].shape)
    height, width = in_shape[2:4] if len(in_shape) == 4 else (None, None)
    fixed_hw = (height, width) if isinstance(height, int) and isinstance(width, int) else None
    fmt = _guess_format(out_shape, fixed_hw)
    if fmt is None:
        raise ValueError(
            f"{path}: cannot infer the format from output shape {out_shape}; write {path.stem}.json"
        )
    num_classes = (out_shape[1] - 4) if fmt == "yolov8" else (out_shape[2] - 5)
    if num_classes < 1:
        raise ValueError(f"{path}: output shape {out_shape} leaves no class scores for format {fmt}")
    if fixed_hw is None:
        fixed_hw = (640, 640) if fmt == "yolov8" else (416, 416)
        log.warning("%s: input size is dynamic (%s); using %dx%d", path, in_shape, fixed_hw[1], fixed_hw[0])
    classes = list(COCO80_CLASSES) if num_classes == 80 else [f"class{i}" for i in range(num_classes)]
    log.info("%s: no manifest, inferred %s with %d classes from output %s", path, fmt, num_classes, out_shape)
    return ModelManifest(
        name=path.stem,
        description=f"inferred from output shape {out_shape}",
        input_size=fixed_hw,
        format=fmt,
        preprocessing=DEFAULT_PREPROCESSING[fmt],
        classes=classes,
    )


def _guess_format(out_shape: list[Any], input_hw: tuple[int, int] | None) -> ModelFormat | None:
    """Tell ``[1, N, 5+C]`` (YOLOX) from ``[1, 4+C, N]`` (YOLOv8) by which axis holds the anchors.

    With a fixed input size the anchor count N is known (one per cell at strides 8, 16 and 32), which
    settles small inputs where N and 4+C are close; otherwise the longer axis is taken as N, and a
    named (dynamic) axis is taken as N too.
    """
    if len(out_shape) != 3:
        return None
    d1, d2 = out_shape[1], out_shape[2]
    if not isinstance(d1, int) and not isinstance(d2, int):
        return None
    if not isinstance(d2, int):
        return "yolov8"
    if not isinstance(d1, int):
        return "yolox"
    if input_hw is not None:
        anchors = sum((input_hw[0] // s) * (input_hw[1] // s) for s in (8, 16, 32))
        if d2 == anchors and d1 != anchors:
            return "yolov8"
        if d1 == anchors and d2 != anchors:
            return "yolox"
    if d1 == d2:
        return None
    return "yolov8" if d1 < d2 else "yolox"


def main(argv: list[str] | None = None) -> int:
    """Command line for set-up scripts: ``fetch [NAME]`` prints the verified model path."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.analyse.models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="fetch and verify a model's weights, print the path")
    fetch.add_argument(
        "name", nargs="?", default=DEFAULT_MODEL, help=f"manifest name (default {DEFAULT_MODEL})"
    )
    fetch.add_argument("--dest", type=Path, default=None,
                       help=f"directory for the .onnx (default ${MODELS_DIR_ENV} or ~/.cache/sharpeye/models)")
    fetch.add_argument(
        "--mirror", type=Path, default=None, help=f"asset mirror (default ${MIRROR_ENV})"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        path = fetch_model(load_manifest(args.name), dest_dir=args.dest, mirror=args.mirror)
    except (OSError, ValueError, ModelUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def model_classes(model: str) -> list[str]:
    """The class names of a config's model, read as `run` will read them, without fetching weights.

    A manifest name reads ``models/<name>.json``; an .onnx path (already resolved against the
    config's folder) reads its sibling manifest, or the file itself when it has none.
    """
    if model.endswith(".onnx"):
        return list(resolve_model(model)[1].classes)
    return list(load_manifest(model).classes)


def validate_config(path: str) -> Config:
    """The one validation `sharpeye check` and `sharpeye run` share: the file, the schema, the files
    it names, and the labels against the model's classes; raises ConfigError with every problem."""
    return load_config(path, classes=model_classes)
