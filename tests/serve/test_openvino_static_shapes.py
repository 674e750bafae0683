"""A `--rect` export on OpenVINO gets one compile per photo shape it serves (in the background,
bounded in number) and answers the same numbers on it as on the dynamic-shape compile; /ping says
"compiling": "shapes" meanwhile."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from serve.runtimes import Threads
from serve.runtimes import openvino as ov_runtime
from serve.runtimes.openvino_static_shapes import StaticShapes
from tests.support.server import REPO

IMG_SIZE = 320
RECTANGLES = [(1, 3, 320, 256), (1, 3, 192, 320), (1, 3, 320, 320)]


class Runner:
    def __init__(self, layout: str, shape: tuple[int, ...]):
        self.layout, self.shape = layout, shape

    def run(
        self, tensor: np.ndarray, output: str, objectness_over: float | None = None
    ) -> np.ndarray:
        return np.zeros(1)


def _shapes(limit: int, fail: frozenset = frozenset()):
    """StaticShapes with a wide and a narrow layout whose compiles are queued in a list."""
    queued: list[Callable[[], bool]] = []

    def schedule(step: Callable[[], bool]) -> bool:
        queued.append(step)
        return True

    def compiler(layout: str) -> Callable[[tuple[int, ...]], Runner]:
        def compile_shape(shape: tuple[int, ...]) -> Runner:
            if (layout, shape) in fail:
                raise RuntimeError("out of memory")
            return Runner(layout, shape)

        return compile_shape

    shapes = StaticShapes(schedule, limit)
    wide = shapes.add_layout("wide", compiler("wide"))
    return shapes, queued, wide, compiler


def test_a_shape_is_compiled_once_per_layout_in_the_background_and_then_used():
    shapes, queued, wide, compiler = _shapes(limit=2)
    assert shapes.runner(wide, RECTANGLES[0]) is None  # the dynamic compile serves it meanwhile
    assert shapes.runner(wide, RECTANGLES[0]) is None and len(queued) == 1  # queued once
    narrow = shapes.add_layout("narrow", compiler("narrow"))  # a layout made later gets it too
    assert shapes.pending == 2
    assert all(step() for step in queued)
    assert (shapes.runner(wide, RECTANGLES[0]).layout, shapes.pending) == ("wide", 0)
    assert shapes.runner(narrow, RECTANGLES[0]).layout == "narrow"
    assert shapes.runner(narrow, RECTANGLES[1]) is None  # seen by one layout: queued for both
    assert len(queued) == 4


def test_shapes_past_the_limit_stay_on_the_dynamic_compile():
    shapes, queued, wide, _ = _shapes(limit=2)
    for shape in RECTANGLES:
        shapes.runner(wide, shape)
    assert len(queued) == 2
    for step in list(queued):
        step()
    assert shapes.runner(wide, RECTANGLES[2]) is None and len(queued) == 2


def test_a_failed_compile_is_not_retried_and_stops_nothing(caplog):
    shapes, queued, wide, _ = _shapes(limit=4, fail=frozenset({("wide", RECTANGLES[0])}))
    shapes.runner(wide, RECTANGLES[0])
    shapes.runner(wide, RECTANGLES[1])
    assert [step() for step in queued] == [True, True]  # the queue goes on after a failure
    assert shapes.runner(wide, RECTANGLES[0]) is None and len(queued) == 2
    assert shapes.runner(wide, RECTANGLES[1]) is not None
    assert shapes.pending == 0  # /ping stops saying "compiling"
    assert "wide compile for shape [1, 3, 320, 256] failed: out of memory" in caplog.text


def test_nothing_is_queued_once_the_runtime_closes():
    shapes = StaticShapes(lambda step: False, limit=4)
    wide = shapes.add_layout("wide", lambda shape: Runner("wide", shape))
    assert shapes.runner(wide, RECTANGLES[0]) is None
    assert shapes.pending == 0


@pytest.fixture(scope="module")
def rect_fp32(tmp_path_factory, shapes_checkpoint) -> Path:
    output = tmp_path_factory.mktemp("static-shapes") / "rect.onnx"
    command = [
        sys.executable, "-m", "export", "--weights", str(shapes_checkpoint),
        "--img-size", str(IMG_SIZE), "--rect", "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    return output


def _settled(model: ov_runtime.OpenVinoModel, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while model.compiling is not None:
        assert time.monotonic() < deadline, f"still compiling {model.compiling}"
        time.sleep(0.02)


def test_each_shape_answers_the_same_on_its_own_compiles(rect_fp32, caplog):
    """Two inference slots: the wide and the narrow layout each compile both shapes."""
    caplog.set_level("INFO", logger="serve")
    model = ov_runtime.load(rect_fp32, Threads(2, 1), "fp32", requests=2, static_shapes=4)
    output = model.outputs[0].name
    rng = np.random.default_rng(3)
    tensors = [rng.random(shape, dtype=np.float32) for shape in RECTANGLES[:2]]
    dynamic = [model.run(t, output) for t in tensors]  # each shape's first: the dynamic compile
    assert model.compiling == "shapes"
    _settled(model)
    assert model.layouts == 2
    ready = [
        (r.fields["layout"], r.fields["shape"])
        for r in caplog.records
        if r.getMessage() == "static shape ready"
    ]
    assert sorted(ready) == sorted(
        (layout, list(shape)) for layout in ("wide", "narrow") for shape in RECTANGLES[:2]
    )
    for tensor, expected in zip(tensors, dynamic, strict=True):
        np.testing.assert_array_equal(model.run(tensor, output), expected)  # bit for bit
    with ThreadPoolExecutor(2) as pool:  # at once: the second takes the narrow layout's
        answers = list(pool.map(lambda t: model.run(t, output), tensors * 4))
    for answer, expected in zip(answers, dynamic * 4, strict=True):
        np.testing.assert_array_equal(answer, expected)
    assert model.settle(10)


def test_a_square_export_compiles_no_shapes(tmp_path, shapes_checkpoint, caplog):
    caplog.set_level("INFO", logger="serve")
    output = tmp_path / "square.onnx"
    command = [
        sys.executable, "-m", "export", "--weights", str(shapes_checkpoint),
        "--img-size", str(IMG_SIZE), "--output", str(output),
    ]  # fmt: skip
    subprocess.run(command, cwd=REPO, capture_output=True, check=True, timeout=600)
    model = ov_runtime.load(output, Threads(2, 1), "fp32", requests=1, static_shapes=4)
    model.run(np.zeros(RECTANGLES[2], np.float32), model.outputs[0].name)
    assert model.compiling is None
    assert model.settle(10)
    assert "static shape ready" not in caplog.text


def test_serve_static_shapes_0_compiles_none(rect_fp32, caplog):
    caplog.set_level("INFO", logger="serve")
    model = ov_runtime.load(rect_fp32, Threads(2, 1), "fp32", requests=1, static_shapes=0)
    model.run(np.zeros(RECTANGLES[0], np.float32), model.outputs[0].name)
    assert model.compiling is None
    assert model.settle(10)
    assert "static shape ready" not in caplog.text


def test_the_setting_reads_serve_static_shapes():
    from serve.config import DEFAULT_STATIC_SHAPES, ConfigError, Settings

    assert Settings.from_env({}).static_shapes == DEFAULT_STATIC_SHAPES
    assert Settings.from_env({"SERVE_STATIC_SHAPES": "0"}).static_shapes == 0
    with pytest.raises(ConfigError, match="SERVE_STATIC_SHAPES"):
        Settings.from_env({"SERVE_STATIC_SHAPES": "-1"})
