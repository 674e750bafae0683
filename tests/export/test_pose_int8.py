"""INT8 for pose models: the agreement with FP32 is judged on keypoints too (issue 23). A pair of
detections matched by box counts only when its keypoints moved by at most MAX_KEYPOINT_SHIFT of
the person's size; the export gate refuses what falls under the bar."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from export.agreement import MAX_KEYPOINT_SHIFT, measure
from export.cli import main
from tests.support.images import write_photo_crops
from tests.support.server import SAMPLES

PHOTOS = [cv2.imread(str(SAMPLES / f"{name}.jpg")) for name in ("bus", "zidane")]


def shifted_keypoints(model: onnx.ModelProto, dx: float) -> bytes:
    """The same model with every keypoint x moved by dx input pixels: boxes and scores untouched."""
    shifted = onnx.ModelProto()
    shifted.CopyFrom(model)
    graph = shifted.graph
    offset = np.zeros(57, np.float32)
    offset[6::3] = dx
    graph.initializer.append(numpy_helper.from_array(offset, "test_kpt_offset"))
    raw = graph.output[0].name
    for node in graph.node:  # the last node writes `output`: make it write a tensor we shift
        node.output[:] = [f"{raw}_unshifted" if o == raw else o for o in node.output]
    graph.node.append(helper.make_node("Add", [f"{raw}_unshifted", "test_kpt_offset"], [raw]))
    return shifted.SerializeToString()


@pytest.mark.slow
def test_agreement_judges_keypoint_shift(pose_exported):
    model = onnx.load(str(pose_exported["raw"]))
    fp32 = model.SerializeToString()
    same = measure(fp32, fp32, PHOTOS, 640, nkpt=17)
    assert same.reference >= 10 and same.ratio == 1.0 and same.max_keypoint_shift_px == 0.0

    nudged = measure(fp32, shifted_keypoints(model, 0.5), PHOTOS, 640, nkpt=17)
    assert nudged.ratio == 1.0 and nudged.keypoint_mismatches == 0
    assert 0.5 < nudged.mean_keypoint_shift_px < 2.0  # 0.5 px of a letterbox scaled down

    moved = measure(fp32, shifted_keypoints(model, 300.0), PHOTOS, 640, nkpt=17)
    assert moved.max_shift_px == 0.0  # the boxes agree exactly ...
    # ... the poses do not: only people whose keypoints were all clipped to the image edge anyway
    assert moved.ratio < 0.1 and moved.keypoint_mismatches + moved.matched == moved.reference
    assert "keypoint shift" in moved.line() and str(MAX_KEYPOINT_SHIFT) in moved.line()


@pytest.mark.slow
def test_int8_export_of_a_pose_model_is_gated_on_keypoints(pose_checkpoint, tmp_path, capsys):
    """Random weights make poses INT8 cannot keep (neighbouring boxes, unrelated keypoints): the
    gate refuses it naming the keypoint shift; --accept-accuracy-loss writes it with the
    keypoint figures in the metadata."""
    calibration = write_photo_crops(tmp_path / "calibration")
    output = tmp_path / "int8.onnx"
    args = ["--weights", str(pose_checkpoint), "--img-size", "320", "--precision", "int8"]
    args += ["--calibration", str(calibration), "--output", str(output)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "keypoint shift mean" in err and "nothing was written" in err
    assert not output.exists()

    assert main([*args, "--accept-accuracy-loss"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    figures = json.loads(meta["int8_vs_fp32"])
    assert meta["task"] == "pose" and figures["accepted_below_min"] is True
    assert figures["keypoint_mismatches"] > 0
    assert figures["max_keypoint_shift"] == MAX_KEYPOINT_SHIFT
    assert figures["max_keypoint_shift_px"] >= figures["mean_keypoint_shift_px"] > 0
