"""What the server needs to know about a model, from the metadata `export` writes.

See docs/onnx-contract.md. A plain ONNX file without that metadata still works: the image size
comes from the input's static shape (else 640), the layout from the output's rank, `nc` from the
output's last axis, class names are class0.., and the model's name is the file's stem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from serve.errors import ModelError

DEFAULT_IMG_SIZE = 640
DEFAULT_END2END = (0.25, 0.45, 300)  # conf, iou, max_det, for an end2end model without metadata


@dataclass(frozen=True)
class Port:
    """One input or output of the graph: name, shape (ints or symbolic names/None), element type."""

    name: str
    shape: tuple
    type: str = "tensor(float)"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    names: tuple[str, ...]
    nc: int | None  # None only for an end2end model without metadata
    img_size: int
    layout: str  # "raw" or "end2end"
    input_name: str
    input_type: str
    output_name: str
    end2end_conf: float
    end2end_iou: float
    end2end_max_det: int
    metadata: Mapping[str, str]
    task: str = "detect"  # or "pose": each detection also carries nkpt keypoints (x, y, score)
    nkpt: int = 0
    keypoint_names: tuple[str, ...] = ()
    # A `--rect` export (dynamic height and width): each photo is letterboxed to its smallest
    # rectangle of multiples of this stride, as the official detect.py does; None: size x size.
    rect_stride: int | None = None

    def label(self, class_id: int) -> str:
        return self.names[class_id] if 0 <= class_id < len(self.names) else f"class{class_id}"


def _static(dim: object) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _meta_int(meta: Mapping[str, str], key: str) -> int | None:
    if key not in meta:
        return None
    try:
        return int(meta[key])
    except ValueError:
        raise ModelError(f"model metadata {key}={meta[key]!r} is not an integer") from None


def _meta_float(meta: Mapping[str, str], key: str, default: float) -> float:
    if key not in meta:
        return default
    try:
        return float(meta[key])
    except ValueError:
        raise ModelError(f"model metadata {key}={meta[key]!r} is not a number") from None


def _meta_names(meta: Mapping[str, str]) -> tuple[str, ...] | None:
    if "names" not in meta:
        return None
    try:
        names = json.loads(meta["names"])
    except ValueError:
        names = None
    if isinstance(names, dict):  # {"0": "person", ...}, as some exporters write it
        try:
            names = [names[k] for k in sorted(names, key=int)]
        except (ValueError, TypeError):
            names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelError("model metadata 'names' is not a JSON list of strings")
    return tuple(names)


def _meta_pose(meta: Mapping[str, str]) -> tuple[str, int, tuple[str, ...]]:
    """(task, nkpt, keypoint names): ("detect", 0, ()) unless the metadata says pose."""
    task = meta.get("task", "detect")
    if task == "detect":
        return task, 0, ()
    if task != "pose":
        raise ModelError(f"model metadata task={task!r}; expected 'detect' or 'pose'")
    nkpt = _meta_int(meta, "nkpt")
    if nkpt is None or nkpt < 1:
        raise ModelError("a pose model's metadata needs 'nkpt', its number of keypoints (>= 1)")
    try:
        names = json.loads(meta.get("keypoint_names", "null"))
    except ValueError:
        names = None
    if names is None:
        names = [f"keypoint{i}" for i in range(nkpt)]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelError("model metadata 'keypoint_names' is not a JSON list of strings")
    if len(names) != nkpt:
        raise ModelError(f"model metadata has {len(names)} keypoint_names but nkpt={nkpt}")
    return task, nkpt, tuple(names)


def read_model_info(
    metadata: Mapping[str, str], inputs: Sequence[Port], outputs: Sequence[Port], stem: str
) -> ModelInfo:
    """Metadata and graph signature -> ModelInfo; ModelError when they disagree."""
    if len(inputs) != 1:
        raise ModelError(f"the model has {len(inputs)} inputs; expected one image input")
    if not outputs:
        raise ModelError("the model has no outputs")
    image_in = inputs[0]
    if len(image_in.shape) != 4:
        raise ModelError(
            f"the model's input has shape {list(image_in.shape)}; expected (N, 3, S, S)"
        )
    if image_in.type not in ("tensor(float)", "tensor(float16)"):
        raise ModelError(f"the model's input is {image_in.type}; expected float32")
    if _static(image_in.shape[1]) not in (None, 3):
        raise ModelError(f"the model's input has {image_in.shape[1]} channels; expected 3")

    height, width = _static(image_in.shape[2]), _static(image_in.shape[3])
    rect_stride = _meta_int(metadata, "rect_stride")
    if rect_stride is not None and (height or width or rect_stride < 1):
        raise ModelError(
            f"model metadata rect_stride={rect_stride} needs an input of dynamic height and "
            f"width (a --rect export); this one is {list(image_in.shape)}"
        )
    if height and width and height != width:
        raise ModelError(
            f"the model's input is {height} x {width}; the server needs a square input"
        )
    img_size = _meta_int(metadata, "img_size") or height or width or DEFAULT_IMG_SIZE
    if (height and height != img_size) or img_size < 32:
        raise ModelError(f"model metadata img_size={img_size} does not fit the input shape")

    task, nkpt, keypoint_names = _meta_pose(metadata)
    extra = 3 * nkpt  # keypoint columns after the detection's own
    by_name = {port.name: port for port in outputs}
    layout = metadata.get("layout")
    if layout is None:
        rank = len(outputs[0].shape)
        last = outputs[0].shape[-1] if rank else None
        if rank == 3:
            layout = "raw"
        elif rank == 2 and last in (7, None):
            layout = "end2end"
        else:
            raise ModelError(
                f"cannot tell the model's output layout from shape {list(outputs[0].shape)}"
            )
    if layout not in ("raw", "end2end"):
        raise ModelError(f"model metadata layout={layout!r}; expected 'raw' or 'end2end'")
    preferred = "output" if layout == "raw" else "detections"
    output = by_name.get(preferred, outputs[0])

    names = _meta_names(metadata)
    nc = _meta_int(metadata, "nc")
    if layout == "raw":
        if len(output.shape) != 3:
            raise ModelError(
                f"raw output '{output.name}' has shape {list(output.shape)}; "
                "expected (N, A, 5 + nc)"
            )
        columns = _static(output.shape[2])
        if nc is None:
            nc = len(names) if names else (columns - 5 - extra if columns else None)
        if nc is None or nc < 1:
            raise ModelError(
                "cannot tell the number of classes (no 'nc' metadata, no static output shape)"
            )
        if columns and columns != 5 + nc + extra:
            expected = f"5 + nc{' + 3 * nkpt' if extra else ''} = {5 + nc + extra}"
            raise ModelError(f"raw output has {columns} columns; expected {expected}")
    else:
        if len(output.shape) != 2 or _static(output.shape[1]) not in (None, 7 + extra):
            raise ModelError(
                f"end2end output '{output.name}' has shape {list(output.shape)}; "
                f"expected (K, {7 + extra})"
            )
        if nc is None and names:
            nc = len(names)
    if names is None:
        names = tuple(f"class{i}" for i in range(nc or 0))
    if nc is not None and len(names) != nc:
        raise ModelError(f"model metadata has {len(names)} names but nc={nc}")

    return ModelInfo(
        name=metadata.get("model_name") or stem,
        names=names,
        nc=nc,
        img_size=img_size,
        layout=layout,
        input_name=image_in.name,
        input_type=image_in.type,
        output_name=output.name,
        end2end_conf=_meta_float(metadata, "end2end_conf", DEFAULT_END2END[0]),
        end2end_iou=_meta_float(metadata, "end2end_iou", DEFAULT_END2END[1]),
        end2end_max_det=_meta_int(metadata, "end2end_max_det") or DEFAULT_END2END[2],
        metadata=dict(metadata),
        task=task,
        nkpt=nkpt,
        keypoint_names=keypoint_names,
        rect_stride=rect_stride,
    )
