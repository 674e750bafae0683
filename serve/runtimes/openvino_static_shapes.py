"""One compile per input shape of a graph whose height and width are dynamic (a `--rect` export).

OpenVINO's CPU plugin runs a dynamic-shape graph slower than the same graph compiled for the shape
it is given: yolov7-tiny's INT8 IR on the bench's two rectangles took 21.6 ms bare against 17.7 ms
compiled for each (0.82x), the same numbers bit for bit (docs/serving.md, "Static shapes"). A
`--rect` export sees few shapes (each side a multiple of the stride, the long one the model's
size: at most 2 x size / stride of them, and a camera's photos give one or two), so each of the
first `limit` shapes the graph runs (SERVE_STATIC_SHAPES) gets its own compile in each thread
layout, in the background on the runtime's compile thread; until that is warm, the shape runs on
the dynamic compile. Further shapes stay on the dynamic compile: each static compile holds its own
weights and buffers (~50 MB for yolov7-tiny's INT8 IR), so their number is bounded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import numpy as np

from serve.errors import one_line

log = logging.getLogger("serve")

Shape = tuple[int, ...]


class Runner(Protocol):
    def run(
        self, tensor: np.ndarray, output: str, objectness_over: float | None = None
    ) -> np.ndarray: ...


R = TypeVar("R", bound=Runner)


class StaticShapes(Generic[R]):
    """The shapes a dynamic-shape graph has run, and each layout's compile of each (the wide and
    the narrow layout: a shape seen by one is compiled for both, so that inferences at once find
    it compiled too).

    A layout's `compile_shape(shape)` makes a warm runner for `shape` (it raises where OpenVINO
    will not); `schedule(step)` queues a step on the runtime's compile thread (False where the
    runtime is closing and queues nothing)."""

    def __init__(self, schedule: Callable[[Callable[[], bool]], bool], limit: int):
        self._schedule = schedule
        self._limit = limit
        self._shapes: list[Shape] = []  # seen, in order, at most `limit`
        self._layouts: list[tuple[str, Callable[[Shape], R]]] = []
        self._ready: dict[tuple[int, Shape], R] = {}  # (layout, shape) -> its runner
        self._pending = 0  # compiles queued or running
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Compiles queued or running now."""
        with self._lock:
            return self._pending

    def add_layout(self, name: str, compile_shape: Callable[[Shape], R]) -> int:
        """A layout's index for runner(); the shapes already seen are queued for it."""
        with self._lock:
            self._layouts.append((name, compile_shape))
            layout = len(self._layouts) - 1
            shapes = list(self._shapes)
        for shape in shapes:
            self._queue(layout, shape)
        return layout

    def runner(self, layout: int, shape: Shape) -> R | None:
        """`layout`'s warm static runner for `shape`, or None (the dynamic compile runs it) while
        it is queued or compiling, after its compile failed, or past the limit; a shape seen for
        the first time is queued for every layout."""
        ready = self._ready.get((layout, shape))  # a dict read: atomic, no lock on the hot path
        if ready is not None:
            return ready
        with self._lock:
            if shape in self._shapes or len(self._shapes) >= self._limit:
                return None
            self._shapes.append(shape)
            layouts = len(self._layouts)
        for each in range(layouts):
            self._queue(each, shape)
        return None

    def _queue(self, layout: int, shape: Shape) -> None:
        with self._lock:
            self._pending += 1
        if not self._schedule(lambda: self._compile(layout, shape)):
            with self._lock:  # not queued (the runtime is closing)
                self._pending -= 1

    def _compile(self, layout: int, shape: Shape) -> bool:
        name, compile_shape = self._layouts[layout]
        started = time.perf_counter()
        try:
            runner = compile_shape(shape)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types
            with self._lock:
                self._pending -= 1
            log.warning(
                f"OpenVINO's {name} compile for shape {list(shape)} failed: {one_line(exc)}"
            )
            return True  # the dynamic compile serves that shape; other steps go on
        self._ready[(layout, shape)] = runner  # before pending drops: /ping then means it
        with self._lock:
            self._pending -= 1
        seconds = round(time.perf_counter() - started, 3)
        fields = {"shape": list(shape), "layout": name, "seconds": seconds}
        log.info("static shape ready", extra={"fields": fields})
        return True
