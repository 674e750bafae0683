"""yolov7-w6-pose (the IKeypoint head): official-layout checkpoints load through the allow-list,
fuse exactly, decode as the reference facts say, and export to a verified ONNX whose metadata says
pose (issue 23); heads of other tasks are refused with one line naming them."""

from __future__ import annotations

import copy
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from export.cli import main
from export.fuse import fuse_model
from export.keypoint import COCO_KEYPOINTS, IKeypoint
from export.layers import Conv
from export.model import IDetect
from export.safe_load import load_checkpoint
from export.verify import load_image
from serve.letterbox import letterbox, to_tensor
from tests.support.checkpoints import (
    POSE_FAMILIES,
    build_pose_model,
    checkpoint_dict,
    official_pickle_names,
    save_checkpoint,
    saved_from_cuda,
)
from tests.support.reference_pose import reference_pose_decode

SIZE = 256  # a multiple of 64; small, so that the plain-loop reference decode stays quick


def forward(net: nn.Module, size: int = SIZE) -> torch.Tensor:
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return net(x)


def relative_difference(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize(
    ("family", "form", "cuda"),
    [
        ("yolov7-w6-pose", "training", False),
        ("yolov7-w6-pose", "stripped", True),
        ("yolov7-w6-pose-nodw", "training", True),
        ("yolov7-w6-pose-nodw", "stripped", False),
    ],
)
def test_pose_checkpoints_load_and_fuse_to_the_same_outputs(tmp_path, family, form, cuda):
    net = build_pose_model(family, width=4)
    path = tmp_path / "pose.pt"
    if cuda:
        with saved_from_cuda():
            save_checkpoint(checkpoint_dict(net, form), path)
        with zipfile.ZipFile(path) as archive:  # the file really records GPU storages
            pickled = next(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
        assert b"cuda:0" in pickled
    else:
        save_checkpoint(checkpoint_dict(net, form), path)
    with zipfile.ZipFile(path) as archive:
        pickled = next(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    assert b"models.yolo\nIKeypoint" in pickled  # the official class path

    checkpoint = load_checkpoint(path)
    loaded = checkpoint.model
    head = loaded.model[-1]
    assert type(head) is IKeypoint and checkpoint.dtype == torch.float16
    assert checkpoint.source_key == ("ema" if form == "training" else "model")
    assert head.dw_conv_kpt == family.endswith("pose") and head.nkpt == 17
    unfused = forward(loaded)
    assert unfused.shape == (1, 3 * sum((SIZE // s) ** 2 for s in (8, 16, 32, 64)), 57)
    assert relative_difference(unfused, forward(net.half().float())) < 1e-5

    fused = fuse_model(copy.deepcopy(loaded))
    assert not any(hasattr(m, "bn") for m in fused.modules() if isinstance(m, Conv))
    assert not any(hasattr(fused.model[-1], name) for name in ("ia", "im"))
    if head.dw_conv_kpt:  # the depthwise chains are fused too, groups kept
        depthwise = [m for m in fused.model[-1].m_kpt.modules() if isinstance(m, Conv)]
        assert len(depthwise) == 4 * 11 and depthwise[0].conv.groups > 1
    out = forward(fused)
    pixels = np.zeros(57, dtype=bool)
    pixels[:4] = pixels[6::3] = pixels[7::3] = True
    assert relative_difference(out[..., pixels], unfused[..., pixels]) < 1e-4
    assert relative_difference(out[..., ~pixels], unfused[..., ~pixels]) < 1e-4


def test_head_decodes_as_the_reference_facts_say():
    """The head's output equals the plain-loop decode of its raw per-level convolutions, written
    from the reference facts (keypoint x, y without sigmoid; the official channel order)."""
    net = build_pose_model(width=4)
    head = net.model[-1]
    captured: list[list[torch.Tensor]] = []
    hook = head.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    out = forward(net, 128)[0].numpy()
    hook.remove()
    expected = []
    with torch.no_grad():
        for i, x in enumerate(captured[0]):
            raw = IDetect.level(head, i, x)  # the box branch: ia -> m -> im
            raw = torch.cat((raw, head.m_kpt[i](x)), 1)[0].numpy()
            anchors = head.anchor_grid[i].reshape(-1, 2).numpy()
            expected.append(reference_pose_decode(raw, float(head.stride[i]), anchors, 1, 17))
    np.testing.assert_allclose(out, np.concatenate(expected), rtol=1e-4, atol=1e-3)


def onnx_metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.slow
def test_export_writes_a_verified_pose_model_saying_pose(pose_checkpoint, tmp_path, capsys):
    output = tmp_path / "pose.onnx"
    args = ["--weights", str(pose_checkpoint), "--img-size", "600", "--output", str(output)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "--img-size 600 is not a multiple of the largest stride 64: using 640" in captured.err
    assert "task           pose, 17 keypoints" in captured.out
    assert "(1, 25500, 57)" in captured.out and "IKeypoint head" in captured.out
    meta = onnx_metadata(output)
    assert meta["task"] == "pose" and meta["nkpt"] == "17" and meta["img_size"] == "640"
    assert json.loads(meta["keypoint_names"]) == list(COCO_KEYPOINTS)
    assert json.loads(meta["names"]) == ["person"] and json.loads(meta["strides"]) == [
        8,
        16,
        32,
        64,
    ]
    # the ONNX graph against the unfused PyTorch model on a real photo, keypoints included
    x = to_tensor(letterbox(load_image(None), 640))
    got = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"]).run(
        None, {"images": x}
    )[0]
    with torch.no_grad():
        want = load_checkpoint(pose_checkpoint).model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() < 0.05


@pytest.mark.slow
def test_end2end_keeps_the_keypoints_with_their_boxes(pose_exported):
    """The graph's NMS rows carry the same keypoints as the raw output's row of the same box."""
    x = to_tensor(letterbox(load_image(None), 640))
    raw = ort.InferenceSession(str(pose_exported["raw"])).run(None, {"images": x})[0][0]
    rows = ort.InferenceSession(str(pose_exported["end2end"])).run(None, {"images": x})[0]
    assert rows.shape[1] == 7 + 51 and len(rows) >= 5
    for row in rows:
        cx, cy = (row[1] + row[3]) / 2, (row[2] + row[4]) / 2
        source = raw[np.argmin(np.abs(raw[:, 0] - cx) + np.abs(raw[:, 1] - cy))]
        np.testing.assert_allclose(row[7:], source[6:], rtol=1e-5, atol=1e-3)
        assert row[6] == pytest.approx(source[4] * source[5], rel=1e-5)  # obj * cls, as for pose


class IBin(IDetect):
    """Stands in for a head of another task, pickled under its official name."""


class ISegment(IDetect):
    """Stands in for a segmentation head."""


@pytest.mark.parametrize("head_class", [IBin, ISegment])
def test_a_head_of_another_task_is_refused_naming_it(tmp_path, capsys, head_class):
    net = build_pose_model(width=4, objects_per_image=None)
    unknown = head_class.__new__(head_class)
    unknown.__dict__.update(net.model[-1].__dict__)
    net.model[-1] = unknown
    path = tmp_path / "other-task.pt"
    with official_pickle_names():
        head_class.__module__ = "models.yolo"
        sys.modules["models.yolo"].__dict__[head_class.__name__] = head_class
        try:
            torch.save(checkpoint_dict(net, "stripped"), path)
        finally:
            head_class.__module__ = __name__
    output = tmp_path / "out.onnx"
    assert main(["--weights", str(path), "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"its head 'models.yolo.{head_class.__name__}' is not supported" in err
    assert "IKeypoint" in err and not output.exists()


def test_pose_families_are_kept_apart_from_the_detection_families():
    from tests.support.checkpoints import FAMILIES

    assert not set(POSE_FAMILIES) & set(FAMILIES)
