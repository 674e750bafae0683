"""The exact decode side by side: OpenCV's `cv2.imdecode` against the server's (serve/decode.py,
which takes serve/jpeg.py's fast path for a JPEG), one thread, on the same photos, in turns.

Both must give the same pixels (the server's answers do not depend on which decoder ran); the
figure is how much of a request's CPU time the faster one saves. The reduced decode of big photos
(docs/serving.md, "Big photos") is not in this comparison: it changes the pixels, and the server
measures it over HTTP.

It runs in a process of its own (`python -m bench.decoding`): much of OpenCV's cost is page
faults on memory that glibc hands back to the kernel between calls (1300-1600 a decode, as in
the server, where each request's buffers come and go), and once a process has freed one big
buffer (the benchmark's 12 MP photo, made with OpenCV) glibc keeps the memory and OpenCV decodes
as fast as the fast path: a figure from there would not be the server's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from serve.decode import decode_image

MAX_PIXELS = 100_000_000


def _opencv(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _ours(data: bytes) -> np.ndarray:
    return decode_image(data, MAX_PIXELS)


def compare(photos: list[Path], rounds: int = 6, block: int = 4) -> list[dict]:
    """Per photo: median CPU ms of a call of each decoder, their ratio, and whether the pixels
    are identical. Each round runs `block` calls of one decoder, then of the other: a server
    decodes request after request and so reuses freed memory, where single calls in turn would
    each fault in fresh pages (~2 us a page here, a third of a ~1 MP decode)."""
    found = []
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the server decodes one request per thread
    try:
        for photo in photos:
            data = photo.read_bytes()
            times: dict[str, list[float]] = {"opencv": [], "ours": []}
            decoders = {"opencv": _opencv, "ours": _ours}
            for decode in decoders.values():
                decode(data)  # first call: caches and page faults
            for _ in range(rounds):
                for name, decode in decoders.items():
                    for _ in range(block):
                        began = time.process_time()
                        decode(data)
                        times[name].append((time.process_time() - began) * 1000)
            reference, ours = _opencv(data), _ours(data)
            opencv_ms = statistics.median(times["opencv"])
            ours_ms = statistics.median(times["ours"])
            found.append(
                {
                    "image": photo.name,
                    "size": f"{reference.shape[1]}x{reference.shape[0]}",
                    "opencv_ms": opencv_ms,
                    "ours_ms": ours_ms,
                    "speedup": opencv_ms / max(ours_ms, 1e-9),
                    "identical": bool(np.array_equal(reference, ours)),
                }
            )
    finally:
        cv2.setNumThreads(previous)
    return found


def compare_in_new_process(photos: list[Path], timeout: float = 300) -> list[dict]:
    """`compare` in a fresh interpreter (see the module docstring)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.decoding", *map(str, photos)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.decoding", description=__doc__)
    p.add_argument("photos", nargs="+", type=Path)
    json.dump(compare(p.parse_args(argv).photos), sys.stdout)
    return 0


def summary(found: list[dict]) -> str:
    parts = [
        f"{d['image']} ({d['size']}) OpenCV {d['opencv_ms']:.1f} / ours {d['ours_ms']:.1f} ms = "
        f"{d['speedup']:.2f}x, {'same pixels' if d['identical'] else 'PIXELS DIFFER'}"
        for d in found
    ]
    return "exact decode, one thread, median CPU ms: " + "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
