"""Many models in one server: SageMaker's multi-model contract, the registry and its budgets.

With SAGEMAKER_MULTI_MODEL=true the server starts with no model; SageMaker unpacks each model's
`.tar.gz` under SERVE_MODELS_ROOT and asks for it with `POST /models` (serve/models_api.py). The
registry here loads, lists and unloads them under two budgets shared by every model:

- memory: a load is refused (507, and SageMaker unloads an idle model and retries) when the
  models' footprints would pass SERVE_MODEL_MEMORY_MB (by default the cgroup memory limit, else
  the RAM, less SERVE_MEMORY_HEADROOM_MB and what the server took at start), or when the
  process's resident memory plus the new model's footprint would pass that limit less the
  headroom. A footprint is estimated from the file's size before loading (onnxruntime keeps the
  weights and their prepacked copies: about 2x the file, measured in docs/multi-model.md), so
  that two loads at once cannot both slip under the budget;
- CPU: one pool of inference slots (a semaphore every model's detector takes) and one admission
  queue (serve/admission.py) for all models, so that twenty models never run more inferences at
  once than one model would.

A load runs in the thread of its request, beside the serving of the loaded models (the runtime's
compile releases the GIL; only the warm-up inference takes a slot). Unloading drops the registry's
reference; the memory comes back once the requests still using the model end, and glibc is asked
to return freed pages to the kernel (malloc_trim).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import falcon

from serve.config import MIB, Settings, available_cpus, default_inference_slots
from serve.detector import Detector
from serve.errors import ModelError, one_line
from serve.locate import check_complete, is_ir, model_bytes, model_files
from serve.runtimes.precision import OPENVINO, Choice

log = logging.getLogger("serve")

MAX_NAME = 256  # characters in a model's name (a file name's limit; SageMaker's are shorter)
# Resident bytes a loaded model takes, per byte of its ONNX file and beside it: the weights,
# their prepacked copies, the sessions and one request's activations. Measured at 640 with two
# inference slots (bench/multi_model.py, docs/multi-model.md): yolov7-tiny FP32 105 MiB for a
# 24 MiB file, INT8 39 for 7; yolov7 FP32 572 for 141, INT8 88 for 37. This bounds them all.
FOOTPRINT_FACTOR = 4.0
FOOTPRINT_BASE = 16 * MIB


class InsufficientStorage(falcon.HTTPError):
    """507: what SageMaker reads as "unload another model and retry"."""

    def __init__(self, why: str) -> None:
        super().__init__("507 Insufficient Storage", title="Insufficient memory", description=why)


class ModelNotLoaded(falcon.HTTPNotFound):
    def __init__(self, name: str) -> None:
        super().__init__(title="Model not loaded", description=f"no model '{name}' is loaded")


class ModelAlreadyLoaded(falcon.HTTPConflict):
    def __init__(self, name: str) -> None:
        super().__init__(
            title="Model already loaded", description=f"a model '{name}' is already loaded"
        )


class BadModel(falcon.HTTPBadRequest):
    """The request names no usable model: a bad name or url, no or two ONNX files, a corrupt one."""

    def __init__(self, why: str) -> None:
        super().__init__(title="Bad model", description=why)


def check_name(name: object) -> str:
    """A model's name as the registry keys it; BadModel for one that could name a path or hide."""
    if not isinstance(name, str) or not name:
        raise BadModel("'model_name' must be a non-empty string")
    if len(name) > MAX_NAME:
        raise BadModel(f"a model name is at most {MAX_NAME} characters, not {len(name)}")
    if any(ch in name for ch in "/\\") or ".." in name:
        raise BadModel(f"a model name may not contain '/', '\\' or '..': {name[:60]!r}")
    if not name.isprintable():
        raise BadModel(f"a model name may hold printable characters only: {name[:60]!r}")
    return name


def model_file(url: object, root: Path) -> Path:
    """The one model (an ONNX file, or OpenVINO IR's .xml with its .bin) in the directory `url`,
    which must lie under `root`; else BadModel."""
    if not isinstance(url, str) or not url or "\x00" in url:
        raise BadModel("'url' must be a non-empty string: the directory holding the model")
    directory = Path(url).resolve()
    if not directory.is_relative_to(root.resolve()):
        raise BadModel(f"'url' must be a directory under {root}, not {url[:200]}")
    if not directory.is_dir():
        raise BadModel(f"'url' {url[:200]} is not a directory")
    found = model_files(directory)
    if not found:
        raise BadModel(f"no .onnx (or OpenVINO .xml) file under {url[:200]}")
    if len(found) > 1:
        listed = ", ".join(p.name for p in found[:5])
        raise BadModel(
            f"{len(found)} models (.onnx or .xml) under {url[:200]} ({listed}); keep one"
        )
    try:
        check_complete(found[0])
    except ModelError as exc:
        raise BadModel(str(exc)) from None
    if not found[0].resolve().is_relative_to(root.resolve()):  # a link to a file elsewhere
        raise BadModel(f"{found[0].name} under {url[:200]} links outside {root}")
    return found[0]


def estimate_footprint(file_bytes: int) -> int:
    """Resident bytes a model of this ONNX size takes once loaded (docs/multi-model.md)."""
    return int(FOOTPRINT_FACTOR * file_bytes) + FOOTPRINT_BASE


def resident_bytes() -> int:
    """This process's resident set (Linux's /proc/self/statm), or 0 where there is none."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * 4096


def memory_limit(cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """The container's memory limit in bytes: cgroup v2 memory.max, else v1's limit, else the RAM
    (/proc/meminfo); None when none can be read."""
    base = Path(cgroup_root)
    for path in (base / "memory.max", base / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 says "unlimited" with a huge number
            return int(text)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def release_freed_memory() -> None:
    """Collect cycles and give glibc's free pages back to the kernel (no-op elsewhere)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass(frozen=True)
class Budget:
    models_bytes: int  # what the loaded models' footprints may add up to
    limit_bytes: int | None  # the process's resident memory may not pass this (None: unchecked)

    @classmethod
    def from_settings(cls, settings: Settings, start_rss: int, limit: int | None) -> Budget:
        headroom = settings.memory_headroom_mb * MIB
        ceiling = None if limit is None else max(0, limit - headroom)
        if settings.model_memory_mb is not None:
            return cls(settings.model_memory_mb * MIB, ceiling)
        if ceiling is None:  # no limit known: only the process's own growth could tell
            return cls(1 << 62, None)
        return cls(max(0, ceiling - start_rss), ceiling)


@dataclass
class Entry:
    """One loaded model and what the API reports of it."""

    name: str
    url: str
    path: Path
    detector: Detector
    handler: Any  # what serves its invocations (serve/models_api.py)
    footprint: int  # bytes charged to the budget
    rss_growth: int  # resident bytes the process grew by while loading it (others' work included)
    load_seconds: float
    invocations: int = 0
    loaded_at: float = field(default_factory=time.time)


class Registry:
    """The loaded models by name, their budgets and their shared inference slots."""

    def __init__(
        self,
        settings: Settings,
        choice: Choice,
        make_handler: Callable[[Detector], Any],
        budget: Budget,
    ):
        self.settings = settings
        self.root = Path(settings.models_root)
        self.budget = budget
        self.slots = settings.inference_slots or default_inference_slots(
            0, settings.intra_op_threads, available_cpus()
        )
        self.slots_pool = threading.BoundedSemaphore(self.slots)  # every Detector's
        self._choice = choice
        self._make_handler = make_handler
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._loading: dict[str, int] = {}  # name -> footprint reserved while it loads
        self.loads = 0
        self.unloads = 0

    # --- reading ---------------------------------------------------------------------------
    def get(self, name: str) -> Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotLoaded(name[:MAX_NAME])
        return entry

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def charged(self) -> int:
        """Bytes of the budget taken: loaded models and those loading."""
        with self._lock:
            return self._charged_locked()

    def _charged_locked(self) -> int:
        return sum(e.footprint for e in self._entries.values()) + sum(self._loading.values())

    # --- loading and unloading -------------------------------------------------------------
    def load(self, name: object, url: object) -> Entry:
        """Load the model in `url` under `name`; 400 (bad name, url, model), 409 (loaded or
        loading), 507 (past the memory budget)."""
        name = check_name(name)
        path = model_file(url, self.root)
        assert isinstance(url, str)
        if is_ir(path) and self._choice.runtime != OPENVINO:
            raise BadModel(
                f"{path.name} is OpenVINO IR, which this server's runtime "
                f"({self._choice.runtime}) cannot read: serve it with SERVE_RUNTIME={OPENVINO}"
            )
        footprint = estimate_footprint(model_bytes(path))
        self._reserve(name, footprint)
        try:
            entry = self._load(name, url, path, footprint)
        finally:
            with self._lock:
                self._loading.pop(name, None)
        with self._lock:
            self._entries[name] = entry
            self.loads += 1
        return entry

    def _reserve(self, name: str, footprint: int) -> None:
        with self._lock:
            if name in self._entries or name in self._loading:
                raise ModelAlreadyLoaded(name)
            charged = self._charged_locked()
            if charged + footprint > self.budget.models_bytes:
                raise InsufficientStorage(
                    f"loading '{name[:60]}' needs about {footprint // MIB} MiB; "
                    f"{charged // MIB} of {self.budget.models_bytes // MIB} MiB are taken"
                )
            limit = self.budget.limit_bytes
            rss = resident_bytes()
            if limit is not None and rss + footprint > limit:
                raise InsufficientStorage(
                    f"loading '{name[:60]}' needs about {footprint // MIB} MiB; the server holds "
                    f"{rss // MIB} MiB of {limit // MIB} MiB"
                )
            self._loading[name] = footprint

    def _load(self, name: str, url: str, path: Path, footprint: int) -> Entry:
        settings, choice = self.settings, self._choice
        before, started = resident_bytes(), time.perf_counter()
        detector = Detector(
            path,
            settings.intra_op_threads,
            settings.inter_op_threads,
            self.slots,
            runtime=choice.runtime,
            precision=choice.precision,
            slots=self.slots_pool,
            # no static-shape compiles (SERVE_STATIC_SHAPES): each grows a model's memory after
            # the load that its footprint was measured at
        )
        try:
            detector.load()
        except Exception as exc:  # a corrupt file, an unsupported graph: the model's fault
            del detector
            release_freed_memory()
            raise BadModel(f"cannot load {path.name}: {one_line(exc)}") from None
        seconds = time.perf_counter() - started
        growth = resident_bytes() - before
        return Entry(
            name, url, path, detector, self._make_handler(detector), footprint, growth, seconds
        )

    def unload(self, name: str) -> int:
        """Drop the model; its footprint in bytes (requests using it keep it until they end)."""
        with self._lock:
            entry = self._entries.pop(name, None)
            if entry is None:
                raise ModelNotLoaded(name[:MAX_NAME])
            self.unloads += 1
        footprint = entry.footprint
        del entry
        release_freed_memory()
        return footprint

    def settle(self, timeout: float) -> bool:
        """At exit: True when no loaded model has background work or inferences left."""
        with self._lock:
            detectors = [e.detector for e in self._entries.values()]
        return all(d.settle(timeout) for d in detectors)
