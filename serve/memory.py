"""glibc's malloc told to keep the memory a request frees for the next request.

By default glibc hands freed memory back to the kernel (big blocks are unmapped, the top of a
heap is trimmed), so a server whose every request allocates and frees the same few megabytes
faults them in again, page by page, each time, and its RSS rises and falls with what is in flight.
OpenVINO's Python API copies each output into a new array (8.5 MB for yolov7-tiny at 640): under
OpenVINO the server took 1160-1800 minor page faults per request; with the thresholds below,
70-100, and 3.5-3.8 % more requests per second at c=4 (three interleaved runs each, bf16 and the
INT8 export) for 15-20 MB more peak RSS. The onnxruntime server was at ~140 faults per request
either way, but its RSS swung between 328 and 350 MiB under the hour soak's load (yolov7-tiny at
640, concurrency 4 with bursts), where with the thresholds it rose to 360 MiB in four minutes and
stayed there: every server sets them at start (docs/serving.md, "Memory").
"""

from __future__ import annotations

import ctypes
from typing import Any

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Blocks up to this size come from the heaps and are reused (glibc's ceiling for it on 64-bit is
# 32 MB); larger ones, such as a 12 MP photo's 36 MB of pixels, are still mapped and unmapped.
MMAP_THRESHOLD = 32 * 1024 * 1024
# A heap gives memory back only when this much is free at its top: never, for this server.
TRIM_THRESHOLD = 512 * 1024 * 1024
# Memory freed in one arena is reused only by threads of that arena. glibc makes up to 8 arenas per
# core, so with SERVE_THREADS at 32 (waiting requests each hold a thread) one request's buffers were
# seldom the next one's: 1285-1515 faults per request under OpenVINO against ~250 with 4 threads.
# 4 arenas are what the 4-thread server had; only the permits' threads compute at once.
ARENA_MAX = 4


def _mallopt() -> Any:
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def limit_arenas() -> bool:
    """At most ARENA_MAX malloc arenas: to be called before any thread starts (a thread keeps the
    arena it first allocated from); False where the C library is not glibc."""
    try:
        return bool(_mallopt()(M_ARENA_MAX, ARENA_MAX))
    except (OSError, AttributeError):
        return False


def keep_freed_memory() -> bool:
    """Set the thresholds for this process; False where the C library is not glibc."""
    try:
        mallopt = _mallopt()
    except (OSError, AttributeError):  # musl, macOS: no such library or function
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
