"""CPU and memory of a server's process tree, sampled with psutil while the load runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def peak_rss_bytes(pid: int) -> int:
    """The kernel's high-water mark of resident memory (VmHWM) summed over the tree."""
    total = 0
    for proc in tree(pid):
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class TreeMonitor:
    """`with TreeMonitor(pid) as m:` samples RSS every `interval` s; afterwards `m.result()` gives
    CPU seconds used, the average number of cores busy and the largest RSS seen."""

    def __init__(self, pid: int, interval: float = 0.1):
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._max_rss = 0
        self._cpu0 = 0.0
        self._t0 = 0.0
        self._cpu1 = 0.0
        self._t1 = 0.0

    def _cpu_seconds(self) -> float:
        total = 0.0
        for proc in tree(self._pid):
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return total

    def _rss(self) -> int:
        total = 0
        for proc in tree(self._pid):
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._max_rss = max(self._max_rss, self._rss())

    def __enter__(self) -> TreeMonitor:
        self._cpu0, self._t0 = self._cpu_seconds(), time.perf_counter()
        self._max_rss = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._cpu1, self._t1 = self._cpu_seconds(), time.perf_counter()

    def result(self) -> dict[str, float]:
        wall = max(self._t1 - self._t0, 1e-9)
        cpu = self._cpu1 - self._cpu0
        return {
            "wall_s": wall,
            "cpu_seconds": cpu,
            "cpu_cores_busy": cpu / wall,
            "rss_max_sampled_mb": self._max_rss / 2**20,
            "rss_peak_mb": max(self._max_rss, peak_rss_bytes(self._pid)) / 2**20,
        }
