"""OpenVINO serves a detection export without the graph's decode (serve/runtimes/openvino_heads.py).

The rows it decodes must be the whole graph's (to float rounding), in the same order, so that NMS
keeps the same detections; with `objectness_over` only the rows NMS's first filter keeps; and a
model it cannot cut (no anchors in the metadata, a pose head, NMS in the graph) runs whole, its
rows still filtered.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import pytest

from serve.letterbox import letterbox, to_tensor
from serve.nms import non_max_suppression
from serve.runtimes import Threads
from serve.runtimes import openvino as ov_runtime
from serve.runtimes.openvino_heads import headless
from tests.support.images import shapes_image

IMG_SIZE = 320
CONF = 0.25


def _tensors() -> list[np.ndarray]:
    sizes = [(320, 320), (480, 320), (200, 360), (640, 480)]
    return [
        to_tensor(letterbox(shapes_image(w, h, seed=i), IMG_SIZE)) for i, (w, h) in enumerate(sizes)
    ]


def _loaded(path: Path) -> ov_runtime.OpenVinoModel:
    model = ov_runtime.load(path, Threads(2, 1), "fp32", requests=1)
    model.run(_tensors()[0], model.outputs[0].name)  # the warm-up: an INT8 export's compile
    deadline = time.monotonic() + 60
    while model.compiling and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not model.compiling
    return model


def _whole(path: Path) -> ov.InferRequest:
    """The export's whole graph, decode and all, as OpenVINO compiles it."""
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled.create_infer_request()


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.fixture(params=["fp32 onnx", "int8 ir"])
def detection_export(request, exported, ir_export) -> Path:
    return exported["raw"] if request.param == "fp32 onnx" else ir_export["ir"]


def test_the_runtime_compiles_the_graph_up_to_each_heads_conv(detection_export):
    graph, heads = ov_runtime.served_graph(ov.Core().read_model(str(detection_export)))
    assert heads is not None and heads.strides == (8, 16, 32)
    shapes = [tuple(port.get_partial_shape().to_shape()) for port in graph.outputs]
    assert shapes == [(1, 40, 40, 24), (1, 20, 20, 24), (1, 10, 10, 24)]  # NHWC, 3 x (5 + 3)
    assert [bias.shape for bias in heads.biases] == [(3, 8)] * 3


def test_the_decoded_rows_are_the_whole_graphs_and_nms_keeps_the_same(detection_export):
    model, whole = _loaded(detection_export), _whole(detection_export)
    output = model.outputs[0].name
    found = 0
    for tensor in _tensors():
        expected = whole.infer({0: tensor})[0].copy()
        every = model.run(tensor, output)
        assert every.shape == expected.shape == (1, 6300, 8)
        np.testing.assert_allclose(every[..., :4], expected[..., :4], rtol=0, atol=2e-3)  # px
        np.testing.assert_allclose(every[..., 4:], expected[..., 4:], rtol=0, atol=1e-5)
        for conf in (CONF, 0.001):
            kept = model.run(tensor, output, objectness_over=conf)
            passing = expected[:, expected[0, :, 4] > conf]
            assert kept.shape == passing.shape, "not the rows NMS's first filter keeps"
            np.testing.assert_allclose(kept, passing, rtol=0, atol=2e-3)
            ours = non_max_suppression(kept[0], conf=conf, iou=0.45)
            theirs = non_max_suppression(expected[0], conf=conf, iou=0.45)
            assert ours.shape == theirs.shape
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-3)
            found += len(ours) if conf == CONF else 0
    assert found >= 4, "the pictures' shapes were found: the comparison saw real detections"
    assert model.settle(10)


def test_what_cannot_be_cut_runs_whole_and_still_leaves_out_the_rows_nms_drops(
    exported, pose_exported, tmp_path
):
    core = ov.Core()
    raw = core.read_model(str(exported["raw"]))
    metadata = _metadata(exported["raw"])
    assert headless(raw, metadata) is not None
    assert headless(raw, {k: v for k, v in metadata.items() if k != "anchors"}) is None
    assert headless(raw, {**metadata, "nc": "4"}) is None  # heads of another width
    for path in (exported["end2end"], pose_exported["raw"]):  # NMS in the graph; keypoints
        assert headless(core.read_model(str(path)), _metadata(path)) is None

    older = onnx.load(str(exported["raw"]))  # an export from before the anchors were written
    kept = [p for p in older.metadata_props if p.key != "anchors"]
    del older.metadata_props[:]
    older.metadata_props.extend(kept)
    onnx.save(older, str(tmp_path / "older.onnx"))
    model, whole = _loaded(tmp_path / "older.onnx"), _whole(tmp_path / "older.onnx")
    output = model.outputs[0].name
    for tensor in _tensors():
        expected = whole.infer({0: tensor})[0].copy()
        np.testing.assert_array_equal(model.run(tensor, output), expected)
        passing = expected[:, expected[0, :, 4] > CONF]
        np.testing.assert_array_equal(model.run(tensor, output, CONF), passing)
    assert model.settle(10)
