"""Small ONNX models for the server's tests, built with onnx.helper (no exporter needed).

- `head_model`: a real computation in the `raw` layout of the contract: one strided conv over the
  image, sigmoid, YOLO box decoding (xy = (2y - 0.5 + grid) * stride, wh = (2y)^2 * anchor). Its
  detections depend on the picture, plenty of them overlap, so NMS and letterbox matter.
- `constant_model`: an output fixed in advance (raw or end2end), for hand-checked answers.
- `flaky_model`: raw layout whose column count depends on the picture (a dark picture makes the
  output malformed): warm-up passes, some requests fail inside the server -> a legitimate 500.
- `slow_model`: `head_model` behind a stack of heavy convolutions, for drain and concurrency tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def contract_metadata(
    names: list[str], img_size: int, layout: str = "raw", **extra: str
) -> dict[str, str]:
    meta = {
        "names": json.dumps(names),
        "nc": str(len(names)),
        "strides": "[8]",
        "img_size": str(img_size),
        "layout": layout,
        "dynamic_batch": "false",
        "architecture": "test-head",
        "model_name": "test-model",
        "exporter_version": "0.0.0",
    }
    meta.update(extra)
    return meta


def _save(graph: onnx.GraphProto, path: Path, metadata: Mapping[str, str] | None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _head_nodes(source: str, channels: int, size: int, nc: int, stride: int, seed: int):
    """Nodes + initializers turning `source` (1, channels, size, size) into raw rows `output`."""
    rng = np.random.default_rng(seed)
    grid, anchors_n, columns = size // stride, 3, 5 + nc
    count = anchors_n * grid * grid
    weight = rng.normal(0.0, 0.25, (anchors_n * columns, channels, stride, stride))
    weight -= weight.mean(axis=(1, 2, 3), keepdims=True)  # respond to texture, not brightness
    bias = rng.normal(0.0, 0.5, anchors_n * columns)
    bias.reshape(anchors_n, columns)[:, 4] += -1.0  # objectness: some above 0.25, most not
    ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    cell = np.stack([xs, ys], axis=-1).reshape(1, -1, 2).repeat(anchors_n, axis=0).reshape(-1, 2)
    anchors = np.array([[size / 10, size / 8], [size / 5, size / 4], [size / 3, size / 2.5]])
    anchor_rows = anchors.repeat(grid * grid, axis=0)
    inits = [
        _const("head_w", weight.astype(np.float32)),
        _const("head_b", bias.astype(np.float32)),
        _const("shape5", np.array([1, anchors_n, columns, grid, grid], np.int64)),
        _const("shape3", np.array([1, count, columns], np.int64)),
        _const("grid_off", ((cell - 0.5) * stride).reshape(1, count, 2).astype(np.float32)),
        _const("xy_gain", np.array(2.0 * stride, np.float32)),
        _const("anchor4", (4.0 * anchor_rows).reshape(1, count, 2).astype(np.float32)),
        _const("s0", np.array([0], np.int64)),
        _const("s2", np.array([2], np.int64)),
        _const("s4", np.array([4], np.int64)),
        _const("send", np.array([columns], np.int64)),
        _const("ax2", np.array([2], np.int64)),
    ]
    nodes = [
        helper.make_node(
            "Conv",
            [source, "head_w", "head_b"],
            ["conv"],
            kernel_shape=[stride, stride],
            strides=[stride, stride],
        ),
        helper.make_node("Reshape", ["conv", "shape5"], ["r5"]),
        helper.make_node("Transpose", ["r5"], ["t5"], perm=[0, 1, 3, 4, 2]),
        helper.make_node("Sigmoid", ["t5"], ["sig"]),
        helper.make_node("Reshape", ["sig", "shape3"], ["y"]),
        helper.make_node("Slice", ["y", "s0", "s2", "ax2"], ["xy"]),
        helper.make_node("Slice", ["y", "s2", "s4", "ax2"], ["wh"]),
        helper.make_node("Slice", ["y", "s4", "send", "ax2"], ["rest"]),
        helper.make_node("Mul", ["xy", "xy_gain"], ["xy2"]),
        helper.make_node("Add", ["xy2", "grid_off"], ["xy_out"]),
        helper.make_node("Mul", ["wh", "wh"], ["wh2"]),
        helper.make_node("Mul", ["wh2", "anchor4"], ["wh_out"]),
        helper.make_node("Concat", ["xy_out", "wh_out", "rest"], ["output"], axis=2),
    ]
    return nodes, inits, count, columns


def head_model(
    path: Path,
    size: int = 128,
    names: list[str] | None = None,
    stride: int = 8,
    seed: int = 0,
    metadata: bool | Mapping[str, str] = True,
) -> Path:
    names = names or ["circle", "square", "triangle"]
    nodes, inits, count, columns = _head_nodes("images", 3, size, len(names), stride, seed)
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, count, columns])],
        inits,
    )
    meta = contract_metadata(names, size) if metadata is True else (metadata or None)
    return _save(graph, path, meta)


def slow_model(
    path: Path, size: int = 256, width: int = 64, layers: int = 200, seed: int = 0
) -> Path:
    """Heavy 3x3 convolutions before the head: an inference of roughly a second on two cores."""
    rng = np.random.default_rng(seed)
    inits = [
        _const("stem_w", (rng.normal(0, 0.3, (width, 3, 3, 3))).astype(np.float32)),
        _const(
            "body_w",
            (rng.normal(0, 1.0 / (3 * np.sqrt(width)), (width, width, 3, 3))).astype(np.float32),
        ),
        _const("neck_w", (rng.normal(0, 0.1, (3, width, 1, 1))).astype(np.float32)),
    ]
    nodes = [helper.make_node("Conv", ["images", "stem_w"], ["f0"], pads=[1, 1, 1, 1])]
    for i in range(layers):
        nodes.append(helper.make_node("Conv", [f"f{i}", "body_w"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"f{i + 1}"]))
    nodes.append(helper.make_node("Conv", [f"f{layers}", "neck_w"], ["neck"]))
    nodes.append(helper.make_node("Sigmoid", ["neck"], ["features"]))
    head_nodes, head_inits, count, columns = _head_nodes("features", 3, size, 3, 8, seed)
    graph = helper.make_graph(
        nodes + head_nodes,
        "slow",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, count, columns])],
        inits + head_inits,
    )
    return _save(graph, path, contract_metadata(["circle", "square", "triangle"], size))


def constant_model(
    path: Path,
    values: np.ndarray,
    size: int = 64,
    metadata: Mapping[str, str] | None = None,
    output_name: str | None = None,
    batch_dim: bool = True,
) -> Path:
    """Whatever the picture, the output is `values`: (A, 5 + nc) rows for raw (given a batch axis),
    or (K, 7) rows for end2end (batch_dim=False)."""
    values = np.asarray(values, dtype=np.float32)
    if batch_dim:
        values = values[None]
    name = output_name or ("output" if batch_dim else "detections")
    inits = [_const("fixed", values), _const("zero", np.array(0.0, np.float32))]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["fixed", "nothing"], [name]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(values.shape))],
        inits,
    )
    return _save(graph, path, metadata)


def flaky_model(path: Path, size: int = 64) -> Path:
    """Raw rows with 8 columns (nc = 3) for a bright picture, 3 columns for a dark one (mean < 0.3).

    The warm-up picture is grey 114 (mean 0.45), so the server starts; a black picture then makes
    the output malformed, which the server can only answer with a 500.
    """
    rows = np.zeros((1, 4, 8), np.float32)
    inits = [
        _const("rows", rows),
        _const("limit", np.array(0.3, np.float32)),
        _const("wide", np.array([8], np.int64)),
        _const("narrow", np.array([3], np.int64)),
        _const("start", np.array([0], np.int64)),
        _const("axis", np.array([2], np.int64)),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Greater", ["mean", "limit"], ["bright"]),
        helper.make_node("Where", ["bright", "wide", "narrow"], ["end"]),
        helper.make_node("Slice", ["rows", "start", "end", "axis"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "flaky",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, "columns"])],
        inits,
    )
    return _save(graph, path, contract_metadata(["circle", "square", "triangle"], size))
