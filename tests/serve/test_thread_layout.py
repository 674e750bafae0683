"""The two thread layouts of both runtimes: an inference alone runs on every thread (the wide copy),
one started beside another on its share (the narrow one). Which one ran must not change a number.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from serve.letterbox import letterbox, to_tensor
from serve.runtimes import Threads
from serve.runtimes import onnxruntime as ort_runtime
from serve.runtimes.layout import WideNarrow, narrow_threads
from serve.runtimes.precision import cpu_bf16, cpu_flags
from tests.support.images import shapes_image


@pytest.fixture(scope="module")
def shapes_onnx(exported) -> Path:
    """The bundled checkpoint at 320: real convolutions, whose sums a thread count could
    reorder."""
    return exported["raw"]


@pytest.fixture(scope="module", params=["fp32", "int8"])
def both_precisions(request, exported) -> Path:
    """The FP32 export, and the INT8 one (`python -m export --precision int8`): both layouts."""
    if request.param == "int8":
        return request.getfixturevalue("int8_export")["int8"]
    return exported["raw"]


def _tensors(count: int) -> list[np.ndarray]:
    images = [shapes_image(320 + 40 * i, 320 - 20 * i, seed=i) for i in range(count)]
    return [to_tensor(letterbox(cv2.cvtColor(im, cv2.COLOR_RGB2BGR), 320)) for im in images]


def assert_four_at_once_answer_as_alone(model, tensors: list, alone: list) -> None:
    """Four threads asking at once (so both layouts run) get each tensor's answer, bit for bit."""
    output = model.outputs[0].name
    answers: dict[tuple[int, int], np.ndarray] = {}

    def ask(worker: int) -> None:
        for i, tensor in enumerate(tensors * 3):
            answers[worker, i] = model.run(tensor, output)

    workers = [threading.Thread(target=ask, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(answers) == 4 * len(tensors) * 3
    for (_, i), answer in answers.items():
        assert np.array_equal(answer, alone[i % len(tensors)])


def test_concurrent_inferences_answer_as_one_alone(both_precisions):
    model = ort_runtime.load(both_precisions, Threads(2, 1), "fp32", requests=2)
    assert model.layouts == 2  # 2 threads, 2 at once: a narrow session with 1 thread each
    output = model.outputs[0].name
    tensors = _tensors(4)
    alone = [model.run(t, output) for t in tensors]  # one at a time: the wide session
    narrow = ort_runtime.OnnxRuntimeModel(model.narrow)
    assert all(
        np.array_equal(narrow.run(t, output), a) for t, a in zip(tensors, alone, strict=True)
    )

    assert_four_at_once_answer_as_alone(model, tensors, alone)


def test_one_inference_at_a_time_keeps_one_session(shapes_onnx):
    assert ort_runtime.load(shapes_onnx, Threads(2, 1), "fp32", requests=1).layouts == 1
    assert ort_runtime.load(shapes_onnx, Threads(1, 1), "fp32", requests=2).layouts == 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_narrow_layout_comes_after_load_and_answers_as_the_wide_one(
    both_precisions, precision
):
    if precision == "bf16" and cpu_bf16(cpu_flags()) is None:
        pytest.skip("the CPU has no bf16 instructions")
    from serve.runtimes import openvino as ov_runtime

    model = ov_runtime.load(both_precisions, Threads(2, 1), precision, requests=2)
    output = model.outputs[0].name
    tensors = _tensors(4)
    assert model.layouts == 1
    model.run(tensors[0], output)  # served while the narrow one (and an INT8 graph) compiles
    deadline = time.monotonic() + 60
    while model.layouts == 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert model.layouts == 2, "the narrow compile did not arrive"
    assert model.runs_int8 == (both_precisions.name == "int8.onnx")
    alone = [model.run(t, output) for t in tensors]  # one at a time: the wide compile

    assert_four_at_once_answer_as_alone(model, tensors, alone)
    assert ov_runtime.load(both_precisions, Threads(2, 1), precision, requests=1).layouts == 1


@pytest.mark.parametrize("requests", [2, 4], ids=["2-slots", "more-slots-than-threads"])
def test_openvino_settle_waits_for_the_narrow_compile(int8_export, requests):
    """What `python -m serve` calls before it exits: no compile may still run in the background.
    With more slots than threads the narrow compile has one 1-thread stream per thread."""
    from serve.runtimes import openvino as ov_runtime

    model = ov_runtime.load(int8_export["fp32"], Threads(2, 1), "fp32", requests=requests)
    assert model.layouts == 1  # the narrow compile starts after the first inference
    model.run(_tensors(1)[0], model.outputs[0].name)  # the warm-up: starts the narrow compile
    assert model.settle(60) and model.layouts == 2


def test_openvino_settle_waits_for_the_int8_compile_and_drops_the_narrow_one(int8_export):
    """An INT8 export: the warm-up starts the INT8 compile, which settle() waits for; the narrow
    compile that would follow it is not started any more."""
    from serve.runtimes import openvino as ov_runtime

    model = ov_runtime.load(int8_export["int8"], Threads(2, 1), "fp32", requests=2)
    model.run(_tensors(1)[0], model.outputs[0].name)  # the warm-up: starts the INT8 compile
    assert model.settle(60)
    assert (model.runs_int8, model.layouts) == (True, 1)
    time.sleep(0.5)
    assert model.layouts == 1  # nothing started after settle()


def test_wide_narrow_gives_the_narrow_copy_only_beside_another_inference():
    layouts = WideNarrow("wide")
    with layouts.pick() as alone:
        assert alone == "wide"
    layouts.add_narrow("narrow")
    with layouts.pick() as first:
        with layouts.pick() as second, layouts.pick() as third:
            assert (first, second, third) == ("wide", "narrow", "narrow")
            assert layouts.running == 3
        with layouts.pick() as beside_the_first:
            assert beside_the_first == "narrow"
    with layouts.pick() as again_alone:
        assert again_alone == "wide" and layouts.running == 1
        assert not layouts.wait_idle(0.01)  # what settle() waits on at exit
    assert layouts.wait_idle(0) and layouts.running == 0 and layouts.layouts == 2
    assert narrow_threads(Threads(2, 1), 2) == 1
    assert narrow_threads(Threads(8, 1), 2) == 4
    assert narrow_threads(Threads(2, 1), 1) is None and narrow_threads(Threads(1, 1), 4) is None
