"""An INT8 export on OpenVINO starts on its float view and hands over to the INT8 graph.

The view must be the export's own model without its quantization (as accurate as the issue asks of
any configuration), the INT8 graph that takes over must answer exactly as OpenVINO's INT8 compile
does, /ping and the log must say which one answers, and a failed INT8 compile must leave the view
serving.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov
import openvino.passes as passes
import pytest

from demo.evaluate import Tally, match
from demo.shapes import make_image
from export.agreement import match_detections
from serve.letterbox import letterbox, scale_boxes, to_tensor
from serve.nms import non_max_suppression
from serve.runtimes import Threads
from serve.runtimes import openvino as ov_runtime
from serve.runtimes.openvino_float_view import float_view
from tests.serve.test_runtimes import CPU_BF16, served
from tests.support.images import encode, shapes_image
from tests.support.openvino_answers import answer

IMG_SIZE = 320
PRECISIONS = [
    "fp32",
    pytest.param("bf16", marks=pytest.mark.skipif(not CPU_BF16, reason="no bf16")),
]
HINT = {"fp32": "f32", "bf16": "bf16"}


def _detect(run, image: np.ndarray) -> np.ndarray:
    """The server's own pipeline around `run` (tensor -> raw output): (K, 6) rows, original px."""
    output = run(to_tensor(letterbox(image, IMG_SIZE)))
    rows = non_max_suppression(output[0], conf=0.25, iou=0.45, max_det=300).astype(np.float64)
    rows[:, :4] = scale_boxes(rows[:, :4], IMG_SIZE, *image.shape[:2])
    return rows


def _as_dicts(rows: np.ndarray) -> list[dict]:
    return [{"box": list(r[:4]), "score": r[4], "class_id": int(r[5])} for r in rows]


def _compiled(model: ov.Model | str, precision: str) -> ov.CompiledModel:
    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": HINT[precision]})


def _ops(model: ov.Model) -> dict[str, int]:
    found: dict[str, int] = {}
    for node in model.get_ordered_ops():
        found[node.get_type_name()] = found.get(node.get_type_name(), 0) + 1
    return found


def test_the_view_is_the_fp32_graph_with_no_quantization_left(int8_export):
    core = ov.Core()
    int8, fp32 = (core.read_model(str(int8_export[name])) for name in ("int8", "fp32"))
    view = float_view(int8)
    assert view is not None
    folding = passes.Manager()
    folding.register_pass(passes.ConstantFolding())
    folding.run_passes(fp32)  # as the view is folded: the shape arithmetic left is the same
    ops, reference = _ops(view), _ops(fp32)
    assert "FakeQuantize" not in ops and "Convert" not in ops
    assert ops == reference
    assert sum(ops.values()) < sum(_ops(int8).values()) / 2
    assert "FakeQuantize" in _ops(int8), "the original is left as it was"
    assert [p.get_any_name() for p in view.inputs] == ["images"]
    assert [p.get_any_name() for p in view.outputs] == ["output"]
    assert float_view(fp32) is None  # nothing to take out: the runtime compiles it as it is


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_view_is_as_accurate_as_the_issue_asks_of_every_configuration(int8_export, precision):
    """Agreement with FP32 >= 0.97 (same class, IoU > 0.8), precision and recall within 0.01 of
    FP32's on generated shapes (the issue's bar); and it follows FP32 more closely than the INT8
    graph does, as it keeps only the weights' rounding."""
    reference = ort.InferenceSession(str(int8_export["fp32"]), providers=["CPUExecutionProvider"])
    view = _compiled(float_view(ov.Core().read_model(str(int8_export["int8"]))), precision)
    int8 = _compiled(str(int8_export["int8"]), precision)
    runs = {
        "fp32": lambda t: reference.run(None, {"images": t})[0],
        "view": lambda t: view.create_infer_request().infer({0: t})[0],
        "int8": lambda t: int8.create_infer_request().infer({0: t})[0],
    }
    tallies = {name: Tally() for name in runs}
    matched = {"view": 0, "int8": 0}
    shift = {"view": 0.0, "int8": 0.0}
    total = 0
    rng = np.random.default_rng(11)
    for _ in range(40):
        image, shapes = make_image(rng)
        truth = [{"box": s.box, "class_id": s.class_id} for s in shapes]
        found = {name: _detect(run, image) for name, run in runs.items()}
        for name, rows in found.items():
            tallies[name].add(match(_as_dicts(rows), truth))
        total += len(found["fp32"])
        for name in ("view", "int8"):
            pairs = match_detections(found["fp32"], found[name])
            matched[name] += len(pairs)
            shift[name] += sum(
                float(np.abs(found["fp32"][i, :4] - found[name][j, :4]).max()) for i, j in pairs
            )
    assert total > 60, "the shapes model finds the drawn shapes"
    assert matched["view"] / total >= 0.97, f"the view agrees on {matched['view']}/{total}"
    for figure in ("precision", "recall"):
        fp32, view_figure = getattr(tallies["fp32"], figure), getattr(tallies["view"], figure)
        assert abs(view_figure - fp32) <= 0.01, (figure, fp32, view_figure)
    assert shift["view"] / matched["view"] <= shift["int8"] / matched["int8"]


def _tensors(count: int) -> list[np.ndarray]:
    return [to_tensor(letterbox(shapes_image(320, 320, seed=i), IMG_SIZE)) for i in range(count)]


def _settled(model: ov_runtime.OpenVinoModel, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while model.compiling and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not model.compiling, "the INT8 compile did not arrive"


def test_the_int8_graph_takes_over_and_answers_as_openvino_compiles_it(int8_export):
    model = ov_runtime.load(int8_export["int8"], Threads(2, 1), "fp32", requests=1)
    assert (model.runs_int8, model.compiling) == (False, "int8")  # the view, before any run
    output = model.outputs[0].name
    tensors = _tensors(3)
    graph, heads = ov_runtime.served_graph(ov.Core().read_model(str(int8_export["int8"])))
    view = _compiled(float_view(graph), "fp32")
    first = model.run(tensors[0], output)  # the warm-up: starts the INT8 compile
    assert np.array_equal(first, answer(view, heads, tensors[0]))
    _settled(model)
    assert model.runs_int8
    int8 = _compiled(graph, "fp32")
    for tensor in tensors:
        assert np.array_equal(model.run(tensor, output), answer(int8, heads, tensor))
    assert model.settle(10)


def test_a_failed_int8_compile_leaves_the_view_serving(int8_export, caplog):
    """Logged as an error; the narrow compile of the same graph is not tried after it."""
    core = ov.Core()
    model = core.read_model(str(int8_export["int8"]))
    wide = core.compile_model(float_view(model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    loaded = ov_runtime.OpenVinoModel(model, wide, requests=2, int8=False)

    def fails(graph: ov.Model) -> ov.CompiledModel:
        raise RuntimeError("no memory left")

    narrow = {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 2}
    loaded.compile_int8_later(fails)
    loaded.compile_narrow_later(lambda graph: core.compile_model(graph, "CPU", narrow), 2, 2)
    output = loaded.outputs[0].name
    tensor = _tensors(1)[0]
    answer = loaded.run(tensor, output)  # starts the background steps
    assert loaded.settle(30)
    assert (loaded.runs_int8, loaded.compiling, loaded.layouts) == (False, None, 1)
    assert np.array_equal(loaded.run(tensor, output), answer)  # still the view
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["OpenVINO's INT8 compile failed; serving the export's weights in fp32: "
                      "no memory left"]  # fmt: skip
    assert not [r for r in caplog.records if "narrow" in r.getMessage()]


def test_ping_and_the_log_say_which_graph_answers(start_server, int8_export):
    server = start_server({"MODEL_PATH": str(int8_export["int8"]), "SERVE_RUNTIME": "openvino"})
    float_precision = "bf16" if CPU_BF16 else "fp32"
    records = server.log_records()
    ready = next(r for r in records if r["message"] == "ready")
    assert (ready["precision"], ready["compiling"]) == (float_precision, "int8")
    assert (ready["runtime"], ready["float_precision"]) == ("openvino", float_precision)
    data = encode(shapes_image(320, 320, seed=3), ".png")
    assert served(server, data)  # answered by the view while the INT8 graph compiles
    deadline = time.monotonic() + 60
    while "compiling" in (ping := server.request("GET", "/ping").json()):
        assert (ping["precision"], ping["compiling"]) == (float_precision, "int8")
        assert time.monotonic() < deadline, "the INT8 compile did not arrive"
        time.sleep(0.05)
    assert ping == {
        "status": "ok",
        "model": "shapes-yolov7-tiny",
        "runtime": "openvino",
        "precision": "int8",
        "float_precision": float_precision,
    }
    assert "int8 ready" in [r["message"] for r in server.log_records()]
    assert served(server, data)


def test_a_float_export_on_openvino_has_nothing_to_compile_later(start_server, exported):
    server = start_server({"MODEL_PATH": str(Path(exported["raw"])), "SERVE_RUNTIME": "openvino"})
    ready = next(r for r in server.log_records() if r["message"] == "ready")
    assert "compiling" not in ready and "compiling" not in server.request("GET", "/ping").json()


def test_without_a_float_view_the_int8_graph_is_compiled_first(int8_export, monkeypatch, caplog):
    """A graph the view cannot take (another OpenVINO's frontend): slower to start, not refused."""

    def unknown(model: ov.Model) -> ov.Model:
        raise RuntimeError("a node the view does not know")

    monkeypatch.setattr(ov_runtime, "float_view", unknown)
    model = ov_runtime.load(int8_export["int8"], Threads(2, 1), "fp32", requests=1)
    assert (model.runs_int8, model.compiling) == (True, None)
    tensor = _tensors(1)[0]
    graph, heads = ov_runtime.served_graph(ov.Core().read_model(str(int8_export["int8"])))
    expected = answer(_compiled(graph, "fp32"), heads, tensor)
    assert np.array_equal(model.run(tensor, model.outputs[0].name), expected)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "no float view of the INT8 export; compiling it first: a node the view does not know"
    ]
