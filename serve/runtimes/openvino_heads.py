"""The detect head's decode in numpy, on the rows that can pass NMS's first filter only.

An export's graph ends in the official decode: each level's 1x1 conv output is viewed as
(na, no, ny, nx), permuted to (na, ny, nx, no), sigmoid-ed, its xy and wh decoded against the grid
and the anchors, and the levels concatenated into (1, A, no) rows. On OpenVINO's CPU plugin that
tail is float work on every row (transposes, reorders, a concat, a split): 2.4 of 18.1 ms of the
yolov7-tiny INT8 IR on bus.jpg at 640 x 480, 1.5 of 14.0 ms on zidane.jpg at 384 x 640, measured
bare and interleaved. NMS keeps only rows whose objectness is over `conf`: a few hundred of the
15-19 thousand.

So the runtime compiles the graph up to the head convs, each output transposed to NHWC (the
layout the conv writes, so no reorder), and decodes here only the cells whose objectness passes:
the same arithmetic as the graph's, in the same row order, so NMS keeps the same rows. The cut is
before each conv's bias, which is added here in float: an output right after the bias lets the
plugin fuse the bias into an INT8 conv, rounded (logits 5x further from FP32's, 0.0077 against
0.0016 on average), where the whole graph adds it in float with the decode. The values differ
from the graph's decode by float rounding (numpy's sigmoid, not OpenVINO's).

It needs the anchors in the metadata (`anchors`, written by `export` since this module) and the
official head; anything else keeps the whole graph: `cut` answers None.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import openvino as ov
import openvino.opset13 as ops

_NHWC = np.array([0, 2, 3, 1], dtype=np.int64)


@dataclass(frozen=True)
class Heads:
    """What the numpy decode needs: each level's stride and anchors (na, 2) in input pixels, and
    the columns of a row (5 + nc)."""

    strides: tuple[int, ...]
    anchors: tuple[np.ndarray, ...]
    columns: int
    biases: tuple[np.ndarray, ...] = ()  # each level's conv bias (na, columns), from the graph

    def decode(self, levels: Sequence[np.ndarray], objectness_over: float | None) -> np.ndarray:
        """The graph's (1, A, columns) rows from each level's NHWC head output, leaving out the
        rows whose objectness is not over `objectness_over` (None: every row), in the graph's
        order: level, anchor, y, x."""
        # one image; each level's grid the first's scaled by their strides (the levels in order)
        side = levels[0].shape[1] * self.strides[0]
        for i, head in enumerate(levels):
            if head.shape[0] != 1 or head.shape[1] * self.strides[i] != side:
                shapes = [list(level.shape) for level in levels]
                raise RuntimeError(f"head outputs {shapes} are not one image's levels")
        rows = [self._level(i, head, objectness_over) for i, head in enumerate(levels)]
        return np.concatenate(rows, axis=0)[None]

    def _level(self, i: int, head: np.ndarray, objectness_over: float | None) -> np.ndarray:
        anchors = self.anchors[i]
        na = anchors.shape[0]
        _, ny, nx, channels = head.shape
        if channels != na * self.columns:
            raise RuntimeError(f"head {i} has {channels} channels; expected {na} x {self.columns}")
        bias = self.biases[i]
        cells = head.reshape(ny, nx, na, self.columns).transpose(2, 0, 1, 3)  # a, y, x, column
        if objectness_over is None:
            a, y, x = np.indices((na, ny, nx)).reshape(3, -1)
        else:
            objectness = _sigmoid(cells[..., 4] + bias[:, 4, None, None])
            a, y, x = np.nonzero(objectness > objectness_over)  # sorted by a, then y, then x
        rows = _sigmoid(cells[a, y, x] + bias[a])  # (M, columns): new memory, not the request's
        stride = np.float32(self.strides[i])
        grid = np.stack((x, y), axis=1).astype(np.float32)
        rows[:, 0:2] = (rows[:, 0:2] * np.float32(2.0) - np.float32(0.5) + grid) * stride
        rows[:, 2:4] = (rows[:, 2:4] * np.float32(2.0)) ** 2 * anchors[a]
        return rows


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(89+) is inf: the sigmoid is 0, as it should be
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-x, dtype=np.float32))


def headless(model: ov.Model, metadata: Mapping[str, str]) -> tuple[ov.Model, Heads] | None:
    """The graph OpenVINO compiles for `model` and the decode after it, where its `metadata`
    (and its graph) allow; None: the whole graph runs."""
    heads = heads_from_metadata(metadata)
    return None if heads is None else cut(model, heads)


def heads_from_metadata(metadata: Mapping[str, str]) -> Heads | None:
    """The decode's constants from an export's metadata; None for a pose model, an end2end
    graph, or metadata without anchors (exports before this module)."""
    if metadata.get("task", "detect") != "detect" or metadata.get("layout", "raw") != "raw":
        return None
    try:
        strides = [int(s) for s in json.loads(metadata["strides"])]
        levels = json.loads(metadata["anchors"])
        anchors = [np.asarray(level, np.float32).reshape(-1, 2) for level in levels]
        nc = int(metadata["nc"])
    except (KeyError, ValueError, TypeError):
        return None
    if len(strides) != len(anchors) or not strides or nc < 1:
        return None
    return Heads(tuple(strides), tuple(anchors), 5 + nc)


def cut(model: ov.Model, heads: Heads) -> tuple[ov.Model, Heads] | None:
    """`model` up to its head convs (before their biases), one NHWC output per level, in level
    order, and `heads` with those biases; None where the graph does not end in the official
    decode that `heads` describes."""
    found: list[tuple[ov.Output, np.ndarray]] = []
    for op in model.get_ordered_ops():  # topological: the levels in the order they are built
        if op.get_type_name() != "Reshape" or op.get_output_partial_shape(0).rank != 5:
            continue  # the decode views each level's conv output as (1, na, no, ny, nx)
        level = min(len(found), len(heads.anchors) - 1)  # one too many: refused below
        head = _conv_and_bias(op.input_value(0), len(heads.anchors[level]) * heads.columns)
        if head is not None:
            found.append(head)
    if len(found) != len(heads.strides):
        return None
    outputs = [ops.transpose(conv, ops.constant(_NHWC)).output(0) for conv, _ in found]
    for i, output in enumerate(outputs):
        output.get_tensor().set_names({f"head{i}"})
    biases = tuple(
        bias.reshape(len(heads.anchors[i]), heads.columns) for i, (_, bias) in enumerate(found)
    )
    return ov.Model(outputs, model.get_parameters(), "heads"), replace(heads, biases=biases)


def _conv_and_bias(output: ov.Output, channels: int) -> tuple[ov.Output, np.ndarray] | None:
    """(the conv's output, its bias) where `output` is Add(conv (N, channels, H, W), constant
    bias of `channels`, as it is or reshaped); else None."""
    add = output.get_node()
    if add.get_type_name() != "Add" or output.get_partial_shape().rank != 4:
        return None
    conv, bias = add.input_value(0), add.input_value(1).get_node()
    if bias.get_type_name() == "Reshape":
        bias = bias.input_value(0).get_node()
    if conv.get_node().get_type_name() != "Convolution" or bias.get_type_name() != "Constant":
        return None
    values = np.asarray(bias.get_data(), dtype=np.float32).reshape(-1)
    return (conv, values) if values.size == channels else None
