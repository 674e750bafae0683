"""`python -m export` writes a verified, self-describing ONNX model for every family."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.cli import Options, run
from export.safe_load import load_checkpoint
from export.verify import load_image
from serve.letterbox import letterbox, to_tensor
from tests.support.checkpoints import FAMILIES
from tests.support.reference import reference_nms  # written from the reference facts

P5_ANCHORS_640 = 25200
P6_ANCHORS_640 = 25500


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def torch_output(weights: Path, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return load_checkpoint(weights).model(torch.from_numpy(x)).numpy()


def sample_input(size: int, batch: int = 1) -> np.ndarray:
    return np.repeat(to_tensor(letterbox(load_image(None), size)), batch, axis=0)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["training", "deploy"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_exports_at_640_and_matches_unfused_pytorch(
    make_checkpoint, tmp_path, family, form
):
    weights = make_checkpoint(family, form)
    output = tmp_path / "model.onnx"
    summary = run(Options(weights, output), log=lambda _: None)
    model = onnx.load(output)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    anchors = P6_ANCHORS_640 if family.endswith(("6", "6e")) else P5_ANCHORS_640
    sess = session(output)
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("images", "tensor(float)", [1, 3, 640, 640])
    assert (out.name, out.shape) == ("output", [1, anchors, 8])
    x = sample_input(640)
    got = sess.run(None, {"images": x})[0]
    want = torch_output(weights, x)  # the unfused model, as loaded
    assert np.abs(got[..., :4] - want[..., :4]).max() < 0.05  # pixels
    assert np.abs(got[..., 4:] - want[..., 4:]).max() < 1e-4  # probabilities
    assert "vs PyTorch" in summary and family.split("-")[0] in summary


def test_metadata_carries_what_the_server_needs(make_checkpoint, tmp_path):
    weights = make_checkpoint("yolov7-tiny", nc=3)
    output = tmp_path / "tiny.onnx"
    run(Options(weights, output, img_size=320), log=lambda _: None)
    meta = session(output).get_modelmeta().custom_metadata_map
    assert json.loads(meta["names"]) == ["class0", "class1", "class2"]
    assert meta["nc"] == "3" and json.loads(meta["strides"]) == [8, 16, 32]
    anchors = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
    assert json.loads(meta["anchors"]) == anchors  # the checkpoint's, in input pixels
    assert meta["img_size"] == "320" and meta["layout"] == "raw"
    assert meta["dynamic_batch"] == "false"
    assert meta["model_name"] == weights.stem
    assert meta["checkpoint_sha256"] == load_checkpoint(weights).sha256
    assert meta["exporter_version"] and meta["architecture"].startswith("yolov7-tiny")


def test_graph_is_constant_folded_with_no_dead_nodes(make_checkpoint, tmp_path):
    output = tmp_path / "m.onnx"
    run(Options(make_checkpoint("yolov7"), output, img_size=320, end2end=True), log=lambda _: None)
    graph = onnx.load(output).graph
    constant = {i.name for i in graph.initializer}
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for node in graph.node:
        assert any(o in read for o in node.output), f"dead node {node.op_type}"
        assert not all(i in constant for i in node.input), f"unfolded {node.op_type}"
    assert all(i.name in read for i in graph.initializer)
    ops = {node.op_type for node in graph.node}
    assert "BatchNormalization" not in ops  # fused into the convolutions
    assert "NonMaxSuppression" in ops


def test_tiny_at_320_has_the_right_anchor_count(make_checkpoint, tmp_path):
    output = tmp_path / "m.onnx"
    run(Options(make_checkpoint("yolov7-tiny"), output, img_size=320), log=lambda _: None)
    assert session(output).get_outputs()[0].shape == [1, 6300, 8]


def test_dynamic_batch_runs_any_batch_and_matches_pytorch(make_checkpoint, tmp_path):
    weights = make_checkpoint("yolov7-tiny")
    output = tmp_path / "dyn.onnx"
    run(Options(weights, output, img_size=320, dynamic_batch=True), log=lambda _: None)
    sess = session(output)
    assert isinstance(sess.get_inputs()[0].shape[0], str)
    for batch in (2, 3):
        x = sample_input(320, batch)
        x[1:] = x[1:] * 0.5  # the images of a batch differ
        got = sess.run(None, {"images": x})[0]
        want = torch_output(weights, x)
        assert got.shape == (batch, 6300, 8)
        assert np.abs(got - want).max() < 0.05


def test_fixed_batch_of_two(make_checkpoint, tmp_path):
    output = tmp_path / "b2.onnx"
    run(Options(make_checkpoint("yolov7-tiny"), output, img_size=320, batch=2), log=lambda _: None)
    assert session(output).get_inputs()[0].shape == [2, 3, 320, 320]


def test_img_size_is_rounded_up_to_the_largest_stride_with_a_message(make_checkpoint, tmp_path):
    messages: list[str] = []
    output = tmp_path / "m.onnx"
    run(Options(make_checkpoint("yolov7-w6", "deploy"), output, img_size=300), log=messages.append)
    assert session(output).get_inputs()[0].shape == [1, 3, 320, 320]
    assert any("320" in m and "64" in m for m in messages)


@pytest.mark.slow
def test_end2end_nms_in_graph_equals_the_official_post_processing(shapes_checkpoint, tmp_path):
    raw_path, e2e_path = tmp_path / "raw.onnx", tmp_path / "e2e.onnx"
    run(Options(shapes_checkpoint, raw_path, img_size=320), log=lambda _: None)
    run(
        Options(
            shapes_checkpoint, e2e_path, img_size=320, end2end=True, conf=0.1, iou=0.5, max_det=50
        ),
        log=lambda _: None,
    )
    assert session(e2e_path).get_modelmeta().custom_metadata_map["end2end_iou"] == "0.5"
    x = sample_input(320)
    raw = session(raw_path).run(None, {"images": x})[0][0]
    got = session(e2e_path).run(None, {"images": x})[0]
    want = np.array(reference_nms(raw, conf=0.1, iou=0.5, max_det=50))  # x1 y1 x2 y2 score cls
    assert len(want) > 0 and got.shape == (len(want), 7)
    assert np.all(got[:, 0] == 0)
    got = got[np.argsort(-got[:, 6], kind="stable")]
    np.testing.assert_allclose(got[:, 1:5], want[:, :4], atol=1e-3)
    np.testing.assert_array_equal(got[:, 5], want[:, 5])
    np.testing.assert_allclose(got[:, 6], want[:, 4], atol=1e-6)


def run_cli(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "export", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_exports_the_bundled_checkpoint_and_prints_a_summary(
    repo_root, shapes_checkpoint, tmp_path
):
    output = tmp_path / "shapes.onnx"
    result = run_cli(
        repo_root, "--weights", str(shapes_checkpoint), "--img-size", "320", "--output", str(output)
    )
    assert result.returncode == 0, result.stderr
    for field in (
        "architecture",
        "yolov7-tiny",
        "circle, square, triangle",
        "[8, 16, 32]",
        "(1, 3, 320, 320)",
        "(1, 6300, 8)",
        "vs PyTorch",
        "file size",
        "time",
    ):
        assert field in result.stdout
    assert output.stat().st_size > 1_000_000
    assert not list(tmp_path.glob(".*tmp"))


def truncated(path: Path, tmp_path: Path) -> Path:
    cut = tmp_path / "truncated.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return cut


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("missing", "not found"),
        ("text", "not a readable"),
        ("truncated", "not a readable"),
        ("empty", "empty"),
        ("size-zero", "--img-size"),
        ("size-huge", "--img-size"),
        ("size-word", "--img-size"),
        ("bad-iou", "--iou"),
        ("bad-output", ".onnx"),
    ],
)
def test_bad_input_gives_one_line_exit_2_and_no_output_file(
    repo_root, shapes_checkpoint, tmp_path, case, expect
):
    weights, extra = shapes_checkpoint, []
    output = tmp_path / "out.onnx"
    if case == "missing":
        weights = tmp_path / "nope.pt"
    elif case == "text":
        weights = tmp_path / "notes.pt"
        weights.write_text("this is not a checkpoint\n")
    elif case == "truncated":
        weights = truncated(shapes_checkpoint, tmp_path)
    elif case == "empty":
        weights = tmp_path / "empty.pt"
        weights.write_bytes(b"")
    elif case == "size-zero":
        extra = ["--img-size", "0"]
    elif case == "size-huge":
        extra = ["--img-size", "100000"]
    elif case == "size-word":
        extra = ["--img-size", "big"]
    elif case == "bad-iou":
        extra = ["--end2end", "--iou", "1.5"]
    elif case == "bad-output":
        output = tmp_path / "out.txt"
    result = run_cli(repo_root, "--weights", str(weights), "--output", str(output), *extra)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expect in lines[0]
    assert "Traceback" not in result.stderr
    assert not output.exists()
    assert not list(tmp_path.glob(".*.tmp"))
