"""glibc's malloc told to keep the memory a request frees for the next request.

By default glibc hands freed memory back to the kernel (big blocks are unmapped, the top of a
heap is trimmed), so a server whose every request allocates and frees the same few megabytes
faults them in again, page by page, each time. OpenVINO's Python API copies each output into a
new array (8.5 MB for yolov7-tiny at 640): under OpenVINO the server took 1160-1800 minor page
faults per request; with the thresholds below, 70-100, and 3.5-3.8 % more requests per second at
c=4 (three interleaved runs each, bf16 and the INT8 export) for 15-20 MB more peak RSS. The
onnxruntime server was at ~140 faults per request either way, so only the OpenVINO runtime asks
for this (docs/serving.md, "Memory").
"""

from __future__ import annotations

import ctypes

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heaps and are reused (glibc's ceiling for it on 64-bit is
# 32 MB); larger ones, such as a 12 MP photo's 36 MB of pixels, are still mapped and unmapped.
MMAP_THRESHOLD = 32 * 1024 * 1024
# A heap gives memory back only when this much is free at its top: never, for this server.
TRIM_THRESHOLD = 512 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set the thresholds for this process; False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl, macOS: no such library or function
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
