"""Write the fused model as ONNX with PyTorch, optionally append NMS, and stamp the metadata.

The graph comes from `torch.onnx.export` (the torch.export-based exporter, which constant-folds and
prunes as it optimizes). `--end2end` appends a post-processing tail built from standard ONNX ops and
ONNX's own NonMaxSuppression, so onnxruntime runs it on CPU (no TensorRT plugin).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxscript.optimizer
import torch
from onnx import TensorProto, helper, numpy_helper

from export.errors import ExportError
from serve.nms import MAX_WH  # the server's class offset: per-class NMS by shifting classes apart

OPSET = 18
INPUT_NAME = "images"
RAW_OUTPUT = "output"
END2END_OUTPUT = "detections"
FOLD_LIMIT = 1 << 24  # elements; the largest constants here are decode grids (~1e5 at 1280)


class _ImagesToDetections(torch.nn.Module):
    """Names the traced input `images`; the model itself returns the decoded (N, A, 5+nc)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def export_raw(
    net: torch.nn.Module,
    img_size: int,
    dynamic_batch: bool,
    batch: int,
    rect_stride: int | None = None,
) -> onnx.ModelProto:
    """Trace the fused model into an ONNX graph with the decoded ("grid") output; `rect_stride`:
    height and width symbolic, each a multiple of it up to img_size (the decode grids are then
    computed from the input's shape in the graph)."""
    net.model[-1].stride_values()  # cache Python-float strides before tracing
    sample = torch.zeros(batch if not dynamic_batch else 2, 3, img_size, img_size)
    axes: dict[int, object] = {}
    if dynamic_batch:
        axes[0] = torch.export.Dim("batch", min=1, max=1024)
    if rect_stride:
        steps = img_size // rect_stride
        axes[2] = rect_stride * torch.export.Dim("height_steps", min=1, max=steps)
        axes[3] = rect_stride * torch.export.Dim("width_steps", min=1, max=steps)
    dynamic_shapes = {"images": axes} if axes else None
    # The exporter is chatty (progress lines, deprecation notes); keep our summary readable.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _ImagesToDetections(net),
            (sample,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[RAW_OUTPUT],
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    if program is None:
        raise ExportError("the ONNX exporter returned no program")
    # The exporter's own pass leaves constants above 8192 elements unfolded (the decode grids at
    # 640 are 12800); fold everything that is computable at export time.
    return onnxscript.optimizer.optimize(
        program.model_proto, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT
    )


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def append_nms(
    model: onnx.ModelProto, nc: int, conf: float, iou: float, max_det: int, nkpt: int = 0
) -> onnx.ModelProto:
    """Replace the raw output with `detections` (K, 7): batch, x1, y1, x2, y2, class, score; a
    pose model's rows go on with each kept box's 3 * nkpt keypoint values (K, 7 + 3 * nkpt).

    Follows the official pipeline: score = obj * cls (obj alone for one class, but not for pose,
    whose NMS multiplies), best class only, score > conf, boxes xywh -> xyxy, per-class NMS via a
    class offset, at most max_det per image.
    """
    graph = model.graph
    raw = graph.output[0].name
    xywh_to_xyxy = np.array(
        [[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]], dtype=np.float32
    )
    graph.initializer.extend(
        [
            _const("nms_i0", np.array([0], np.int64)),
            _const("nms_i4", np.array([4], np.int64)),
            _const("nms_i5", np.array([5], np.int64)),
            _const("nms_iend", np.array([5 + nc], np.int64)),
            _const("nms_axis2", np.array([2], np.int64)),
            _const("nms_xyxy", xywh_to_xyxy),
            _const("nms_offset", np.array(MAX_WH, np.float32)),
            _const("nms_max_det", np.array([max_det], np.int64)),
            _const("nms_iou", np.array([iou], np.float32)),
            _const("nms_conf", np.array([conf], np.float32)),
            _const("nms_col0", np.array([0], np.int64)),
            _const("nms_cols_batch_box", np.array([0, 2], np.int64)),
        ]
    )
    score_source = "nms_obj" if nc == 1 and not nkpt else "nms_cls_scores"
    nodes = [
        helper.make_node("Slice", [raw, "nms_i0", "nms_i4", "nms_axis2"], ["nms_xywh"]),
        helper.make_node("Slice", [raw, "nms_i4", "nms_i5", "nms_axis2"], ["nms_obj"]),
        helper.make_node("Slice", [raw, "nms_i5", "nms_iend", "nms_axis2"], ["nms_cls"]),
        helper.make_node("Mul", ["nms_cls", "nms_obj"], ["nms_cls_scores"]),
        helper.make_node("ReduceMax", [score_source, "nms_axis2"], ["nms_score"], keepdims=1),
        helper.make_node("ArgMax", ["nms_cls_scores"], ["nms_class_i64"], axis=2, keepdims=1),
        helper.make_node("Cast", ["nms_class_i64"], ["nms_class"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["nms_xywh", "nms_xyxy"], ["nms_boxes"]),
        helper.make_node("Mul", ["nms_class", "nms_offset"], ["nms_shift"]),
        helper.make_node("Add", ["nms_boxes", "nms_shift"], ["nms_boxes_shifted"]),
        helper.make_node("Transpose", ["nms_score"], ["nms_scores_t"], perm=[0, 2, 1]),
        helper.make_node(
            "NonMaxSuppression",
            ["nms_boxes_shifted", "nms_scores_t", "nms_max_det", "nms_iou", "nms_conf"],
            ["nms_selected"],
        ),
        helper.make_node(
            "Gather", ["nms_selected", "nms_cols_batch_box"], ["nms_batch_box"], axis=1
        ),
        helper.make_node("Gather", ["nms_selected", "nms_col0"], ["nms_batch_i64"], axis=1),
        helper.make_node("Cast", ["nms_batch_i64"], ["nms_batch"], to=TensorProto.FLOAT),
        helper.make_node("GatherND", ["nms_boxes", "nms_batch_box"], ["nms_kept_boxes"]),
        helper.make_node("GatherND", ["nms_class", "nms_batch_box"], ["nms_kept_class"]),
        helper.make_node("GatherND", ["nms_score", "nms_batch_box"], ["nms_kept_score"]),
    ]
    kept = ["nms_batch", "nms_kept_boxes", "nms_kept_class", "nms_kept_score"]
    if nkpt:  # the keypoints travel with their box
        graph.initializer.append(_const("nms_kend", np.array([5 + nc + 3 * nkpt], np.int64)))
        nodes += [
            helper.make_node("Slice", [raw, "nms_iend", "nms_kend", "nms_axis2"], ["nms_kpts"]),
            helper.make_node("GatherND", ["nms_kpts", "nms_batch_box"], ["nms_kept_kpts"]),
        ]
        kept.append("nms_kept_kpts")
    nodes.append(helper.make_node("Concat", kept, [END2END_OUTPUT], axis=1))
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(
            END2END_OUTPUT, TensorProto.FLOAT, ["num_detections", 7 + 3 * nkpt]
        )
    )
    return model


def set_metadata(model: onnx.ModelProto, metadata: dict[str, object]) -> None:
    del model.metadata_props[:]
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value)
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=text))


def check_graph(model: onnx.ModelProto) -> None:
    """Fail if the graph is invalid, has nodes whose outputs nobody reads, or has nodes that are
    computable at export time (all inputs constant) and so were left unfolded."""
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    consumed = {name for node in graph.node for name in node.input}
    consumed |= {out.name for out in graph.output}
    unused = [init.name for init in graph.initializer if init.name not in consumed]
    if unused:
        raise ExportError(f"exported graph has unused initializers: {unused[:3]}")
    for node in graph.node:
        if not any(out in consumed for out in node.output):
            raise ExportError(f"exported graph has a dead node: {node.op_type} {node.name}")
        if (
            node.op_type != "Constant"
            and node.input
            and all(name in constants or name == "" for name in node.input)
        ):
            raise ExportError(f"exported graph has an unfolded constant node: {node.op_type}")
        if node.op_type == "Constant":
            constants.update(node.output)


def save_atomically(model: onnx.ModelProto, output: Path) -> int:
    """Write to a temporary file beside the target, then rename: no partial file on failure."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        tmp.write_bytes(model.SerializeToString())
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return output.stat().st_size
