"""Every environment variable the server reads, in one place.

Nothing else in `serve` touches `os.environ`. Each variable has a default and one line of
documentation in `VARIABLES`; `docs/serving.md` lists the same table (a test keeps them in step).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from serve.runtimes import (  # names only: imports no runtime
    BF16,
    DEFAULT_RUNTIME,
    FP32,
    RUNTIMES,
    SERVE_REQUIREMENTS,
)

MIB = 1024 * 1024

# Importing onnxruntime (1.32) writes a device id and a telemetry database under
# $HOME/.cache/Microsoft unless this is set; the server writes nothing outside /tmp. serve/__init__
# imports this module first, so it is set before anything imports onnxruntime.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

T = TypeVar("T")

# A real-time caller is better served by a quick 503 (its retry may land on another instance)
# than by a long queue: SageMaker gives up after 60 s, most callers much sooner. Batch Transform
# waits up to 600 s per record (SAGEMAKER_MODEL_SERVER_TIMEOUT) and sends only
# MaxConcurrentTransforms records at once, so its queue may be long.
REALTIME_QUEUE_DEADLINE = 1.0
BATCH_QUEUE_DEADLINE = 300.0
DEFAULT_THREADS = 32
# A clip on a real-time endpoint must be answered within SageMaker's 60 s, its upload included.
REALTIME_VIDEO_SECONDS = 50.0
DEFAULT_VIDEO_MAX_FRAMES = 108_000  # an hour at 30 frames per second
# waitress's default is 100 connections; a client pool that keeps 10 000 idle ones open must not
# lock /ping out (each costs a descriptor and a few KB).
DEFAULT_MAX_CONNECTIONS = 16384
# A --rect export's shapes OpenVINO compiles one by one (serve/runtimes/openvino_static_shapes.py):
# a camera's photos in both orientations; each costs memory (~50 MB a layout for yolov7-tiny).
DEFAULT_STATIC_SHAPES = 2


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot use."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    doc: str


VARIABLES: tuple[Variable, ...] = (
    Variable("MODEL_PATH", "(unset)", "ONNX file to serve; wins over everything below."),
    Variable(
        "SAGEMAKER_MODEL_DIR",
        "/opt/ml/model",
        "Where SageMaker unpacks the model data; the single *.onnx (or OpenVINO IR *.xml with "
        "its .bin) in it is served.",
    ),
    Variable(
        "BAKED_MODEL_PATH",
        "/opt/model/model.onnx",
        "Model baked into the image, used when neither of the above gives one.",
    ),
    Variable(
        "SAGEMAKER_BIND_TO_PORT",
        "8080",
        "Port to listen on (set by SageMaker when it wants another).",
    ),
    Variable("SERVE_HOST", "0.0.0.0", "Address to listen on."),
    Variable("YOLO_CONF", "0.25", "Default confidence threshold (a request may override it)."),
    Variable("YOLO_IOU", "0.45", "Default NMS IoU threshold (a request may override it)."),
    Variable(
        "YOLO_MAX_DET", "300", "Default maximum number of detections per image (at most 1000)."
    ),
    Variable(
        "MAX_BODY_BYTES",
        "6291456 (6 MiB)",
        "Largest request body; larger ones get 413. Wins over SAGEMAKER_MAX_PAYLOAD_IN_MB.",
    ),
    Variable(
        "MAX_VIDEO_BYTES",
        "MAX_BODY_BYTES",
        "Largest video body (413 above). A body above 4 x MAX_BODY_BYTES (only a video can be "
        "one) is spooled to the server's private directory, not held in memory; an "
        "asynchronous endpoint sets 1073741824 (SageMaker's 1 GB).",
    ),
    Variable(
        "SERVE_VIDEO_MAX_FRAMES",
        str(DEFAULT_VIDEO_MAX_FRAMES),
        "Most frames computed for one clip: a clip whose selection is larger is refused (413), "
        "one that turns out larger stops there (incomplete).",
    ),
    Variable(
        "SERVE_VIDEO_SECONDS",
        f"{REALTIME_VIDEO_SECONDS:g} (SERVE_QUEUE_DEADLINE where that is longer)",
        "Time budget of one clip: a clip that would take longer at the measured per-frame speed "
        "is refused at once (413), one that runs past it is answered with the frames so far.",
    ),
    Variable(
        "SAGEMAKER_BATCH",
        "false",
        "Set to true by Batch Transform; enables SAGEMAKER_MAX_PAYLOAD_IN_MB.",
    ),
    Variable(
        "SAGEMAKER_MAX_PAYLOAD_IN_MB",
        "(unset)",
        "Batch Transform's payload limit; the body limit when SAGEMAKER_BATCH=true.",
    ),
    Variable(
        "MAX_IMAGE_PIXELS",
        "50000000",
        "Largest width x height accepted, read from the image header before decoding (413 above).",
    ),
    Variable(
        "SERVE_THREADS",
        "32",
        "Waitress worker threads: requests computing, waiting for their turn, and 2 kept for "
        "/ping and refusals; requests beyond are refused (503), so this also caps the queue.",
    ),
    Variable(
        "SERVE_MAX_CONNECTIONS",
        str(DEFAULT_MAX_CONNECTIONS),
        "Open connections at most (idle keep-alive ones included); beyond, new ones wait in "
        "the kernel's backlog. The server raises its descriptor limit (RLIMIT_NOFILE) to fit, "
        "up to the hard limit, and lowers this when the hard limit is smaller.",
    ),
    Variable(
        "SERVE_QUEUE_DEADLINE",
        f"{REALTIME_QUEUE_DEADLINE:g} (with SAGEMAKER_BATCH=true: {BATCH_QUEUE_DEADLINE:g})",
        "Seconds a request may take, its wait for a turn included: one that would not finish "
        "in time is refused at once with 503 and Retry-After, one that waited longer is answered "
        "503 instead of being computed. Raise it for a slow model (one inference near it).",
    ),
    Variable(
        "SERVE_RUNTIME",
        DEFAULT_RUNTIME,
        f"What runs the graph: {DEFAULT_RUNTIME}, or "
        + " or ".join(
            f"{spec.name} (needs {spec.requirements})"
            for spec in RUNTIMES.values()
            if spec.requirements != SERVE_REQUIREMENTS
        )
        + "; unset, an OpenVINO IR model (.xml + .bin) picks openvino.",
    ),
    Variable(
        "SERVE_PRECISION",
        "auto",
        "auto, fp32 or bf16; auto is bf16 where the CPU has AVX512_BF16 or AMX and the runtime "
        f"uses it ({', '.join(spec.name for spec in RUNTIMES.values() if spec.bf16)}), else fp32.",
    ),
    Variable(
        "SERVE_EXACT_DECODE",
        "false",
        "true: decode every image in full; false: a JPEG of at least 4 MP whose long side is at "
        "least twice the model input is decoded at half size (DCT scaling); boxes stay in its "
        "own pixels.",
    ),
    Variable(
        "SERVE_STATIC_SHAPES",
        str(DEFAULT_STATIC_SHAPES),
        "OpenVINO, a --rect export: how many photo shapes get their own compile (in the "
        "background, on first sight, for each thread layout; ~0.8x the dynamic-shape inference "
        "time, ~50 MB each a layout for yolov7-tiny); 0: none. Single-model server only.",
    ),
    Variable(
        "ORT_INTRA_OP_THREADS",
        "CPUs",
        "Threads of an inference running alone (onnxruntime: per operator; openvino: the same "
        "number); on onnxruntime, one started beside another gets this / SERVE_INFERENCE_SLOTS.",
    ),
    Variable(
        "ORT_INTER_OP_THREADS", "1", "onnxruntime threads across operators (sequential execution)."
    ),
    Variable(
        "SERVE_INFERENCE_SLOTS",
        "2 for a model under 50 MB, else 1 (or CPUs / ORT_INTRA_OP_THREADS if more)",
        "Inferences run at once; others wait (decoding still overlaps). Caps CPU and memory.",
    ),
    Variable(
        "SERVE_TMPDIR",
        "/tmp",
        "Where the server makes its private directory (mode 0700) at start, the only place it "
        "writes; removed at exit.",
    ),
    Variable(
        "SERVE_GRACE_SECONDS", "20", "On SIGTERM, how long in-flight requests may take to finish."
    ),
    Variable(
        "LOG_LEVEL", "INFO", "Log level (name or number); wins over SAGEMAKER_CONTAINER_LOG_LEVEL."
    ),
    Variable(
        "SAGEMAKER_CONTAINER_LOG_LEVEL",
        "(unset)",
        "SageMaker's log level convention (e.g. 20 or INFO).",
    ),
    # Multi-model endpoints (serve/multi_model.py, docs/multi-model.md).
    Variable(
        "SAGEMAKER_MULTI_MODEL",
        "false",
        "Set to true by SageMaker on a multi-model endpoint: no model at start, the /models API.",
    ),
    Variable(
        "SERVE_MODELS_ROOT",
        "/opt/ml/models",
        "Multi-model: where SageMaker unpacks models; a POST /models url outside it gets 400.",
    ),
    Variable(
        "SERVE_MODEL_MEMORY_MB",
        "the cgroup memory limit (else RAM) less SERVE_MEMORY_HEADROOM_MB and the start RSS",
        "Multi-model: memory the loaded models may take together; a load past it gets 507.",
    ),
    Variable(
        "SERVE_MEMORY_HEADROOM_MB",
        "512",
        "Multi-model: memory kept for requests' buffers when the budget comes from the limit.",
    ),
)

MAX_DET_LIMIT = 1000
PRECISIONS = ("auto", FP32, BF16)


@dataclass(frozen=True)
class Settings:
    model_path: str | None
    model_dir: str
    baked_model_path: str
    host: str
    port: int
    conf: float
    iou: float
    max_det: int
    max_body_bytes: int
    batch: bool
    max_image_pixels: int
    threads: int
    intra_op_threads: int
    inter_op_threads: int
    inference_slots: int | None  # None: chosen from the model by default_inference_slots()
    runtime: str
    precision: str  # asked: auto, fp32 or bf16 (serve.runtimes.precision decides auto)
    grace_seconds: float
    log_level: int
    queue_deadline: float = REALTIME_QUEUE_DEADLINE  # seconds (serve/admission.py)
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    transform_concurrency: int = 4  # Batch Transform's MaxConcurrentTransforms
    exact_decode: bool = False  # True: no reduced (DCT-scaled) JPEG decoding
    static_shapes: int = DEFAULT_STATIC_SHAPES  # OpenVINO: compiles per shape of a --rect export
    tmpdir: str = "/tmp"  # the parent of the server's private directory (serve/scratch.py)
    multi_model: bool = False  # SageMaker's multi-model contract (serve/multi_model.py)
    models_root: str = "/opt/ml/models"
    model_memory_mb: int | None = None  # None: from the memory limit (serve/multi_model.py)
    memory_headroom_mb: int = 512
    max_video_bytes: int = 6 * MIB
    video_max_frames: int = DEFAULT_VIDEO_MAX_FRAMES
    video_seconds: float = REALTIME_VIDEO_SECONDS  # a clip's time budget (serve/video_invocations)
    runtime_asked: bool = False  # SERVE_RUNTIME was set (else an OpenVINO IR model picks openvino)

    @property
    def max_payload_mb(self) -> int:
        """The body limit in whole MiB, as Batch Transform's execution parameters want it."""
        return max(1, self.max_body_bytes // MIB)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        get = _Reader(env)
        cpus = available_cpus()
        batch = get("SAGEMAKER_BATCH", _parse_bool, False)
        payload_mb = get("SAGEMAKER_MAX_PAYLOAD_IN_MB", _positive_int, None)
        body_default = payload_mb * MIB if (batch and payload_mb) else 6 * MIB
        intra = get("ORT_INTRA_OP_THREADS", _positive_int, cpus)
        threads = get("SERVE_THREADS", _positive_int, DEFAULT_THREADS)
        log_level = get("LOG_LEVEL", _parse_level, None)
        if log_level is None:
            log_level = get("SAGEMAKER_CONTAINER_LOG_LEVEL", _parse_level, logging.INFO)
        max_body = get("MAX_BODY_BYTES", _positive_int, body_default)
        runtime = get("SERVE_RUNTIME", _one_of(tuple(RUNTIMES)), None)
        deadline = get(
            "SERVE_QUEUE_DEADLINE",
            _positive_float,
            BATCH_QUEUE_DEADLINE if batch else REALTIME_QUEUE_DEADLINE,
        )
        return cls(
            model_path=get("MODEL_PATH", str, None),
            model_dir=get("SAGEMAKER_MODEL_DIR", str, "/opt/ml/model"),
            baked_model_path=get("BAKED_MODEL_PATH", str, "/opt/model/model.onnx"),
            host=get("SERVE_HOST", str, "0.0.0.0"),
            port=get("SAGEMAKER_BIND_TO_PORT", _port, 8080),
            conf=get("YOLO_CONF", _unit_float, 0.25),
            iou=get("YOLO_IOU", _unit_float, 0.45),
            max_det=get("YOLO_MAX_DET", _max_det, 300),
            max_body_bytes=max_body,
            batch=batch,
            max_image_pixels=get("MAX_IMAGE_PIXELS", _positive_int, 50_000_000),
            threads=threads,
            intra_op_threads=intra,
            inter_op_threads=get("ORT_INTER_OP_THREADS", _positive_int, 1),
            inference_slots=get("SERVE_INFERENCE_SLOTS", _positive_int, None),
            runtime=runtime or DEFAULT_RUNTIME,
            runtime_asked=runtime is not None,
            precision=get("SERVE_PRECISION", _one_of(PRECISIONS), "auto"),
            grace_seconds=get("SERVE_GRACE_SECONDS", _non_negative_float, 20.0),
            log_level=log_level,
            queue_deadline=deadline,
            # Records Batch Transform sends at once: enough to keep the CPUs busy, not the
            # whole queue (each holds a body of up to 100 MB).
            transform_concurrency=min(threads, max(4, cpus + 2)),
            max_connections=get("SERVE_MAX_CONNECTIONS", _positive_int, DEFAULT_MAX_CONNECTIONS),
            exact_decode=get("SERVE_EXACT_DECODE", _parse_bool, False),
            static_shapes=get("SERVE_STATIC_SHAPES", _non_negative_int, DEFAULT_STATIC_SHAPES),
            tmpdir=get("SERVE_TMPDIR", str, "/tmp"),
            multi_model=get("SAGEMAKER_MULTI_MODEL", _parse_bool, False),
            models_root=get("SERVE_MODELS_ROOT", str, "/opt/ml/models"),
            model_memory_mb=get("SERVE_MODEL_MEMORY_MB", _positive_int, None),
            memory_headroom_mb=get("SERVE_MEMORY_HEADROOM_MB", _non_negative_int, 512),
            max_video_bytes=get("MAX_VIDEO_BYTES", _positive_int, max_body),
            video_max_frames=get("SERVE_VIDEO_MAX_FRAMES", _positive_int, DEFAULT_VIDEO_MAX_FRAMES),
            video_seconds=get(
                "SERVE_VIDEO_SECONDS", _positive_float, max(REALTIME_VIDEO_SECONDS, deadline)
            ),
        )


# What libraries read to choose where their temporary files go: Python's tempfile (TMPDIR, TEMP,
# TMP) and OpenCV (OPENCV_TEMP_PATH, for a codec that cannot work from memory).
TEMP_VARIABLES = ("TMPDIR", "TEMP", "TMP", "OPENCV_TEMP_PATH")


def route_temp_files(directory: str) -> None:
    """Point every library's temporary files at `directory` (the server's private one); called
    before the heavy imports, which read these once."""
    for name in TEMP_VARIABLES:
        os.environ[name] = directory


class _Reader:
    """Reads one variable, parses it, and names the variable when the value is bad."""

    def __init__(self, env: Mapping[str, str]):
        self._env = env

    def __call__(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"environment variable {name}={raw!r}: {exc}") from None


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("expected a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError("expected a port number 1-65535")
    return value


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number between 0 and 1")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError("expected a non-negative number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError("expected a positive number of seconds")
    return value


def _max_det(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_DET_LIMIT:
        raise ValueError(f"expected an integer 1-{MAX_DET_LIMIT}")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text.lower()

    return parse


def _parse_level(text: str) -> int:
    if text.lstrip("-").isdigit():
        return int(text)
    level = logging.getLevelName(text.upper())
    if not isinstance(level, int):
        raise ValueError("expected a level name (DEBUG, INFO, WARNING, ERROR) or number")
    return level


SMALL_MODEL_BYTES = 50 * MIB


def default_inference_slots(model_bytes: int, intra_op_threads: int, cpus: int) -> int:
    """How many inferences may run at once, measured (docs/bench.md, 2 vCPUs): a small model
    (yolov7-tiny, 24 MB) gains ~10 % throughput from two runs at once, as one run's serial
    stretches overlap the other's parallel ones; a large one (yolov7, 146 MB) loses ~12 % to cache
    contention, and memory grows with every concurrent run."""
    overlap = 2 if model_bytes < SMALL_MODEL_BYTES else 1
    return max(overlap, cpus // intra_op_threads)


def available_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """The cgroup CPU limit in CPUs (v2 `cpu.max`, else v1 CFS quota), or None when unlimited."""
    base = Path(root)
    try:
        fields = (base / "cpu.max").read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        return None
    except (OSError, ValueError):
        pass
    for sub in ("cpu", "cpu,cpuacct"):
        try:
            quota = int((base / sub / "cpu.cfs_quota_us").read_text())
            period = int((base / sub / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None
